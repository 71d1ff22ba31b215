"""Output files: images drawn with Pillow (imported lazily), the sample videos, a WAV
tone and tiny 3D models, all made without network or heavy dependencies."""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import struct
import threading
import wave
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"),
           "WEBP": ("webp", "image/webp"), "GIF": ("gif", "image/gif")}


OUTPUT_TYPES = {  # output extension -> Content-Type
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm", "wav": "audio/wav",
    "glb": "model/gltf-binary", "obj": "model/obj", "stl": "model/stl", "ply": "model/x-ply",
}


PILLOW_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}


DATA_DIR = Path(__file__).with_name("data")


def _hues(prompt: str, index: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two pleasant colours that differ per (prompt, index) but are stable across runs."""
    digest = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    hue = digest[0] / 255
    second = (hue + 0.2 + digest[1] / 255 * 0.3) % 1.0
    first_rgb = colorsys.hsv_to_rgb(hue, 0.55 + digest[2] / 255 * 0.3, 0.95)
    second_rgb = colorsys.hsv_to_rgb(second, 0.7, 0.45 + digest[3] / 255 * 0.3)
    to8 = lambda rgb: tuple(int(c * 255) for c in rgb)  # noqa: E731
    return to8(first_rgb), to8(second_rgb)  # type: ignore[return-value]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType: bitmap font
        return ImageFont.load_default()


def render_image(prompt: str, index: int, size: tuple[int, int] = (512, 512)) -> Any:
    """A distinct, good-looking RGB picture: a diagonal gradient with the prompt and #index."""
    import textwrap

    from PIL import Image, ImageChops, ImageDraw

    width, height = size
    top, bottom = _hues(prompt, index)
    vertical = Image.linear_gradient("L")
    mask = ImageChops.add(vertical, vertical.rotate(90), scale=2.0).resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)
    draw = ImageDraw.Draw(image)
    unit = max(10, min(width, height) // 20)
    per_line = max(8, int((width - 2 * unit) / (unit * 0.6)))
    label = "\n".join(textwrap.wrap(prompt or "(no prompt)", per_line)[:6])
    _outlined_text(draw, (unit, unit), label, _font(unit))
    _outlined_text(draw, (unit, height - unit * 3), f"#{index + 1}", _font(unit * 2))
    return image


def _outlined_text(draw: Any, xy: tuple[int, int], text: str, font: Any) -> None:
    """White text with a dark outline, readable on any gradient."""
    try:
        draw.multiline_text(xy, text, font=font, fill="white", stroke_width=2, stroke_fill="black")
    except (TypeError, ValueError, OSError):  # bitmap fonts cannot be stroked
        draw.multiline_text(xy, text, font=font, fill="white")


def encode(image: Any, fmt: str, **options: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@lru_cache(maxsize=4)
def sample_video(ext: str = "mp4", size: int | None = None) -> bytes:
    """A 1 s 64x64 clip that Chromium plays (tools/make_sim_video.py made it with ffmpeg).

    `size` pads an MP4 to that many bytes with a trailing `free` box, which players skip, so
    a test can serve a big video that is still valid. WebM is never padded.
    """
    data = (DATA_DIR / f"sample.{ext}").read_bytes()
    if ext != "mp4" or size is None or size < len(data) + 8:
        return data
    padding = size - len(data)
    return data + struct.pack(">I", padding) + b"free" + bytes(padding - 8)


def tone_wav(frequency: float = 440.0, seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A real, audible sine tone: 16-bit mono PCM in a WAV container."""
    import io

    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * n / rate)))
        for n in range(int(seconds * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return buffer.getvalue()


_TRIANGLE = ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))


def model_3d(ext: str) -> bytes:
    """One triangle as a glTF 2.0 binary (glb) or a tiny text OBJ, STL or PLY file."""
    if ext == "glb":
        return _triangle_glb()
    vertices = "\n".join(" ".join(f"{c:g}" for c in v) for v in _TRIANGLE)
    if ext == "obj":
        text = "".join(f"v {' '.join(f'{c:g}' for c in v)}\n" for v in _TRIANGLE) + "f 1 2 3\n"
    elif ext == "stl":
        corners = "".join(f"      vertex {' '.join(f'{c:g}' for c in v)}\n" for v in _TRIANGLE)
        text = (f"solid simulator\n  facet normal 0 0 1\n    outer loop\n{corners}"
                "    endloop\n  endfacet\nendsolid simulator\n")
    elif ext == "ply":
        text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
                f"end_header\n{vertices}\n3 0 1 2\n")
    else:
        raise ValueError(f"not a 3D output kind: {ext!r}")
    return text.encode()


def _triangle_glb() -> bytes:
    """12-byte header, a JSON chunk and a BIN chunk holding the triangle's three positions."""
    positions = b"".join(struct.pack("<3f", *v) for v in _TRIANGLE)
    gltf = {
        "asset": {"version": "2.0", "generator": "modelslab-widget simulator"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "buffers": [{"byteLength": len(positions)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]}],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    chunks = (struct.pack("<I4s", len(text), b"JSON") + text
              + struct.pack("<I4s", len(positions), b"BIN\0") + positions)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def animated_gif(prompt: str, index: int, size: tuple[int, int]) -> bytes:
    frames = [render_image(f"{prompt} (frame {n})", index, size) for n in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200,
                   loop=0)


def exif_rotated(prompt: str, index: int) -> bytes:
    """A JPEG whose stored pixels are sideways (320x200) and EXIF Orientation=6 turns upright.

    Upright it is 200x320 with a red square in its top-left corner, so a test can check the
    viewer applied the orientation.
    """
    from PIL import Image, ImageDraw

    upright = render_image(prompt, index, (200, 320))
    ImageDraw.Draw(upright).rectangle((0, 0, 39, 39), fill=(255, 0, 0))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 320x200; orientation 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes())


_BOMB_LOCK = threading.Lock()


_BOMB_CACHE: list[bytes] = []


def decompression_bomb_png(side: int = 30000) -> bytes:
    """A ~100 KB PNG that declares a side x side 1-bit image (900 Mpixels once decoded).

    Written by hand with zlib so making it never allocates the full image.
    """
    with _BOMB_LOCK:
        if _BOMB_CACHE and side == 30000:
            return _BOMB_CACHE[0]
        row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
        compressor = zlib.compressobj(9)
        rows_per_chunk = 1000
        parts = [compressor.compress(row * min(rows_per_chunk, side - done))
                 for done in range(0, side, rows_per_chunk)]
        idat = b"".join(parts) + compressor.flush()
        header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
        data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
                + png_chunk(b"IEND", b""))
        if side == 30000:
            _BOMB_CACHE.append(data)
        return data


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
