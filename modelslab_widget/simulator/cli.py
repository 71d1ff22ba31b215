"""`python -m modelslab_widget.simulator` and `modelslab-widget simulate`."""

from __future__ import annotations

import argparse
import shlex
import signal
import threading

from .core import Simulator
from .runs import DEMO_MEDIA_WORKFLOW_ID, DEMO_WORKFLOW_ID, StepSpec

# slow enough that the run is still going when its watch command has been pasted
CLI_DEMO_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 20.0),
                                        StepSpec("Image Upscaler", 15.0))


def main(argv: list[str] | None = None,
         prog: str = "python -m modelslab_widget.simulator") -> int:
    """Serve a simulator until Ctrl-C; prints what a notebook needs to connect to it.
    ``prog`` is the command's name in its usage (``modelslab-widget simulate`` there)."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description="A local ModelsLab Workflows API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="default: a random sim-... key")
    args = parser.parse_args(argv)
    # Ctrl-C (or a TERM) only sets an event: a KeyboardInterrupt could land anywhere, even in
    # the prints before a try block or halfway through stopping, and leave a traceback or a hang.
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C ends it even if stopping hangs

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    with Simulator(api_key=args.api_key, host=args.host, port=args.port) as sim:
        print(f"base_url: {sim.base_url}")
        print(f"api_key: {sim.api_key}")
        print(f"workflow_id: {DEMO_WORKFLOW_ID}")
        execution_id = sim.add_run(DEMO_WORKFLOW_ID, steps=CLI_DEMO_STEPS, images=2)
        print(f"execution_id: {execution_id}")
        print(f"media_workflow_id: {DEMO_MEDIA_WORKFLOW_ID}")
        print("\nA demo run has started; watch it from another terminal with:\n"
              f"  {watch_command(sim, DEMO_WORKFLOW_ID, execution_id)}\n"
              "Press Ctrl-C to stop the server.", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def watch_command(sim: Simulator, workflow_id: str, execution_id: int) -> str:
    """A shell line that watches a run of `sim` with the modelslab-widget command."""
    return (f"MODELSLAB_API_KEY={shlex.quote(sim.api_key)} "
            f"MODELSLAB_BASE_URL={shlex.quote(sim.base_url)} "
            f"modelslab-widget watch {shlex.quote(workflow_id)} {execution_id}")
