"""The command line: the simulator serves real HTTP and prints how to reach it."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from modelslab_widget import WorkflowsClient
from modelslab_widget.cli import watch_and_report
from modelslab_widget.models import parse_timestamp
from modelslab_widget.poller import PollPolicy
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator

from .conftest import wait_for


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "modelslab_widget.simulator"],
        [sys.executable, "-m", "modelslab_widget.cli", "simulate"],
    ],
)
def test_simulate_prints_base_url_and_key_and_serves(command):
    process = subprocess.Popen(
        [*command, "--port", "0", "--api-key", "cli-key"],
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(3))
        with WorkflowsClient(lines["api_key"], base_url=lines["base_url"]) as client:
            assert client.get_workflow(lines["workflow_id"]).name
        assert lines["api_key"] == "cli-key"
    finally:
        try:
            code, stderr = interrupt(process)
        finally:
            process.stdout.close()
            process.stderr.close()
    assert code == 0, stderr
    assert "Traceback" not in stderr


# ---------------------------------------------------------------- helpers

FAST_STEPS = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]
CLI = [sys.executable, "-m", "modelslab_widget.cli"]


def cli_env(sim: Simulator, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSLAB_")}
    env["MODELSLAB_API_KEY"] = sim.api_key if key is None else key
    env["MODELSLAB_BASE_URL"] = sim.base_url
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # see interrupt()
    return env


def interrupt(process: subprocess.Popen[str], patience: float = 20) -> tuple[int, str]:
    """Ctrl-C a child; its exit code and stderr. Should it hang, SIGABRT makes Python's
    faulthandler (PYTHONFAULTHANDLER=1) print every thread's stack, and the test shows it."""
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(patience)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pytest.fail(f"no exit {patience:g} s after Ctrl-C; stacks:\n{process.stderr.read()}")
    return code, process.stderr.read()


def watch(sim: Simulator, execution_id: object, *extra: str, key: str | None = None,
          workflow_id: str = DEMO_WORKFLOW_ID, timeout: float = 30):
    return subprocess.run(
        [*CLI, "watch", workflow_id, str(execution_id), "--interval", "0.1", *extra],
        env=cli_env(sim, key), capture_output=True, text=True, timeout=timeout,
    )


# ---------------------------------------------------------------- exit codes (subprocesses)

def test_watch_completed_run_prints_each_transition_and_exits_0(sim):
    # Queued long enough for the CLI to be polling before the first step starts.
    eid = sim.add_run(steps=FAST_STEPS, images=2, queue_time=2.0)
    result = watch(sim, eid)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    body = [line.split(" ", 1)[1] for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert body[0] == "run is pending"
    for name in ("Text to Image", "Image Upscaler"):
        assert f"{name}: running" in body
        assert any(re.fullmatch(rf"{name}: completed in \d+\.\d s", line) for line in body)
    assert re.fullmatch(r"run completed in \d+\.\d s, 2 outputs", body[-1])
    assert body.index("Text to Image: running") < body.index("Image Upscaler: running")
    urls = sim.run_state(eid)["output"]["output"]
    assert [line.strip() for line in lines[-2:]] == urls
    assert "\x1b[" not in result.stdout  # no cursor movement when stdout is not a terminal


@pytest.mark.parametrize(
    ("outcome", "word"), [("failed", "the run failed: Out of credits"), ("cancelled", "cancelled")]
)
def test_failed_or_cancelled_run_exits_1_with_the_error_on_stderr(sim, outcome, word):
    eid = sim.add_run(steps=FAST_STEPS, outcome=outcome, error="Out of credits")
    result = watch(sim, eid)
    assert result.returncode == 1
    assert word in result.stderr
    assert f"run {outcome}" in result.stdout


@pytest.mark.parametrize("how", ["env", "argument"])
def test_wrong_key_exits_2_and_never_shows_the_key(sim, how):
    eid = sim.add_run(steps=FAST_STEPS)
    secret = "sk-wrong-5ecret-d0-not-print"
    if how == "env":
        result = watch(sim, eid, key=secret)
    else:
        result = watch(sim, eid, "--api-key", secret, key="")
    assert result.returncode == 2
    assert "API key was rejected" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_missing_key_exits_2(sim):
    result = watch(sim, sim.add_run(steps=FAST_STEPS), key="")
    assert result.returncode == 2
    assert "no API key: set MODELSLAB_API_KEY (or pass --api-key)" in result.stderr
    assert "api_key=" not in result.stderr  # the Python API's words stay out of the CLI


@pytest.mark.parametrize(("workflow_id", "execution_id"), [(DEMO_WORKFLOW_ID, 99999),
                                                           ("no-such-workflow", 12345),
                                                           (DEMO_WORKFLOW_ID, "²")])
def test_unknown_run_exits_2(sim, workflow_id, execution_id):
    result = watch(sim, execution_id, workflow_id=workflow_id)
    assert result.returncode == 2
    assert "run not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_ids_that_would_change_the_path_are_refused(sim):
    result = watch(sim, "..")
    assert result.returncode == 2
    assert "EXECUTION_ID" in result.stderr
    assert sim.request_count() == 0


def test_timeout_exits_2(sim):
    eid = sim.add_run(steps=[("Slow step", 60.0)])
    started = time.monotonic()
    result = watch(sim, eid, "--timeout", "0.5")
    assert result.returncode == 2
    assert "--timeout" in result.stderr
    assert time.monotonic() - started < 10


def test_ctrl_c_stops_watching_with_130(sim):
    eid = sim.add_run(steps=[("Slow step", 60.0)])
    process = subprocess.Popen(
        [*CLI, "watch", DEMO_WORKFLOW_ID, str(eid), "--interval", "0.1"],
        env=cli_env(sim), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "run is running" in process.stdout.readline()
        code, stderr = interrupt(process)
        assert code == 130, stderr
        assert "interrupted" in stderr
        assert f"To cancel it: modelslab-widget cancel {DEMO_WORKFLOW_ID} {eid}" in stderr
        assert sim.run_state(eid)["execution"]["status"] == "running"  # only watching stopped
        assert "Traceback" not in stderr
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_persistent_errors_end_watching_with_2(client, sim):
    eid = sim.add_run(steps=FAST_STEPS, status_faults=[Fault("http", status=500, times=None)])
    out, err = io.StringIO(), io.StringIO()
    policy = PollPolicy(interval=0.05, max_failures=3, backoff_base=0.01)
    code = watch_and_report(client, DEMO_WORKFLOW_ID, eid, policy=policy, stdout=out, stderr=err)
    assert code == 2
    assert "3 failed requests in a row" in err.getvalue()
    assert "HTTP 500" in err.getvalue()
    assert err.getvalue().count("trouble reaching ModelsLab") == 2  # the retries, as they came
    assert sim.request_count("status", eid) == 3


# ---------------------------------------------------------------- --json and --save

def test_json_prints_only_the_final_run_on_stdout(sim):
    eid = sim.add_run(steps=FAST_STEPS, images=2)
    result = watch(sim, eid, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # nothing else on stdout
    state = sim.run_state(eid)
    assert document["status"] == "completed"
    assert document["execution_id"] == eid
    assert document["workflow_id"] == DEMO_WORKFLOW_ID
    assert document["outputs"] == state["output"]["output"]
    assert [(s["name"], s["status"]) for s in document["steps"]] == [
        (s["name"], s["status"]) for s in state["steps"]
    ]
    for ours, served in zip(document["steps"], state["steps"], strict=True):
        assert parse_timestamp(ours["started_at"]) == parse_timestamp(served["started_at"])
    assert all(s["duration"] == pytest.approx(0.2, abs=0.01) for s in document["steps"])
    assert document["execution_time"] == pytest.approx(0.4)
    assert document["error"] is None
    assert parse_timestamp(document["started_at"]) == parse_timestamp(
        state["execution"]["started_at"])
    assert "run completed" in result.stderr  # the live view went to stderr


def test_json_of_a_failed_run_carries_the_error(sim):
    eid = sim.add_run(steps=FAST_STEPS, outcome="failed", error="Invalid prompt")
    result = watch(sim, eid, "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert (document["status"], document["error"], document["outputs"]) == (
        "failed", "Invalid prompt", [])
    assert document["steps"][-1]["status"] == "failed"


def test_save_writes_the_served_bytes_and_never_overwrites(sim, tmp_path):
    eid = sim.add_run(steps=FAST_STEPS, images=2)
    target = tmp_path / "out"
    first = watch(sim, eid, "--save", str(target), "--json")
    assert first.returncode == 0, first.stderr
    document = json.loads(first.stdout)
    urls = document["outputs"]
    served = [requests.get(url, timeout=10).content for url in urls]
    saved = [Path(p) for p in document["saved"]]
    assert [p.name for p in saved] == ["0.png", "1.png"]
    assert [p.read_bytes() for p in saved] == served
    assert all(f"saved {p}" in first.stderr for p in saved)

    second = watch(sim, eid, "--save", str(target))
    assert second.returncode == 0, second.stderr
    assert f"saved {target / '0-1.png'}" in second.stdout
    assert sorted(p.name for p in target.iterdir()) == ["0-1.png", "0.png", "1-1.png", "1.png"]
    assert (target / "0.png").read_bytes() == served[0]
    assert (target / "1-1.png").read_bytes() == served[1]


def test_save_reports_a_broken_image_and_keeps_the_others(sim, tmp_path):
    eid = sim.add_run(steps=FAST_STEPS, images=2,
                      image_faults={0: Fault("http", status=500, times=None)})
    result = watch(sim, eid, "--save", str(tmp_path))
    assert result.returncode == 2
    assert "could not save output 1" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["1.png"]


def test_demo_exits_0():
    result = subprocess.run([*CLI, "demo", "--interval", "0.2", "--json"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "completed"
    assert len(document["outputs"]) == 2
    assert [s["name"] for s in document["steps"]] == ["Text to Image", "Image Upscaler"]


# ---------------------------------------------------------------- terminal and imports

def test_tty_smoke_redraws_in_place(sim):
    eid = sim.add_run(steps=FAST_STEPS, images=1, queue_time=1.5)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*CLI, "watch", DEMO_WORKFLOW_ID, str(eid), "--interval", "0.1"],
        env={**cli_env(sim), "TERM": "xterm"}, stdin=subprocess.DEVNULL, stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(10) == 0
    finally:
        os.close(leader)
        process.kill()
        process.wait()
        process.stderr.close()
    screen = b"".join(chunks).decode()
    assert "\x1b[3A" in screen and "\x1b[2K" in screen  # cursor up over the 3-line frame
    assert f"Run {eid} · pending · 0/2 steps" in screen
    assert re.search(rf"Run {eid} · completed · 2/2 steps · 0\.4 s · 1 output", screen)
    assert screen.endswith(sim.run_state(eid)["output"]["output"][0] + "\r\n")


IMPORTS_ONLY_CLI = """
import sys, types
stub = types.ModuleType("modelslab_widget.widget")
stub.WorkflowRunWidget = stub.watch = None
sys.modules["modelslab_widget.widget"] = stub  # what the package __init__ would pull in
import modelslab_widget.cli, modelslab_widget.terminal
print(sorted(m for m in sys.modules if m.split(".")[0] in ("ipywidgets", "IPython", "PIL")))
"""


def test_cli_and_terminal_do_not_import_jupyter_or_pillow():
    result = subprocess.run([sys.executable, "-c", IMPORTS_ONLY_CLI], capture_output=True,
                            text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"


def test_the_command_starts_without_ipywidgets():
    code = ("import sys; import modelslab_widget.cli; "
            "print('ipywidgets' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, check=True)
    assert result.stdout.strip() == "False"



# ---------------------------------------------------------------- the command line as met

def test_version_prints_the_version():
    from modelslab_widget import __version__

    result = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelslab-widget {__version__}"


def test_json_with_a_wrong_key_prints_a_json_error_on_stdout(sim):
    result = watch(sim, sim.add_run(steps=FAST_STEPS), "--json", key="wrong-key-123")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["status"] == "error" and document["exit_code"] == 2
    assert document["error"]["type"] == "AuthenticationError"
    assert "rejected" in document["error"]["message"]
    assert "wrong-key-123" not in result.stdout + result.stderr


def test_json_never_prints_controls_or_bidi_overrides_raw(sim):
    eid = sim.add_run(steps=FAST_STEPS, images=1)
    hostile = "Step \x1b]52;c;aGk=\x07 \u009b31m \u202eevil"
    body = {"status": "success", "output": {"output": [], "status": "success"},
            "execution": {"id": eid, "workflow_id": DEMO_WORKFLOW_ID, "status": "completed"},
            "steps": [{"name": hostile, "status": "completed"}]}
    sim.status_faults(eid, [Fault("json", body=body, times=None)])
    result = watch(sim, eid, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"][0]["name"] == hostile  # escaped, not lost
    for text in (result.stdout, result.stderr):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F
                       or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                       for c in text)


def test_server_down_says_one_clear_line_per_attempt_with_the_real_delay():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSLAB_")}
    env.update(MODELSLAB_API_KEY="k" * 12, MODELSLAB_BASE_URL=f"http://127.0.0.1:{port}/api/v1")
    started = time.monotonic()
    result = subprocess.run([*CLI, "watch", "wf", "1", "--interval", "0.2"], env=env,
                            capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 2
    attempts = [line for line in result.stderr.splitlines() if "trouble reaching" in line]
    assert len(attempts) == 4  # then the fifth failure ends watching
    delays = [float(re.search(r"retrying in ([\d.]+) s", line).group(1)) for line in attempts]
    assert all("could not connect (connection refused)" in line for line in attempts)
    assert "HTTPConnectionPool" not in result.stderr and "Max retries" not in result.stderr
    # Each call fails at once (no hidden retries inside it), so the stated delays are the
    # whole wait: the command takes their sum plus start-up, not seconds more.
    assert took < sum(delays) + 5, (took, delays)


def test_demo_help_lists_no_environment_and_demo_says_its_urls_end_with_it():
    helped = subprocess.run([*CLI, "demo", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert "MODELSLAB_API_KEY" not in helped.stdout and "environment" in helped.stdout
    result = subprocess.run([*CLI, "demo", "--interval", "0.1"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "stop working when this command exits; pass --save DIR" in result.stdout


def cli(sim: Simulator, *args: str, key: str | None = None):
    return subprocess.run([*CLI, *args], env=cli_env(sim, key), capture_output=True,
                          text=True, timeout=30)


def test_cancel_exit_codes(sim):
    running = sim.add_run(steps=[("Slow step", 60.0)])
    result = cli(sim, "cancel", DEMO_WORKFLOW_ID, str(running))
    assert result.returncode == 0, result.stderr
    assert "cancelled" in result.stdout.lower()
    wait_for(lambda: sim.run_state(running)["execution"]["status"] == "cancelled")

    again = cli(sim, "cancel", DEMO_WORKFLOW_ID, str(running), "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["already_ended"] is True

    assert cli(sim, "cancel", DEMO_WORKFLOW_ID, "99999").returncode == 2  # unknown run
    other = sim.add_run(steps=[("Slow step", 60.0)])
    bad_key = cli(sim, "cancel", DEMO_WORKFLOW_ID, str(other), key="wrong-key-123")
    assert bad_key.returncode == 2 and "rejected" in bad_key.stderr
    assert sim.run_state(other)["execution"]["status"] == "running"
    assert "Traceback" not in result.stderr + again.stderr + bad_key.stderr


def test_workflows_lists_a_table_and_json(sim):
    sim.add_workflow("wf-\u202elisted", name="Listed \x1b[31mone", rate_limit=7)
    table = cli(sim, "workflows")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "RATE", "LIMIT", "CALLS", "LAST", "CALLED"]
    row = next(line for line in lines if "listed" in line)
    assert "Listed ?[31mone" in row and "7/min" in row and "\x1b" not in table.stdout
    assert "wf-?listed" in row
    listed = json.loads(cli(sim, "workflows", "--json").stdout)
    mine = next(item for item in listed if item["name"].startswith("Listed"))
    assert mine["id"] == "wf-\u202elisted" and mine["rate_limit"] == 7


# ---------------------------------------------------------------- the words of errors (in-process)

def main_cli(monkeypatch, capsys, sim: Simulator | None, *args: str, key: str | None = None,
             base_url: str | None = None) -> tuple[int, str, str]:
    """``main([...])`` in this process with the simulator's key and base URL in the
    environment; the exit code, stdout and stderr."""
    from modelslab_widget.cli import main

    for name in ("MODELSLAB_API_KEY", "MODELSLAB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    if sim is not None or key is not None:
        monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key if key is None else key)
    if sim is not None or base_url is not None:
        monkeypatch.setenv("MODELSLAB_BASE_URL", sim.base_url if base_url is None else base_url)
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("modelslab-widget: ")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("command", "key", "title", "status"), [
    ("watch", "wrong-key-123", "the api key was rejected", "HTTP 401"),
    ("watch", None, "run not found", "HTTP 404"),
    ("cancel", "wrong-key-123", "the api key was rejected", "HTTP 401"),
    ("cancel", None, "run not found", "HTTP 404"),
    ("workflows", "wrong-key-123", "the api key was rejected", "HTTP 401"),
])
def test_no_error_line_repeats_its_own_phrase(monkeypatch, capsys, sim, command, key, title,
                                              status):
    ids = [] if command == "workflows" else [DEMO_WORKFLOW_ID, "99999"]
    extra = ["--interval", "0.1"] if command == "watch" else []
    code, _out, err = main_cli(monkeypatch, capsys, sim, command, *ids, *extra, key=key)
    assert code == 2
    [line] = error_lines(err)
    assert line.lower().count(title) == 1, line
    assert line.count(status) == 1, line  # the HTTP detail kept, once
    words = re.findall(r"[\w']+", line.lower().removeprefix("modelslab-widget: "))
    for size in range(2, 5):  # no run of two to four words said twice in a row
        for start in range(len(words) - 2 * size + 1):
            assert words[start:start + size] != words[start + size:start + 2 * size], line


def test_the_401_and_404_lines_read_once(monkeypatch, capsys, sim):
    _, _, err = main_cli(monkeypatch, capsys, sim, "watch", DEMO_WORKFLOW_ID, "1",
                         key="wrong-key-123")
    assert error_lines(err) == [
        "modelslab-widget: the API key was rejected (HTTP 401: Invalid API key). "
        "Set MODELSLAB_API_KEY (or pass --api-key) and run the command again."]
    _, _, err = main_cli(monkeypatch, capsys, sim, "cancel", DEMO_WORKFLOW_ID, "99999")
    assert error_lines(err) == [
        "modelslab-widget: run not found (HTTP 404: Execution not found). "
        "Check WORKFLOW_ID and EXECUTION_ID."]


def test_cancel_with_the_server_down_says_the_cancel_could_not_reach_modelslab(
        monkeypatch, capsys):
    code, _out, err = main_cli(monkeypatch, capsys, None, "cancel", "wf", "1", key="k" * 12,
                              base_url=f"http://127.0.0.1:{free_port()}/api/v1")
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("modelslab-widget: the cancel request could not reach ModelsLab: ")
    assert "connection refused" in line
    assert "status" not in line  # what failed is the cancel, not a status request


@pytest.mark.parametrize("command", ["watch", "cancel"])
def test_a_base_url_without_api_v1_is_named_as_the_likely_cause(monkeypatch, capsys, sim,
                                                                command):
    root = sim.base_url.removesuffix("/api/v1")
    assert root != sim.base_url
    eid = sim.add_run(steps=[("Slow step", 60.0)])
    code, out, err = main_cli(monkeypatch, capsys, sim, command, DEMO_WORKFLOW_ID, str(eid),
                              base_url=f"{root}/?token=s3cret-value")
    assert code == 2
    [line] = error_lines(err)
    assert "the base URL is likely missing /api/v1" in line
    assert f"to {root}/api/v1, not {root}/." in line
    assert "s3cret-value" not in out + err  # the URL is named without its query
    assert "WORKFLOW_ID" not in line and "run not found" not in line
    assert line.count("HTTP 404") == 1
    assert sim.run_state(eid)["execution"]["status"] == "running"


def test_a_404_under_api_v1_still_says_run_not_found(monkeypatch, capsys, sim):
    code, _, err = main_cli(monkeypatch, capsys, sim, "watch", DEMO_WORKFLOW_ID, "99999")
    assert code == 2
    assert "/api/v1" not in error_lines(err)[0]


def test_simulate_help_names_the_command():
    result = subprocess.run([*CLI, "simulate", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: modelslab-widget simulate ")
    assert "modelslab_widget.simulator" not in result.stdout


# ---------------------------------------------------------------- run: launch one run

def fast_workflow(sim: Simulator) -> str:
    """A workflow like the demo's (it requires "prompt") whose runs take 0.4 s."""
    return sim.add_workflow("wf-fast", steps=FAST_STEPS, images=1)


def test_run_prints_the_execution_id_and_launches_once(monkeypatch, capsys, sim):
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
                              "--param", "prompt=a cat")
    assert code == 0, err
    execution_id = int(out.strip())  # stdout holds the ID alone
    assert sim.run_ids(DEMO_WORKFLOW_ID)[-1] == execution_id
    assert sim.launch_params(execution_id) == {"prompt": "a cat"}
    assert sim.request_count("run") == 1 and sim.request_count("status") == 0


def test_run_json_prints_the_execution_and_workflow_ids(monkeypatch, capsys, sim):
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
                              "--param", "prompt=a cat", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document == {"execution_id": sim.run_ids(DEMO_WORKFLOW_ID)[-1],
                        "workflow_id": DEMO_WORKFLOW_ID}


def test_run_param_values_are_json_when_they_parse_else_text(monkeypatch, capsys, sim):
    code, out, err = main_cli(
        monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
        "--param", "prompt=a lighthouse, at dusk", "--param", "width=256",
        "--param", "guidance=7.5", "--param", "tiled=true", "--param", "mask=null",
        "--param", 'seed="42"', "--param", 'extra={"loras": [1, 2]}', "--param", "odd=NaN",
        "--param", "note=a=b", "--param", "empty=",
    )
    assert code == 0, err
    assert sim.launch_params(int(out)) == {
        "prompt": "a lighthouse, at dusk", "width": 256, "guidance": 7.5, "tiled": True,
        "mask": None, "seed": "42", "extra": {"loras": [1, 2]}, "odd": "NaN", "note": "a=b",
        "empty": "",
    }


def test_run_params_file_with_a_param_replacing_one_key(monkeypatch, capsys, sim, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"prompt": "from the file", "width": 320}))
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
                              "--params-file", str(params), "--param", "width=384")
    assert code == 0, err
    assert sim.launch_params(int(out)) == {"prompt": "from the file", "width": 384}


@pytest.mark.parametrize(("args", "words"), [
    (["--param", "prompt=a", "--param", "prompt=b"], "--param prompt= is given more than once"),
    (["--params-file", "/nonexistent/params.json"], "cannot read /nonexistent/params.json"),
    (["--param", "prompt=a", "--save", "out"], "add --watch"),
])
def test_run_refuses_bad_arguments_before_sending(monkeypatch, capsys, sim, args, words):
    code, _out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID, *args)
    assert code == 2
    assert words in err
    assert sim.request_count() == 0


def test_run_a_param_without_equals_is_a_usage_error(monkeypatch, capsys, sim):
    with pytest.raises(SystemExit) as exited:
        main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID, "--param", "prompt")
    assert exited.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_run_refused_parameters_print_the_field_messages_and_exit_2(monkeypatch, capsys, sim):
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
                              "--param", "width=256")  # the demo workflow requires "prompt"
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("modelslab-widget: the run was not started: ")
    assert "prompt: The prompt field is required" in line and "HTTP 422" in line
    assert line.lower().count("the run was not started") == 1
    assert sim.run_ids(DEMO_WORKFLOW_ID) == []
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID, "--json")
    assert code == 2
    document = json.loads(out)
    assert document["error"]["type"] == "ValidationError"
    assert document["error"]["fields"] == {"prompt": ["The prompt field is required."]}


def test_run_rate_limited_says_not_started_and_when_and_sends_once(monkeypatch, capsys, sim):
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("rate_limit", retry_after=7)])
    code, _out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
                              "--param", "prompt=a cat", "--watch")
    assert code == 2
    [line] = error_lines(err)
    assert "the run was not started: rate limited (HTTP 429" in line
    assert line.endswith("Try again in 7.0 s.")
    assert line.lower().count("rate limit") == 2  # the title, and the server's own words once
    assert sim.request_count("run") == 1 and sim.run_ids(DEMO_WORKFLOW_ID) == []


def test_run_with_a_full_queue_says_not_started(monkeypatch, capsys, qsim):
    for _ in range(3):
        assert main_cli(monkeypatch, capsys, qsim, "run", DEMO_WORKFLOW_ID,
                        "--param", "prompt=x")[0] == 0
    code, _out, err = main_cli(monkeypatch, capsys, qsim, "run", DEMO_WORKFLOW_ID,
                              "--param", "prompt=x")
    assert code == 2
    assert "the run was not started: the account's queue is full" in err
    assert "when one of the account's runs has ended" in err
    assert qsim.request_count("run") == 4


def test_run_never_resends_a_launch_whose_answer_was_lost(monkeypatch, capsys, sim):
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("drop")])  # the run is made, the answer lost
    code, _out, err = main_cli(monkeypatch, capsys, sim, "run", DEMO_WORKFLOW_ID,
                              "--param", "prompt=a cat")
    assert code == 2
    assert "Nothing was re-sent" in err and "the run may have started" in err
    assert sim.request_count("run") == 1 and len(sim.run_ids(DEMO_WORKFLOW_ID)) == 1


def test_run_watch_watches_to_the_end_like_watch(monkeypatch, capsys, sim):
    workflow = fast_workflow(sim)
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", workflow, "--param",
                              "prompt=a cat", "--watch", "--interval", "0.1")
    assert code == 0, err
    [execution_id] = sim.run_ids(workflow)
    assert out.startswith(f"launched run {execution_id} of {workflow}\n")
    assert re.search(r"run completed in \d+\.\d s, 1 output", out)
    assert out.splitlines()[-1].strip() == sim.run_state(execution_id)["output"]["output"][0]
    assert sim.request_count("run") == 1


def test_run_watch_json_prints_the_final_run(monkeypatch, capsys, sim):
    workflow = fast_workflow(sim)
    code, out, err = main_cli(monkeypatch, capsys, sim, "run", workflow, "--param",
                              "prompt=a cat", "--watch", "--json", "--interval", "0.1")
    assert code == 0, err
    document = json.loads(out)  # the live view went to stderr
    [execution_id] = sim.run_ids(workflow)
    assert (document["status"], document["execution_id"], document["workflow_id"]) == (
        "completed", execution_id, workflow)
    assert "run completed" in err


def test_run_watch_timeout_exits_2_and_the_run_goes_on(monkeypatch, capsys, sim):
    workflow = sim.add_workflow("wf-slow", steps=[("Slow step", 60.0)], images=1)
    code, _out, err = main_cli(monkeypatch, capsys, sim, "run", workflow, "--param",
                              "prompt=a cat", "--watch", "--interval", "0.1", "--timeout", "0.5")
    assert code == 2
    assert "--timeout" in err
    [execution_id] = sim.run_ids(workflow)
    assert sim.run_state(execution_id)["execution"]["status"] == "running"
    assert sim.request_count("run") == 1
