"""WorkflowsClient against the simulator over real loopback HTTP: parsing, error mapping,
retries, redirects, path quoting, deadlines and secrecy of the API key. Output downloads
are tested in test_downloads.py."""

from __future__ import annotations

import datetime
import logging
import threading
import time
import tracemalloc
import typing
import warnings

import pytest

from modelslab_widget import WorkflowsClient
from modelslab_widget.errors import (
    APIError,
    AuthenticationError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    ResponseFormatError,
    RunAlreadyEndedError,
    ServerError,
    ValidationError,
)
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault
from tests.conftest import wait_for
from tests.loopback import (
    TRACED_KEY,
    CannedServer,
    DripServer,
    bomb_redirect,
    canned_client,
    json_answer,
    key_sightings,
    peak_memory_growth,
)

FAST = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]


def test_get_run_follows_a_run_to_completion(sim, client):
    eid = sim.add_run(steps=FAST, images=2)
    first = client.get_run(DEMO_WORKFLOW_ID, eid)
    assert first.status == "running" and first.execution_id == eid
    wait_for(lambda: client.get_run(DEMO_WORKFLOW_ID, eid).is_terminal)
    done = client.get_run(DEMO_WORKFLOW_ID, eid)
    assert done.status == "completed" and len(done.outputs) == 2 and len(done.proxy_links) == 2
    assert done.execution_time == pytest.approx(0.4, abs=0.1)
    assert [s.status for s in done.steps] == ["completed", "completed"]


def test_keep_alive_reuses_one_connection(sim, client):
    eid = sim.add_run(steps=FAST)
    for _ in range(5):
        client.get_run(DEMO_WORKFLOW_ID, eid)
    assert sim.request_count("status") == 5 and sim.connection_count == 1


def test_run_workflow_and_schema(sim, client):
    info = client.get_workflow(DEMO_WORKFLOW_ID)
    assert info.id == DEMO_WORKFLOW_ID and any(
        p.key == "prompt" and p.required for p in info.parameters
    )
    eid = client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "a red fox"})
    assert isinstance(eid, int) and sim.runs_started(DEMO_WORKFLOW_ID) == 1
    assert client.get_run(DEMO_WORKFLOW_ID, eid).status in {"pending", "running"}


def test_validation_error_keeps_field_messages(sim, client):
    with pytest.raises(ValidationError) as info:
        client.run_workflow(DEMO_WORKFLOW_ID, {"width": 512})
    assert "prompt" in info.value.errors and "prompt" in str(info.value)
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 0


def test_wrong_key_is_an_authentication_error_without_the_key(sim):
    bad = WorkflowsClient("wrong-secret-123", base_url=sim.base_url)
    eid = sim.add_run(steps=FAST)
    with pytest.raises(AuthenticationError) as info:
        bad.get_run(DEMO_WORKFLOW_ID, eid)
    assert info.value.status_code == 401 and "wrong-secret-123" not in str(info.value)


def test_missing_key_fails_before_any_request(sim, monkeypatch):
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="MODELSLAB_API_KEY"):
        WorkflowsClient(base_url=sim.base_url).get_run(DEMO_WORKFLOW_ID, 1)
    assert sim.request_count() == 0


def test_environment_supplies_key_and_base_url(sim, monkeypatch):
    monkeypatch.setenv("MODELSLAB_API_KEY", sim.api_key)
    monkeypatch.setenv("MODELSLAB_BASE_URL", sim.base_url)
    eid = sim.add_run(steps=FAST)
    assert WorkflowsClient().get_run(DEMO_WORKFLOW_ID, eid).execution_id == eid


def test_unknown_run_is_not_found(sim, client):
    with pytest.raises(NotFoundError):
        client.get_run(DEMO_WORKFLOW_ID, 999_999)


@pytest.mark.parametrize(
    ("fault", "error", "requests_made"),
    [
        (Fault("http", status=403), AuthenticationError, 1),
        (Fault("http", status=500), ServerError, 1),  # 500 is not retried by the client
        (Fault("http", status=503, times=None), ServerError, 4),  # 1 + 3 retries
        (Fault("html"), ResponseFormatError, 1),
        (Fault("truncated_json"), ResponseFormatError, 1),
        (Fault("json", body=[1, 2]), ResponseFormatError, 1),
        (Fault("json", body=None), ResponseFormatError, 1),
        (Fault("json", body={"status": "success"}), ResponseFormatError, 1),
        (Fault("api_error", body="Server busy"), APIError, 1),
        (Fault("huge", size=12 * 1024 * 1024), ResponseFormatError, 1),
        (Fault("drop", times=None), NetworkError, 4),
        (Fault("reset", times=None), NetworkError, 4),
        (Fault("redirect_loop", times=None), ServerError, 6),
    ],
    ids=lambda value: getattr(value, "kind", None) or getattr(value, "__name__", str(value)),
)
def test_faults_map_to_clear_errors(sim, client, fault, error, requests_made):
    eid = sim.add_run(steps=FAST, status_faults=[fault])
    with pytest.raises(error) as info:
        client.get_run(DEMO_WORKFLOW_ID, eid)
    assert str(info.value) and sim.api_key not in str(info.value)
    assert sim.request_count("status", execution_id=eid) == requests_made


def test_a_503_burst_that_ends_is_retried_into_one_successful_call(sim, client):
    eid = sim.add_run(steps=FAST, status_faults=[Fault("http", status=503, times=2)])
    assert client.get_run(DEMO_WORKFLOW_ID, eid).status == "running"
    assert sim.request_count("status", execution_id=eid) == 3


def test_read_timeout_on_get_is_retried(sim):
    eid = sim.add_run(steps=FAST, status_faults=[Fault("slow", delay=1.0)])
    with WorkflowsClient(sim.api_key, base_url=sim.base_url, timeout=(1, 0.3)) as fast:
        assert fast.get_run(DEMO_WORKFLOW_ID, eid).execution_id == eid
    assert sim.request_count("status", execution_id=eid) == 2


@pytest.mark.parametrize(
    ("where", "expected"), [("body", 7.0), ("header", 7.0), ("both", 7.0), ("none", None)]
)
def test_rate_limit_carries_retry_after(sim, client, where, expected):
    fault = Fault("rate_limit", retry_after=7, retry_after_in=where)
    eid = sim.add_run(steps=FAST, status_faults=[fault])
    with pytest.raises(RateLimitError) as info:
        client.get_run(DEMO_WORKFLOW_ID, eid)
    assert info.value.retry_after == expected and info.value.transient


@pytest.mark.parametrize(("value", "where"), [(10**400, "body"), (10**12, "header")])
def test_an_absurd_retry_after_is_capped_not_raised(sim, client, value, where):
    fault = Fault("rate_limit", retry_after=value, retry_after_in=where)
    eid = sim.add_run(steps=FAST, status_faults=[fault])
    with pytest.raises(RateLimitError) as info:
        client.get_run(DEMO_WORKFLOW_ID, eid)
    assert info.value.retry_after == 86_400  # a day at most, never inf or an OverflowError


def test_workflow_rate_limit_answers_429(sim, client):
    workflow = sim.add_workflow(rate_limit=2)
    eid = sim.add_run(workflow, steps=FAST)
    client.get_run(workflow, eid)
    client.get_run(workflow, eid)
    with pytest.raises(RateLimitError) as info:
        client.get_run(workflow, eid)
    assert info.value.retry_after and info.value.retry_after > 0


def test_post_that_times_out_is_not_sent_twice(sim):
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("slow", delay=1.0)])
    with (
        WorkflowsClient(sim.api_key, base_url=sim.base_url, timeout=(1, 0.3)) as fast,
        pytest.raises(NetworkError),
    ):
        fast.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "once"})
    assert sim.request_count("run") == 1 and sim.runs_started(DEMO_WORKFLOW_ID) == 1


def test_post_is_not_retried_on_503(sim, client):
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("http", status=503)])
    with pytest.raises(ServerError):
        client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "once"})
    assert sim.request_count("run") == 1


def test_refused_connection_is_a_network_error():
    with (
        WorkflowsClient("k", base_url="http://127.0.0.1:9/api/v1", backoff_factor=0.01) as c,
        pytest.raises(NetworkError),
    ):
        c.get_run("wf", 1)


@pytest.mark.parametrize("bad", ["", ".", "..", " ", None, True, 1.5])
def test_bad_ids_are_refused_before_any_request(sim, client, bad):
    with pytest.raises(ValueError):
        client.get_run(bad, 1)
    with pytest.raises(ValueError):
        client.get_run(DEMO_WORKFLOW_ID, bad)
    assert sim.request_count() == 0


def test_ids_are_quoted_as_one_path_segment(sim, client):
    with pytest.raises(NotFoundError):
        client.get_run(f"{DEMO_WORKFLOW_ID}/runs/1?x=", 1)
    with pytest.raises(NotFoundError):
        client.get_run("../../files", "1")
    assert sim.request_count("status") + sim.request_count("other") == 2


def test_cancel_cuts_a_retrying_call_short(sim):
    eid = sim.add_run(steps=FAST, status_faults=[Fault("http", status=503, times=None)])
    cancel = threading.Event()
    with WorkflowsClient(sim.api_key, base_url=sim.base_url, backoff_factor=2.0) as slow:
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(NetworkError, match="cancelled"):
            slow.get_run(DEMO_WORKFLOW_ID, eid, cancel=cancel)
    assert time.monotonic() - started < 2.0
    assert sim.request_count("status", execution_id=eid) <= 2


def test_key_never_in_repr_errors_or_debug_logs(sim, caplog):
    caplog.set_level(logging.DEBUG)
    eid = sim.add_run(steps=FAST, status_faults=[Fault("http", status=502, times=None)])
    with WorkflowsClient(sim.api_key, base_url=sim.base_url, backoff_factor=0.01) as c:
        assert sim.api_key not in repr(c)
        with pytest.raises(ModelsLabError) as info:
            c.get_run(DEMO_WORKFLOW_ID, eid)
        c.get_run(DEMO_WORKFLOW_ID, sim.add_run(steps=FAST))
    assert caplog.records, "expected DEBUG records from the client and urllib3"
    assert sim.api_key not in caplog.text and sim.api_key not in str(info.value)


def test_plain_http_to_a_remote_host_warns():
    with pytest.warns(UserWarning, match="unencrypted"):
        WorkflowsClient("k", base_url="http://api.example.com/api/v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WorkflowsClient("k", base_url="http://127.0.0.1:1/api/v1")
        WorkflowsClient("k", base_url="https://api.example.com/api/v1")


# -- a canned server over a real loopback socket, for answers the simulator does not give ------


@pytest.fixture
def canned() -> typing.Iterator[CannedServer]:
    server = CannedServer({})
    yield server
    server.close()


CANCEL = "/api/v1/workflows/wf-1/runs/42/cancel"


def test_cancel_run_returns_the_servers_message(canned):
    canned.routes[("POST", CANCEL)] = json_answer(
        200, {"status": "success", "message": "Execution cancelled."}
    )
    with canned_client(canned) as c:
        assert c.cancel_run("wf-1", 42) == "Execution cancelled."
    method, path, headers = canned.requests[0]
    assert (method, path) == ("POST", CANCEL) and headers["key"] == "secret-key-xyz"


@pytest.mark.parametrize(
    ("status", "body", "error", "transient"),
    [
        (400, {"status": "error", "message": "Cannot cancel a completed run"},
         RunAlreadyEndedError, False),
        (404, {"message": "Execution not found"}, NotFoundError, False),
        (401, {"message": "Invalid API key"}, AuthenticationError, False),
        (403, {"message": "Forbidden"}, AuthenticationError, False),
        (429, {"status": "error", "message": "Slow down", "retry_after": 30}, RateLimitError,
         True),
    ],
)
def test_cancel_run_errors(canned, status, body, error, transient):
    canned.routes[("POST", CANCEL)] = json_answer(status, body)
    with canned_client(canned) as c, pytest.raises(error) as info:
        c.cancel_run("wf-1", 42)
    assert type(info.value) is error and info.value.transient is transient
    assert canned.count("POST", CANCEL) == 1
    if error is RunAlreadyEndedError:
        assert "already ended" in str(info.value) and "cannot be cancelled" in str(info.value)
        assert isinstance(info.value, ModelsLabError) and info.value.status_code == 400
    if error is RateLimitError:
        assert info.value.retry_after == 30


@pytest.mark.parametrize(
    "answer",
    [json_answer(503, {"message": "busy"}), json_answer(502, {"message": "bad gateway"})],
)
def test_cancel_is_a_post_never_resent_after_reaching_the_server(canned, answer):
    canned.routes[("POST", CANCEL)] = answer
    with canned_client(canned) as c, pytest.raises(ServerError):
        c.cancel_run("wf-1", 42)
    assert canned.count("POST", CANCEL) == 1


def test_cancel_refuses_bad_ids_before_any_request(canned):
    with canned_client(canned) as c, pytest.raises(ValueError):
        c.cancel_run("wf-1", "..")
    assert canned.requests == []


def test_list_workflows_parses_the_documented_answer(canned):
    canned.routes[("GET", "/api/v1/workflows")] = json_answer(200, {
        "status": "success",
        "workflows": [
            {"id": "uuid-string", "name": "My Workflow",
             "description": "Generates images with custom prompts", "rate_limit": 10,
             "call_count": 150, "last_called_at": "2024-01-15T10:30:00Z",
             "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-15T10:30:00Z"},
            {"id": "other", "name": None, "rate_limit": None},
        ],
    })
    with canned_client(canned) as c:
        workflows = c.list_workflows()
    assert [w.id for w in workflows] == ["uuid-string", "other"]
    assert workflows[0].rate_limit == 10 and workflows[0].call_count == 150
    assert workflows[0].last_called_at is not None and workflows[0].last_called_at.day == 15
    assert workflows[1].name == "Untitled workflow" and workflows[1].rate_limit is None


def test_list_workflows_garbage_is_a_format_error(canned):
    canned.routes[("GET", "/api/v1/workflows")] = (200, b"<html>oops</html>", {})
    with canned_client(canned) as c, pytest.raises(ResponseFormatError):
        c.list_workflows()


# -- the wall-clock deadline -----------------------------------------------------------------


@pytest.fixture
def drip() -> typing.Iterator[DripServer]:
    server = DripServer()
    yield server
    server.close()


def test_a_dripping_server_is_cut_off_at_the_deadline(drip):
    with WorkflowsClient("secret-key-xyz", base_url=f"{drip.origin}/api/v1",
                         timeout=(1.0, 0.5), deadline=1.0, backoff_factor=0.01) as c:
        started = time.monotonic()
        with pytest.raises(NetworkError, match=r"within 1 s"):
            c.get_run("wf", 1)
        took = time.monotonic() - started
    assert 0.9 <= took < 2.5  # the per-read timeout (0.5 s) alone never fires
    assert drip.connections == 1  # a retry after the deadline would be a new request


def test_a_cancel_whose_answer_never_completes_is_not_sent_twice(drip):
    with (
        WorkflowsClient("secret-key-xyz", base_url=f"{drip.origin}/api/v1",
                        timeout=(1.0, 0.3), deadline=0.8, backoff_factor=0.01) as c,
        pytest.raises(NetworkError),
    ):
        c.cancel_run("wf", 1)
    assert drip.connections == 1  # it reached the server: never re-sent


def test_a_fast_call_leaves_its_connection_usable(sim, client):
    eid = sim.add_run(steps=FAST)
    for _ in range(3):
        assert client.get_run(DEMO_WORKFLOW_ID, eid).execution_id == eid
    assert sim.connection_count == 1  # the watchdog never touched a finished call's socket


def test_client_caps_retry_after():
    from modelslab_widget.client import _seconds

    assert _seconds("Infinity") is None and _seconds(1e12) == 86_400 and _seconds(-5) == 0


@pytest.mark.parametrize("key", ["sk-SECRET-KEY-123\n", "  sk-SECRET-KEY-123  "])
def test_whitespace_around_the_key_is_dropped(sim, key):
    eid = sim.add_run(steps=FAST)
    client = WorkflowsClient(key.replace("sk-SECRET-KEY-123", sim.api_key),
                             base_url=sim.base_url)
    assert client.get_run(DEMO_WORKFLOW_ID, eid).execution_id == eid


def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it():
    with pytest.raises(ValueError) as info:
        WorkflowsClient("sk-SECRET\u201c-KEY", base_url="http://127.0.0.1:1/api/v1")
    assert "SECRET" not in str(info.value)


# -- caps while parsing, over a real socket --------------------------------------------------


def test_a_9_mb_answer_of_3_million_steps_keeps_the_first_ones(canned):
    from modelslab_widget.models import MAX_STEPS

    body = ('{"status":"success","execution":{"id":42,"status":"running"},"steps":['
            + ",".join(["{}"] * 3_000_000) + "]}").encode()
    canned.routes[("GET", "/api/v1/workflows/wf-1/runs/42")] = (200, body, {})
    with canned_client(canned) as c:
        tracemalloc.start()
        snapshot = c.get_run("wf-1", 42)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert len(body) > 9_000_000
    assert len(snapshot.steps) == MAX_STEPS
    assert snapshot.dropped_steps == 3_000_000 - MAX_STEPS
    assert peak < 100e6, f"one poll peaked at {peak / 1e6:.0f} MB"  # json.loads: ~700 MB


# -- a full account queue is told apart from a workflow's rate limit --------------------------


def test_a_full_account_queue_is_told_apart_from_a_rate_limit(sim, client):
    sim.queue_limit = 1
    client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "first"})
    with pytest.raises(QueueFullError) as info:
        client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "second"})
    assert isinstance(info.value, RateLimitError)  # code catching 429s still catches it
    assert info.value.limit == 1 and info.value.retry_after == 30
    assert "queue is full" in str(info.value)


@pytest.mark.parametrize(("message", "limit"), [
    ("Rate limit exceeded. Maximum 15 queued requests allowed.", 15),
    ("Too many requests in the queue", None),
    ("Queue full: 10 in queue", 10),
])
def test_queue_wording_is_matched_loosely(sim, client, message, limit):
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("http", status=429, body=message)])
    with pytest.raises(QueueFullError) as info:
        client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "x"})
    assert info.value.limit == limit


def test_a_plain_rate_limit_is_not_a_full_queue(sim, client):
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("rate_limit", retry_after=2)])
    with pytest.raises(RateLimitError) as info:
        client.run_workflow(DEMO_WORKFLOW_ID, {"prompt": "x"})
    assert not isinstance(info.value, QueueFullError)


# -- redirects are followed hop by hop, each redirect closed unread ---------------------------

RUN_7 = "/api/v1/workflows/wf-1/runs/7"
RUNNING_7 = {"status": "success", "steps": [],
             "execution": {"id": 7, "workflow_id": "wf-1", "status": "running"}}


def test_a_redirects_gzip_bomb_body_is_never_read(canned):
    canned.routes[("GET", RUN_7)] = bomb_redirect("/api/v1/final")
    canned.routes[("GET", "/api/v1/final")] = json_answer(200, RUNNING_7)
    with canned_client(canned) as c:
        snapshot, peak = peak_memory_growth(lambda: c.get_run("wf-1", 7))
    assert snapshot.status == "running" and canned.count("GET", "/api/v1/final") == 1
    assert peak < 60 * 2**20, f"peak grew by {peak / 2**20:.0f} MB following a redirect"


def test_a_redirect_off_the_api_host_and_back_never_carries_the_key_again(canned):
    other = CannedServer({("GET", "/elsewhere"): (302, b"", {"Location": f"{canned.origin}/back"})})
    canned.routes[("GET", RUN_7)] = (302, b"", {"Location": f"{other.origin}/elsewhere"})
    canned.routes[("GET", "/back")] = json_answer(200, RUNNING_7)
    try:
        with canned_client(canned) as c:
            assert c.get_run("wf-1", 7).status == "running"
    finally:
        other.close()
    keys = [(path, "key" in {name.lower() for name in headers})
            for _, path, headers in [*canned.requests, *other.requests]]
    assert sorted(keys) == sorted([(RUN_7, True), ("/elsewhere", False), ("/back", False)])


# -- no failure escapes as a bare exception whose frames hold the key -------------------------

def test_a_malformed_redirect_is_a_models_lab_error_without_the_key(canned):
    canned.routes[("GET", RUN_7)] = (302, b"", {"Location": "http://[::1/x"})
    with canned_client(canned, key=TRACED_KEY) as c, pytest.raises(ModelsLabError) as info:
        c.get_run("wf-1", 7)
    assert "no http(s) URL" in str(info.value)
    assert key_sightings(info.value, TRACED_KEY) == []
    assert canned.count("GET", RUN_7) == 1


@pytest.mark.parametrize(("params", "named"), [
    ({"when": datetime.date(2024, 1, 15)}, "'when'"),
    ({"ratio": float("nan")}, "'ratio'"),
    ({"nested": {"at": {1, 2}}}, "'nested'"),
    ({("a", "b"): 1}, "the parameters"),
])
def test_parameters_json_cannot_carry_are_refused_before_sending(canned, params, named):
    with canned_client(canned, key=TRACED_KEY) as c, pytest.raises(ValueError) as info:
        c.run_workflow("wf-1", params)
    assert named in str(info.value) and "JSON" in str(info.value)
    assert key_sightings(info.value, TRACED_KEY) == []
    assert canned.requests == []  # nothing was sent


# -- headers are server text: a key echoed in one is redacted like one in a body --------------


def test_a_key_echoed_in_a_header_is_not_shown(canned):
    from modelslab_widget import WorkflowRunWidget
    from tests.test_secrecy import all_widget_states, exception_texts, widget_texts

    canned.routes[("GET", RUN_7)] = (200, b"<html>not json</html>", {"Content-Type": TRACED_KEY})
    with canned_client(canned, key=TRACED_KEY) as c:
        with pytest.raises(ResponseFormatError) as info:
            c.get_run("wf-1", 7)
        assert "expected a JSON answer" in str(info.value)
        assert not [text for text in exception_texts(info.value) if TRACED_KEY in text]
        widget = WorkflowRunWidget("wf-1", 7, client=c, poll_interval=0.05, backoff_base=0.05,
                                   max_failures=2)
        try:
            with pytest.raises(ResponseFormatError):
                widget.wait(10)
            assert "expected a JSON answer" in widget.error
            shown = [*widget_texts(widget), widget.message_html, widget.static_html(),
                     *all_widget_states()]
            assert not [text for text in shown if TRACED_KEY in text]
        finally:
            widget.close()


# -- credentials in a URL are never shown -------------------------------------------------


URL_PASSWORD = "pw-Hunter2-9931"


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_a_base_url_with_credentials_is_refused_without_showing_them(where, monkeypatch):
    from tests.test_secrecy import exception_texts

    base_url = f"http://user:{URL_PASSWORD}@127.0.0.1:9/api/v1"
    monkeypatch.setenv("MODELSLAB_BASE_URL", base_url)
    with pytest.raises(ValueError, match=r"\.netrc") as info:
        WorkflowsClient("k" * 12, base_url=base_url if where == "argument" else None)
    assert not [text for text in exception_texts(info.value) if URL_PASSWORD in text]


def test_a_gateways_credentials_go_in_netrc_as_the_refusal_says(canned, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login user password {URL_PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    canned.routes[("GET", RUN_7)] = json_answer(200, RUNNING_7)
    with canned_client(canned) as c:
        assert c.get_run("wf-1", 7).status == "running"
        assert URL_PASSWORD not in repr(c)
    assert canned.requests[0][2]["Authorization"].startswith("Basic ")


def test_an_api_redirect_off_its_host_obeys_the_output_address_policy(canned):
    other = CannedServer({("GET", "/elsewhere"): json_answer(200, RUNNING_7)})
    canned.routes[("GET", RUN_7)] = (302, b"", {"Location": f"{other.origin}/elsewhere"})
    try:
        with (
            canned_client(canned, allow_private_outputs=False) as c,
            pytest.raises(ServerError, match=r"127\.0\.0\.1, a loopback address"),
        ):
            c.get_run("wf-1", 7)
    finally:
        other.close()
    assert other.requests == []  # refused before anything was sent
