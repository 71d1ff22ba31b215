"""The ``modelslab-widget`` command: launch, watch or cancel a run in the terminal, list
workflows, sweep many runs (``sweepcli.py``), a demo, the simulator.

Exit codes of ``watch``, ``run --watch`` and ``demo``: 0 the run completed, 1 it failed or was
cancelled, 2 watching failed (bad key, unknown run, time limit, errors that persisted, bad
arguments), 130 interrupted by Ctrl-C. ``run`` without ``--watch``: 0 launched, 2 not (or not
known to be). ``cancel``: 0 cancelled, 1 the run had already ended, 2 any other failure.
Nothing here imports ipywidgets.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import IO

from . import sweepcli
from ._version import __version__
from .client import WorkflowsClient, json_params, path_segment
from .errors import ModelsLabError, RunAlreadyEndedError, ValidationError
from .eta import use_history_file
from .models import RunSnapshot, WorkflowSummary, format_timestamp
from .pending import PendingRun
from .poller import PollPolicy
from .sanitize import clean
from .saving import save_images
from .terminal import TerminalWatcher, snapshot_dict
from .text import error_line, explain

EXIT_COMPLETED, EXIT_RUN_FAILED, EXIT_WATCH_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO_PROMPT = "a lighthouse at dusk"

RUN_EXIT = """\
exit status: 0 the run completed, 1 it failed or was cancelled, 2 watching failed
(bad key, unknown run, --timeout reached, persistent errors), 130 interrupted."""
ENVIRONMENT = """\
environment: MODELSLAB_API_KEY (the API key), MODELSLAB_BASE_URL (the API's base URL)."""
EPILOG = f"{RUN_EXIT}\n{ENVIRONMENT}"
CANCEL_EPILOG = f"""\
exit status: 0 the run was cancelled, 1 it had already ended, 2 any other failure
(bad key, unknown run, network).
{ENVIRONMENT}"""
LAUNCH_EPILOG = f"""\
--param values are read as JSON when they parse (5, 0.5, true, null, "5", [1, 2]), else as
text; a --param replaces the same key of --params-file. The launch is sent once, never again.
exit status: without --watch 0 the run was launched (its execution ID is printed), 2 it was
not (refused parameters, rate limit, bad key, unknown workflow, network); with --watch as
`watch`: 0 the run completed, 1 it failed or was cancelled, 2 launching or watching failed,
130 interrupted (the run goes on).
{ENVIRONMENT}"""
DEMO_EPILOG = f"""{RUN_EXIT}
demo runs its own simulator: it reads no environment variables and needs no key."""
# The poller does the retrying on the command line: a call that fails returns at once, so each
# attempt is one line and the delay it states is the real one (the client's own retries would
# add their back-off, unannounced).
CLI_RETRIES = 0
CLI_BACKOFF = 0.5


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


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key", metavar="KEY", default=None,
        help="API key (default $MODELSLAB_API_KEY; prefer the variable: "
        "arguments are visible to other users in the process list)",
    )
    parser.add_argument(
        "--base-url", metavar="URL", default=None,
        help="API base URL (default $MODELSLAB_BASE_URL, else https://modelslab.com/api/v1)",
    )


def _param(text: str) -> tuple[str, object]:
    """``key=value`` as (key, value): the value as JSON when it parses, else the text itself.
    NaN and Infinity stay text (JSON cannot carry them)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")

    def no_constant(name: str) -> object:
        raise ValueError(name)

    try:
        return key, json.loads(value, parse_constant=no_constant)
    except ValueError:  # JSONDecodeError included
        return key, value


def _add_run_ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow_id", metavar="WORKFLOW_ID")
    parser.add_argument("execution_id", metavar="EXECUTION_ID")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelslab-widget", description="Watch ModelsLab workflow runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modelslab-widget {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch = commands.add_parser(
        "watch", help="watch a run live in the terminal",
        description="Show a run's steps live until it ends; optionally save its images.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_ids(watch)
    _add_output_options(watch, interval=PollPolicy.interval)
    _add_connection_options(watch)
    cancel = commands.add_parser(
        "cancel", help="ask ModelsLab to cancel a run",
        description="Cancel a pending or running run (it cannot be undone).",
        epilog=CANCEL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_ids(cancel)
    cancel.add_argument("--json", action="store_true", help="print the outcome as JSON")
    _add_connection_options(cancel)
    listing = commands.add_parser(
        "workflows", help="list your API-enabled workflows",
        description="List the workflows your key can run: ID, name, rate limit, calls.",
        epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    _add_connection_options(listing)
    launch = commands.add_parser(
        "run", help="launch a run of a workflow (and, with --watch, watch it)",
        description="Launch one run of WORKFLOW_ID with the given parameters and print its\n"
        "execution ID (with --json: {execution_id, workflow_id}); with --watch, watch it\n"
        "until it ends as the watch command does.",
        epilog=LAUNCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    launch.add_argument("workflow_id", metavar="WORKFLOW_ID")
    launch.add_argument(
        "--param", metavar="KEY=VALUE", type=_param, action="append", default=[],
        help="one parameter of the run (repeat for more; each key once)",
    )
    launch.add_argument(
        "--params-file", metavar="FILE.json", type=Path, default=None,
        help="a JSON object of parameters (--param values replace its keys)",
    )
    launch.add_argument("--watch", action="store_true",
                        help="watch the run until it ends, as the watch command does")
    _add_output_options(launch, interval=PollPolicy.interval)
    _add_connection_options(launch)
    demo = commands.add_parser(
        "demo", help="launch a demo run on a built-in simulator and watch it",
        description="Start the simulator in this process, launch a demo run and watch it.",
        epilog=DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_output_options(demo, interval=0.5)
    demo.add_argument("--prompt", default=DEMO_PROMPT, help=f"default {DEMO_PROMPT!r}")
    sweepcli.add_parser(commands, _add_connection_options)
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

        return simulate(rest, prog="modelslab-widget simulate")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    commands = {"watch": watch_command, "run": run_command, "cancel": cancel_command,
                "workflows": workflows_command, "demo": demo_command,
                "sweep": sweep_command}
    try:
        return commands[args.command](args)
    except ModelsLabError as error:  # launching the demo run failed
        return _fail(clean(error), as_json=args.json, error=error)
    except KeyboardInterrupt:
        print("\nmodelslab-widget: interrupted, stopped watching", file=sys.stderr)
        if args.command in ("watch", "run") and getattr(args, "execution_id", None) is not None:
            print("The run goes on. To cancel it: modelslab-widget cancel "
                  f"{shlex.quote(args.workflow_id)} {shlex.quote(str(args.execution_id))}",
                  file=sys.stderr)
        elif args.command == "run":
            print("The launch request was sent once and not again; if ModelsLab received it, "
                  "the run has started.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run_ids(args: argparse.Namespace) -> int | str:
    """The execution ID (an int when it is one); ValueError for IDs that cannot be sent."""
    path_segment(args.workflow_id, "WORKFLOW_ID")
    path_segment(args.execution_id, "EXECUTION_ID")
    return (
        int(args.execution_id) if args.execution_id.isascii() and args.execution_id.isdigit()
        else args.execution_id  # "²".isdigit() is true, but it is no number
    )


def _cli_client(args: argparse.Namespace) -> WorkflowsClient | None:
    """The client for the command's key and base URL; None (and the reason printed) when there
    is no key, in the command line's words rather than the Python API's."""
    client = WorkflowsClient(args.api_key, base_url=args.base_url, retries=CLI_RETRIES)
    if client.has_api_key:
        return client
    client.close()
    _fail("no API key: set MODELSLAB_API_KEY (or pass --api-key) and run the command again.",
          as_json=args.json, kind="AuthenticationError")
    return None


def watch_command(args: argparse.Namespace) -> int:
    try:
        execution_id = _run_ids(args)
    except ValueError as error:
        return _fail(str(error), as_json=args.json, kind="ValueError")
    use_history_file()  # step durations kept across commands: ETAs and quieter polling
    client = _cli_client(args)
    if client is None:
        return EXIT_WATCH_FAILED
    with client:
        return _watch_as_asked(client, args.workflow_id, execution_id, args)


def run_params(args: argparse.Namespace) -> dict[str, object]:
    """The run's parameters: --params-file's object, then each --param; ValueError naming
    what is wrong (an unreadable file, no object, a key given twice)."""
    params: dict[str, object] = {}
    if args.params_file is not None:
        try:
            loaded = json.loads(args.params_file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"cannot read {args.params_file}: {error.strerror or error}"
                             ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{args.params_file} is not JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.params_file}: expected a JSON object of parameters")
        params.update(loaded)
    given: set[str] = set()
    for key, value in args.param:
        if key in given:
            raise ValueError(f"--param {key}= is given more than once: give each key once")
        given.add(key)
        params[key] = value
    return params


def run_command(args: argparse.Namespace) -> int:
    """Launch one run (one POST, never re-sent); print its ID, or with --watch watch it."""
    if not args.watch and (args.save is not None or args.timeout is not None):
        return _fail("--save and --timeout are for watching: add --watch", as_json=args.json,
                     kind="ValueError")
    try:
        path_segment(args.workflow_id, "WORKFLOW_ID")
        params = run_params(args)
        json_params(params)  # what JSON cannot carry is said before anything is sent
    except ValueError as error:
        return _fail(clean(error), as_json=args.json, kind="ValueError")
    if args.watch:
        use_history_file()
    client = _cli_client(args)
    if client is None:
        return EXIT_WATCH_FAILED
    with client:
        # Sent now or not at all: a 429 is reported (with when to try again), not waited out.
        pending = PendingRun(client, args.workflow_id, params, wait_for_room=False)
        pending.start(inline=True)
        execution_id = pending.execution_id
        if execution_id is None:
            refusal = pending.error or RuntimeError("the run was not started")
            fields = refusal.errors if isinstance(refusal, ValidationError) else None
            return _fail(_explain_once(refusal, "launch", client.base_url), as_json=args.json,
                         error=refusal, fields=fields)
        args.execution_id = execution_id  # for Ctrl-C's words from here on
        view = sys.stderr if args.json else sys.stdout
        if not args.watch:
            if args.json:
                _print_json({"execution_id": execution_id, "workflow_id": args.workflow_id},
                            sys.stdout)
            else:
                print(execution_id, flush=True)
            return EXIT_COMPLETED
        print(f"launched run {clean(execution_id, 200)} of {clean(args.workflow_id, 200)}",
              file=view, flush=True)
        return _watch_as_asked(client, args.workflow_id, execution_id, args)


def cancel_command(args: argparse.Namespace) -> int:
    """Ask the API to cancel the run: 0 cancelled, 1 it had already ended, 2 otherwise."""
    try:
        execution_id = _run_ids(args)
    except ValueError as error:
        return _fail(str(error), as_json=args.json, kind="ValueError")
    client = _cli_client(args)
    if client is None:
        return EXIT_WATCH_FAILED
    with client:
        try:
            message = client.cancel_run(args.workflow_id, execution_id)
        except RunAlreadyEndedError as error:
            _report(args.json, {"cancelled": False, "already_ended": True,
                                "message": clean(error)}, f"modelslab-widget: {clean(error)}",
                    to_stderr=True)
            return EXIT_RUN_FAILED
        except ModelsLabError as error:
            return _fail(_explain_once(error, "cancel", client.base_url), as_json=args.json,
                         error=error)
    _report(args.json, {"cancelled": True, "message": clean(message)},
            f"Run {clean(execution_id, 200)}: {clean(message)}")
    return EXIT_COMPLETED


def sweep_command(args: argparse.Namespace) -> int:
    use_history_file()
    client = _cli_client(args)
    if client is None:
        return EXIT_WATCH_FAILED
    with client:
        return sweepcli.run_sweep(args, client)


def workflows_command(args: argparse.Namespace) -> int:
    """Print the caller's API-enabled workflows as a table (or JSON)."""
    client = _cli_client(args)
    if client is None:
        return EXIT_WATCH_FAILED
    with client:
        try:
            found = client.list_workflows()
        except ModelsLabError as error:
            return _fail(_explain_once(error, "list", client.base_url), as_json=args.json,
                         error=error)
    if args.json:
        _print_json([_summary_dict(item) for item in found], sys.stdout)
    elif not found:
        print("No API-enabled workflows for this key.")
    else:
        print(workflows_table(found))
    return EXIT_COMPLETED


def _summary_dict(item: WorkflowSummary) -> dict[str, object]:
    return {
        "id": item.id, "name": item.name, "description": item.description,
        "rate_limit": item.rate_limit, "call_count": item.call_count,
        "last_called_at": format_timestamp(item.last_called_at),
        "created_at": format_timestamp(item.created_at),
        "updated_at": format_timestamp(item.updated_at),
    }


def workflows_table(items: list[WorkflowSummary]) -> str:
    """ID, name, rate limit, call count and last call, one workflow a line, every field
    cleaned of control characters and cut to a readable width."""
    rows = [("ID", "NAME", "RATE LIMIT", "CALLS", "LAST CALLED")]
    for item in items:
        last = format_timestamp(item.last_called_at) or "never"
        rows.append((
            clean(item.id, 40), clean(item.name, 40),
            "–" if item.rate_limit is None else f"{item.rate_limit}/min",
            "–" if item.call_count is None else f"{item.call_count:,}", last,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def demo_command(args: argparse.Namespace) -> int:
    from .simulator import DEMO_WORKFLOW_ID, Simulator

    with Simulator() as sim, WorkflowsClient(sim.api_key, base_url=sim.base_url) as client:
        execution_id = client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": args.prompt})
        view = sys.stderr if args.json else sys.stdout
        print(f"demo: simulator at {sim.base_url}, run {execution_id}", file=view, flush=True)
        code = _watch_as_asked(client, DEMO_WORKFLOW_ID, execution_id, args)
        if args.save is None and code == EXIT_COMPLETED:
            print("demo: these URLs are served by the demo's own simulator and stop working "
                  "when this command exits; pass --save DIR to keep the images.",
                  file=view, flush=True)
        return code


def _watch_as_asked(client: WorkflowsClient, workflow_id: str, execution_id: int | str,
                    args: argparse.Namespace) -> int:
    """``watch_and_report`` with the output options both commands share."""
    return watch_and_report(
        client, workflow_id, execution_id, save=args.save, as_json=args.json,
        policy=PollPolicy(interval=args.interval, timeout=args.timeout,
                          backoff_base=CLI_BACKOFF),
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
        return _fail(_explain(result.error, policy, client.base_url), err, as_json=as_json,
                     out=out, error=result.error)
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
        _print_json(document, out)
    out.flush()
    return code


def _print_json(document: object, out: IO[str]) -> None:
    """JSON with every non-ASCII character escaped: server text may hold C1 controls (an
    8-bit CSI) or bidi overrides, which a terminal would act on if printed raw."""
    json.dump(document, out, indent=2, ensure_ascii=True)
    out.write("\n")
    out.flush()


def _report(as_json: bool, document: dict[str, object], line: str,
            to_stderr: bool = False) -> None:
    if as_json:
        _print_json(document, sys.stdout)
    else:
        print(line, file=sys.stderr if to_stderr else sys.stdout, flush=True)


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


def _explain(error: BaseException | None, policy: PollPolicy | None,
             base_url: str | None = None) -> str:
    """Why watching stopped, as one line for the terminal: ``text.explain``'s words (never
    the key: the client's messages do not carry it), each phrase said once."""
    if error is None:
        return "watching stopped before the run's status was known"
    words = explain(error, "terminal", base_url=base_url)
    if isinstance(error, ModelsLabError) and error.transient:
        failures = (policy or PollPolicy()).max_failures
        words = replace(words, text=f"{failures} failed requests in a row; the last: "
                                    f"{clean(words.text)}")
    return error_line(words)


def _explain_once(error: BaseException, request: str, base_url: str | None = None) -> str:
    """Why a single request ("cancel", "list", "launch") failed, with what to do next."""
    return error_line(explain(error, "terminal", request=request, base_url=base_url))


def _fail(message: str, err: IO[str] | None = None, *, as_json: bool = False,
          out: IO[str] | None = None, error: BaseException | None = None,
          kind: str | None = None, fields: dict[str, list[str]] | None = None) -> int:
    """Say why on stderr; with ``--json`` also put it on stdout as a JSON object, so a script
    reading stdout always gets one document."""
    print(f"modelslab-widget: {message}", file=err or sys.stderr, flush=True)
    if as_json:
        kind = kind or (type(error).__name__ if error is not None else "Error")
        described: dict[str, object] = {"type": kind, "message": message}
        if fields is not None:  # a 422's messages, field by field
            described["fields"] = fields
        _print_json({"status": "error", "error": described, "exit_code": EXIT_WATCH_FAILED},
                    out or sys.stdout)
    return EXIT_WATCH_FAILED


if __name__ == "__main__":
    sys.exit(main())
