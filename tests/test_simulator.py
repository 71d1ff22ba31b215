"""The simulator over real loopback HTTP: API shapes, run timelines, faults, images, threads."""

from __future__ import annotations

import io
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image, ImageOps

from modelslab_widget.simulator import (
    DEMO_MEDIA_WORKFLOW_ID,
    DEMO_WORKFLOW_ID,
    Fault,
    Simulator,
    StepSpec,
)

from .conftest import our_threads, wait_for

EXAMPLES = next((p for p in (Path(__file__).parent / "fixtures" / "api-examples",
                             Path(__file__).resolve().parents[2] / "shared" / "api-examples")
                 if p.is_dir()), None)
QUICK = [StepSpec("Text to Image", 0.2), StepSpec("Image Upscaler", 0.2)]


@pytest.fixture
def sim() -> Any:
    with Simulator() as simulator:
        yield simulator


def example(name: str) -> Any:
    if EXAMPLES is None:
        pytest.skip("documented API examples not found")
    return json.loads((EXAMPLES / name).read_text())


def shape(value: Any) -> Any:
    """Keys and nesting only: values (and null versus string) may differ."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def get(sim: Simulator, url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, headers={"key": sim.api_key}, timeout=kwargs.pop("timeout", 5),
                        **kwargs)


def post(sim: Simulator, workflow_id: str, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(f"{sim.base_url}/workflows/{workflow_id}/run", json=body,
                         headers={"key": sim.api_key}, timeout=kwargs.pop("timeout", 5),
                         **kwargs)


def wait_until(elapsed: float, since: float) -> None:
    time.sleep(max(0.0, since + elapsed - time.monotonic()))


# ---------------------------------------------------------------- API shapes and errors

def test_every_api_endpoint_wants_the_key(sim: Simulator) -> None:
    eid = sim.add_run(steps=QUICK)
    urls = [sim.status_url(DEMO_WORKFLOW_ID, eid), f"{sim.base_url}/workflows/{DEMO_WORKFLOW_ID}"]
    for headers in ({}, {"key": "wrong"}):
        for url in urls:
            answer = requests.get(url, headers=headers, timeout=5)
            assert answer.status_code == 401
            assert answer.json() == {"status": "error", "message": "Invalid API key"}
        answer = requests.post(f"{sim.base_url}/workflows/{DEMO_WORKFLOW_ID}/run",
                               json={"prompt": "x"}, headers=headers, timeout=5)
        assert answer.status_code == 401
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 0


def test_schema_has_the_documented_shape(sim: Simulator) -> None:
    body = get(sim, f"{sim.base_url}/workflows/{DEMO_WORKFLOW_ID}").json()
    assert shape(body) == shape(example("workflow-schema.json"))
    assert body["status"] == "success"
    assert body["workflow"]["name"] == "Text to Image + Upscale"
    assert [p["key"] for p in body["parameters"]] == ["prompt", "negative_prompt", "width",
                                                      "height"]
    assert body["endpoints"]["status"].endswith(f"{DEMO_WORKFLOW_ID}/runs/{{id}}")
    assert body["endpoints"]["run"] == f"{sim.base_url}/workflows/{DEMO_WORKFLOW_ID}/run"


def test_post_accepts_a_run_of_the_workflow_script(sim: Simulator) -> None:
    answer = post(sim, DEMO_WORKFLOW_ID, {"prompt": "a red fox", "width": 256})
    assert answer.status_code == 202
    body = answer.json()
    assert shape(body) == shape(example("run-accepted.json"))
    assert body["status"] == "success" and isinstance(body["execution_id"], int)
    assert body["status_url"] == sim.status_url(DEMO_WORKFLOW_ID, body["execution_id"])
    status = get(sim, body["status_url"]).json()
    assert [s["name"] for s in status["steps"]] == ["Text to Image", "Image Upscaler"]
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 1
    assert sim.run_ids(DEMO_WORKFLOW_ID) == [body["execution_id"]]
    final = sim.run_state(body["execution_id"], elapsed=10)
    assert len(final["output"]["output"]) == 2


@pytest.mark.parametrize(("body", "errors"), [
    ({}, {"prompt": ["The prompt field is required."]}),
    ({"prompt": ""}, {"prompt": ["The prompt field is required."]}),
    ({"prompt": 3, "width": "wide"}, {"prompt": ["The prompt field must be a string."],
                                      "width": ["The width field must be a number."]}),
    (["prompt"], {"body": ["The request body must be a JSON object."]}),
])
def test_post_validates_parameters(sim: Simulator, body: Any, errors: dict[str, Any]) -> None:
    answer = post(sim, DEMO_WORKFLOW_ID, body)
    assert answer.status_code == 422
    assert answer.json() == {"status": "error", "message": "Validation failed", "errors": errors}
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 0


def test_post_validates_booleans_and_bad_json(sim: Simulator) -> None:
    wf = sim.add_workflow(parameters=[{"key": "hd", "type": "boolean", "required": True,
                                       "node_id": "n", "node_name": "N"}])
    assert post(sim, wf, {"hd": "yes"}).json()["errors"] == {
        "hd": ["The hd field must be a boolean."]}
    assert post(sim, wf, {"hd": True}).status_code == 202
    answer = requests.post(f"{sim.base_url}/workflows/{wf}/run", data=b"{not json",
                           headers={"key": sim.api_key}, timeout=5)
    assert answer.status_code == 422


def test_unknown_things_are_404(sim: Simulator) -> None:
    eid = sim.add_run(steps=QUICK)
    other = sim.add_workflow()
    for url in (f"{sim.base_url}/workflows/nope", sim.status_url("nope", eid),
                sim.status_url(DEMO_WORKFLOW_ID, 99), sim.status_url(other, eid),
                sim.status_url(DEMO_WORKFLOW_ID, "abc"), f"{sim.origin}/elsewhere",
                f"{sim.origin}/files/{eid}/7.png"):
        answer = get(sim, url)
        assert answer.status_code == 404, url
        assert answer.json()["status"] == "error"
    assert post(sim, "nope", {"prompt": "x"}).status_code == 404


# ---------------------------------------------------------------- run timelines

def test_a_run_plays_out_in_real_time(sim: Simulator) -> None:
    started = time.monotonic()
    eid = sim.add_run(steps=QUICK, queue_time=0.2)
    url = sim.status_url(DEMO_WORKFLOW_ID, eid)
    pending = get(sim, url).json()
    assert pending["execution"]["status"] == "pending"
    assert pending["execution"]["started_at"] is None
    assert [s["status"] for s in pending["steps"]] == ["pending", "pending"]
    wait_until(0.3, started)
    running = get(sim, url).json()
    assert shape(running) == shape(example("status-running.json"))
    assert running["execution"]["status"] == "running"
    assert [s["status"] for s in running["steps"]] == ["running", "pending"]
    assert running["steps"][0]["started_at"].endswith("Z")
    wait_until(0.7, started)
    done = get(sim, url).json()
    assert shape(done) == shape(example("status-completed.json"))
    assert done["execution"]["status"] == "completed"
    assert done["execution"]["execution_time"] == pytest.approx(0.4, abs=0.002)
    assert [s["status"] for s in done["steps"]] == ["completed", "completed"]
    assert done["output"]["output"] == [f"{sim.origin}/files/{eid}/0.png"]
    assert done["output"]["proxy_links"] == [f"{sim.origin}/proxy/{eid}/0.png"]
    assert len(done["execution"]["completed_at"]) == len("2024-01-15T10:30:00.123Z")


def test_failed_run_reports_its_error(sim: Simulator) -> None:
    eid = sim.add_run(steps=QUICK, outcome="failed", error="boom")
    assert sim.run_state(eid, elapsed=0.3)["execution"]["status"] == "running"
    body = sim.run_state(eid, elapsed=0.5)
    assert shape(body) == shape({**example("status-failed.json"),
                                 "steps": example("status-running.json")["steps"]})
    assert body["execution"]["status"] == "failed" and body["error"] == "boom"
    assert [s["status"] for s in body["steps"]] == ["completed", "failed"]
    assert "output" not in body


def test_cancelled_run_cancels_its_last_step(sim: Simulator) -> None:
    eid = sim.add_run(steps=[*QUICK, ("Face Fix", 0.2)], outcome="cancelled")
    assert sim.run_state(eid, elapsed=0.3)["execution"]["status"] == "running"
    body = sim.run_state(eid, elapsed=0.45)
    assert body["execution"]["status"] == "cancelled"
    assert body["execution"]["execution_time"] == pytest.approx(0.4)
    assert [s["status"] for s in body["steps"]] == ["completed", "completed", "cancelled"]
    assert body["steps"][2]["started_at"] is None
    assert "output" not in body and "error" not in body


def test_announce_started_lists_only_started_steps(sim: Simulator) -> None:
    eid = sim.add_run(steps=QUICK, announce="started", queue_time=0.1)
    assert sim.run_state(eid, elapsed=0.05)["steps"] == []
    assert [s["name"] for s in sim.run_state(eid, elapsed=0.2)["steps"]] == ["Text to Image"]
    assert len(sim.run_state(eid, elapsed=0.4)["steps"]) == 2


def test_execution_ids_count_up_from_12345(sim: Simulator) -> None:
    assert sim.add_run(steps=QUICK) == 12345
    assert sim.add_run(steps=QUICK, execution_id=500) == 500
    assert sim.add_run(steps=QUICK) == 12346
    with pytest.raises(ValueError):
        sim.add_run(execution_id=500)
    with pytest.raises(ValueError):
        sim.add_run(outcome="exploded")


# ---------------------------------------------------------------- status faults

def status_with(sim: Simulator, *faults: Fault) -> str:
    return sim.status_url(DEMO_WORKFLOW_ID, sim.add_run(steps=QUICK, status_faults=faults))


def test_http_fault_then_normal_answer(sim: Simulator) -> None:
    url = status_with(sim, Fault("http", status=503), Fault("http", status=403, times=2))
    answers = [get(sim, url) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 403, 403, 200]
    assert answers[0].json()["status"] == "error"


def test_fault_with_times_none_persists(sim: Simulator) -> None:
    url = status_with(sim, Fault("http", status=502, times=None))
    assert {get(sim, url).status_code for _ in range(4)} == {502}


@pytest.mark.parametrize(("where", "in_body", "header"), [
    ("body", 7, None), ("header", None, "7"), ("both", 7, "7"), ("none", None, None)])
def test_rate_limit_fault(sim: Simulator, where: str, in_body: Any, header: Any) -> None:
    answer = get(sim, status_with(sim, Fault("rate_limit", retry_after=7, retry_after_in=where)))
    assert answer.status_code == 429
    assert answer.json().get("retry_after") == in_body
    assert answer.headers.get("Retry-After") == header


def test_garbage_body_faults(sim: Simulator) -> None:
    url = status_with(sim, Fault("html"), Fault("truncated_json"), Fault("api_error"),
                      Fault("json", body=[1, 2]), Fault("json", body=None),
                      Fault("api_error", body="Queue full"))
    html = get(sim, url)
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in html.text
    truncated = get(sim, url)
    assert truncated.status_code == 200
    with pytest.raises(ValueError):
        truncated.json()
    assert get(sim, url).json() == {"status": "error", "message": "Server busy, try again"}
    assert get(sim, url).json() == [1, 2]
    assert get(sim, url).json() is None
    assert get(sim, url).json()["message"] == "Queue full"
    assert get(sim, url).json()["status"] == "success"


def test_slow_fault_times_a_client_out(sim: Simulator) -> None:
    url = status_with(sim, Fault("slow", delay=1.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(sim, url, timeout=0.2)
    assert get(sim, url).status_code == 200


def test_trickle_fault_sends_the_body_slowly(sim: Simulator) -> None:
    url = status_with(sim, Fault("trickle", delay=0.02, size=64))
    started = time.monotonic()
    body = get(sim, url).json()
    assert body["status"] == "success"
    assert time.monotonic() - started > 0.1


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_drop_and_reset_faults_break_the_connection(sim: Simulator, kind: str) -> None:
    url = status_with(sim, Fault(kind))
    with pytest.raises(requests.exceptions.ConnectionError):
        get(sim, url)
    assert get(sim, url).status_code == 200


def test_huge_fault_streams_a_big_body(sim: Simulator) -> None:
    url = status_with(sim, Fault("huge", size=3_000_000))
    answer = get(sim, url, stream=True)
    assert answer.headers["Content-Length"] == "3000000"
    data = answer.raw.read()
    assert len(data) == 3_000_000 and json.loads(data)["status"] == "success"


def test_redirect_loop_fault(sim: Simulator) -> None:
    url = status_with(sim, Fault("redirect_loop", times=None))
    answer = get(sim, url, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"] == url
    with pytest.raises(requests.exceptions.TooManyRedirects):
        get(sim, url)


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("rate_limit", retry_after_in="footer")


# ---------------------------------------------------------------- POST faults, rate limits

def test_slow_post_still_creates_exactly_one_run(sim: Simulator) -> None:
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("slow", delay=0.6)])
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(sim, DEMO_WORKFLOW_ID, {"prompt": "x"}, timeout=0.2)
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 1
    # Its connection ends once the delayed answer has gone out (to a client that left).
    wait_for(lambda: not [name for name in our_threads() if name.startswith("simulator-conn")],
             timeout=5)
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 1


def test_post_http_fault_creates_no_run(sim: Simulator) -> None:
    sim.post_faults(DEMO_WORKFLOW_ID, [Fault("http", status=500)])
    assert post(sim, DEMO_WORKFLOW_ID, {"prompt": "x"}).status_code == 500
    assert sim.runs_started(DEMO_WORKFLOW_ID) == 0
    assert post(sim, DEMO_WORKFLOW_ID, {"prompt": "x"}).status_code == 202


def test_workflow_rate_limit(sim: Simulator) -> None:
    wf = sim.add_workflow(rate_limit=3, steps=QUICK)
    eid = sim.add_run(wf, steps=QUICK)
    assert get(sim, f"{sim.base_url}/workflows/{wf}").json()["workflow"]["rate_limit"] == 3
    assert post(sim, wf, {"prompt": "x"}).status_code == 202
    assert get(sim, sim.status_url(wf, eid)).status_code == 200
    limited = get(sim, sim.status_url(wf, eid))
    assert limited.status_code == 429
    body = limited.json()
    assert body["status"] == "error" and body["message"] == "Rate limit exceeded"
    assert isinstance(body["retry_after"], int) and 1 <= body["retry_after"] <= 60
    assert limited.headers["Retry-After"] == str(body["retry_after"])
    assert get(sim, sim.status_url(DEMO_WORKFLOW_ID, sim.add_run(steps=QUICK))).ok


# ---------------------------------------------------------------- images

def completed_outputs(sim: Simulator, **run: Any) -> tuple[int, list[str], list[str]]:
    eid = sim.add_run(steps=QUICK, **run)
    output = sim.run_state(eid, elapsed=1.0)["output"]
    return eid, output["output"], output["proxy_links"]


def test_images_are_served_without_the_key(sim: Simulator) -> None:
    _, files, proxies = completed_outputs(sim, images=2, prompt="a lighthouse at dusk")
    first = requests.get(files[0], timeout=5)
    assert first.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(first.content))
    assert image.format == "PNG" and image.size == (512, 512)
    image.load()
    assert requests.get(proxies[0], timeout=5).content == first.content
    assert requests.get(files[1], timeout=5).content != first.content
    assert sim.request_count("image") == 3


def test_image_format_and_size_options(sim: Simulator) -> None:
    _, files, _ = completed_outputs(sim, image_format="JPEG", image_size=(128, 96))
    assert files[0].endswith(".jpg")
    image = Image.open(io.BytesIO(requests.get(files[0], timeout=5).content))
    assert (image.format, image.size) == ("JPEG", (128, 96))


def fetch_faulty(sim: Simulator, fault: Fault, **kwargs: Any) -> requests.Response:
    _, files, _ = completed_outputs(sim, image_faults={0: fault}, image_size=(64, 64))
    return requests.get(files[0], timeout=kwargs.pop("timeout", 5), **kwargs)


def test_not_image_and_truncated_images(sim: Simulator) -> None:
    fake = fetch_faulty(sim, Fault("not_image"))
    assert fake.headers["Content-Type"] == "image/png" and fake.text.startswith("<html>")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(fake.content))
    _, files, _ = completed_outputs(sim, image_size=(64, 64))
    whole = requests.get(files[0], timeout=5).content
    cut = fetch_faulty(sim, Fault("truncated")).content
    assert len(cut) == len(whole) // 3
    with pytest.raises(OSError):
        Image.open(io.BytesIO(cut)).load()


def test_huge_and_bomb_images(sim: Simulator) -> None:
    huge = fetch_faulty(sim, Fault("huge", size=2_000_000), stream=True)
    assert huge.headers["Content-Length"] == "2000000"
    assert huge.raw.read(8) == b"\x89PNG\r\n\x1a\n"
    huge.close()
    bomb = fetch_faulty(sim, Fault("bomb")).content
    assert len(bomb) < 1_000_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))


def test_image_http_slow_and_drop_faults(sim: Simulator) -> None:
    assert fetch_faulty(sim, Fault("http", status=403)).status_code == 403
    with pytest.raises(requests.exceptions.ReadTimeout):
        fetch_faulty(sim, Fault("slow", delay=1.0), timeout=0.2)
    with pytest.raises(requests.exceptions.ConnectionError):
        fetch_faulty(sim, Fault("drop"))


@pytest.mark.parametrize(("kind", "ext", "fmt", "mode"), [
    ("gif_animated", "gif", "GIF", "P"), ("cmyk_jpeg", "jpg", "JPEG", "CMYK"),
    ("png16", "png", "PNG", "I;16"), ("rgba_png", "png", "PNG", "RGBA"),
    ("webp", "webp", "WEBP", "RGB"),
])
def test_image_format_variants(sim: Simulator, kind: str, ext: str, fmt: str,
                               mode: str) -> None:
    _, files, _ = completed_outputs(sim, image_faults={0: Fault(kind)}, image_size=(64, 64))
    assert files[0].endswith(f".{ext}")
    answer = requests.get(files[0], timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("image/")
    image = Image.open(io.BytesIO(answer.content))
    assert (image.format, image.mode) == (fmt, mode)
    if kind == "gif_animated":
        assert getattr(image, "n_frames", 1) == 3


def test_exif_rotated_image_turns_upright(sim: Simulator) -> None:
    answer = fetch_faulty(sim, Fault("exif_rotated"))
    stored = Image.open(io.BytesIO(answer.content))
    assert stored.size == (320, 200) and stored.getexif()[0x0112] == 6
    upright = ImageOps.exif_transpose(stored)
    assert upright.size == (200, 320)
    pixel = upright.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple)
    red, green, blue = pixel[:3]
    assert red > 200 and green < 60 and blue < 60


# ---------------------------------------------------------------- counting and threads

def test_request_and_connection_counts(sim: Simulator) -> None:
    eid = sim.add_run(steps=QUICK)
    url = sim.status_url(DEMO_WORKFLOW_ID, eid)
    with requests.Session() as session:
        session.headers["key"] = sim.api_key
        for _ in range(5):
            assert session.get(url, timeout=5).ok
    assert sim.connection_count == 1
    assert sim.request_count("status", eid) == 5
    assert sim.request_count() == 5 and sim.request_count("run") == 0
    sim.run_state(eid)
    assert sim.request_count() == 5
    sim.reset_counts()
    assert sim.request_count() == 0 and sim.connection_count == 0


def test_stop_leaves_no_thread_behind() -> None:
    baseline = threading.active_count()
    sim = Simulator().start()
    session = requests.Session()
    session.headers["key"] = sim.api_key
    url = sim.status_url(DEMO_WORKFLOW_ID, sim.add_run(steps=QUICK))
    assert session.get(url, timeout=5).ok  # the connection stays open, its thread waits on it
    assert threading.active_count() > baseline
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2
    assert threading.active_count() == baseline
    sim.stop()
    session.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=1)


def test_command_line_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "modelslab_widget.simulator", "--port", "0", "--api-key", "k1"],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        lines = {}
        for _ in range(5):
            name, value = process.stdout.readline().strip().split(": ", 1)
            lines[name] = value
        assert lines["api_key"] == "k1" and lines["workflow_id"] == DEMO_WORKFLOW_ID
        assert lines["media_workflow_id"] == DEMO_MEDIA_WORKFLOW_ID
        schema = requests.get(f"{lines['base_url']}/workflows/{DEMO_WORKFLOW_ID}",
                              headers={"key": "k1"}, timeout=5)
        assert schema.json()["status"] == "success"
        status = requests.get(f"{lines['base_url']}/workflows/{DEMO_WORKFLOW_ID}/runs/"
                              f"{lines['execution_id']}", headers={"key": "k1"}, timeout=5)
        assert status.json()["execution"]["status"] in ("pending", "running")
        rest = [process.stdout.readline() for _ in range(4)]
        command = next(line.strip() for line in rest if "modelslab-widget watch" in line)
        assert command == (f"MODELSLAB_API_KEY=k1 MODELSLAB_BASE_URL={lines['base_url']} "
                           f"modelslab-widget watch {DEMO_WORKFLOW_ID} {lines['execution_id']}")
        assert any("Ctrl-C" in line for line in rest)
        process.send_signal(signal.SIGINT)
        assert process.wait(5) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture(autouse=True)
def no_simulator_thread_survives() -> Any:
    """Every test's simulator must end all of its threads when it stops."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("simulator-")]
    assert left == []


def test_faults_can_be_added_after_the_fact(sim: Simulator) -> None:
    sim.workflow_faults(DEMO_WORKFLOW_ID, [Fault("http", status=504)])
    schema_url = f"{sim.base_url}/workflows/{DEMO_WORKFLOW_ID}"
    assert [get(sim, schema_url).status_code for _ in range(2)] == [504, 200]
    eid = post(sim, DEMO_WORKFLOW_ID, {"prompt": "x"}).json()["execution_id"]
    sim.status_faults(eid, [Fault("api_error")])
    url = sim.status_url(DEMO_WORKFLOW_ID, eid)
    assert get(sim, url).json()["status"] == "error"
    sim.image_faults(eid, {1: Fault("webp")})
    files = sim.run_state(eid, elapsed=10)["output"]["output"]
    assert files[0].endswith(".png") and files[1].endswith(".webp")
    assert Image.open(io.BytesIO(requests.get(files[1], timeout=5).content)).format == "WEBP"


# ---------------------------------------------------------------- cancel

class ManualClock:
    """A monotonic clock the test moves by hand: moments without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def timed_sim(clock: ManualClock) -> Any:
    with Simulator(clock=clock) as simulator:
        yield simulator


def cancel(sim: Simulator, workflow_id: str, execution_id: object,
           key: str | None = None) -> requests.Response:
    return requests.post(f"{sim.status_url(workflow_id, execution_id)}/cancel",
                         headers={"key": sim.api_key if key is None else key}, timeout=5)


def test_cancel_a_running_run(timed_sim: Simulator, clock: ManualClock) -> None:
    steps = [("Text to Image", 1.0), ("Image Upscaler", 1.0), ("Face Fix", 1.0)]
    eid = timed_sim.add_run(steps=steps, queue_time=0.5)
    clock.now += 2.0  # the second step is running
    answer = cancel(timed_sim, DEMO_WORKFLOW_ID, eid)
    assert answer.status_code == 200
    assert answer.json() == example("cancel-accepted.json")
    clock.now += 5.0
    body = get(timed_sim, timed_sim.status_url(DEMO_WORKFLOW_ID, eid)).json()
    assert body["execution"]["status"] == "cancelled"
    assert body["execution"]["execution_time"] == pytest.approx(1.5)
    assert [s["status"] for s in body["steps"]] == ["completed", "cancelled", "pending"]
    assert body["steps"][1]["completed_at"] == body["execution"]["completed_at"]
    assert body["steps"][2]["started_at"] is None and body["steps"][2]["completed_at"] is None
    assert "output" not in body and "error" not in body
    assert timed_sim.request_count("cancel", eid) == 1
    again = cancel(timed_sim, DEMO_WORKFLOW_ID, eid)
    assert again.status_code == 400
    assert again.json() == {"status": "error",
                            "message": "Execution cannot be cancelled in its current state."}


def test_cancel_while_queued_never_starts_a_step(timed_sim: Simulator,
                                                 clock: ManualClock) -> None:
    eid = timed_sim.add_run(steps=QUICK, queue_time=1.0)
    clock.now += 0.5
    assert cancel(timed_sim, DEMO_WORKFLOW_ID, eid).status_code == 200
    clock.now += 5
    body = timed_sim.run_state(eid)
    assert body["execution"]["status"] == "cancelled"
    assert body["execution"]["started_at"] is None
    assert [s["status"] for s in body["steps"]] == ["pending", "pending"]


@pytest.mark.parametrize(("outcome", "after"), [("completed", 0.5), ("completed", 9.0),
                                                ("failed", 0.5), ("cancelled", 0.25)])
def test_cancel_after_the_end_is_400(timed_sim: Simulator, clock: ManualClock, outcome: str,
                                     after: float) -> None:
    # binary-exact durations, so 0.5 after the start is the very moment the run ends
    eid = timed_sim.add_run(steps=[("A", 0.25), ("B", 0.25)], outcome=outcome)
    clock.now += after
    answer = cancel(timed_sim, DEMO_WORKFLOW_ID, eid)
    assert answer.status_code == 400
    assert timed_sim.run_state(eid)["execution"]["status"] == outcome


def test_cancel_unknown_key_method_and_faults(sim: Simulator) -> None:
    eid = sim.add_run(steps=[("Long", 30.0)])
    other = sim.add_workflow()
    assert cancel(sim, DEMO_WORKFLOW_ID, 99).status_code == 404
    assert cancel(sim, other, eid).status_code == 404
    assert cancel(sim, "nope", eid).status_code == 404
    assert cancel(sim, DEMO_WORKFLOW_ID, eid, key="wrong").status_code == 401
    url = f"{sim.status_url(DEMO_WORKFLOW_ID, eid)}/cancel"
    assert get(sim, url).status_code == 405
    sim.cancel_faults(DEMO_WORKFLOW_ID, [Fault("http", status=503), Fault("drop")])
    assert cancel(sim, DEMO_WORKFLOW_ID, eid).status_code == 503
    assert sim.run_state(eid)["execution"]["status"] == "running"
    with pytest.raises(requests.exceptions.ConnectionError):
        cancel(sim, DEMO_WORKFLOW_ID, eid)
    assert sim.run_state(eid)["execution"]["status"] == "cancelled"  # the answer got lost
    assert sim.request_count("cancel", eid) == 6  # the 405 GET counts as well


# ---------------------------------------------------------------- workflow list

def test_list_workflows(sim: Simulator) -> None:
    wf = sim.add_workflow(name="Mine", rate_limit=4)
    url = f"{sim.base_url}/workflows"
    body = get(sim, url).json()
    assert shape(body) == shape(example("workflows-list.json"))
    by_id = {w["id"]: w for w in body["workflows"]}
    assert set(by_id) == {DEMO_WORKFLOW_ID, DEMO_MEDIA_WORKFLOW_ID, wf}
    assert by_id[DEMO_MEDIA_WORKFLOW_ID]["name"] == "Text to Video + Soundtrack"
    assert by_id[wf]["rate_limit"] == 4 and by_id[DEMO_WORKFLOW_ID]["rate_limit"] == 10
    assert by_id[wf]["call_count"] == 0 and by_id[wf]["last_called_at"] is None
    sim.add_run(wf)  # scripted, not a launch: not a call
    assert post(sim, wf, {"prompt": "x"}).status_code == 202
    assert post(sim, wf, {"prompt": "y"}).status_code == 202
    after = {w["id"]: w for w in get(sim, url).json()["workflows"]}[wf]
    assert after["call_count"] == 2
    assert after["last_called_at"].endswith("Z")
    assert after["updated_at"] == after["last_called_at"]
    assert sim.request_count("list") == 2


def test_list_key_faults_and_no_rate_limit(sim: Simulator) -> None:
    url = f"{sim.base_url}/workflows"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.post(url, headers={"key": sim.api_key}, timeout=5).status_code == 405
    sim.list_faults([Fault("html"), Fault("http", status=500)])
    assert get(sim, url).headers["Content-Type"].startswith("text/html")
    assert get(sim, url).status_code == 500
    sim.add_workflow(DEMO_WORKFLOW_ID, rate_limit=1)
    assert all(get(sim, url).ok for _ in range(3))
    assert sim.rate_limited_count() == 0


# ---------------------------------------------------------------- rate limit window

def test_rate_limit_covers_every_request_of_the_workflow(timed_sim: Simulator,
                                                         clock: ManualClock) -> None:
    wf = timed_sim.add_workflow(rate_limit=4, steps=QUICK)
    first, second = timed_sim.add_run(wf, steps=QUICK), timed_sim.add_run(wf, steps=QUICK)
    assert get(timed_sim, timed_sim.status_url(wf, first)).ok
    assert get(timed_sim, timed_sim.status_url(wf, second)).ok
    assert get(timed_sim, f"{timed_sim.base_url}/workflows/{wf}").ok
    assert cancel(timed_sim, wf, first).ok
    for answer in (get(timed_sim, timed_sim.status_url(wf, second)),
                   get(timed_sim, f"{timed_sim.base_url}/workflows/{wf}"),
                   post(timed_sim, wf, {"prompt": "x"}), cancel(timed_sim, wf, second)):
        assert answer.status_code == 429
        assert answer.json()["retry_after"] == 60
        assert answer.headers["Retry-After"] == "60"
    assert timed_sim.rate_limited_count(wf) == 4 and timed_sim.rate_limited_count() == 4
    assert timed_sim.rate_limited_count(DEMO_WORKFLOW_ID) == 0
    assert timed_sim.runs_started(wf) == 0
    clock.now += 59.5
    assert get(timed_sim, timed_sim.status_url(wf, second)).json()["retry_after"] == 1
    clock.now += 0.5
    assert get(timed_sim, timed_sim.status_url(wf, second)).ok


def test_compressed_window_and_accepted_times(clock: ManualClock) -> None:
    limit, window = 3, 0.5
    with Simulator(rate_window=window, clock=clock) as sim:
        wf = sim.add_workflow(rate_limit=limit)
        url = sim.status_url(wf, sim.add_run(wf, steps=QUICK))
        start, answers = clock.now, []
        for _ in range(5):
            answers.append(get(sim, url))
            clock.now += 0.0625
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        retry = answers[4].json()["retry_after"]
        assert retry == 0.25  # asked at 0.25, the first slot frees at 0.5: float seconds
        assert "Retry-After" not in answers[4].headers
        clock.now = start + window - 0.001
        assert get(sim, url).status_code == 429
        clock.now = start + 0.25 + retry
        assert get(sim, url).ok
        times = sim.accepted_request_times(wf)
        assert len(times) == limit + 1 and times == sorted(times)
        assert all(times[i + limit] - times[i] >= window for i in range(len(times) - limit))
        assert sim.rate_limited_count(wf) == 3


def test_the_account_queue_limit_answers_the_documented_429(clock: ManualClock) -> None:
    documented = example("rate-limited.json")
    with Simulator(clock=clock, queue_limit=2) as sim:
        first, second = (post(sim, DEMO_WORKFLOW_ID, {"prompt": p}) for p in "ab")
        assert first.status_code == second.status_code == 202
        sim.add_run(steps=QUICK)  # not launched through the API: not in the queue
        refused = post(sim, DEMO_WORKFLOW_ID, {"prompt": "c"})
        assert refused.status_code == 429
        assert refused.json() == {**documented, "message": documented["message"].replace(
            "5", "2")}  # the documented answer, naming this account's limit
        assert sim.queue_full_count == 1 and sim.queued_runs() == 2
        assert get(sim, sim.status_url(DEMO_WORKFLOW_ID, first.json()["execution_id"])).ok
        assert cancel(sim, DEMO_WORKFLOW_ID, first.json()["execution_id"]).ok
        assert sim.queued_runs() == 1  # a cancelled run leaves the queue
        assert post(sim, DEMO_WORKFLOW_ID, {"prompt": "c"}).status_code == 202
        clock.now += 60  # every run ended
        assert sim.queued_runs() == 0


def test_schema_reports_the_default_rate_limit(sim: Simulator) -> None:
    body = get(sim, f"{sim.base_url}/workflows/{DEMO_WORKFLOW_ID}").json()
    assert body["workflow"]["rate_limit"] == 10
    assert example("rate-limited.json")["retry_after"] == 30  # the documented 429 shape
    with pytest.raises(ValueError):
        Simulator(rate_window=0)


# ---------------------------------------------------------------- outputs of every kind

def fetch(url: str, **kwargs: Any) -> requests.Response:
    answer = requests.get(url, timeout=5, **kwargs)
    assert answer.status_code in (200, 206), url
    return answer


def test_outputs_of_every_kind(sim: Simulator) -> None:
    kinds = ("png", "jpg", "webp", "gif", "mp4", "webm", "wav", "glb", "obj", "stl", "ply")
    _, files, proxies = completed_outputs(sim, outputs=kinds, image_size=(64, 64))
    assert [f.rsplit(".", 1)[1] for f in files] == list(kinds)
    answers = dict(zip(kinds, (fetch(f) for f in files), strict=True))
    types = {k: a.headers["Content-Type"] for k, a in answers.items()}
    assert types == {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp",
                     "gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm",
                     "wav": "audio/wav", "glb": "model/gltf-binary", "obj": "model/obj",
                     "stl": "model/stl", "ply": "model/x-ply"}
    for kind, answer in answers.items():
        assert answer.headers["Content-Length"] == str(len(answer.content)), kind
    for kind, fmt in (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"), ("gif", "GIF")):
        assert Image.open(io.BytesIO(answers[kind].content)).format == fmt
    assert Image.open(io.BytesIO(answers["gif"].content)).n_frames > 1  # type: ignore[attr-defined]
    assert fetch(proxies[4]).content == answers["mp4"].content


def mp4_boxes(data: bytes) -> list[tuple[bytes, int]]:
    """Top-level ISO BMFF boxes: (type, size); their sizes must add up to the file."""
    boxes, at = [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        assert size >= 8
        boxes.append((kind, size))
        at += size
    assert at == len(data)
    return boxes


def test_video_audio_and_3d_files_are_valid(sim: Simulator) -> None:
    _, files, _ = completed_outputs(sim, outputs=("mp4", "webm", "wav", "glb", "obj", "stl",
                                                  "ply"))
    mp4, webm, wav, glb, obj, stl, ply = (fetch(f).content for f in files)
    assert [kind for kind, _ in mp4_boxes(mp4)][:2] == [b"ftyp", b"moov"]  # moov first
    assert b"avc1" in mp4 and len(mp4) < 10_000
    assert webm[:4] == b"\x1a\x45\xdf\xa3" and len(webm) < 10_000  # EBML magic
    with wave.open(io.BytesIO(wav)) as audio:
        assert audio.getnframes() / audio.getframerate() == pytest.approx(0.5)
        samples = struct.unpack(f"<{audio.getnframes()}h", audio.readframes(audio.getnframes()))
    assert max(samples) > 10_000 and min(samples) < -10_000  # a tone, not silence
    magic, version, length = struct.unpack("<4sII", glb[:12])
    assert (magic, version, length) == (b"glTF", 2, len(glb))
    json_length, chunk = struct.unpack("<I4s", glb[12:20])
    assert chunk == b"JSON" and json_length % 4 == 0
    gltf = json.loads(glb[20:20 + json_length])
    assert gltf["asset"]["version"] == "2.0" and gltf["accessors"][0]["count"] == 3
    bin_length, bin_chunk = struct.unpack("<I4s", glb[20 + json_length:28 + json_length])
    assert bin_chunk == b"BIN\0" and bin_length == gltf["buffers"][0]["byteLength"] == 36
    assert obj.decode().splitlines()[-1] == "f 1 2 3"
    assert stl.startswith(b"solid") and stl.count(b"vertex") == 3
    assert ply.startswith(b"ply\n") and b"end_header" in ply


def test_big_video_is_padded_with_a_free_box(sim: Simulator) -> None:
    eid, files, _ = completed_outputs(sim, outputs=("mp4",), video_bytes=6_000_000)
    head = requests.head(files[0], timeout=5)
    assert head.headers["Content-Length"] == "6000000"
    first = fetch(files[0], headers={"Range": "bytes=0-4095"})
    assert first.status_code == 206 and len(first.content) == 4096
    assert first.headers["Content-Range"] == "bytes 0-4095/6000000"
    assert sim.bytes_served(eid) == 4096
    whole = fetch(files[0]).content
    assert len(whole) == 6_000_000
    boxes = mp4_boxes(whole)
    assert boxes[:2] == mp4_boxes(whole[:boxes[0][1] + boxes[1][1]])  # ftyp, moov unchanged
    assert boxes[-1][0] == b"free" and boxes[-1][1] > 5_990_000
    assert sim.bytes_served(eid) == 4096 + 6_000_000 and sim.bytes_served() == 6_004_096


def test_urls_without_extension_tell_the_kind_by_content_type(sim: Simulator) -> None:
    _, files, proxies = completed_outputs(sim, outputs=("mp4?noext", "png", "wav?noext"))
    assert files[0].endswith("/0") and files[1].endswith("/1.png") and files[2].endswith("/2")
    assert proxies[0].endswith("/0")
    assert requests.head(files[0], timeout=5).headers["Content-Type"] == "video/mp4"
    assert requests.head(files[2], timeout=5).headers["Content-Type"] == "audio/wav"
    with pytest.raises(ValueError):
        sim.add_run(outputs=("docx",))


# ---------------------------------------------------------------- HEAD and Range

def test_head_answers_headers_only(sim: Simulator) -> None:
    eid, files, _ = completed_outputs(sim, outputs=("wav",))
    with socket.create_connection((sim.host, sim.port), timeout=5) as conn:
        path = files[0].removeprefix(sim.origin)
        conn.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
                     f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Accept-Ranges: bytes" in head and b"Content-Type: audio/wav" in head
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert rest.startswith(b"HTTP/1.1 200")  # no body between the HEAD answer and the next
    assert rest.partition(b"\r\n\r\n")[2][:4] == b"RIFF"
    assert len(rest.partition(b"\r\n\r\n")[2]) == length
    assert sim.request_count("head", eid) == 1 and sim.request_count("image", eid) == 1
    assert sim.bytes_served(eid) == length


@pytest.mark.parametrize(("header", "status", "span"), [
    ("bytes=10-19", 206, (10, 19)), ("bytes=100-", 206, (100, None)),
    ("bytes=-16", 206, (-16, None)), ("bytes=0-99999999", 206, (0, None)),
    ("bytes=99999999-", 416, None), ("bytes=-0", 416, None),
    ("bytes=5-2", 200, None), ("items=0-3", 200, None), ("bytes=0-1,4-5", 200, None),
])
def test_range_requests(sim: Simulator, header: str, status: int, span: Any) -> None:
    _, files, _ = completed_outputs(sim, outputs=("wav",))
    whole = fetch(files[0]).content
    answer = requests.get(files[0], headers={"Range": header}, timeout=5)
    assert answer.status_code == status
    if status == 206:
        start = span[0] % len(whole)
        end = len(whole) - 1 if span[1] is None else span[1]
        assert answer.content == whole[start:end + 1]
        assert answer.headers["Content-Range"] == f"bytes {start}-{end}/{len(whole)}"
    elif status == 416:
        assert answer.headers["Content-Range"] == f"bytes */{len(whole)}"
    else:
        assert answer.content == whole


# ---------------------------------------------------------------- the media demo workflow

def test_media_demo_workflow_makes_mixed_outputs(sim: Simulator) -> None:
    launched = post(sim, DEMO_MEDIA_WORKFLOW_ID, {"prompt": "a fox"}).json()["execution_id"]
    scripted = sim.add_run(DEMO_MEDIA_WORKFLOW_ID)
    for eid in (launched, scripted):
        files = sim.run_state(eid, elapsed=60)["output"]["output"]
        assert [f.rsplit(".", 1)[1] for f in files] == ["png", "mp4", "wav", "glb"]
    assert len(sim.run_state(sim.add_run(DEMO_WORKFLOW_ID), elapsed=60)["output"]["output"]) == 1


# ---------------------------------------------------------------- key before body

def test_a_body_without_the_key_is_never_read(sim: Simulator) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=5) as conn:
        conn.sendall(f"POST /api/v1/workflows/{DEMO_WORKFLOW_ID}/run HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n"
                     '{"prompt": "'.encode())
        raw = b""
        while chunk := conn.recv(65536):  # ends: the server hangs up without the body
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 401")
    assert b"Connection: close" in raw
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["message"] == "Invalid API key"
    assert sim.request_count("run") == 1 and sim.runs_started(DEMO_WORKFLOW_ID) == 0


# ---------------------------------------------------------------- odd IDs

def raw_status(sim: Simulator, path: bytes, *, key: bool, extra: bytes = b"") -> int:
    """The status of a request for `path` sent byte for byte (requests would percent-encode
    it): a POST for a cancel, else a GET."""
    method = b"POST" if path.endswith(b"/cancel") else b"GET"
    head = method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra
    if key:
        head += b"key: " + sim.api_key.encode() + b"\r\n"
    with socket.create_connection((sim.host, sim.port), timeout=5) as conn:
        conn.sendall(head + b"\r\n")
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 "), (path[:80], raw[:80])  # an answer, not a hang-up
    return int(raw[9:12])


ODD_IDS = [b"\xb2", "\u00b9".encode("latin-1"), b"9" * 5000, b"9" * 19, b"-1", b"+1", b"%201",
           b"%C2%B2", b"%00", b"%ff%fe", b"1%2F2", b"0x10", "\u0663".encode()]


def test_odd_ids_get_a_404_or_401_and_no_traceback(sim: Simulator, capfd: Any) -> None:
    eid = sim.add_run(steps=QUICK)
    runs = f"/api/v1/workflows/{DEMO_WORKFLOW_ID}/runs/".encode()
    for odd in ODD_IDS:
        for path in (runs + odd, runs + odd + b"/cancel", b"/files/" + odd + b"/0",
                     f"/files/{eid}/".encode() + odd):
            assert raw_status(sim, path, key=True) == 404, path[:80]
            expected = 401 if path.startswith(b"/api/") else 404  # files want no key
            assert raw_status(sim, path, key=False) == expected, path[:80]
    assert raw_status(sim, runs, key=True) == raw_status(sim, runs, key=False) == 404  # empty
    assert raw_status(sim, runs + b"7" * 18, key=True) == 404  # 18 digits: an ID, not ours
    hostile_range = b"Range: bytes=" + b"9" * 5000 + b"-\r\n"
    assert raw_status(sim, f"/files/{eid}/0".encode(), key=False, extra=hostile_range) == 200
    assert raw_status(sim, runs + str(eid).encode(), key=True) == 200  # still served
    assert "Traceback" not in capfd.readouterr().err
