"""The simulator over real loopback HTTP: API shapes, run timelines, faults, images, threads."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image, ImageOps

from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault, Simulator, StepSpec

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
    time.sleep(0.6)
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
        for _ in range(3):
            name, value = process.stdout.readline().strip().split(": ", 1)
            lines[name] = value
        assert lines["api_key"] == "k1" and lines["workflow_id"] == DEMO_WORKFLOW_ID
        schema = requests.get(f"{lines['base_url']}/workflows/{DEMO_WORKFLOW_ID}",
                              headers={"key": "k1"}, timeout=5)
        assert schema.json()["status"] == "success"
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
