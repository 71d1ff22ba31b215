"""Thumbnails from every kind of image the simulator can serve, good and hostile."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from modelslab_widget.errors import ImageError, OutputError
from modelslab_widget.media import (
    OutputKind,
    describe_outputs,
    file_name_for,
    kind_from_url,
    load_thumbnail,
    make_thumbnail,
    open_full_size,
    save_images,
    save_outputs,
    sniff,
)
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault
from modelslab_widget.urls import is_web_url
from tests.test_client import CannedServer, canned_client


@pytest.fixture
def canned():
    server = CannedServer({})
    yield server
    server.close()


def served_urls(sim, client, faults, images=1, size=(320, 200)):
    eid = sim.add_run(steps=[("Only", 0.0)], images=images, image_faults=faults, image_size=size)
    return client.get_run(DEMO_WORKFLOW_ID, eid)


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [
        (None, "jpeg"),
        ("gif_animated", "jpeg"),
        ("cmyk_jpeg", "jpeg"),
        ("png16", "jpeg"),
        ("rgba_png", "png"),
        ("webp", "jpeg"),
    ],
)
def test_good_images_become_small_thumbnails(sim, client, kind, fmt):
    faults = {0: Fault(kind)} if kind else None
    snap = served_urls(sim, client, faults)
    thumb = load_thumbnail(client, 0, snap.outputs, 64)
    assert thumb.ok, thumb.error
    assert max(thumb.image.size) <= 64 and thumb.format == fmt
    decoded = Image.open(io.BytesIO(thumb.data))
    assert decoded.format.lower() == fmt and decoded.size == thumb.image.size
    # 16-bit data is scaled into 8 bits, not clipped to white
    assert thumb.image.convert("L").getextrema() != (255, 255)


def test_exif_rotated_jpeg_is_shown_upright(sim, client):
    snap = served_urls(sim, client, {0: Fault("exif_rotated")})
    thumb = load_thumbnail(client, 0, snap.outputs, 256)
    assert thumb.ok
    width, height = thumb.image.size
    assert height > width  # stored 320x200 sideways, Orientation=6: upright is portrait


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("not_image"), "not an image"),
        (Fault("truncated"), "decode"),
        (Fault("bomb"), "bomb|too large"),
        (Fault("http", status=403), "HTTP 403"),
        (Fault("huge", size=60_000_000), "allowed"),
    ],
    ids=lambda f: getattr(f, "kind", ""),
)
def test_bad_images_give_a_reason_not_an_exception(sim, client, fault, reason):
    snap = served_urls(sim, client, {0: fault})
    thumb = load_thumbnail(client, 0, snap.outputs, 64, max_bytes=20_000_000)
    assert not thumb.ok and thumb.image is None
    assert thumb.error
    assert re.search(reason, thumb.error), thumb.error


def test_a_broken_output_falls_back_to_its_proxy_link(sim, client):
    snap = served_urls(sim, client, None)
    broken = snap.outputs[0].replace("/files/", "/nowhere/")
    thumb = load_thumbnail(client, 0, [broken, snap.proxy_links[0]], 64)
    assert thumb.ok and thumb.url == snap.proxy_links[0]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "javascript:alert(1)", "data:image/png;base64,AAAA", "//x/y"]
)
def test_non_web_urls_are_never_fetched(sim, client, url):
    thumb = load_thumbnail(client, 0, [url], 64)
    assert not thumb.ok and not is_web_url(url)
    assert sim.request_count() == 0


def test_large_jpeg_thumbnail_uses_draft_decoding():
    buffer = io.BytesIO()
    Image.new("RGB", (4096, 4096), (200, 30, 30)).save(buffer, "JPEG")
    thumb = make_thumbnail(buffer.getvalue(), 256)
    assert thumb.image.size == (256, 256) and thumb.original_size == (4096, 4096)


# -- kinds, probing and describing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://h/a.png", OutputKind.IMAGE), ("http://h/a.JPG", OutputKind.IMAGE),
        ("http://h/a.jpeg?x=1", OutputKind.IMAGE), ("http://h/a.webp", OutputKind.IMAGE),
        ("http://h/a.gif", OutputKind.IMAGE),  # animated GIFs show fine as images
        ("http://h/a.mp4", OutputKind.VIDEO), ("http://h/a.webm", OutputKind.VIDEO),
        ("http://h/a.mov", OutputKind.VIDEO), ("http://h/a.wav", OutputKind.AUDIO),
        ("http://h/a.mp3", OutputKind.AUDIO), ("http://h/a.flac", OutputKind.AUDIO),
        ("http://h/a.ogg", OutputKind.AUDIO), ("http://h/a.m4a", OutputKind.AUDIO),
        ("http://h/a.glb", OutputKind.MODEL3D), ("http://h/a.obj", OutputKind.MODEL3D),
        ("http://h/a.stl", OutputKind.MODEL3D), ("http://h/a.ply", OutputKind.MODEL3D),
        ("http://h/a.usdz", OutputKind.MODEL3D), ("http://h/a.gltf", OutputKind.MODEL3D),
        ("http://h/a", None), ("http://h/a.py", None), ("http://h/.png", None),
        ("http://h/dir.mp4/file", None),
    ],
)
def test_kind_from_the_url_extension(url, kind):
    assert kind_from_url(url) is kind


def test_outputs_with_telling_extensions_cost_no_request(sim, client):
    urls = [f"{sim.origin}/files/1/0.{ext}" for ext in ("png", "mp4", "wav", "glb")]
    infos = describe_outputs(client, [*urls, "file:///etc/passwd"])
    assert [i.kind for i in infos] == [OutputKind.IMAGE, OutputKind.VIDEO, OutputKind.AUDIO,
                                       OutputKind.MODEL3D, OutputKind.FILE]
    assert [i.index for i in infos] == [0, 1, 2, 3, 4]
    assert infos[1].content_type == "video/mp4" and infos[1].size is None
    assert infos[4].error and sim.request_count() == 0


def test_outputs_without_an_extension_are_probed(canned):
    canned.routes[("HEAD", "/o/a")] = (200, b"", {"Content-Type": "audio/wav",
                                                   "Content-Length": "1234"})
    canned.routes[("HEAD", "/o/b")] = (200, b"", {"Content-Type": "application/octet-stream"})
    canned.routes[("GET", "/o/b")] = (206, b"glTF\x02\x00\x00\x00" + b"\x00" * 100,
                                       {"Content-Range": "bytes 0-107/9000"})
    canned.routes[("HEAD", "/o/c")] = (500, b"", {})
    canned.routes[("GET", "/o/c")] = (500, b"", {})
    with canned_client(canned) as c:
        infos = describe_outputs(c, [f"{canned.origin}/o/{n}" for n in "abc"])
    assert (infos[0].kind, infos[0].content_type, infos[0].size) == (
        OutputKind.AUDIO, "audio/wav", 1234)
    assert (infos[1].kind, infos[1].content_type, infos[1].size) == (
        OutputKind.MODEL3D, "model/gltf-binary", 9000)
    assert infos[2].kind is OutputKind.FILE and "500" in (infos[2].error or "")


@pytest.mark.parametrize(
    ("head", "url", "extension"),
    [
        (b"\x89PNG\r\n\x1a\n....", "", ".png"),
        (b"\xff\xd8\xff\xe0", "", ".jpg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "", ".webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "", ".wav"),
        (b"\x00\x00\x00\x18ftypisom", "", ".mp4"),
        (b"\x00\x00\x00\x14ftypqt  ", "", ".mov"),
        (b"\x00\x00\x00\x20ftypM4A ", "", ".m4a"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "", ".webm"),
        (b"ID3\x04\x00", "", ".mp3"),
        (b"\xff\xfb\x90\x64", "", ".mp3"),
        (b"fLaC\x00", "", ".flac"),
        (b"OggS\x00", "", ".ogg"),
        (b"glTF\x02\x00\x00\x00", "", ".glb"),
        (b"ply\nformat ascii 1.0\n", "", ".ply"),
        (b"solid cube\n facet normal 0 0 1\n", "", ".stl"),
        (b"# made by a model\nv 0 0 0\nv 1 0 0\nf 1 2 3\n", "", ".obj"),
        (b"\x00" * 80 + b"\x01\x00\x00\x00", "http://h/m.stl", ".stl"),
        (b"#!/usr/bin/env python\nimport os\n", "http://h/numpy.py", None),
        (b"<html><script>alert(1)</script>", "http://h/a.png", None),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "http://h/a.eps", None),
        (b"PK\x03\x04" + b"\x00" * 22 + b"\x08\x00\x00\x00evil.exe", "http://h/a.usdz", None),
        (b"MZ\x90\x00", "http://h/a.exe", None),
        (b"\x00" * 84, "http://h/a.bin", None),
    ],
)
def test_sniff_recognises_containers_by_their_bytes(head, url, extension):
    found = sniff(head, url)
    assert (found.extension if found else None) == extension


# -- saving outputs of every kind ------------------------------------------------------------


def png_bytes(size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 6_000_000
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 1000
SCRIPT = b"#!/usr/bin/env python\nimport os\nos.system('rm -rf ~')\n" * 20


def serve(canned, **files: bytes) -> list[str]:
    for name, body in files.items():
        canned.routes[("GET", f"/f/{name}")] = (200, body, {})
    return [f"{canned.origin}/f/{name}" for name in files]


def test_save_outputs_streams_every_kind_named_by_detected_type(canned, tmp_path):
    urls = serve(canned, **{"clip.mp4": MP4, "voice": WAV, "numpy.py": png_bytes(),
                            "CON.png": png_bytes()})
    with canned_client(canned) as c:
        paths = save_outputs(c, urls, tmp_path)
    assert [p.name for p in paths] == ["clip.mp4", "voice.wav", "numpy.png", "_CON.png"]
    assert paths[0].read_bytes() == MP4 and paths[1].read_bytes() == WAV
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_a_script_is_refused_unless_asked_and_then_saved_as_bin(canned, tmp_path):
    (url,) = serve(canned, **{"numpy.py": SCRIPT})
    with canned_client(canned) as c:
        with pytest.raises(OutputError, match="allow_unknown") as info:
            save_outputs(c, [url], tmp_path)
        assert list(tmp_path.iterdir()) == []  # nothing left behind, not even a part file
        assert "'.py'" in str(info.value)
        (path,) = save_outputs(c, [url], tmp_path, allow_unknown=True)
    assert path.name == "numpy.bin" and path.read_bytes() == SCRIPT


def test_html_posing_as_an_image_is_refused(canned, tmp_path):
    (url,) = serve(canned, **{"a.png": b"<html>" + b"x" * 2000})
    with canned_client(canned) as c, pytest.raises(OutputError, match="unknown type"):
        save_images(c, [url], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_images_refuses_a_video_and_a_fake_image(canned, tmp_path):
    fake = b"\x89PNG\r\n\x1a\n" + b"garbage" * 100
    urls = serve(canned, **{"v.png": MP4[:5000], "f.png": fake, "ok.jpeg": png_bytes()})
    errors: list = []
    with canned_client(canned) as c:
        paths = save_images(c, urls, tmp_path, on_error=lambda i, u, e: errors.append((i, e)))
    assert [p.name for p in paths] == ["ok.png"]  # a PNG named .jpeg is saved as .png
    assert [i for i, _ in errors] == [0, 1] and "not video" not in str(errors[0][1])
    assert "Pillow" in str(errors[1][1])


def test_binary_stl_must_match_its_triangle_count(canned, tmp_path):
    good = b"\x00" * 80 + (2).to_bytes(4, "little") + b"\x01" * 100
    bad = b"\x00" * 80 + (9).to_bytes(4, "little") + b"\x01" * 100
    urls = serve(canned, **{"good.stl": good, "bad.stl": bad})
    errors: list = []
    with canned_client(canned) as c:
        paths = save_outputs(c, urls, tmp_path, on_error=lambda i, u, e: errors.append(e))
    assert [p.name for p in paths] == ["good.stl"] and "STL" in str(errors[0])


def test_save_outputs_never_writes_through_a_symlink(canned, tmp_path):
    (url,) = serve(canned, **{"clip.mp4": MP4[:10_000]})
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "clip.mp4").symlink_to(outside)
    with canned_client(canned) as c:
        (path,) = save_outputs(c, [url], folder)
    assert path.name == "clip-1.mp4" and outside.read_text() == "keep me"


def test_a_refused_type_stops_the_download_early(canned, tmp_path):
    (url,) = serve(canned, **{"big.bin": b"MZ" + b"\x00" * 20_000_000})
    with canned_client(canned) as c:
        started = time.monotonic()
        with pytest.raises(OutputError):
            save_outputs(c, [url], tmp_path)
    assert time.monotonic() - started < 2.0 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["EPS", "TIFF", "ICO"])
def test_pillow_only_decodes_the_allowed_formats(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, fmt)
    with pytest.raises(ImageError, match="not an image"):
        make_thumbnail(buffer.getvalue(), 8)
    with pytest.raises(ImageError, match="not an image"):
        open_full_size(buffer.getvalue())


def test_a_16_bit_image_is_shrunk_before_it_is_converted():
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((2000, 1500)).convert("I").point(lambda v: v * 256).convert(
        "I;16").save(buffer, "PNG")
    thumb = make_thumbnail(buffer.getvalue(), 64)
    assert thumb.original_size == (2000, 1500) and max(thumb.image.size) == 64
    assert thumb.image.convert("L").getextrema()[1] > 0


# -- save_images, as the command line uses it --

@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://h/files/1/0.png", "0.png"),
        ("http://h/files/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("http://h/a/..%5C..%5Cevil.png", "evil.png"),
        ("http://h/files/.bashrc", "bashrc"),
        ("http://h/files/a%20b%3Bc%00.png?x=../y", "a_b_c_.png"),
        ("http://h/", "output-3"),
        ("http://h/..", "output-3"),
        ("http://h/" + "x" * 300 + ".webp", "x" * 95 + ".webp"),
    ],
)
def test_file_names_from_urls_are_safe(url, name):
    assert file_name_for(url, 2) == name


def test_save_images_never_follows_or_replaces_an_existing_symlink(client, sim, tmp_path):
    eid = sim.add_run(steps=[("Only", 0.0)], images=1)
    url = sim.run_state(eid)["output"]["output"][0]
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "new" / "dir"
    folder.mkdir(parents=True)
    (folder / "0.png").symlink_to(outside)
    paths = save_images(client, [url], folder)
    assert paths == [folder / "0-1.png"]
    assert outside.read_text() == "keep me"
    assert paths[0].read_bytes() == requests.get(url, timeout=10).content


def test_save_images_falls_back_to_the_proxy_link_and_adds_a_suffix(client, sim, tmp_path):
    eid = sim.add_run(steps=[("Only", 0.0)], images=1)
    state = sim.run_state(eid)["output"]
    broken = state["output"][0].rsplit("/", 1)[0] + "/no-extension"
    saved: list[Path] = []
    paths = save_images(client, [broken], tmp_path, fallbacks=state["proxy_links"],
                        on_saved=saved.append)
    assert paths == saved == [tmp_path / "0.png"]  # named after the URL that worked


def test_save_images_raises_without_on_error(client, tmp_path):
    with pytest.raises(ImageError):
        save_images(client, ["file:///etc/passwd"], tmp_path)
    assert list(tmp_path.iterdir()) == []
