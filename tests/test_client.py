"""WorkflowsClient against the simulator over real loopback HTTP: parsing, error mapping,
retries, path quoting, image fetching and secrecy of the API key."""

from __future__ import annotations

import http.server
import logging
import threading
import time
import typing
import warnings

import pytest

from modelslab_widget import WorkflowsClient
from modelslab_widget.errors import (
    APIError,
    AuthenticationError,
    ImageError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    ValidationError,
)
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault

FAST = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]


def test_get_run_follows_a_run_to_completion(sim, client):
    eid = sim.add_run(steps=FAST, images=2)
    first = client.get_run(DEMO_WORKFLOW_ID, eid)
    assert first.status == "running" and first.execution_id == eid
    time.sleep(0.5)
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


# -- images -------------------------------------------------------------------------------


def test_fetch_image_returns_the_served_bytes(sim, client):
    eid = sim.add_run(steps=[("Only", 0.05)], images=1)
    time.sleep(0.2)
    url = client.get_run(DEMO_WORKFLOW_ID, eid).outputs[0]
    data = client.fetch_image(url)
    assert data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "javascript:alert(1)", "data:image/png;base64,AA", "ftp://x/y.png", ""],
)
def test_fetch_image_refuses_non_http_urls(client, url):
    with pytest.raises(ImageError, match="non-http"):
        client.fetch_image(url)


def test_fetch_image_caps_bytes(sim, client):
    eid = sim.add_run(
        steps=[("Only", 0.05)], images=1, image_faults={0: Fault("huge", size=3_000_000)}
    )
    time.sleep(0.2)
    url = client.get_run(DEMO_WORKFLOW_ID, eid).outputs[0]
    with pytest.raises(ImageError, match="allowed"):
        client.fetch_image(url, max_bytes=1_000_000)


def test_fetch_image_maps_http_errors(sim, client):
    eid = sim.add_run(steps=[("Only", 0.05)], images=1, image_faults={0: Fault("http", status=404)})
    time.sleep(0.2)
    url = client.get_run(DEMO_WORKFLOW_ID, eid).outputs[0]
    with pytest.raises(ImageError, match="404"):
        client.fetch_image(url)


class _HeaderRecorder(http.server.BaseHTTPRequestHandler):
    seen: typing.ClassVar[list] = []

    def do_GET(self):
        type(self).seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"abc")

    def log_message(self, *args):
        pass


def test_image_hosts_never_receive_the_key():
    server = http.server.HTTPServer(("127.0.0.1", 0), _HeaderRecorder)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    with WorkflowsClient("secret-key-xyz", base_url="http://127.0.0.1:1/api/v1") as c:
        assert c.fetch_image(f"http://127.0.0.1:{server.server_port}/a.png") == b"abc"
    thread.join(5)
    server.server_close()
    headers = {k.lower(): v for k, v in _HeaderRecorder.seen[0].items()}
    assert "key" not in headers and headers["user-agent"].startswith("modelslab-widget/")
