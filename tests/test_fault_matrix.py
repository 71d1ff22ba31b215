"""One row per fault, for status polls and for image fetches, watched through the real widget
over loopback HTTP. Every row checks the final status, the error text (or that there is none),
how many requests reached the server, and that close() leaves no thread and no widget behind.

Runs are scripted with zero-length steps wherever the count must be exact: the first good answer
is then the final one, so the requests made are the faulted ones plus one.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from ipywidgets.widgets.widget import _instances as live_widgets

from modelslab_widget import WorkflowRunWidget, WorkflowsClient, render
from modelslab_widget.errors import (
    APIError,
    AuthenticationError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    ResponseFormatError,
    ServerError,
)
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator

from .conftest import card_markup, wait_for

INSTANT = (("Text to Image", 0.0), ("Image Upscaler", 0.0))  # completed on the first answer
T0 = "2024-01-15T10:30:00Z"
T1 = "2024-01-15T10:30:05Z"
T2 = "2024-01-15T10:30:09Z"

FaultSource = tuple[Fault, ...] | Callable[[Simulator, int], list[Fault]]


# ------------------------------------------------------------------------ API-shaped bodies


def api_body(
    eid: int,
    status: str,
    steps: list[tuple[str, str]],
    *,
    outputs: list[str] | None = None,
    started_at: str | None = T0,
    completed_at: str | None = None,
) -> dict[str, Any]:
    """A status answer like the documented examples; step timestamps follow the step status."""
    rows = []
    for name, step_status in steps:
        begun = step_status in ("running", "completed", "failed")
        done = step_status in ("completed", "failed")
        rows.append({"name": name, "status": step_status,
                     "started_at": T0 if begun else None, "completed_at": T1 if done else None})
    body: dict[str, Any] = {
        "status": "success",
        "execution": {"id": eid, "workflow_id": DEMO_WORKFLOW_ID, "status": status,
                      "started_at": started_at, "completed_at": completed_at,
                      "execution_time": None},
        "steps": rows,
    }
    if outputs is not None:
        body["output"] = {"output": outputs, "proxy_links": [], "status": "success"}
    return body


def json_faults(*make_bodies: Callable[[Simulator, int], Any]) -> FaultSource:
    """Status faults whose bodies need the run's id (and the simulator's real output URLs)."""
    return lambda sim, eid: [Fault("json", body=make(sim, eid)) for make in make_bodies]


def unknown_status_body(sim: Simulator, eid: int) -> dict[str, Any]:
    return api_body(eid, "upscaling", [("Text to Image", "completed"),
                                       ("Image Upscaler", "upscaling")])


def null_timestamps_body(sim: Simulator, eid: int) -> dict[str, Any]:
    body = sim.run_state(eid)  # the completed answer, with its real output URLs
    execution = body["execution"]
    execution["started_at"] = None
    del execution["completed_at"]
    del execution["execution_time"]
    for index, step in enumerate(body["steps"]):
        step["started_at"] = None
        if index:
            del step["completed_at"]
        else:
            step["completed_at"] = None
    return body


def step2_running_body(sim: Simulator, eid: int) -> dict[str, Any]:
    return api_body(eid, "running", [("Text to Image", "completed"),
                                     ("Image Upscaler", "running")])


def step1_running_body(sim: Simulator, eid: int) -> dict[str, Any]:
    return api_body(eid, "running", [("Text to Image", "running"), ("Image Upscaler", "pending")])


def thousand_steps_body(sim: Simulator, eid: int) -> dict[str, Any]:
    outputs = sim.run_state(eid)["output"]["output"]
    steps = [(f"Step {i:04d}", "completed") for i in range(1000)]
    return api_body(eid, "completed", steps, outputs=outputs, completed_at=T2)


# ------------------------------------------------------------------------ the status table


@dataclass(frozen=True)
class Row:
    """One fault on status polls and what the widget must end up showing."""

    id: str
    faults: FaultSource
    status: str = "completed"
    error: str = ""  # a regex the widget's error must match; "" means no error at all
    raises: type[ModelsLabError] | None = None
    requests: tuple[int, int] = (2, 2)  # status requests the server saw: [low, high]
    polls: tuple[int, int] | None = None
    steps: tuple[tuple[str, float], ...] = INSTANT
    timeout: tuple[float, float] | None = None  # a client of its own with this timeout
    max_failures: int = 5
    statuses: tuple[str, ...] | None = None  # every status the widget went through, in order
    min_seconds: float = 0.0  # watching must take at least this long (a 429's wait)
    max_seconds: float = 20.0
    check: Callable[[WorkflowRunWidget], None] | None = field(default=None, compare=False)


def _fault(kind: str, **kwargs: Any) -> tuple[Fault, ...]:
    return (Fault(kind, **kwargs),)


def check_null_timestamps(w: WorkflowRunWidget) -> None:
    assert [s["duration"] for s in w.steps] == [None, None]
    assert [s["started_at"] for s in w.steps] == [None, None]
    assert "Took –" in card_markup(w)  # no figure rather than a made-up one


def check_backwards(w: WorkflowRunWidget) -> None:
    assert [s["status"] for s in w.steps] == ["completed", "completed"]
    assert "2/2 steps" in card_markup(w)


def check_thousand_steps(w: WorkflowRunWidget) -> None:
    assert len(w.steps) == 1000 and all(s["status"] == "completed" for s in w.steps)
    view = card_markup(w)
    assert "1000/1000 steps" in view and f"… {1000 - render.MAX_ROWS} earlier steps" in view
    assert len(w.step_rows_html) <= render.MAX_ROWS + 2
    assert len(view) < 8_000, "a long step list must be windowed, not rendered whole"


def check_unknown_status(w: WorkflowRunWidget) -> None:
    assert w.steps[-1]["status"] == "completed"


PERSISTENT = {"times": None}

STATUS_ROWS = [
    # -- network (connection refused is its own test below)
    Row("reset", _fault("reset"), polls=(1, 1)),
    Row("drop", _fault("drop"), polls=(1, 1)),
    Row("read-timeout", _fault("slow", delay=1.0), timeout=(1.0, 0.4), polls=(1, 1)),
    Row("read-timeout-persistent", _fault("slow", delay=0.5, **PERSISTENT), timeout=(1.0, 0.2),
        max_failures=2, status="unknown", error=r"(?i)time", raises=NetworkError,
        requests=(8, 8), polls=(2, 2)),
    Row("trickle-in-time", _fault("trickle", delay=0.01, size=64), requests=(1, 1)),
    # A body dribbled out slower than the read deadline (2x the read timeout): given up in
    # time, then the next poll gets a normal answer.
    Row("trickle-too-slow", _fault("trickle", delay=0.2, size=16), timeout=(1.0, 1.0),
        requests=(2, 2), polls=(2, 2), max_seconds=3.5),
    # -- HTTP errors that end; 502/503/504 are retried inside one poll by urllib3
    Row("500x2", _fault("http", status=500, times=2), requests=(3, 3), polls=(3, 3)),
    Row("502x2", _fault("http", status=502, times=2), requests=(3, 3), polls=(1, 1)),
    Row("503x2", _fault("http", status=503, times=2), requests=(3, 3), polls=(1, 1)),
    Row("504x2", _fault("http", status=504, times=2), requests=(3, 3), polls=(1, 1)),
    # -- ... and ones that do not: 5 failed polls end watching
    Row("500-forever", _fault("http", status=500, **PERSISTENT), status="unknown",
        error="HTTP 500", raises=ServerError, requests=(5, 5), polls=(5, 5)),
    *[
        Row(f"{code}-forever", _fault("http", status=code, **PERSISTENT), status="unknown",
            error=f"HTTP {code}", raises=ServerError, requests=(20, 20), polls=(5, 5))
        for code in (502, 503, 504)
    ],
    # -- rate limits: the wait is honoured wherever the server says it
    *[
        Row(f"429-retry-after-in-{where}",
            _fault("rate_limit", retry_after=1, retry_after_in=where), polls=(2, 2),
            min_seconds=0.95)
        for where in ("body", "header", "both")
    ],
    Row("429-retry-after-nowhere", _fault("rate_limit", retry_after_in="none"), polls=(2, 2)),
    # (429s that go on are no failure: they never end watching; tests/test_budget.py plays
    # 20 of them in a row in a compressed minute.)
    # -- permanent errors end watching at once
    Row("401", _fault("http", status=401), status="unknown", error="HTTP 401",
        raises=AuthenticationError, requests=(1, 1), polls=(1, 1)),
    Row("403", _fault("http", status=403), status="unknown", error="HTTP 403",
        raises=AuthenticationError, requests=(1, 1), polls=(1, 1)),
    Row("404", _fault("http", status=404), status="unknown", error="HTTP 404",
        raises=NotFoundError, requests=(1, 1), polls=(1, 1)),
    Row("redirect-once", _fault("redirect_loop"), polls=(1, 1)),
    Row("redirect-loop", _fault("redirect_loop", **PERSISTENT), status="unknown",
        error="redirect", raises=ServerError, requests=(25, 35), polls=(5, 5)),
    # -- bodies
    Row("html-on-200", _fault("html"), polls=(2, 2)),
    Row("html-forever", _fault("html", **PERSISTENT), status="unknown",
        error="expected a JSON answer, got text/html", raises=ResponseFormatError,
        requests=(5, 5), polls=(5, 5)),
    Row("truncated-json", _fault("truncated_json"), polls=(2, 2)),
    Row("truncated-json-forever", _fault("truncated_json", **PERSISTENT), status="unknown",
        error="expected a JSON answer", raises=ResponseFormatError, requests=(5, 5)),
    Row("json-list", _fault("json", body=[1, 2]), polls=(2, 2)),
    Row("json-string", _fault("json", body="completed"), polls=(2, 2)),
    Row("json-null", _fault("json", body=None), polls=(2, 2)),
    Row("json-no-execution", _fault("json", body={"status": "success"}), polls=(2, 2)),
    Row("json-list-forever", _fault("json", body=[], **PERSISTENT), status="unknown",
        error="expected a JSON object, got list", raises=ResponseFormatError, requests=(5, 5)),
    Row("json-no-execution-forever", _fault("json", body={"status": "success"}, **PERSISTENT),
        status="unknown", error="no 'execution'", raises=ResponseFormatError, requests=(5, 5)),
    Row("api-error-on-200", _fault("api_error"), polls=(2, 2)),
    Row("api-error-forever", _fault("api_error", body="Server busy <b>now</b>", **PERSISTENT),
        status="unknown", error="Server busy <b>now</b>", raises=APIError, requests=(5, 5)),
    Row("unknown-status", json_faults(unknown_status_body), polls=(2, 2),
        statuses=("upscaling", "completed"), check=check_unknown_status),
    Row("null-and-missing-timestamps", json_faults(null_timestamps_body), requests=(1, 1),
        check=check_null_timestamps),
    Row("status-goes-backwards", json_faults(step2_running_body, step1_running_body),
        requests=(3, 3), statuses=("running", "completed"), check=check_backwards),
    Row("1000-steps-body", json_faults(thousand_steps_body), requests=(1, 1),
        check=check_thousand_steps),
    Row("1000-steps-run", (), steps=tuple((f"s{i}", 0.001) for i in range(1000)),
        requests=(1, 60), check=check_thousand_steps),
    Row("20MB-body", _fault("huge", size=20_000_000), polls=(2, 2)),
    Row("20MB-body-forever", _fault("huge", size=20_000_000, **PERSISTENT), status="unknown",
        error="10,485,760 .*allowed", raises=ResponseFormatError, requests=(5, 5)),
]


@pytest.fixture
def counted_widgets():
    """Fail the test if close() left any ipywidgets instance alive."""
    before = len(live_widgets)
    yield
    assert len(live_widgets) == before, "widgets left open after close()"


def watch_row(sim: Simulator, client: WorkflowsClient, row: Row) -> None:
    eid = sim.add_run(steps=row.steps, images=1, image_size=(64, 64))
    faults = row.faults(sim, eid) if callable(row.faults) else list(row.faults)
    sim.status_faults(eid, faults)
    own = None
    if row.timeout is not None:
        own = WorkflowsClient(sim.api_key, base_url=sim.base_url, timeout=row.timeout,
                              backoff_factor=0.01)
    widget = WorkflowRunWidget(
        DEMO_WORKFLOW_ID, eid, client=own or client, poll_interval=0.05, backoff_base=0.05,
        max_failures=row.max_failures, autostart=False,
    )
    statuses: list[str] = []
    widget.observe(lambda change: statuses.append(change["new"]), "status")
    try:
        started = time.monotonic()
        widget.start()
        if row.raises is None:
            snapshot = widget.wait(30)
            assert snapshot.status == row.status
        else:
            with pytest.raises(row.raises) as info:
                widget.wait(30)
            assert re.search(row.error, str(info.value)), str(info.value)
        elapsed = time.monotonic() - started
        assert not widget.watching
        assert widget.status == row.status
        if row.error:
            assert re.search(row.error, widget.error), widget.error
            assert widget.message_html, "an ended watch must say why"
        else:
            assert widget.error == "", widget.error
            assert widget.message_html == "", widget.message_html
            assert len(widget.thumbnails) == 1 and not widget.thumbnail_errors
        low, high = row.requests
        assert low <= sim.request_count("status", execution_id=eid) <= high
        if row.polls is not None:
            assert row.polls[0] <= widget.polls <= row.polls[1], widget.polls
        if row.statuses is not None:
            assert tuple(statuses) == row.statuses
        assert row.min_seconds <= elapsed <= row.max_seconds, f"took {elapsed:.2f} s"
        if row.check is not None:
            row.check(widget)
    finally:
        widget.close()
        if own is not None:
            own.close()


@pytest.mark.parametrize("row", STATUS_ROWS, ids=lambda row: row.id)
def test_status_fault(no_leftover_threads, counted_widgets, sim, client, row):
    watch_row(sim, client, row)


def test_status_going_backwards_keeps_the_latest_answer(no_leftover_threads, counted_widgets,
                                                         sim, client):
    """Each answer replaces the last, even one that looks older: the card shows what the
    server said most recently and never crashes on it."""
    eid = sim.add_run(steps=INSTANT, image_size=(64, 64))
    sim.status_faults(eid, json_faults(step2_running_body, step1_running_body)(sim, eid))
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05,
                               autostart=False)
    seen: list[list[str]] = []
    widget.observe(lambda change: seen.append([s["status"] for s in change["new"]]), "steps")
    try:
        widget.start()
        assert widget.wait(10).status == "completed"
        assert seen == [["completed", "running"], ["running", "pending"],
                        ["completed", "completed"]]
        assert widget.polls == 3 and widget.error == ""
    finally:
        widget.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_then_server_back(no_leftover_threads, counted_widgets):
    """The server is down when watching starts; once it is back the run completes."""
    port = _free_port()
    first = Simulator(port=port).start()
    key, base_url = first.api_key, first.base_url
    first.stop()
    client = WorkflowsClient(key, base_url=base_url, timeout=(1.0, 1.0), backoff_factor=0.01)
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, 777, client=client, poll_interval=0.05,
                               backoff_base=0.05, max_failures=50)
    second = None
    try:
        wait_for(lambda: widget.polls >= 2, timeout=10)
        assert widget.status == "unknown" and widget.watching
        assert "Could not get the run&#x27;s status" in widget.message_html
        second = Simulator(api_key=key, port=port).start()
        second.add_run(steps=INSTANT, execution_id=777, image_size=(64, 64))
        snapshot = widget.wait(20)
        assert snapshot.status == widget.status == "completed"
        assert widget.error == "" and widget.message_html == ""
        assert second.request_count("status", execution_id=777) == 1
        assert widget.polls >= 3 and len(widget.thumbnails) == 1
    finally:
        widget.close()
        client.close()
        if second is not None:
            second.stop()


def test_connection_refused_for_good_ends_with_a_network_error(no_leftover_threads,
                                                                counted_widgets):
    port = _free_port()
    client = WorkflowsClient("k", base_url=f"http://127.0.0.1:{port}/api/v1",
                             timeout=(1.0, 1.0), backoff_factor=0.01)
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, 1, client=client, poll_interval=0.05,
                               backoff_base=0.05, max_failures=3)
    try:
        with pytest.raises(NetworkError):
            widget.wait(20)
        assert widget.polls == 3 and widget.status == "unknown"
        assert re.search(r"(?i)refused|connect", widget.error), widget.error
        assert "Could not get the run&#x27;s status" in widget.message_html
    finally:
        widget.close()
        client.close()


# ------------------------------------------------------------------------ the image table


@dataclass(frozen=True)
class ImageRow:
    id: str
    fault: Fault
    reason: str = ""  # regex for the thumbnail's error; "" means the thumbnail is shown
    requests: int = 1  # a bad output is tried again at its proxy link
    fmt: str = "jpeg"
    portrait: bool = False


IMAGE_ROWS = [
    ImageRow("not-an-image", Fault("not_image"), "not an image", 2),
    ImageRow("truncated", Fault("truncated"), "decode", 2),
    ImageRow("decompression-bomb", Fault("bomb"), "bomb|too large", 2),
    ImageRow("over-byte-cap", Fault("huge", size=60_000_000), "allowed", 2),
    ImageRow("404", Fault("http", status=404), "HTTP 404", 2),
    ImageRow("403", Fault("http", status=403), "HTTP 403", 2),
    ImageRow("animated-gif", Fault("gif_animated")),
    ImageRow("cmyk-jpeg", Fault("cmyk_jpeg")),
    ImageRow("16-bit-png", Fault("png16")),
    ImageRow("rgba-png", Fault("rgba_png"), fmt="png"),
    ImageRow("webp", Fault("webp")),
    ImageRow("exif-rotated", Fault("exif_rotated"), portrait=True),
]


@pytest.mark.parametrize("row", IMAGE_ROWS, ids=lambda row: row.id)
def test_image_fault(no_leftover_threads, counted_widgets, sim, client, row):
    eid = sim.add_run(steps=INSTANT, images=2, image_faults={0: row.fault},
                      image_size=(320, 200))
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05,
                               thumbnail_size=128)
    try:
        snapshot = widget.wait(30)
        # an image problem never turns a completed run into an error
        assert snapshot.status == widget.status == "completed" and widget.error == ""
        assert sim.request_count("status", execution_id=eid) == 1
        assert sim.request_count("image", execution_id=eid) == row.requests + 1
        caption = widget.output_slots_html[0]
        if row.reason:
            assert len(widget.thumbnails) == 1  # the good second output still shows
            [reason] = widget.thumbnail_errors.values()
            assert re.search(row.reason, reason), reason
            assert "unavailable" in caption
        else:
            assert len(widget.thumbnails) == 2 and not widget.thumbnail_errors
            first = widget.thumbnails[0]
            assert max(first.size) <= 128 and first.mode in ("RGB", "RGBA")
            shown = widget.output_slot_images[0]
            assert shown is not None and shown[1] == row.fmt
            width, height = first.size
            assert (height > width) == row.portrait
            # an animated GIF shows its first frame as a still
            assert getattr(first, "n_frames", 1) == 1
    finally:
        widget.close()


NON_WEB_URLS = [
    "file:///etc/passwd",
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x.png",
]


def test_non_web_output_urls_are_never_fetched_nor_linked(no_leftover_threads,
                                                          counted_widgets, sim, client):
    eid = sim.add_run(steps=INSTANT)
    body = api_body(eid, "completed", [("Text to Image", "completed")],
                    outputs=NON_WEB_URLS, completed_at=T1)
    body["output"]["proxy_links"] = list(reversed(NON_WEB_URLS))
    sim.status_faults(eid, [Fault("json", body=body)])
    widget = WorkflowRunWidget(DEMO_WORKFLOW_ID, eid, client=client, poll_interval=0.05,
                               max_thumbnails=4)
    try:
        snapshot = widget.wait(10)
        assert snapshot.status == "completed" and widget.error == ""
        assert sim.request_count("image") == 0
        assert widget.thumbnails == [] and len(widget.thumbnail_errors) == 4
        markup = "\n".join([*widget.output_slots_html, widget.more_outputs_html])
        assert len(widget.output_slots_html) == 4 and "5 more" in widget.more_outputs_html
        lowered = re.sub(r"\s", "", markup.lower())
        for scheme in ("javascript:", "file:", "data:", "vbscript:"):
            assert f'href="{scheme}' not in lowered
        assert "href=" not in lowered and "<a " not in markup  # nothing here is a link
        assert "<script>" not in markup
    finally:
        widget.close()
