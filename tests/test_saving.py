"""Saving outputs of every kind: the bytes decide what is kept and how it is named, and
nothing already on disk is written through or replaced."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from modelslab_widget.errors import ImageError, OutputError
from modelslab_widget.saving import file_name_for, save_images, save_outputs
from tests.loopback import CannedServer, canned_client


@pytest.fixture
def canned():
    server = CannedServer({})
    yield server
    server.close()



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
