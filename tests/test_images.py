"""Thumbnails and full-size decodes of every kind of image the simulator can serve, good and
hostile."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from modelslab_widget.errors import ImageError
from modelslab_widget.images import load_thumbnail, make_thumbnail, open_full_size
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault
from modelslab_widget.urls import is_web_url


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
    "url", ["file:///etc/passwd", "javascript:alert(1)", "data:image/png;base64,AAAA", "//x/y",
            "https:///x.png"]
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
