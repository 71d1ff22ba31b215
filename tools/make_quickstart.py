"""Write notebooks/quickstart.ipynb (kept as code so the notebook's text is reviewable)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
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
        "elapsed time; each step gets a row that updates on its own. **Stop** pauses watching, "
        "**Resume** picks it up again."
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


def main() -> None:
    notebook = new_notebook(cells=CELLS)
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python",
    }
    path = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
