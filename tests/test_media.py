"""An output's kind: from its URL's extension, from its first bytes, from a probe; and
which of its URLs to use."""

from __future__ import annotations

import pytest

from modelslab_widget.errors import ImageError, NotFoundError
from modelslab_widget.media import (
    OutputKind,
    candidates_for,
    describe_output,
    first_that_works,
    kind_from_media_type,
    kind_from_url,
    sniff,
)
from tests.loopback import CannedServer, canned_client


@pytest.fixture
def canned():
    server = CannedServer({})
    yield server
    server.close()



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
    infos = [describe_output(client, url, index)
             for index, url in enumerate([*urls, "file:///etc/passwd", "https:///x.png"])]
    assert [i.kind for i in infos] == [OutputKind.IMAGE, OutputKind.VIDEO, OutputKind.AUDIO,
                                       OutputKind.MODEL3D, OutputKind.FILE, OutputKind.FILE]
    assert [i.index for i in infos] == [0, 1, 2, 3, 4, 5]
    assert infos[1].content_type == "video/mp4" and infos[1].size is None
    assert infos[4].error and infos[5].error and sim.request_count() == 0


def test_outputs_without_an_extension_are_probed(canned):
    canned.routes[("HEAD", "/o/a")] = (200, b"", {"Content-Type": "audio/wav",
                                                   "Content-Length": "1234"})
    canned.routes[("HEAD", "/o/b")] = (200, b"", {"Content-Type": "application/octet-stream"})
    canned.routes[("GET", "/o/b")] = (206, b"glTF\x02\x00\x00\x00" + b"\x00" * 100,
                                       {"Content-Range": "bytes 0-107/9000"})
    canned.routes[("HEAD", "/o/c")] = (500, b"", {})
    canned.routes[("GET", "/o/c")] = (500, b"", {})
    with canned_client(canned) as c:
        infos = [describe_output(c, f"{canned.origin}/o/{n}") for n in "abc"]
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
        (b"ply\r\nformat ascii 1.0\r\n", "", ".ply"),
        (b"GIF89a\x01\x00", "", ".gif"),
        (b"BM\x36\x00", "", ".bmp"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "", ".mkv"),
        (b"\xff\xf1\x50\x80", "", ".aac"),
        (b"Kaydara FBX Binary  \x00", "", ".fbx"),
        (b'{"asset": {"version": "2.0"}, "scenes": []}', "", ".gltf"),
        (b"PK\x03\x04" + b"\x00" * 22 + b"\x0a\x00\x00\x00scene.usdc", "http://h/a.usdz", ".usdz"),
        (b"PK\x03\x04" + b"\x00" * 22 + b"\x0a\x00\x00\x00scene.usdc", "http://h/a.zip", None),
        (b"\x00" * 80 + b"\x01\x00\x00\x00", "", None),  # binary STL only behind .stl
        (b"solid? no: just some words\n", "http://h/m.obj", ".stl"),
        (b"just some words\n", "http://h/m.stl", None),  # text that is no 3D format
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


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [("image/png", OutputKind.IMAGE), ("video/mp4", OutputKind.VIDEO),
     ("application/ogg", OutputKind.AUDIO), ("model/stl", OutputKind.MODEL3D),
     ("application/sla", OutputKind.MODEL3D), ("text/html", None), (None, None)],
)
def test_kind_from_the_content_type(media_type, kind):
    assert kind_from_media_type(media_type) is kind


def test_an_outputs_candidates_are_it_then_its_proxy_link_once():
    assert candidates_for(["a", "b", "c"], ["pa", "b"]) == [["a", "pa"], ["b"], ["c"]]


def test_first_that_works_skips_non_web_urls_and_keeps_the_last_error():
    tried: list[str] = []

    def work(url: str) -> str:
        tried.append(url)
        if url.endswith("/broken"):
            raise NotFoundError("gone")
        return url.upper()

    urls = ["file:///x", "https:///no-host", "http://h/broken", "http://h/ok"]
    assert first_that_works(urls, work) == ("http://h/ok", "HTTP://H/OK")
    assert tried == ["http://h/broken", "http://h/ok"]
    with pytest.raises(NotFoundError, match="gone"):
        first_that_works(["http://h/broken"], work)
    with pytest.raises(ImageError, match="no http"):
        first_that_works(["javascript:alert(1)", "http://user@/x"], work)
