"""Output downloads (``downloads.py``, reached through ``WorkflowsClient.fetch_image``,
``open_output`` and ``probe``) over real loopback sockets, from the simulator and from canned
servers: the bytes served, the caps, the deadline, probes, which addresses outputs may come
from, redirects, and the key never sent to an output host nor shown."""

from __future__ import annotations

import http.server
import threading
import time
import typing

import pytest

from modelslab_widget import WorkflowsClient
from modelslab_widget.errors import ImageError, OutputError
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault
from tests.loopback import (
    TRACED_KEY,
    CannedServer,
    DripServer,
    bomb_redirect,
    canned_client,
    key_sightings,
    peak_memory_growth,
)

URL_PASSWORD = "pw-Hunter2-9931"


@pytest.fixture
def canned() -> typing.Iterator[CannedServer]:
    server = CannedServer({})
    yield server
    server.close()


@pytest.fixture
def drip() -> typing.Iterator[DripServer]:
    server = DripServer()
    yield server
    server.close()



# -- images, from the simulator ---------------------------------------------------------------


def test_fetch_image_returns_the_served_bytes(sim, client):
    eid = sim.add_run(steps=[("Only", 0.0)], images=1)
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
        steps=[("Only", 0.0)], images=1, image_faults={0: Fault("huge", size=3_000_000)}
    )
    url = client.get_run(DEMO_WORKFLOW_ID, eid).outputs[0]
    with pytest.raises(ImageError, match="allowed"):
        client.fetch_image(url, max_bytes=1_000_000)


def test_fetch_image_maps_http_errors(sim, client):
    eid = sim.add_run(steps=[("Only", 0.0)], images=1, image_faults={0: Fault("http", status=404)})
    url = client.get_run(DEMO_WORKFLOW_ID, eid).outputs[0]
    with pytest.raises(ImageError, match="404"):
        client.fetch_image(url)


# -- streamed outputs -------------------------------------------------------------------------


def test_a_content_length_that_is_no_number_is_ignored(canned):
    # "²".isdigit() is true, int("²") raises: the body is read up to its real end instead.
    canned.routes[("GET", "/files/a.png")] = (200, b"\x89PNG-bytes", {
        "Content-Length": "²", "Connection": "close"})
    with canned_client(canned) as c, c.open_output(f"{canned.origin}/files/a.png") as chunks:
        assert b"".join(chunks) == b"\x89PNG-bytes"


def test_a_download_dripping_its_headers_is_cut_off_at_its_deadline(drip):
    # The drip server stands for a remote image host (hence allow_private_outputs).
    with WorkflowsClient("k", base_url="https://api.example.com/api/v1", timeout=(1.0, 0.5),
                         download_deadline=1.0, allow_private_outputs=True) as c:
        started = time.monotonic()
        with (
            pytest.raises(OutputError, match="within 1 s"),
            c.open_output(f"{drip.origin}/files/video.mp4") as chunks,
        ):
            b"".join(chunks)
        assert time.monotonic() - started < 2.5


# -- probing outputs --------------------------------------------------------------------------


def test_probe_uses_head_when_it_names_a_type(canned):
    canned.routes[("HEAD", "/out/1")] = (200, b"x" * 5000, {"Content-Type": "video/mp4"})
    with canned_client(canned) as c:
        found = c.probe(f"{canned.origin}/out/1")
    assert found.content_type == "video/mp4" and found.content_length == 5000
    assert found.head == b"" and [m for m, _, _ in canned.requests] == ["HEAD"]
    assert "key" not in {k.lower() for k in canned.requests[0][2]}


def test_probe_reads_at_most_4_kb_when_the_server_ignores_range(canned):
    body = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 3_000_000
    canned.routes[("HEAD", "/out/2")] = (405, b"", {})
    canned.routes[("GET", "/out/2")] = (200, body, {"Content-Type": "application/octet-stream"})
    with canned_client(canned) as c:
        found = c.probe(f"{canned.origin}/out/2")
    assert found.head == body[:4096]
    assert found.content_length == len(body)
    get = next(h for m, _, h in canned.requests if m == "GET")
    assert get["Range"] == "bytes=0-4095" and "key" not in {k.lower() for k in get}


def test_probe_refuses_non_http_urls(canned):
    with canned_client(canned) as c, pytest.raises(OutputError, match="non-http"):
        c.probe("file:///etc/passwd")
    assert canned.requests == []


def test_probe_takes_the_whole_size_from_a_206s_content_range(canned):
    body = b"\x1aE\xdf\xa3" + b"\x00" * 4092
    canned.routes[("HEAD", "/out/3")] = (405, b"", {})
    canned.routes[("GET", "/out/3")] = (206, body, {"Content-Type": "video/webm",
                                                    "Content-Range": "bytes 0-4095/123456"})
    with canned_client(canned) as c:
        found = c.probe(f"{canned.origin}/out/3")
    assert (found.content_type, found.content_length, found.head) == ("video/webm", 123456, body)


def test_probe_keeps_what_a_vague_head_said_and_adds_the_first_bytes(canned):
    canned.routes[("HEAD", "/out/4")] = (200, b"x" * 5000,
                                         {"Content-Type": "application/octet-stream"})
    canned.routes[("GET", "/out/4")] = (200, b"GIF89a-rest", {"Content-Type": "image/gif"})
    with canned_client(canned) as c:
        found = c.probe(f"{canned.origin}/out/4")
    assert found.content_type == "application/octet-stream" and found.content_length == 5000
    assert found.head == b"GIF89a-rest"  # what the file is, the bytes tell (media.sniff)


def test_a_probe_whose_range_request_fails_is_an_output_error(canned):
    canned.routes[("HEAD", "/out/5")] = (404, b"", {})
    canned.routes[("GET", "/out/5")] = (404, b"gone", {})
    with canned_client(canned) as c, pytest.raises(OutputError, match="HTTP 404 probing"):
        c.probe(f"{canned.origin}/out/5")


# -- which addresses output downloads may reach -----------------------------------------------


@pytest.mark.parametrize(("address", "kind"), [
    ("8.8.8.8", "public"), ("127.0.0.2", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "loopback"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("fd00::1", "private"),
    ("100.64.0.1", "private"), ("::ffff:127.0.0.1", "loopback"), ("224.0.0.1", "reserved"),
])
def test_address_kinds(address, kind):
    from modelslab_widget.transport import address_kind

    assert address_kind(address) == kind


def test_a_public_apis_outputs_on_loopback_are_refused_unless_allowed(canned):
    canned.routes[("GET", "/files/a.png")] = (200, b"\x89PNG-bytes", {})
    url = f"{canned.origin}/files/a.png"
    public = "https://api.example.invalid/api/v1"
    with WorkflowsClient("k" * 12, base_url=public) as c:
        with pytest.raises(ImageError, match=r"127\.0\.0\.1, a loopback address"):
            c.fetch_image(url)
        with pytest.raises(OutputError, match=r"allow_private_outputs=True"):
            c.probe(url)
    assert canned.requests == []  # refused before anything was sent
    with WorkflowsClient("k" * 12, base_url="https://api.example.invalid/api/v1",
                         allow_private_outputs=True) as c:
        assert c.fetch_image(url) == b"\x89PNG-bytes"


def test_a_loopback_api_fetches_loopback_outputs_unless_told_not_to(canned):
    canned.routes[("GET", "/files/a.png")] = (200, b"\x89PNG-bytes", {})
    url = f"{canned.origin}/files/a.png"
    with canned_client(canned) as c:  # the simulator's case: all on this machine
        assert c.fetch_image(url) == b"\x89PNG-bytes"
    with (
        canned_client(canned, allow_private_outputs=False) as c,
        pytest.raises(ImageError, match="loopback"),
    ):
        c.fetch_image(url)


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/",
                                    "http://10.0.0.1/admin", "http://[fe80::1]/x"])
def test_a_redirect_to_an_inner_address_is_refused(canned, target):
    canned.routes[("GET", "/files/a.png")] = (302, b"", {"Location": target})
    with canned_client(canned, timeout=(1.0, 1.0)) as c:
        started = time.monotonic()
        with pytest.raises(ImageError, match=r"output from .*, a (link-local|private) address"):
            c.fetch_image(f"{canned.origin}/files/a.png")
    assert time.monotonic() - started < 1.0  # refused, never connected (which would hang)
    assert canned.count("GET", "/files/a.png") == 1


# -- redirects are followed hop by hop, each redirect closed unread ---------------------------


def test_an_output_redirects_gzip_bomb_body_is_never_read(canned):
    canned.routes[("GET", "/files/a.png")] = bomb_redirect("/files/b.png")
    canned.routes[("GET", "/files/b.png")] = (200, b"\x89PNG-bytes", {})
    with canned_client(canned) as c:
        data, peak = peak_memory_growth(
            lambda: c.fetch_image(f"{canned.origin}/files/a.png", max_bytes=1_000_000))
    assert data == b"\x89PNG-bytes"
    assert peak < 60 * 2**20, f"peak grew by {peak / 2**20:.0f} MB following a redirect"


# -- the key never reaches an output host, and nothing secret is shown ------------------------


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


def test_a_malformed_output_url_is_refused_without_the_key(canned):
    with canned_client(canned, key=TRACED_KEY) as c:
        with pytest.raises(ImageError, match="cannot be parsed") as info:
            c.fetch_image("http://[::1/x.png")
        assert key_sightings(info.value, TRACED_KEY) == []
        with pytest.raises(OutputError, match="cannot be parsed") as info:
            c.probe("http://[::1/x.png")
        assert key_sightings(info.value, TRACED_KEY) == []
    assert canned.requests == []


def test_an_output_urls_credentials_are_not_shown():
    with WorkflowsClient("k" * 12, base_url="http://127.0.0.1:9/api/v1", retries=0) as c:
        with pytest.raises(ImageError) as info:
            c.fetch_image(f"http://user:{URL_PASSWORD}@127.0.0.1:9/a.png")
        assert "127.0.0.1:9/a.png" in str(info.value)
        assert URL_PASSWORD not in str(info.value) and URL_PASSWORD not in repr(info.value)
        assert URL_PASSWORD not in repr(c)
