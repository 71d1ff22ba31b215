"""The quickstart notebook in a real JupyterLab, driven by Playwright in Debian's Chromium.

A module fixture starts JupyterLab on a free port with throwaway HOME/config/settings dirs and
without ``MODELSLAB_API_KEY`` (so the notebook runs against the simulator). The test runs all
cells from the Run menu and watches the DOM: a step row turns "running" before the run ends, the
badge then says "Completed", the thumbnails are loaded ``<img>`` elements. Screenshots in the
light and the dark theme go to ``test-artifacts/``. A second test opens the launcher notebook,
runs its cells up to the one that shows the ``WorkflowLauncher`` form, types a prompt, presses
the form's Run button and watches the run card and the history row.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
LAUNCHER = ROOT / "notebooks" / "launcher.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
JUPYTER = Path(sys.executable).with_name("jupyter")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
DARK = "JupyterLab Dark"


def _skip_or_fail(reason: str) -> None:
    """Skip loudly on a developer machine; on CI a missing prerequisite is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(f"!!! NOT TESTED: {reason}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    log: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not JUPYTER.exists():
        _skip_or_fail(f"{JUPYTER} not found: JupyterLab is not installed in this venv")
    base = tmp_path_factory.mktemp("jupyterlab")
    root, home = base / "root", base / "home"
    root.mkdir()
    home.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    shutil.copy(LAUNCHER, root / LAUNCHER.name)
    # never ask about (or fetch) Jupyter news: the toast would cover the screenshots
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {k: v for k, v in os.environ.items() if k != "MODELSLAB_API_KEY"}
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        # the kernel launcher resolves "python" from PATH: make it this venv's
        PATH=f"{JUPYTER.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(JUPYTER),
                "lab",
                "--no-browser",
                f"--port={port}",
                "--ip=127.0.0.1",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=None",
                "--ServerApp.disable_check_xsrf=True",
                *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
            try:
                status = f"{lab.url}/api/status?token={token}"
                with urllib.request.urlopen(status, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within 60 s:\n{lab.log_tail()}")
            time.sleep(0.2)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def page(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright Python package is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        # a persistent context is how Playwright takes a --user-data-dir: a fresh tmp dir here
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            context.set_default_timeout(30_000)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _menu(page: Any, top: str) -> None:
    """Open a top-level menu of JupyterLab's menu bar."""
    page.locator(f'.lm-MenuBar-item:has(.lm-MenuBar-itemLabel:text-is("{top}"))').click()


def _menu_item(page: Any, label: str) -> Any:
    """An entry of the open menu (or submenu), by its exact label."""
    return page.locator(f'.lm-Menu .lm-Menu-item:has(.lm-Menu-itemLabel:text-is("{label}"))')


def _open_notebook(lab: Lab, page: Any, name: str, content: dict[str, Any]) -> Any:
    """Put a notebook in through the server's contents API (the lab fixture is shared), open
    it in the light theme and wait for its kernel to be idle; returns its panel."""
    from playwright.sync_api import expect

    _api(lab, "PUT", f"/api/contents/{name}",
         {"type": "notebook", "format": "json", "content": content})
    _api(lab, "PUT", "/lab/api/settings/@jupyterlab/apputils-extension:themes",
         {"raw": json.dumps({"theme": "JupyterLab Light"})})
    page.goto(lab.notebook_url(name) + "&reset")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(panel.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30_000)
    expect(panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=90_000)
    return panel


def _run_from_menu(page, item: str, prompts: str, before=None, attempts: int = 3) -> None:
    """Click Run > ``item`` until some cell starts (its prompt shows [*] or [n]). JupyterLab
    may drop the request when it comes before the kernel connected; asking again is safe."""
    started_js = (
        "sel => [...document.querySelectorAll(sel)]"
        ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))"
    )
    for attempt in range(1, attempts + 1):
        if before is not None:
            before()
        _menu(page, "Run")
        _menu_item(page, item).click()
        try:
            page.wait_for_function(started_js, arg=prompts, polling=100, timeout=10_000)
            return
        except Exception as exc:
            dialogs = page.locator(".jp-Dialog")
            if attempt == attempts or dialogs.count():
                raise AssertionError(
                    f"{item} started no cell in {attempt} attempts; prompts "
                    f"{page.locator(prompts).all_inner_texts()}; dialog "
                    f"{dialogs.all_inner_texts()}"
                ) from exc


def test_quickstart_live_in_jupyterlab(lab: Lab, page: Any) -> None:
    from playwright.sync_api import expect

    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))

    def context() -> str:
        return "\n".join(console[-30:]) + "\n--- jupyterlab log ---\n" + lab.log_tail()

    # The kernel is usable once JupyterLab got its kernel_info_reply over the kernel websocket.
    # (The toolbar's execution indicator says "idle" before the kernel is even connected.)
    kernel_ready: list[float] = []

    def on_websocket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b"kernel_info_reply" in data:
                kernel_ready.append(time.monotonic())

        if "/api/kernels/" in ws.url:
            ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-failure.png").unlink(missing_ok=True)
    started = time.monotonic()
    page.goto(lab.notebook_url(NOTEBOOK.name))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook).to_be_visible(timeout=90_000)
    # the kernel has started and is idle (the toolbar's execution indicator)
    indicator = page.locator(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
    )
    expect(indicator).to_have_attribute("data-status", "idle", timeout=90_000)
    deadline = time.monotonic() + 90
    while not kernel_ready:  # events are delivered while Playwright waits
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel never answered kernel_info\n{context()}")
        page.wait_for_timeout(50)
    loaded = time.monotonic()

    # Run > Run All Cells. Should JupyterLab still drop that request (every prompt stays "[ ]",
    # seen when it was sent before the kernel connected), it is safe to ask again.
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    try:
        _run_from_menu(page, "Run All Cells", ".jp-CodeCell .jp-InputPrompt")
    except AssertionError as exc:
        page.screenshot(path=ARTIFACTS / "browser-failure.png")
        raise AssertionError(f"{exc}\n{context()}") from exc

    # 1. live updates: a step row says "running" while the run is still going
    try:
        page.wait_for_function(
            "() => document.querySelector('.mlw-step .mlw-s-running') !== null",
            polling=100,
            timeout=20_000,
        )
    except Exception as exc:
        page.screenshot(path=ARTIFACTS / "browser-failure.png")
        raise AssertionError(
            f"no step row turned 'running' within 20 s; prompts {prompts.all_inner_texts()}"
            f"\n{context()}"
        ) from exc
    running_rows = page.locator(".mlw-step span:not(.mlw-icon).mlw-s-running")
    expect(running_rows.first).to_have_text("running")
    expect(page.locator(".mlw-badge").first).not_to_contain_text("Completed")
    widget = page.locator(".jp-OutputArea-output", has=page.locator(".mlw-badge")).first
    widget.screenshot(path=ARTIFACTS / "widget-running-light.png")  # for the eye only

    # 2. the header badge reaches "Completed"
    badge = page.locator(".mlw-badge").first
    expect(badge).to_contain_text("Completed", timeout=60_000)
    expect(page.locator(".mlw-step").first).to_contain_text("completed")
    # each row is its own view: their columns must still line up, rows stay compact
    columns = page.evaluate(
        """() => [...document.querySelectorAll('.mlw-step')].map(row => {
               const r = row.getBoundingClientRect();
               return [row.children[2].getBoundingClientRect().left, r.height]; })"""
    )
    assert len(columns) >= 2 and len({round(left) for left, _ in columns}) == 1, columns
    assert all(8 < height < 34 for _, height in columns), columns
    completed = time.monotonic()

    # 3. the thumbnails: loaded <img> elements (blob: URLs) inside the widget's output
    images = widget.locator("img")
    expect(images.nth(1)).to_be_visible(timeout=30_000)
    page.wait_for_function(
        """el => { const imgs = [...el.querySelectorAll('img')];
                   return imgs.length >= 2
                          && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=widget.element_handle(),
        polling=100,
        timeout=30_000,
    )
    sizes = images.evaluate_all(
        "imgs => imgs.map(i => [i.src.slice(0, 5), i.naturalWidth, i.naturalHeight])"
    )
    assert len(sizes) >= 2, sizes
    assert all(src == "blob:" and w > 0 and h > 0 for src, w, h in sizes), sizes
    # one card: the final-state update of its output (display ID) neither duplicates it nor
    # swaps the live view for the saved HTML
    expect(page.locator(".mlw-badge")).to_have_count(1)
    expect(page.locator(".mlw-static")).to_have_count(0)
    # the last cell printed the run's summary once run.wait() returned
    printed = page.locator(".jp-OutputArea-output pre", has_text="2/2 steps").first
    expect(printed).to_contain_text("Run 12345 · completed · 2/2 steps", timeout=30_000)

    # 4. screenshots in the light theme, then the dark theme
    assert page.evaluate("document.body.dataset.jpThemeLight") == "true"
    widget.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "browser-light.png")
    widget.screenshot(path=ARTIFACTS / "widget-light.png")

    _menu(page, "Settings")
    _menu_item(page, "Theme").hover()
    _menu_item(page, DARK).click()
    page.wait_for_function(
        f"""() => document.body.dataset.jpThemeName === {DARK!r}
                  && document.body.dataset.jpThemeLight === 'false'""",
        polling=100,
        timeout=30_000,
    )
    # the dark theme's CSS is in: the card's text colour follows --jp-ui-font-color1
    page.wait_for_function(
        """() => { const c = getComputedStyle(document.querySelector('.mlw-card')).color;
                   const [r, g, b] = c.match(/\\d+/g).map(Number);
                   return r + g + b > 382; }""",
        polling=100,
        timeout=30_000,
    )
    # switching themes shows JupyterLab's splash screen until the theme's CSS has loaded
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30_000)
    page.mouse.move(0, 0)  # no hover effects in the pictures
    widget.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "browser-dark.png")
    widget.screenshot(path=ARTIFACTS / "widget-dark.png")
    assert widget.locator(".mlw-badge").first.is_visible()
    assert widget.locator("img").count() >= 2

    print(
        f"page+kernel ready {loaded - started:.1f} s, run completed {completed - loaded:.1f} s "
        f"after Run All, thumbnails {sizes}"
    )
    errors = [line for line in console if line.startswith("pageerror")]
    assert not errors, "\n".join(errors)


def _api(lab: Lab, method: str, path: str, body: Any = None) -> Any:
    """A call to the Jupyter server's REST API (JSON in, JSON out)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{lab.url}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def test_launcher_form_runs_in_jupyterlab(lab: Lab, page: Any) -> None:
    from playwright.sync_api import expect

    prompt = "a red fox in the snow"
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))

    def context() -> str:
        return "\n".join(console[-30:]) + "\n--- jupyterlab log ---\n" + lab.log_tail()

    def fail(message: str, exc: BaseException | None = None) -> NoReturn:
        page.screenshot(path=ARTIFACTS / "launcher-failure.png")
        raise AssertionError(f"{message}\n{context()}") from exc

    # kernel websockets that got their kernel_info_reply (the kernel is usable); the launcher
    # notebook's kernel is picked out by its id below
    ready_urls: list[str] = []

    def on_websocket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b"kernel_info_reply" in data:
                ready_urls.append(ws.url)

        if "/api/kernels/" in ws.url:
            ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "launcher-failure.png").unlink(missing_ok=True)
    # the light theme, whatever an earlier test chose (the settings live on the server)
    _api(
        lab,
        "PUT",
        "/lab/api/settings/@jupyterlab/apputils-extension:themes",
        {"raw": json.dumps({"theme": "JupyterLab Light"})},
    )
    started = time.monotonic()
    # ?reset: a fresh workspace, so only this notebook is open (not the quickstart's tab too)
    page.goto(lab.notebook_url(LAUNCHER.name) + "&reset")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(panel.locator(".jp-Notebook")).to_be_visible(timeout=90_000)
    expect(page.locator(".jp-NotebookPanel")).to_have_count(1)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30_000)
    assert page.evaluate("document.body.dataset.jpThemeLight") == "true"
    indicator = panel.locator(".jp-Notebook-ExecutionIndicator")
    expect(indicator).to_have_attribute("data-status", "idle", timeout=90_000)
    deadline = time.monotonic() + 90
    kernel_id = ""
    while not kernel_id or not any(f"/api/kernels/{kernel_id}/" in u for u in ready_urls):
        if time.monotonic() > deadline:
            fail(f"the launcher's kernel {kernel_id or '?'} never answered kernel_info")
        if not kernel_id:
            sessions = _api(lab, "GET", "/api/sessions")
            kernel_id = next(
                (s["kernel"]["id"] for s in sessions if s["path"] == LAUNCHER.name), ""
            )
        page.wait_for_timeout(100)
    loaded = time.monotonic()

    # Select the first cell after the one that shows the launcher, then Run > Run All Above
    # Selected Cell: the cells that start the simulator and show the form, not the later ones
    # that launch a run from code.
    cells = panel.locator(".jp-Notebook .jp-Cell")
    sources = cells.locator(".jp-InputArea-editor").all_inner_texts()
    shows = [i for i, text in enumerate(sources) if text.strip().endswith("\nlauncher")]
    assert len(shows) == 1, sources
    below = cells.nth(shows[0] + 1)
    code_prompts = panel.locator(".jp-CodeCell .jp-InputPrompt")
    assert code_prompts.count() >= 3, sources  # there are code cells after the launcher's

    def select_below() -> None:
        below.locator(".jp-InputPrompt").click()
        expect(below).to_have_class(re.compile(r"\bjp-mod-active\b"))

    try:
        _run_from_menu(
            page,
            "Run All Above Selected Cell",
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt",
            before=select_below,
        )
    except AssertionError as exc:
        fail(str(exc), exc)

    # 1. the form: a prompt text area in the launcher cell's output
    launcher = cells.nth(shows[0]).locator(
        ".jp-OutputArea-output", has=page.locator(".widget-textarea")
    )
    # the prompt's text area (the form has a negative_prompt one too), by its label
    prompt_label = page.locator("label", has_text=re.compile(r"^Prompt( \*)?\s*prompt$"))
    textarea = launcher.locator(".widget-textarea", has=prompt_label).locator("textarea")
    try:
        expect(textarea).to_be_visible(timeout=90_000)
    except AssertionError as exc:
        fail(f"no launcher form; prompts {code_prompts.all_inner_texts()}", exc)
    run_button = launcher.locator("button.widget-button", has_text=re.compile(r"^\s*Run\s*$"))
    expect(run_button).to_be_visible()
    expect(run_button).to_be_enabled()
    expect(launcher.locator(".mlw-title").first).to_be_visible()
    # the cells below the launcher's did not run: no run card, no history yet
    expect(code_prompts.last).to_have_text(re.compile(r"^\[ \]:?$"))
    expect(launcher.locator(".mlw-badge")).to_have_count(0)
    expect(launcher.locator(".mlw-history-row")).to_have_count(0)

    # 2. type a prompt and press Run
    textarea.click()
    textarea.press_sequentially(prompt)
    expect(textarea).to_have_value(prompt)
    textarea.press("Tab")  # blur: the value is synced on input already, this is belt and braces
    run_button.click()
    clicked = time.monotonic()

    # 3. a run card appears under the form and completes
    badge = launcher.locator(".mlw-badge")
    try:
        expect(badge).to_have_count(1, timeout=30_000)
        expect(badge).to_contain_text("Completed", timeout=120_000)
    except AssertionError as exc:
        fail(f"the run card did not complete; launcher says {launcher.inner_text()!r}", exc)
    completed = time.monotonic()
    button_box, badge_box = run_button.bounding_box(), badge.bounding_box()
    assert button_box and badge_box and badge_box["y"] > button_box["y"], (button_box, badge_box)
    card = launcher.locator(".widget-vbox", has=page.locator(".mlw-badge")).last
    # the card is labelled with its prompt, its run ID beside it
    card_label = card.locator(".mlw-title").first.inner_text()
    assert card_label.strip() == prompt, card_label
    card_title = card.locator(".mlw-header .mlw-sub").first.inner_text()
    assert re.fullmatch(r"Run \S+", card_title.strip()), card_title
    # at least one thumbnail: a loaded <img> inside the run card
    try:
        page.wait_for_function(
            """el => { const imgs = [...el.querySelectorAll('img')];
                       return imgs.length >= 1
                              && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
            arg=card.element_handle(),
            polling=100,
            timeout=30_000,
        )
    except Exception as exc:
        fail("the run card shows no loaded thumbnail", exc)
    sizes = card.locator("img").evaluate_all(
        "imgs => imgs.map(i => [i.src.slice(0, 5), i.naturalWidth, i.naturalHeight])"
    )
    assert sizes and all(w > 0 and h > 0 for _, w, h in sizes), sizes

    # 4. the history lists the run: number, status, the card's run ID, the prompt; thumbnail
    rows = launcher.locator(".mlw-history-row")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text("#1")
    expect(row).to_contain_text("Completed", timeout=30_000)
    expect(row).to_contain_text(card_title.strip())
    expect(row).to_contain_text(prompt)
    history_box = launcher.locator(".widget-hbox", has=page.locator(".mlw-history-row"))
    history_image = history_box.locator("img")
    page.wait_for_function(
        "i => i.complete && i.naturalWidth > 0 && getComputedStyle(i).visibility === 'visible'",
        arg=history_image.element_handle(),
        polling=100,
        timeout=30_000,
    )
    expect(launcher.locator(".mlw-field-error")).to_have_count(0)
    expect(run_button).to_be_enabled(timeout=10_000)

    # 5. the picture, for the eye
    page.mouse.move(0, 0)
    launcher.scroll_into_view_if_needed()
    launcher.screenshot(path=ARTIFACTS / "launcher.png")

    print(
        f"page+kernel ready {loaded - started:.1f} s, run completed {completed - clicked:.1f} s "
        f"after the click, thumbnails {sizes}"
    )
    errors = [line for line in console if line.startswith("pageerror")]
    assert not errors, "\n".join(errors)


MEDIA = ROOT / "notebooks" / "media.ipynb"


def test_media_card_plays_video_and_audio_and_cancels_in_jupyterlab(lab: Lab, page: Any) -> None:
    """The media notebook: a card with an image thumbnail, a playable ``<video>``, an
    ``<audio>`` player and a 3D tile; then a long run's Cancel button (click, confirm)."""
    from playwright.sync_api import expect

    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))

    def fail(message: str, exc: BaseException | None = None) -> NoReturn:
        page.screenshot(path=ARTIFACTS / "media-failure.png")
        raise AssertionError(
            f"{message}\n" + "\n".join(console[-30:]) + f"\n--- log ---\n{lab.log_tail()}"
        ) from exc

    ready_urls: list[str] = []

    def on_websocket(ws: Any) -> None:
        def on_frame(payload: str | bytes) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b"kernel_info_reply" in data:
                ready_urls.append(ws.url)

        if "/api/kernels/" in ws.url:
            ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "media-failure.png").unlink(missing_ok=True)
    panel = _open_notebook(lab, page, MEDIA.name,
                           json.loads(MEDIA.read_text(encoding="utf-8")))
    deadline, kernel_id = time.monotonic() + 90, ""
    while not kernel_id or not any(f"/api/kernels/{kernel_id}/" in u for u in ready_urls):
        if time.monotonic() > deadline:
            fail(f"the media notebook's kernel {kernel_id or '?'} never answered kernel_info")
        if not kernel_id:
            sessions = _api(lab, "GET", "/api/sessions")
            kernel_id = next((s["kernel"]["id"] for s in sessions if s["path"] == MEDIA.name), "")
        page.wait_for_timeout(100)

    # Run every cell up to the one that shows the long run's card (not the cancel-from-code
    # cell after it): select the cell below it, then Run > Run All Above Selected Cell.
    cells = panel.locator(".jp-Notebook .jp-Cell")
    sources = cells.locator(".jp-InputArea-editor").all_inner_texts()
    mixed = [i for i, text in enumerate(sources) if text.strip().startswith("execution_id =")]
    longs = [i for i, text in enumerate(sources) if "long_run = watch(" in text]
    assert len(mixed) == 1 and len(longs) == 1, sources
    below = cells.nth(longs[0] + 1)

    def select_below() -> None:
        below.locator(".jp-InputPrompt").first.click()
        expect(below).to_have_class(re.compile(r"\bjp-mod-active\b"))

    try:
        _run_from_menu(page, "Run All Above Selected Cell",
                       ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt",
                       before=select_below)
    except AssertionError as exc:
        fail(str(exc), exc)

    # 1. the mixed-output card: completed, one image, a video, an audio player, a 3D tile
    card = cells.nth(mixed[0]).locator(".jp-OutputArea-output").first
    try:
        expect(card.locator(".mlw-badge")).to_contain_text("Completed", timeout=90_000)
        expect(card.locator("video")).to_have_count(1, timeout=30_000)
    except AssertionError as exc:
        fail("the mixed-output card did not complete with a video", exc)
    expect(card.locator("audio")).to_have_count(1)
    expect(card.locator(".mlw-file")).to_contain_text("3D model")
    expect(card.locator(".mlw-file")).to_contain_text("GLB")
    expect(card).not_to_contain_text("unavailable")
    page.wait_for_function(
        """el => { const imgs = [...el.querySelectorAll('img')];
                   return imgs.length === 1 && imgs[0].complete && imgs[0].naturalWidth > 0; }""",
        arg=card.element_handle(), polling=100, timeout=30_000,
    )
    # the browser loaded the video's and the audio's metadata from the simulator: playable
    try:
        page.wait_for_function(
            """el => [...el.querySelectorAll('video, audio')].every(
                   m => m.readyState >= 1 && m.error === null && m.duration > 0)""",
            arg=card.element_handle(), polling=100, timeout=30_000,
        )
    except Exception as exc:
        state = card.locator("video, audio").evaluate_all(
            "ms => ms.map(m => [m.tagName, m.readyState, m.error && m.error.code, m.src])")
        fail(f"video/audio not playable: {state}", exc)
    media = card.locator("video, audio").evaluate_all(
        "ms => ms.map(m => [m.tagName, m.readyState, Math.round(m.duration * 10) / 10,"
        " m.videoWidth || 0, m.controls, m.preload])")
    assert [m[0] for m in media] == ["VIDEO", "AUDIO"], media
    assert media[0][3] > 0 and all(m[4] and m[5] == "metadata" for m in media), media
    links = card.locator("a[href]").evaluate_all("as => as.map(a => a.href)")
    assert len(links) == 4 and all(href.startswith("http://127.0.0.1:") for href in links), links
    page.mouse.move(0, 0)
    card.scroll_into_view_if_needed()
    card.screenshot(path=ARTIFACTS / "media-card.png")

    # 2. the long run's card: Cancel run, Confirm cancel, then Cancelled
    long_card = cells.nth(longs[0]).locator(".jp-OutputArea-output").first
    badge = long_card.locator(".mlw-badge")
    expect(badge).to_contain_text(re.compile("Running|Pending"), timeout=60_000)
    cancel = long_card.locator("button.widget-button", has_text="Cancel run")
    expect(cancel).to_be_visible(timeout=30_000)
    cancel.click()
    confirm = long_card.locator("button.widget-button", has_text="Confirm cancel")
    expect(confirm).to_be_visible(timeout=10_000)
    expect(badge).to_contain_text(re.compile("Running|Pending"))  # one click only asks
    long_card.screenshot(path=ARTIFACTS / "media-confirm.png")
    confirm.click()
    try:
        expect(badge).to_contain_text("Cancelled", timeout=30_000)
    except AssertionError as exc:
        fail(f"the cancelled run's card says {long_card.inner_text()!r}", exc)
    expect(long_card.locator("button.widget-button", has_text="Cancel")).to_be_hidden()
    expect(long_card).to_contain_text("The run was cancelled.")
    page.mouse.move(0, 0)
    long_card.screenshot(path=ARTIFACTS / "media-cancelled.png")
    print(f"media elements {media}")
    errors = [line for line in console if line.startswith("pageerror")]
    assert not errors, "\n".join(errors)


# -- narrow and wide notebooks (issue 14, items 5 and 6) ------------------------------------------

LAYOUT = "layout.ipynb"
LAYOUT_SOURCE = [
    "from modelslab_widget import RunBoard, WorkflowLauncher, WorkflowsClient, watch\n"
    "from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator\n\n"
    "simulator = Simulator().start()\n"
    "client = WorkflowsClient(simulator.api_key, base_url=simulator.base_url)\n"
    'LONG = [("Text to Image", 2.0), ("Image Upscaler", 14.0)]',
    "card = watch(DEMO_WORKFLOW_ID, simulator.add_run(steps=LONG), client=client,\n"
    "             poll_interval=0.5)",
    "board = RunBoard(client=client, poll_interval=0.5)\n"
    "for steps in (LONG, LONG[:1], [(\"Text to Image\", 1.0), (\"Image Upscaler\", 9.0)]):\n"
    "    board.add(DEMO_WORKFLOW_ID, simulator.add_run(steps=steps))\n"
    "board",
    "launcher = WorkflowLauncher(DEMO_WORKFLOW_ID, client=client, poll_interval=0.5)\n"
    'launcher.inputs["prompt"].value = "a lighthouse at dusk, oil painting"\n'
    "launcher.launch()\n"
    "launcher",
]

# Every element whose text must show whole (no ellipsis, no clipping), with what it is. The
# one exception: the header's workflow ID is shortened on purpose (.mlw-id), and that is
# accepted only while its title holds the whole ID (the whole ID is its text, too).
WHOLE_TEXT_JS = """() => {
  const checks = [];
  const add = (what, el, shortened = false) => checks.push({what, text: el.textContent.trim(),
      cut: (el.scrollWidth > el.clientWidth + 1 && !shortened)
          || el.getBoundingClientRect().width < 2});
  document.querySelectorAll('.mlw-header .mlw-time > span').forEach(e => add('card time', e));
  document.querySelectorAll('.mlw-header .mlw-sub').forEach(e => add('header detail', e));
  document.querySelectorAll('.mlw-header .mlw-id').forEach(e => add('workflow id', e,
      e.getAttribute('title') === e.textContent.trim()));
  document.querySelectorAll('.mlw-header .mlw-title').forEach(e => add('run title', e));
  document.querySelectorAll('.mlw-step .mlw-name').forEach(e => add('step name', e));
  document.querySelectorAll('.mlw-step .mlw-dur').forEach(e => add('step time', e));
  document.querySelectorAll('.mlw-row .mlw-dur').forEach(e => add('board time', e));
  document.querySelectorAll('.mlw-row .mlw-row-step').forEach(e => add('board step', e));
  document.querySelectorAll('.jp-OutputArea-output button.widget-button').forEach(b => {
      if (b.offsetParent !== null && b.textContent.trim()) add('button ' + b.textContent.trim(), b);
  });
  return checks;
}"""


def _set_theme(page: Any, theme: str) -> None:
    if page.evaluate("document.body.dataset.jpThemeName") == theme:
        return
    _menu(page, "Settings")
    _menu_item(page, "Theme").hover()
    _menu_item(page, theme).click()
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeName === {theme!r}", polling=100, timeout=30_000
    )
    from playwright.sync_api import expect

    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30_000)


def _widths(page: Any) -> dict[str, Any]:
    """The card's, the board rows' and the launcher's boxes (item 6: they must not jump)."""
    return page.evaluate(
        """() => {
          const box = e => e ? e.getBoundingClientRect() : null;
          const card = document.querySelector('.jp-OutputArea-output .widget-vbox:has(.mlw-badge)');
          const bar = document.querySelector('.mlw-progress');
          const stop = [...document.querySelectorAll('button.widget-button')]
              .find(b => b.textContent.trim() === 'Stop' && b.offsetParent !== null);
          const rows = [...document.querySelectorAll('.mlw-row')];
          return {card: box(card) && box(card).width,
                  barRight: box(bar) && box(bar).right,
                  stopRight: stop ? box(stop).right : null,
                  rows: rows.map(r => Math.round(box(r).height)),
                  rowTimes: [...document.querySelectorAll('.mlw-row .mlw-dur')]
                      .map(e => Math.round(box(e).left))};
        }"""
    )


# At 700 px (issue 21, item 3): the launcher's boxes, the board's toggle buttons against their
# rows, the card headers' lines (the first visible character of each).
NARROW_JS = """() => {
  const box = e => e.getBoundingClientRect();
  const inputs = [...document.querySelectorAll(
      '.mlw-launcher .mlw-field > input, .mlw-launcher .mlw-field > textarea')]
      .filter(e => e.offsetParent !== null)
      .map(e => {  // each box up to the launcher clips (lm-Widget: overflow hidden)
          let edge = Infinity;
          for (let up = e.parentElement; up; up = up.parentElement) {
              edge = Math.min(edge, up.getBoundingClientRect().right);
              if (up.classList.contains('mlw-launcher')) break;
          }
          return {width: box(e).width, right: box(e).right, edge,
                  label: e.parentElement.textContent.trim()};
      });
  const toggles = [...document.querySelectorAll('.mlw-row')].map(row => {
      const line = row.closest('.widget-hbox');
      const button = line && line.querySelector(':scope > button');
      return {rowTop: Math.round(box(row).top), rowHeight: Math.round(box(row).height),
              buttonTop: button ? Math.round(box(button).top) : null};
  });
  const lineStarts = [...document.querySelectorAll('.mlw-header')].map(header => {
      const starts = [];
      const walker = document.createTreeWalker(header, NodeFilter.SHOW_TEXT);
      let top = null;
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          for (let i = 0; i < node.data.length; i++) {
              if (!node.data[i].trim()) continue;
              const range = document.createRange();
              range.setStart(node, i);
              range.setEnd(node, i + 1);
              const rect = range.getClientRects()[0];
              if (!rect || rect.width === 0) continue;
              if (top === null || rect.top > top + 4) starts.push(node.data.slice(i, i + 12));
              top = top === null ? rect.top : Math.max(top, rect.top);
          }
      }
      return starts;
  });
  const ids = [...document.querySelectorAll('.mlw-header .mlw-id')].map(e => ({
      text: e.textContent.trim(), title: e.getAttribute('title'),
      width: box(e).width, height: box(e).height}));
  return {inputs, toggles, lineStarts, ids};
}"""


def _shoot_outputs(page: Any, name: str) -> None:
    """One picture per widget output (card, board, launcher), for the eye."""
    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"
                           ":has(.mlw-card)")
    for index in range(outputs.count()):
        outputs.nth(index).screenshot(path=ARTIFACTS / f"{name}-{index}.png")


def test_narrow_and_wide_layouts_keep_labels_and_do_not_jump(lab: Lab, page: Any) -> None:
    """At 700 px with the file browser open and at 1280 px, in both themes: the card's time,
    workflow ID and Stop label, the board's step and time columns and the launcher's step
    names show whole (they wrap instead); the card is as wide running as completed, and
    board rows keep their height and time column when thumbnails arrive. At 700 px (issue 21,
    item 3): no launcher box narrower than 120 px or cut, each board ▸ button at its row's
    top, the workflow ID shortened (whole in its text and title), no header line starting
    with "·"; screenshots of the launcher, the board and a card go to docs/narrow-*.png."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    cells = [{"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
              "execution_count": None} for source in LAYOUT_SOURCE]
    content = {"cells": cells, "metadata": {"kernelspec": {"name": "python3",
               "display_name": "Python 3", "language": "python"}},
               "nbformat": 4, "nbformat_minor": 5}
    page.set_viewport_size({"width": 1280, "height": 1000})  # narrow comes once it is open
    _open_notebook(lab, page, LAYOUT, content)
    # the file browser open beside the notebook, as a user at 700 px has it
    browser_tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="filebrowser"]')
    page.set_viewport_size({"width": 700, "height": 1000})
    if not page.locator("#filebrowser").is_visible():
        browser_tab.click()
    expect(page.locator("#filebrowser")).to_be_visible()
    _run_from_menu(page, "Run All Cells",
                   ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt")

    # running: the card's first step is running, board rows are there, launcher's card too
    page.wait_for_function(
        "() => document.querySelectorAll('.mlw-row').length === 3"
        " && document.querySelectorAll('.mlw-badge').length >= 2"
        " && document.querySelector('.mlw-step .mlw-s-running') !== null",
        polling=100, timeout=60_000)
    problems: list[str] = []

    def check(label: str) -> None:
        checks = page.evaluate(WHOLE_TEXT_JS)
        assert any(c["what"] == "button Stop" for c in checks) or "done" in label, checks
        problems.extend(f"{label}: {c['what']} {c['text']!r} is cut" for c in checks if c["cut"])
        starts = [s for h in page.evaluate(NARROW_JS)["lineStarts"] for s in h]
        problems.extend(f"{label}: a header line starts with {s!r}" for s in starts
                        if s.startswith("·"))

    notebook_width = page.evaluate(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"
        ".getBoundingClientRect().width")
    running = {}
    for width in (700, 1280):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(300)  # JupyterLab lays its panels out on resize
        running[width] = _widths(page)
        check(f"{width} px running")
        _shoot_outputs(page, f"layout-{width}-running")

    # completed: every run ended (thumbnails in); the same boxes must not have moved
    page.wait_for_function(
        "() => [...document.querySelectorAll('.mlw-badge')].every("
        "b => b.textContent.includes('Completed'))"
        " && [...document.querySelectorAll('.mlw-row')].every(r => r.querySelector('img'))",
        polling=200, timeout=90_000)
    for theme, tag in ((DARK, "dark"), ("JupyterLab Light", "light")):
        _set_theme(page, theme)
        for width in (700, 1280):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_timeout(300)
            page.mouse.move(0, 0)
            check(f"{width} px {tag} done")
            _shoot_outputs(page, f"layout-{width}-{tag}")
            if tag == "light":
                done = _widths(page)
                was = running[width]
                assert abs(done["card"] - was["card"]) < 1, (width, was, done)
                assert done["rows"] == was["rows"], (width, was, done)
                assert done["rowTimes"] == was["rowTimes"], (width, was, done)
    assert not problems, "\n".join(problems)
    assert notebook_width < 500, notebook_width  # the file browser really took its room
    # the progress bar runs under the Stop button to the card's edge (not short of it)
    for width, boxes in running.items():
        assert boxes["stopRight"] is not None and boxes["barRight"] is not None, boxes
        assert boxes["barRight"] >= boxes["stopRight"], (width, boxes)

    # issue 21, item 3: at 700 px the launcher's labels go above full-width boxes
    page.set_viewport_size({"width": 700, "height": 2400})
    page.wait_for_timeout(300)
    page.mouse.move(0, 0)
    narrow = page.evaluate(NARROW_JS)
    print(f"narrow layout {narrow}")
    assert len(narrow["inputs"]) >= 3, narrow  # the launcher's fields (this worktree's code)
    for field in narrow["inputs"]:
        assert field["width"] >= 120, field
        assert field["right"] <= field["edge"] + 0.5, field  # not cut by the field's box
    DOCS.mkdir(exist_ok=True)
    launcher = page.locator(".jp-OutputArea-output .mlw-launcher").first
    launcher.scroll_into_view_if_needed()
    launcher.screenshot(path=DOCS / "narrow-launcher.png")
    # the board's rows wrap, each ▸ button stays at the top of its row
    assert len(narrow["toggles"]) == 3, narrow
    for row in narrow["toggles"]:
        assert row["buttonTop"] is not None, row
        assert abs(row["buttonTop"] - row["rowTop"]) <= 4, row
    board = page.locator(".jp-OutputArea-output:has(.mlw-row)").first
    board.scroll_into_view_if_needed()
    board.screenshot(path=DOCS / "narrow-board.png")
    # the cards' headers: the workflow ID on one line (the whole ID in its text and title),
    # no line starting with "·"
    assert len(narrow["ids"]) >= 2, narrow
    for shown in narrow["ids"]:
        assert shown["text"] == shown["title"] and len(shown["text"]) == 36, shown
        assert shown["width"] < 120 and shown["height"] < 32, shown  # short, one line
    starts = [start for header in narrow["lineStarts"] for start in header]
    assert starts and not [s for s in starts if s.startswith("·")], narrow["lineStarts"]
    card = page.locator(".jp-OutputArea-output:has(.mlw-badge)").first
    card.scroll_into_view_if_needed()
    card.screenshot(path=DOCS / "narrow-card.png")
    page.set_viewport_size({"width": 1280, "height": 1000})


# -- the sweep grid (issue 19) --------------------------------------------------------------

SWEEP = ROOT / "notebooks" / "sweep.ipynb"
DOCS = ROOT / "docs"

# Every sweep cell and axis heading: its width, and whether its text is cut.
SWEEP_CELLS_JS = """() => [...document.querySelectorAll('.mlw-sweep-cell, .mlw-sweep-axis')]
  .map(el => ({text: el.textContent.trim(), width: el.getBoundingClientRect().width,
               cut: el.scrollWidth > el.clientWidth + 1}))"""


def test_sweep_notebook_fills_a_labelled_3x2_grid_wide_and_narrow(lab: Lab, page: Any) -> None:
    """The sweep notebook run from the menu: six cells under prompt x seed headings, each
    completed with its thumbnail loaded; at 1280 px and at 700 px with the file browser open
    every cell and heading shows whole. Screenshots go to docs/."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1280, "height": 1000})
    panel = _open_notebook(lab, page, SWEEP.name,
                           json.loads(SWEEP.read_text(encoding="utf-8")))
    _run_from_menu(page, "Run All Cells",
                   ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt")
    try:
        page.wait_for_function(
            """() => { const cells = [...document.querySelectorAll('.mlw-sweep-cell')];
                       const imgs = [...document.querySelectorAll(
                           '.widget-gridbox img')].filter(i => i.complete && i.naturalWidth);
                       return cells.length === 6 && imgs.length === 6 && cells.every(
                           c => c.textContent.includes('Completed')); }""",
            polling=200, timeout=120_000)
    except Exception as exc:
        page.screenshot(path=ARTIFACTS / "sweep-failure.png")
        raise AssertionError(f"the grid did not fill: {lab.log_tail()}") from exc
    output = panel.locator(".jp-OutputArea-output:has(.mlw-sweep-cell)").first
    headings = output.locator(".mlw-sweep-axis").all_inner_texts()
    assert headings[:2] == ["seed=1", "seed=2"], headings
    assert [h for h in headings if h.startswith("prompt=")] == [
        "prompt=a lighthouse at dusk", "prompt=a fox in the snow", "prompt=a city at night"]
    expect(panel.locator(".mlw-title").filter(has_text="Sweep of 6 runs")).to_be_visible()
    DOCS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 1600})  # the whole grid in view
    page.wait_for_timeout(300)
    page.mouse.move(0, 0)
    output.scroll_into_view_if_needed()
    output.screenshot(path=DOCS / "screenshot-sweep.png")
    wide = page.evaluate(SWEEP_CELLS_JS)

    browser_tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="filebrowser"]')
    page.set_viewport_size({"width": 700, "height": 2400})
    if not page.locator("#filebrowser").is_visible():
        browser_tab.click()
    expect(page.locator("#filebrowser")).to_be_visible()
    page.wait_for_timeout(300)  # JupyterLab lays its panels out on resize
    output.scroll_into_view_if_needed()
    output.screenshot(path=DOCS / "screenshot-sweep-narrow.png")
    scrolled = output.evaluate("el => el.scrollWidth > el.clientWidth + 1")
    assert not scrolled, "the narrow grid is wider than its output area"
    narrow = page.evaluate(SWEEP_CELLS_JS)
    for label, boxes in (("1280 px", wide), ("700 px", narrow)):
        assert len(boxes) == 6 + 5, (label, boxes)
        problems = [b for b in boxes if b["cut"] or b["width"] < 60]
        assert not problems, (label, problems)
    browser_tab.click()  # leave the file browser as the other tests expect it
    page.set_viewport_size({"width": 1280, "height": 1000})
