"""Write the notebooks in notebooks/ (kept as code so their
text is reviewable; outputs are left empty), and keep every notebook there in the normal form
JupyterLab opens without marking it modified.

    python tools/make_notebooks.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = (
    "import os\n\n"
    "from modelslab_widget import WorkflowsClient\n\n"
    'if os.environ.get("MODELSLAB_API_KEY"):\n'
    "    client = WorkflowsClient()  # reads MODELSLAB_API_KEY (and MODELSLAB_BASE_URL)\n"
    '    WORKFLOW_ID = "your-workflow-id"  # fill in: the workflow\'s ID\n'
    "    POLL_INTERVAL = 10.0  # the API allows about 10 requests a minute per workflow\n"
    "else:\n"
    "    from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator\n\n"
    "    simulator = Simulator().start()  # serves on 127.0.0.1, a random free port\n"
    "    client = WorkflowsClient(simulator.api_key, base_url=simulator.base_url)\n"
    "    WORKFLOW_ID = DEMO_WORKFLOW_ID\n"
    "    POLL_INTERVAL = 1.0\n"
)

OFFLINE_NOTE = (
    "With `MODELSLAB_API_KEY` set, this notebook talks to **your** workflow: fill in its ID "
    "below. Without a key it starts the built-in simulator (a local copy of the ModelsLab "
    "Workflows API), so it works offline."
)

LAUNCHER_CELLS = [
    new_markdown_cell(
        "# Launch workflow runs from a form\n\n"
        "`WorkflowLauncher` reads a workflow's parameters from the API and builds a form: a "
        "text area for prompts, number boxes, check boxes. **Run** starts a run and watches "
        "it live under the form; every run you start is listed in a small history with its "
        "status and a thumbnail. Values you submit are remembered for the next launcher of the "
        "same workflow in this kernel.\n\n" + OFFLINE_NOTE
    ),
    new_code_cell(SETUP),
    new_markdown_cell(
        "## The form\n\n"
        "Fields marked `*` are required. Type a prompt and press **Run**. If the server "
        "refuses a value, its message appears under that field; if you are rate limited, the "
        "launcher says when to try again."
    ),
    new_code_cell(
        "from modelslab_widget import WorkflowLauncher\n\n"
        "launcher = WorkflowLauncher(WORKFLOW_ID, client=client, poll_interval=POLL_INTERVAL)\n"
        "launcher"
    ),
    new_markdown_cell(
        "## Launching from code\n\n"
        "The inputs are ordinary ipywidgets in `launcher.inputs`; `launcher.launch()` does "
        "what the button does and returns the run's widget (or `None`, with the reason shown "
        "in the form)."
    ),
    new_code_cell(
        'launcher.inputs["prompt"].value = "a lighthouse at dusk, oil painting"\n'
        "run = launcher.launch()\n"
        "snapshot = run.wait(timeout=300) if run is not None else None\n"
        "print(launcher)"
    ),
    new_markdown_cell(
        "`launcher.runs` lists the run widgets, oldest first. When you are done, "
        "`launcher.close()` stops every run's polling and closes the form."
    ),
    new_code_cell("for r in launcher.runs:\n    print(r)"),
]

BOARD_CELLS = [
    new_markdown_cell(
        "# Many runs on one board\n\n"
        "`RunBoard` shows many runs in one compact table: one row per run with its status, "
        "current step, elapsed time and tiny thumbnails, and the counts by status on top. "
        "Press a row's ▸ to open the run's full card. It stays light with a hundred runs: "
        "rows are single HTML views, and full cards exist only while open.\n\n" + OFFLINE_NOTE
    ),
    new_code_cell(
        SETUP + "\n"
        "if os.environ.get(\"MODELSLAB_API_KEY\"):\n"
        "    EXECUTION_IDS = [12345, 12346]  # fill in: execution IDs of your runs\n"
        "else:\n"
        "    prompts = [f\"a lighthouse, variation {n}\" for n in range(12)]\n"
        "    EXECUTION_IDS = [client.run_workflow(WORKFLOW_ID, {\"prompt\": p}) for p in prompts]\n"
        "    # two scripted runs that end badly, to show how the board reports them\n"
        "    EXECUTION_IDS.append(simulator.add_run(outcome=\"failed\"))\n"
        "    EXECUTION_IDS.append(simulator.add_run(outcome=\"cancelled\"))\n\n"
        'print(f"{len(EXECUTION_IDS)} runs of workflow {WORKFLOW_ID}")'
    ),
    new_markdown_cell("## The board"),
    new_code_cell(
        "from modelslab_widget import RunBoard\n\n"
        "board = RunBoard(client=client, poll_interval=POLL_INTERVAL)\n"
        "for execution_id in EXECUTION_IDS:\n"
        "    board.add(WORKFLOW_ID, execution_id)\n"
        "board"
    ),
    new_markdown_cell(
        "## Waiting for all of them\n\n"
        "`board.wait()` blocks until every run has ended (the board keeps updating meanwhile) "
        "and returns the counts by status. `board.add(widget)` also takes a "
        "`WorkflowRunWidget` you already have."
    ),
    new_code_cell("counts = board.wait(timeout=600)\nprint(board)\ncounts"),
    new_markdown_cell(
        "Rows open from code too: `expand()` shows a run's full card under its row in the "
        "board above (and returns it; it is not shown a second time here). `row.stop()` and "
        "`row.start()` pause and resume one row; `board.close()` stops everything and closes "
        "the board."
    ),
    new_code_cell(
        "first = board.runs[0]\n"
        "card = first.expand()  # the card opens under the row above\n"
        'print(f"{first!r}; the card says {card.status}")'
    ),
]


QUICKSTART_CELLS = [
    new_markdown_cell(
        "# Watch a ModelsLab workflow run\n\n"
        "`modelslab-widget` shows a workflow run live: its status, one row per step with its "
        "timing, and the output images as thumbnails once the run completes. Polling happens on "
        "a background thread, so you can keep working in other cells while it updates.\n\n"
        "With `MODELSLAB_API_KEY` set, this notebook watches one of **your** runs: fill in the "
        "IDs below. Without a key, it starts the built-in simulator (a local copy of the "
        "ModelsLab Workflows API) and launches a demo run, so it works offline."
    ),
    new_code_cell(
        "import os\n\n"
        "from modelslab_widget import WorkflowsClient, watch\n\n"
        'if os.environ.get("MODELSLAB_API_KEY"):\n'
        "    client = WorkflowsClient()  # reads MODELSLAB_API_KEY (and MODELSLAB_BASE_URL)\n"
        '    WORKFLOW_ID = "your-workflow-id"  # fill in: the workflow\'s ID\n'
        "    EXECUTION_ID = 12345  # fill in: the execution_id that starting the run returned\n"
        "else:\n"
        "    from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator\n\n"
        "    simulator = Simulator().start()  # serves on 127.0.0.1, a random free port\n"
        "    client = WorkflowsClient(simulator.api_key, base_url=simulator.base_url)\n"
        "    WORKFLOW_ID = DEMO_WORKFLOW_ID\n"
        "    EXECUTION_ID = client.run_workflow(\n"
        '        WORKFLOW_ID, {"prompt": "a lighthouse at dusk, oil painting"}\n'
        "    )\n\n"
        'print(f"Watching run {EXECUTION_ID} of workflow {WORKFLOW_ID}")'
    ),
    new_markdown_cell(
        "## The live widget\n\n"
        "`watch()` displays the widget and returns it. The header shows the run's status and "
        "elapsed time; each step gets a row that updates on its own. **Stop** pauses watching "
        "(the badge then says *paused*), **Resume** picks it up again."
    ),
    new_code_cell("run = watch(WORKFLOW_ID, EXECUTION_ID, client=client, poll_interval=1.0)"),
    new_markdown_cell(
        "## Waiting for the result in code\n\n"
        "`run.wait()` blocks until the run has ended and its thumbnails are ready, and returns "
        "the final snapshot. The widget above keeps updating while this cell runs. A failed run "
        "returns normally (look at `snapshot.error`); a bad key or an unknown run raises."
    ),
    new_code_cell(
        "snapshot = run.wait(timeout=300)\n"
        "print(run)\n"
        "for step in snapshot.steps:\n"
        '    print(f"{step.name:20} {step.status:10} {step.duration} s")'
    ),
    new_markdown_cell(
        "The thumbnails are Pillow images, ready for further work; the full-size URLs are in "
        "`snapshot.outputs`."
    ),
    new_code_cell("run.thumbnails[0] if run.thumbnails else snapshot.outputs"),
]


RESULTS_CELLS = [
    new_markdown_cell(
        "# Keep the results, see how long is left, watch from a terminal\n\n"
        "Three things around the live card: saving a run's full-size images, the estimated "
        "time left on a repeat run of a workflow, and the same live view in a terminal.\n\n"
        + OFFLINE_NOTE + " With a key, the cells below start two runs on your account."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "from modelslab_widget import watch\n\n"
        'first_id = client.run_workflow(WORKFLOW_ID, {"prompt": "a red fox in the snow"})\n'
        "first = watch(WORKFLOW_ID, first_id, client=client, poll_interval=POLL_INTERVAL)\n"
        "first.wait(timeout=300)"
    ),
    new_markdown_cell(
        "## Keep the results\n\n"
        "`save_images(folder)` downloads the full-size outputs (file names from their URLs, "
        "never overwriting a file already there) and returns the paths. `images()` returns "
        "them as Pillow images, downloaded once and then cached."
    ),
    new_code_cell(
        'paths = first.save_images("outputs")\n'
        "print([path.name for path in paths])\n"
        "print([image.size for image in first.images()])"
    ),
    new_markdown_cell(
        "## How long is left\n\n"
        "This kernel has now seen the workflow complete, so a new run of it shows `~N s left` "
        "in its header, and its progress bar moves by expected time rather than by steps "
        "done; a step that runs past its usual time says *taking longer than usual* instead "
        "of guessing. The estimate is the median of earlier step durations; `use_history_file()` "
        "keeps them on disk for later kernels. The widget also polls less while no step is "
        "expected to end."
    ),
    new_code_cell(
        'second_id = client.run_workflow(WORKFLOW_ID, {"prompt": "a red fox at night"})\n'
        "second = watch(WORKFLOW_ID, second_id, client=client, poll_interval=POLL_INTERVAL)"
    ),
    new_code_cell(
        "import time\n\n"
        'while second.status not in ("running", "completed", "failed", "cancelled"):\n'
        "    time.sleep(0.1)  # the first answer is on its way\n"
        "estimate = second.estimate()\n"
        "if estimate is not None:\n"
        '    print(f"about {estimate.remaining:.0f} s left, {estimate.fraction:.0%} done")\n'
        "second.wait(timeout=300)\n"
        "print(second)"
    ),
    new_markdown_cell(
        "## From a terminal\n\n"
        "`modelslab-widget watch WORKFLOW_ID EXECUTION_ID` shows the same step list in a "
        "terminal (redrawn in place, or one line per change when not a terminal) and exits 0 "
        "when the run completed, 1 when it failed or was cancelled, 2 when watching failed. "
        "`--save DIR` downloads the images and `--json` prints the final snapshot. "
        "`modelslab-widget demo` does the same against its own simulator:"
    ),
    new_code_cell(
        "import subprocess\nimport sys\n\n"
        "demo = subprocess.run(\n"
        '    [sys.executable, "-m", "modelslab_widget.cli", "demo"],\n'
        "    capture_output=True, text=True, timeout=120,\n"
        ")\n"
        "print(demo.stdout)\n"
        'print("exit code", demo.returncode)'
    ),
    new_markdown_cell(
        "No widget state needs saving to keep the final cards: once its run settles, each "
        "card adds a copy of its final state to its output, as plain HTML with the thumbnails "
        "inline, so the saved notebook shows the final cards in nbconvert's HTML and on sites "
        "that render notebooks. In JupyterLab that copy reaches a card's output only while "
        "the card's own cell is still running, as with `first.wait()` above; `second` settles "
        "during a later cell, so a file saved from JupyterLab does not get its copy (see "
        "*Which runs get the final state in the file* in docs/guide/sharing.md). "
        "`first.close()` and `second.close()` stop and close the cards."
    ),
]


MEDIA_CELLS = [
    new_markdown_cell(
        "# Video, audio and 3D outputs, and cancelling a run\n\n"
        "ModelsLab workflows make more than images. The run card shows each output by its "
        "kind, in output order: images as thumbnails, video and audio as players that your "
        "browser streams straight from the output's URL (the kernel never downloads them), "
        "3D models and other files as a tile with their type, size and a link. The kind comes "
        "from the URL's extension, or, when it has none, from a HEAD request or the first "
        "4 KB.\n\n" + OFFLINE_NOTE + " With a key, the cells below start three runs on your "
        "account (two of them to cancel)."
    ),
    new_code_cell(
        "import os\n\n"
        "from modelslab_widget import WorkflowsClient, watch\n\n"
        'if os.environ.get("MODELSLAB_API_KEY"):\n'
        "    client = WorkflowsClient()  # reads MODELSLAB_API_KEY (and MODELSLAB_BASE_URL)\n"
        '    WORKFLOW_ID = "your-workflow-id"  # fill in: a workflow that makes video or audio\n'
        "    POLL_INTERVAL = 10.0  # the API allows about 10 requests a minute per workflow\n"
        "else:\n"
        "    from modelslab_widget.simulator import DEMO_MEDIA_WORKFLOW_ID, Simulator\n\n"
        "    simulator = Simulator().start()  # serves on 127.0.0.1, a random free port\n"
        "    client = WorkflowsClient(simulator.api_key, base_url=simulator.base_url)\n"
        "    WORKFLOW_ID = DEMO_MEDIA_WORKFLOW_ID  # makes a PNG, an MP4, a WAV and a GLB\n"
        "    POLL_INTERVAL = 1.0\n"
    ),
    new_markdown_cell(
        "## A run with mixed outputs\n\n"
        "Play the video and the audio in the card; the links open each file in a new tab."
    ),
    new_code_cell(
        'execution_id = client.run_workflow(WORKFLOW_ID, {"prompt": "a lighthouse at dusk"})\n'
        "run = watch(WORKFLOW_ID, execution_id, client=client, poll_interval=POLL_INTERVAL)"
    ),
    new_markdown_cell(
        "`run.wait()` returns once the run ended and its image thumbnails are in; it never "
        "waits for video or audio, which the browser streams itself. The text form counts "
        "the outputs by kind."
    ),
    new_code_cell("run.wait(timeout=300)\nprint(run)"),
    new_markdown_cell(
        "## Keep every output\n\n"
        "`save_outputs(folder)` downloads every output, any kind, streamed to disk in chunks "
        "(a long video never sits in memory). Each file is named from its URL with the "
        "extension of what its bytes are, and never overwrites a file already there. "
        "`save_images(folder)` still saves the images only. Here the folder is a new "
        "temporary one, so running the notebook again never piles up files; give it a folder "
        "of yours to keep them."
    ),
    new_code_cell(
        "import tempfile\n\n"
        'folder = tempfile.mkdtemp(prefix="media-outputs-")  # a new, empty folder on every run\n'
        "paths = run.save_outputs(folder)\n"
        "print(folder)\n"
        "print([path.name for path in paths])"
    ),
    new_markdown_cell(
        "## Cancelling a run\n\n"
        "While a run is pending or running, its card has a **Cancel run** button. Cancelling "
        "cannot be undone, so the button first asks you to confirm, then says *Cancelling…* "
        "until the API reports the run's final status. The server decides: a run that "
        "completed before the request reached it stays completed. (**Stop** only stops "
        "watching: the run goes on.) Try it on this long run:"
    ),
    new_code_cell(
        'if os.environ.get("MODELSLAB_API_KEY"):\n'
        '    long_id = client.run_workflow(WORKFLOW_ID, {"prompt": "a long one"})\n'
        "else:  # a scripted run that takes two minutes\n"
        '    long_id = simulator.add_run(WORKFLOW_ID, steps=[("Text to Video", 120.0)])\n'
        "long_run = watch(WORKFLOW_ID, long_id, client=client, poll_interval=POLL_INTERVAL)"
    ),
    new_markdown_cell(
        "From code, `run.cancel()` does the same without asking: it returns once the API "
        "accepted the request, and raises `RunAlreadyEndedError` when the run had already "
        "ended (or the client's other errors: `NotFoundError`, `AuthenticationError`, ...). "
        "Every view of the run follows it to *cancelled*. Here a run of its own is cancelled, "
        "then cancelled again, which is refused: its card then shows the note *The run had "
        "already ended*."
    ),
    new_code_cell(
        "from modelslab_widget.errors import RunAlreadyEndedError\n\n"
        'if os.environ.get("MODELSLAB_API_KEY"):\n'
        '    doomed_id = client.run_workflow(WORKFLOW_ID, {"prompt": "never mind"})\n'
        "else:\n"
        '    doomed_id = simulator.add_run(WORKFLOW_ID, steps=[("Text to Video", 120.0)])\n'
        "doomed = watch(WORKFLOW_ID, doomed_id, client=client, poll_interval=POLL_INTERVAL)\n"
        "print(doomed.cancel())\n"
        "print(doomed.wait(timeout=120).status)\n"
        "try:\n"
        "    doomed.cancel()  # it has ended (cancelled): nothing is left to cancel\n"
        "except RunAlreadyEndedError as error:\n"
        '    print("refused:", error)'
    ),
]


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# The metadata JupyterLab 4 writes for the venv's python3 kernel (ipykernel's kernelspec), so a
# notebook opens clean: without language_info JupyterLab adds one, and on connecting it
# rewrites kernelspec with the kernel's display name.
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {"name": "python"}


def normalize(notebook: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """The form every notebook in notebooks/ is kept in (tests/test_notebooks.py checks it):
    nbformat 4.5, a stable id on every cell, no outputs, no execution counts."""
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    notebook.metadata = nbformat.from_dict(
        {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    )
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{stem}-{index}"  # stable ids: regenerating changes nothing
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(notebook)
    return notebook


def write(name: str, cells: list) -> None:
    path = NOTEBOOKS / name
    nbformat.write(normalize(new_notebook(cells=cells), path.stem), path)
    print(f"wrote {path}")


def main() -> None:
    write("quickstart.ipynb", QUICKSTART_CELLS)
    write("launcher.ipynb", LAUNCHER_CELLS)
    write("board.ipynb", BOARD_CELLS)
    write("results.ipynb", RESULTS_CELLS)
    write("media.ipynb", MEDIA_CELLS)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):  # the ones written by hand too (sweep)
        nbformat.write(normalize(nbformat.read(path, as_version=4), path.stem), path)


if __name__ == "__main__":
    main()
