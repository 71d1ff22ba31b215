"""Write the documentation's tutorial page: the quickstart notebook, executed, as Markdown.

``make docs`` runs this before ``mkdocs build``. The notebook is executed with nbclient in a
real kernel without ``MODELSLAB_API_KEY`` (so it runs against the built-in simulator, offline),
then exported with nbconvert's Markdown exporter into ``docs/tutorial.md`` and its pictures
into ``docs/tutorial_files/`` (both generated, not committed). The card's output carries the
final card as self-contained HTML (thumbnails as data URIs), which the page shows as it is.
No widget state is stored, so the page loads no widget JavaScript from anywhere.

Usage: python tools/docs_tutorial.py [NOTEBOOK] [OUTPUT.md]
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import nbclient
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
OUTPUT = ROOT / "docs" / "tutorial.md"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FINAL_CARD_MARK = "mlw-static"  # the final card's root class (render.static_card)
INTRO = (
    "!!! note \"Executed when the documentation was built\"\n"
    "    This page is `notebooks/quickstart.ipynb`, run by `make docs` against the built-in\n"
    "    simulator with every output kept. The card below is the final card the notebook\n"
    "    saves for front ends without widgets; its links to the full-size files pointed at\n"
    "    the simulator, which stopped with the kernel. Open the notebook in JupyterLab\n"
    "    (`make demo`) to see the live card.\n\n"
)


def execute(notebook_path: Path) -> Any:
    """The notebook, executed in a kernel whose environment has no ModelsLab settings."""
    notebook = nbformat.read(notebook_path, as_version=4)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MODELSLAB_API_KEY", "MODELSLAB_BASE_URL")}
    client = nbclient.NotebookClient(
        notebook,
        timeout=180,
        startup_timeout=180,
        store_widget_state=False,  # the final card's HTML is the page's card; no widget JS
        resources={"metadata": {"path": str(notebook_path.parent)}},
    )
    client.execute(env=env)
    return notebook


def check(notebook: Any) -> None:
    """Refuse to write a page from a run that failed or left no final card."""
    problems = [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(notebook.cells)
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    cards = [
        out["data"]
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {})
    ]
    if not cards:
        problems.append("no cell displayed a card")
    elif not all(FINAL_CARD_MARK in data.get("text/html", "") for data in cards):
        problems.append("a card's output holds no final HTML (the run did not settle in time)")
    if problems:
        raise SystemExit("the tutorial notebook did not run cleanly:\n" + "\n".join(problems))


def export(notebook: Any, output: Path) -> None:
    """Markdown beside its extracted pictures (``<stem>_files/``), stale ones removed."""
    files_dir = output.with_name(f"{output.stem}_files")
    shutil.rmtree(files_dir, ignore_errors=True)
    body, resources = MarkdownExporter().from_notebook_node(
        notebook, resources={"output_files_dir": files_dir.name}
    )
    for name, data in resources.get("outputs", {}).items():
        path = output.parent / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    output.write_text(after_title(body, INTRO), encoding="utf-8")


def after_title(markdown: str, text: str) -> str:
    """``text`` inserted after the page's first heading (the notebook's title)."""
    head, sep, rest = markdown.partition("\n")
    if not head.startswith("# "):
        return text + markdown
    return f"{head}{sep}\n{text}{rest}"


def main(argv: list[str]) -> None:
    notebook_path = Path(argv[1]) if len(argv) > 1 else NOTEBOOK
    output = Path(argv[2]) if len(argv) > 2 else OUTPUT
    start = time.perf_counter()
    notebook = execute(notebook_path)
    check(notebook)
    export(notebook, output)
    print(f"{output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}: "
          f"{notebook_path.name} executed in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv)
