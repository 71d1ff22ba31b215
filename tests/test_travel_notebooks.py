"""Notebooks that travel, in real kernels (ipykernel 7 and 6) and a real browser.

1. The quickstart, executed with nbclient, saved as JupyterLab saves by default (no widget
   state) and exported with nbconvert, shows the final card, thumbnails included, in Chromium
   with the network off; saved with widget state, the card's text form says completed; the
   API key is in neither file. The final state reaches the saved output by ``update_display``
   sent from the watch's background thread.
2. ``await run.wait_async()`` in a kernel while another coroutine keeps ticking.
3. The Colab fallback (simulated: a ``google.colab`` module), in a kernel.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from .test_notebooks import KERNELS, NOTEBOOK, WIDGET_STATE, WIDGET_VIEW, _skip_or_fail

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")

SIMULATOR = (
    "from modelslab_widget import WorkflowsClient, watch\n"
    "from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator\n"
    "simulator = Simulator().start()\n"
    "client = WorkflowsClient(simulator.api_key, base_url=simulator.base_url)\n"
    "STEPS = [('Text to Image', 1.0), ('Image Upscaler', 1.0)]\n"
)


def _kernel(name: str) -> None:
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        _skip_or_fail(f"kernelspec {name!r} is not installed; `make test` creates it")


def _execute(notebook: Any, kernel_name: str, path: Path, widget_state: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELSLAB_API_KEY"}
    client = nbclient.NotebookClient(
        notebook, kernel_name=kernel_name, timeout=180, startup_timeout=180,
        store_widget_state=widget_state, resources={"metadata": {"path": str(path)}},
    )
    client.execute(env=env)
    errors = [f"{out.get('ename')}: {out.get('evalue')}"
              for cell in notebook.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors, "\n".join(errors)


def _stdout(notebook: Any) -> str:
    return "".join(out.get("text", "") for cell in notebook.cells
                   for out in cell.get("outputs", []) if out.get("name") == "stdout")


def _card_outputs(notebook: Any) -> list[dict[str, Any]]:
    return [out for cell in notebook.cells for out in cell.get("outputs", [])
            if WIDGET_VIEW in out.get("data", {})]


def _open_offline(html_path: Path, shot: Path) -> dict[str, Any]:
    """Open a file in Chromium with the network off; what the saved card shows."""
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright Python package is not installed")
    from .test_browser import CHROMIUM_ARGS

    asked: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            context.set_offline(True)

            def only_files(route: Any) -> None:
                asked.append(route.request.url)
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    route.abort()

            context.route("**/*", only_files)
            page = context.new_page()
            page.goto(html_path.as_uri())
            card = page.locator(".mlw-static").first
            card.wait_for(state="visible", timeout=10_000)
            page.wait_for_function(
                """() => { const imgs = [...document.querySelectorAll('.mlw-static img')];
                           return imgs.length > 0
                                  && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
                polling=100, timeout=10_000,
            )
            card.scroll_into_view_if_needed()
            card.screenshot(path=shot)
            return {
                "badge": card.locator(".mlw-badge").inner_text(),
                "images": card.locator("img").evaluate_all(
                    "imgs => imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().width])"
                ),
                "links": card.locator("a").evaluate_all("as => as.map(a => a.href)"),
                "cards": page.locator(".mlw-static").count(),
                "remote": [u for u in asked if not u.startswith(("file:", "data:"))],
            }
        finally:
            browser.close()


@pytest.mark.parametrize("kernel_name", list(KERNELS))
def test_saved_quickstart_shows_the_final_card_offline(kernel_name: str, tmp_path: Path) -> None:
    _kernel(kernel_name)
    keyfile = tmp_path / "key.txt"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # a throwaway cell that tells the test the simulator's key (dropped before saving)
    notebook.cells.append(nbformat.v4.new_code_cell(
        f"open({str(keyfile)!r}, 'w').write(simulator.api_key)"
    ))
    _execute(notebook, kernel_name, NOTEBOOK.parent, widget_state=True)
    notebook.cells.pop()
    key = keyfile.read_text()
    assert len(key) >= 8

    cards = _card_outputs(notebook)
    assert len(cards) == 1, cards  # one output, updated in place: not a second card
    data = cards[0]["data"]
    # the update came from the watch's background thread, while the wait() cell ran
    assert re.match(r"Run 12345 · completed · 2/2 steps · .* · 2 images$", data["text/plain"])
    assert "mlw-badge mlw-s-completed" in data["text/html"]

    stem = f"travel-{kernel_name}"
    ARTIFACTS.mkdir(exist_ok=True)
    # 1. as JupyterLab saves by default: no widget state
    plain = copy.deepcopy(notebook)
    plain.metadata.pop("widgets", None)
    saved = tmp_path / f"{stem}.ipynb"
    nbformat.write(plain, saved)
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(saved, as_version=4))
    page = tmp_path / f"{stem}.html"
    page.write_text(html, encoding="utf-8")
    (ARTIFACTS / page.name).write_text(html, encoding="utf-8")
    assert WIDGET_STATE not in html
    shown = _open_offline(page, ARTIFACTS / f"{stem}-offline.png")
    assert shown["cards"] == 1, shown
    assert "Completed" in shown["badge"], shown
    assert len(shown["images"]) == 2 and all(w > 0 for w, _ in shown["images"]), shown
    assert all(link.startswith("http://127.0.0.1:") for link in shown["links"]), shown
    assert shown["remote"], "the export asked for nothing remote: was the network test real?"

    # 2. with widget state: the widget view is kept, and the text form says completed
    stateful = tmp_path / f"{stem}-state.ipynb"
    nbformat.write(notebook, stateful)
    reread = nbformat.read(stateful, as_version=4)
    assert reread.metadata["widgets"][WIDGET_STATE]["state"]
    text = _card_outputs(reread)[0]["data"]["text/plain"]
    assert text.startswith("Run 12345 · completed · 2/2 steps"), text
    html_state, _ = nbconvert.HTMLExporter().from_notebook_node(reread)
    markdown, _ = nbconvert.MarkdownExporter().from_notebook_node(reread)
    assert "completed" in markdown and "data:image/jpeg;base64," in markdown

    # 3. the key is in none of them
    for name, content in [
        ("ipynb", saved.read_text()), ("ipynb with state", stateful.read_text()),
        ("html", html), ("html with state", html_state), ("markdown", markdown),
    ]:
        assert key not in content, f"the API key is in the {name}"


ASYNC_CELLS = [
    SIMULATOR,
    "import asyncio\n"
    "run = watch(DEMO_WORKFLOW_ID, simulator.add_run(steps=STEPS), client=client,\n"
    "            poll_interval=0.2)\n"
    "ticks = []\n"
    "async def ticker():\n"
    "    while not run.settled:\n"
    "        ticks.append(run.status)\n"
    "        await asyncio.sleep(0.05)\n"
    "task = asyncio.ensure_future(ticker())\n"
    "snapshot = await run.wait_async(timeout=60)\n"
    "await task\n"
    "print('MLW status', snapshot.status, snapshot is run.snapshot)\n"
    "print('MLW ticks', len(ticks), sorted(set(ticks)))",
    "from modelslab_widget.errors import NotFoundError\n"
    "missing = watch(DEMO_WORKFLOW_ID, 987654, client=client)\n"
    "try:\n"
    "    await missing.wait_async(timeout=30)\n"
    "except NotFoundError as error:\n"
    "    print('MLW raised', type(error).__name__)",
]


@pytest.mark.parametrize("kernel_name", list(KERNELS))
def test_wait_async_in_a_real_kernel(kernel_name: str, tmp_path: Path) -> None:
    _kernel(kernel_name)
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(code) for code in ASYNC_CELLS]
    )
    _execute(notebook, kernel_name, tmp_path, widget_state=False)
    out = _stdout(notebook)
    assert "MLW status completed True" in out, out
    ticks = re.search(r"MLW ticks (\d+) (\[.*\])", out)
    assert ticks, out
    # the other coroutine ran all along, and saw the run go by (not only after it ended)
    assert int(ticks.group(1)) >= 10, out
    assert "'running'" in ticks.group(2), out
    assert "MLW raised NotFoundError" in out, out


COLAB_CELLS = [
    "import sys, threading, types\n"
    "sys.modules['google.colab'] = types.ModuleType('google.colab')  # pretend\n" + SIMULATOR,
    "run = watch(DEMO_WORKFLOW_ID, simulator.add_run(steps=STEPS, images=2), client=client,\n"
    "            poll_interval=0.2)\n"
    "threads = set()\n"
    "run.observe(lambda change: threads.add(threading.current_thread().name), 'status')\n"
    "print('MLW hint', run.updates_wait_for_waiter, 'run.wait()' in run.children[2].value)",
    "import time\n"
    "deadline = time.monotonic() + 60\n"
    "while not run.run_watch.settled and time.monotonic() < deadline:\n"
    "    time.sleep(0.05)  # the user runs other code; nobody waits for the card\n"
    "print('MLW before wait', run.run_watch.snapshot.status, run.status, sorted(threads))",
    "snapshot = run.wait(timeout=60)\n"
    "print('MLW after wait', run.status, sorted(threads), len(run.thumbnails))",
    "second = watch(DEMO_WORKFLOW_ID, simulator.add_run(steps=STEPS), client=client,\n"
    "               poll_interval=0.2)\n"
    "second_threads = set()\n"
    "second.observe(lambda c: second_threads.add(threading.current_thread().name), 'status')\n"
    "await second.wait_async(timeout=60)\n"
    "print('MLW async', second.status, sorted(second_threads))",
]


@pytest.mark.parametrize("kernel_name", list(KERNELS))
def test_colab_fallback_in_a_real_kernel(kernel_name: str, tmp_path: Path) -> None:
    _kernel(kernel_name)
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(code) for code in COLAB_CELLS]
    )
    _execute(notebook, kernel_name, tmp_path, widget_state=True)
    out = _stdout(notebook)
    assert "MLW hint True True" in out, out
    # the run ended while nobody waited: the card still showed nothing of it
    assert "MLW before wait completed unknown []" in out, out
    # wait() drew it all, on the kernel's main thread (inside the cell that waits)
    assert "MLW after wait completed ['MainThread'] 2" in out, out
    assert "MLW async completed ['MainThread']" in out, out
    # and the front end got it: the stored state of the first card's header says completed
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    headers = [m["state"].get("value", "") for m in state.values()
               if m["model_name"] == "HTMLModel"]
    assert sum("mlw-badge mlw-s-completed" in h for h in headers) == 2, json.dumps(headers)[:500]
