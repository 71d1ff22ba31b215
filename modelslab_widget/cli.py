"""The ``modelslab-widget`` command: watch a run in the terminal, a demo, the simulator.

Exit codes of ``watch`` and ``demo``: 0 the run completed, 1 it failed or was cancelled,
2 watching failed (bad key, unknown run, time limit, errors that persisted, bad arguments),
130 interrupted by Ctrl-C. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO

from .client import WorkflowsClient, path_segment
from .errors import ModelsLabError
from .eta import use_history_file
from .media import save_images
from .models import RunSnapshot
from .poller import PollPolicy
from .terminal import TerminalWatcher, snapshot_dict
from .text import clean, explain

EXIT_COMPLETED, EXIT_RUN_FAILED, EXIT_WATCH_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO_PROMPT = "a lighthouse at dusk"

EPILOG = """\
exit status: 0 the run completed, 1 it failed or was cancelled, 2 watching failed
(bad key, unknown run, --timeout reached, persistent errors), 130 interrupted.
environment: MODELSLAB_API_KEY (the API key), MODELSLAB_BASE_URL (the API's base URL)."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _add_output_options(parser: argparse.ArgumentParser, interval: float) -> None:
    parser.add_argument(
        "--save", metavar="DIR", type=Path,
        help="download the full-size output images into DIR (existing files are kept)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print the final run as JSON on stdout (the live view goes to stderr)",
    )
    parser.add_argument(
        "--interval", metavar="S", type=_positive, default=interval,
        help=f"seconds between status requests (default {interval:g})",
    )
    parser.add_argument(
        "--timeout", metavar="S", type=_positive, default=None,
        help="give up watching after S seconds (default: wait until the run ends)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelslab-widget", description="Watch ModelsLab workflow runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch = commands.add_parser(
        "watch", help="watch a run live in the terminal",
        description="Show a run's steps live until it ends; optionally save its images.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument("workflow_id", metavar="WORKFLOW_ID")
    watch.add_argument("execution_id", metavar="EXECUTION_ID")
    _add_output_options(watch, interval=2.0)
    watch.add_argument(
        "--api-key", metavar="KEY", default=None,
        help="API key (default $MODELSLAB_API_KEY; prefer the variable: "
        "arguments are visible to other users in the process list)",
    )
    watch.add_argument(
        "--base-url", metavar="URL", default=None,
        help="API base URL (default $MODELSLAB_BASE_URL, else https://modelslab.com/api/v1)",
    )
    demo = commands.add_parser(
        "demo", help="launch a demo run on a built-in simulator and watch it",
        description="Start the simulator in this process, launch a demo run and watch it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_output_options(demo, interval=0.5)
    demo.add_argument("--prompt", default=DEMO_PROMPT, help=f"default {DEMO_PROMPT!r}")
    commands.add_parser(
        "simulate",
        help="serve a local ModelsLab Workflows API (for demos and tests)",
        add_help=False,  # the simulator parses its own options, --help included
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        from .simulator import main as simulate

        return simulate(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "watch":
            return watch_command(args)
        return demo_command(args)
    except ModelsLabError as error:  # launching the demo run failed
        return _fail(clean(error))
    except KeyboardInterrupt:
        print("\nmodelslab-widget: interrupted, stopped watching", file=sys.stderr)
        return EXIT_INTERRUPTED


def watch_command(args: argparse.Namespace) -> int:
    try:
        path_segment(args.workflow_id, "WORKFLOW_ID")
        path_segment(args.execution_id, "EXECUTION_ID")
    except ValueError as error:
        return _fail(str(error))
    execution_id: int | str = (
        int(args.execution_id) if args.execution_id.isascii() and args.execution_id.isdigit()
        else args.execution_id  # "²".isdigit() is true, but it is no number
    )
    use_history_file()  # step durations kept across commands: ETAs and quieter polling
    with WorkflowsClient(args.api_key, base_url=args.base_url) as client:
        return _watch_as_asked(client, args.workflow_id, execution_id, args)


def demo_command(args: argparse.Namespace) -> int:
    from .simulator import DEMO_WORKFLOW_ID, Simulator

    with Simulator() as sim, WorkflowsClient(sim.api_key, base_url=sim.base_url) as client:
        execution_id = client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": args.prompt})
        view = sys.stderr if args.json else sys.stdout
        print(f"demo: simulator at {sim.base_url}, run {execution_id}", file=view, flush=True)
        return _watch_as_asked(client, DEMO_WORKFLOW_ID, execution_id, args)


def _watch_as_asked(client: WorkflowsClient, workflow_id: str, execution_id: int | str,
                    args: argparse.Namespace) -> int:
    """``watch_and_report`` with the output options both commands share."""
    return watch_and_report(
        client, workflow_id, execution_id, save=args.save, as_json=args.json,
        policy=PollPolicy(interval=args.interval, timeout=args.timeout),
    )


def watch_and_report(
    client: WorkflowsClient,
    workflow_id: str,
    execution_id: int | str,
    *,
    save: Path | None = None,
    as_json: bool = False,
    policy: PollPolicy | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Watch the run live, then report it (outputs, saved files, JSON); returns the exit code.
    With ``as_json`` the live view goes to ``stderr`` so ``stdout`` holds only the JSON."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    view = err if as_json else out
    watcher = TerminalWatcher(client, workflow_id, execution_id, stream=view, notes=err,
                              policy=policy)
    result = watcher.run()
    if result.error is not None or result.snapshot is None:
        return _fail(_explain(result.error, policy), err)
    snapshot = result.snapshot
    code = EXIT_COMPLETED
    saved: list[Path] = []
    if snapshot.status == "completed":
        if save is None:
            view.write("".join(f"  {clean(url, 2000)}\n" for url in snapshot.outputs))
        else:
            saved, ok = _save(client, snapshot, save, view, err)
            code = EXIT_COMPLETED if ok else EXIT_WATCH_FAILED
    else:
        verb = "failed" if snapshot.status == "failed" else f"was {clean(snapshot.status, 64)}"
        reason = f": {clean(snapshot.error, 2000)}" if snapshot.error else ""
        print(f"modelslab-widget: the run {verb}{reason}", file=err)
        code = EXIT_RUN_FAILED
    if as_json:
        document = snapshot_dict(snapshot)
        if save is not None:
            document["saved"] = [str(path) for path in saved]
        json.dump(document, out, indent=2, ensure_ascii=False)
        out.write("\n")
    out.flush()
    return code


def _save(
    client: WorkflowsClient, snapshot: RunSnapshot, directory: Path, view: IO[str], err: IO[str]
) -> tuple[list[Path], bool]:
    failures = []

    def saved(path: Path) -> None:
        view.write(f"saved {path}\n")
        view.flush()

    def failed(index: int, url: str, error: Exception) -> None:
        failures.append(index)
        print(f"modelslab-widget: could not save output {index + 1} ({clean(url, 300)}): "
              f"{clean(error)}", file=err, flush=True)

    try:
        paths = save_images(client, snapshot.outputs, directory, fallbacks=snapshot.proxy_links,
                            on_saved=saved, on_error=failed)
    except OSError as error:  # the directory itself could not be made
        print(f"modelslab-widget: cannot save into {directory}: {clean(error)}", file=err)
        return [], False
    return paths, not failures


def _explain(error: BaseException | None, policy: PollPolicy | None) -> str:
    """Why watching stopped, as one line for the terminal: ``text.explain``'s words (never
    the key: the client's messages do not carry it)."""
    if error is None:
        return "watching stopped before the run's status was known"
    words = explain(error, "terminal")
    detail = clean(words.text)
    if isinstance(error, ModelsLabError) and error.transient:
        failures = (policy or PollPolicy()).max_failures
        detail = f"{failures} failed requests in a row; the last: {detail}"
    title = words.title[:1].lower() + words.title[1:]
    return f"{title}: {detail} {words.hint}"


def _fail(message: str, err: IO[str] | None = None) -> int:
    print(f"modelslab-widget: {message}", file=err or sys.stderr, flush=True)
    return EXIT_WATCH_FAILED


if __name__ == "__main__":
    sys.exit(main())
