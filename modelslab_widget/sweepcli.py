"""``modelslab-widget sweep WORKFLOW_ID runs.jsonl``: a sweep from the terminal.

Each line of the runs file is one JSON object of parameters (blank lines are skipped). The
sweep launches them as ``Sweep`` does (under the account's queue limit, each once), prints the
manifest's path first, then one line per change of a run, and a summary at the end; with
``--json`` the results go to stdout as one JSON document and the progress to stderr.
``--resume MANIFEST`` carries on a sweep whose process was stopped (the runs file is then not
needed). Exit status: 0 every run completed, 1 some did not (failed, cancelled, refused,
lost), 2 the sweep could not run (bad file, no key), 130 interrupted (the manifest resumes it).
Nothing here imports ipywidgets.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import IO, Any

from .client import WorkflowsClient
from .errors import ModelsLabError
from .sanitize import clean
from .sweep import Sweep, SweepRun
from .text import format_seconds

EXIT_ALL_COMPLETED, EXIT_SOME_NOT, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_RUNS = 10_000  # a runs file longer than this is a mistake, not a sweep

EPILOG = """\
exit status: 0 every run completed, 1 some did not (failed, cancelled, refused, lost),
2 the sweep could not run (bad runs file, no key), 130 interrupted (resume with --resume).
environment: MODELSLAB_API_KEY (the API key), MODELSLAB_BASE_URL (the API's base URL)."""


def add_parser(commands: Any, connection_options: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="launch many runs of a workflow and watch them together",
        description="Launch one run per line of RUNS (a JSON object of parameters each), "
        "under the account's queue limit, and watch them until every one has ended.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("workflow_id", metavar="WORKFLOW_ID", nargs="?")
    sweep.add_argument("runs", metavar="RUNS", type=Path, nargs="?",
                       help="a JSON-lines file: one object of parameters per run")
    sweep.add_argument("--resume", metavar="MANIFEST", type=Path, default=None,
                       help="carry on the sweep of this manifest (launched runs are watched, "
                       "runs never sent are launched)")
    sweep.add_argument("--manifest", metavar="PATH", type=Path, default=None,
                       help="where to keep the manifest (default: a new file in the cache "
                       "folder)")
    sweep.add_argument("--max-queued", metavar="N", type=int, default=None,
                       help="at most N runs queued or running at once (default: the "
                       "account's queue limit when known, else 5)")
    sweep.add_argument("--interval", metavar="S", type=float, default=2.0,
                       help="seconds between status requests of each run (default 2)")
    sweep.add_argument("--json", action="store_true",
                       help="print the results as JSON on stdout (progress goes to stderr)")
    connection_options(sweep)


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The parameter objects of a runs file; ValueError naming the line that is wrong."""
    runs: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                params = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error.msg})") from None
            if not isinstance(params, dict):
                raise ValueError(f"{path}, line {number}: expected an object of parameters")
            runs.append(params)
            if len(runs) > MAX_RUNS:
                raise ValueError(f"{path}: more than {MAX_RUNS} runs")
    if not runs:
        raise ValueError(f"{path} holds no runs: one JSON object of parameters per line")
    return runs


def sweep_command(args: argparse.Namespace, client: WorkflowsClient,
                  out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    progress = err if args.json else out
    try:
        sweep = _make_sweep(args, client)
    except (ValueError, OSError) as error:
        print(f"modelslab-widget: {clean(str(error))}", file=err)
        return EXIT_FAILED
    print(f"manifest: {sweep.manifest}", file=progress, flush=True)
    printer = ProgressLines(sweep, progress)
    stop = sweep.listen(printer.changed)
    try:
        counts = sweep.wait()
    except KeyboardInterrupt:
        print(f"\nmodelslab-widget: interrupted; launched runs go on. Resume with: "
              f"modelslab-widget sweep --resume {sweep.manifest}", file=err)
        sweep.close()
        return EXIT_INTERRUPTED
    finally:
        stop()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"sweep done: {summary}", file=progress, flush=True)
    if args.json:
        json.dump({"manifest": str(sweep.manifest), "counts": counts,
                   "results": sweep.results()}, out, default=str)
        out.write("\n")
    sweep.close()
    return EXIT_ALL_COMPLETED if set(counts) == {"completed"} else EXIT_SOME_NOT


def _make_sweep(args: argparse.Namespace, client: WorkflowsClient) -> Sweep:
    common = {"client": client, "poll_interval": args.interval, "thumbnails": False}
    if args.resume is not None:
        return Sweep.resume(args.resume, **common)
    if not args.workflow_id or args.runs is None:
        raise ValueError("give WORKFLOW_ID and a RUNS file (or --resume MANIFEST)")
    return Sweep(args.workflow_id, read_runs(args.runs), max_queued=args.max_queued,
                 manifest=args.manifest, **common)


class ProgressLines:
    """One line per change of a run's status: ``[3/12 done] #4 seed=2 · completed · 1.0 s``."""

    def __init__(self, sweep: Sweep, out: IO[str]) -> None:
        self._sweep = sweep
        self._out = out
        self._shown: dict[int, str] = {}
        self._lock = threading.Lock()

    def changed(self, run: SweepRun | None) -> None:
        runs = self._sweep.runs if run is None else [run]
        with self._lock:
            for item in runs:
                status = item.status
                if self._shown.get(item.index) == status:
                    continue
                self._shown[item.index] = status
                print(self.line(item), file=self._out, flush=True)

    def line(self, run: SweepRun) -> str:
        done = sum(1 for item in self._sweep.runs if item.done)
        result = run.result()
        parts = [f"[{done}/{len(self._sweep.runs)} done] #{run.index + 1}",
                 clean(run.label or json.dumps(run.params))[:120]]
        parts.append(result["status"])
        if result["duration"] is not None:
            parts.append(format_seconds(result["duration"]))
        if result["error"]:
            parts.append(clean(result["error"])[:200])
        return " · ".join(parts)


def run_sweep(args: argparse.Namespace, client: WorkflowsClient) -> int:
    """The command, with the errors of making a sweep said in the command line's words."""
    try:
        return sweep_command(args, client)
    except ModelsLabError as error:
        print(f"modelslab-widget: {clean(error)}", file=sys.stderr)
        return EXIT_FAILED
