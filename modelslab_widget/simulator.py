"""A local ModelsLab Workflows API over real HTTP, for the demo notebook, tests and benchmarks.

Runs are scripted in real time (queue, then each step for its duration), so a client watching
them sees the same sequence of answers it would see against modelslab.com. Faults (5xx, 429,
garbage bodies, slow or dropped connections, broken images) can be injected per request so the
client's error handling is exercised over a real socket, not through mocks.

Only the standard library is imported at module level; Pillow is imported where images are made.
"""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import hashlib
import json
import math
import re
import secrets
import shlex
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import wave
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_PARAMETERS",
    "DEFAULT_STEPS",
    "DEMO_MEDIA_WORKFLOW_ID",
    "DEMO_WORKFLOW_ID",
    "OUTPUT_TYPES",
    "Fault",
    "Simulator",
    "StepSpec",
    "main",
]

DEMO_WORKFLOW_ID = "5f3c2a1e-8d4b-4e8b-9c1d-0a7b6e5f4d3c"
DEMO_WORKFLOW_NAME = "Text to Image + Upscale"
DEMO_MEDIA_WORKFLOW_ID = "9a7e4c2b-3f1d-4a6e-b8c5-2d0f1e3a4b5c"
DEMO_MEDIA_WORKFLOW_NAME = "Text to Video + Soundtrack"
DEMO_MEDIA_OUTPUTS = ("png", "mp4", "wav", "glb")
FIRST_EXECUTION_ID = 12345
RATE_LIMIT_WINDOW = 60.0
DOCUMENTED_RATE_LIMIT = 10  # what the API reports for a workflow without its own limit
CONNECTION_TIMEOUT = 5.0  # idle keep-alive connections end by themselves after this
HTML_BAD_GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"

DEFAULT_PARAMETERS: tuple[dict[str, Any], ...] = (
    {"key": "prompt", "type": "string", "required": True,
     "node_id": "node-1", "node_name": "Text to Image"},
    {"key": "negative_prompt", "type": "string", "required": False,
     "node_id": "node-1", "node_name": "Text to Image"},
    {"key": "width", "type": "number", "required": False,
     "node_id": "node-1", "node_name": "Text to Image"},
)
DEMO_PARAMETERS: tuple[dict[str, Any], ...] = (
    *DEFAULT_PARAMETERS,
    {"key": "height", "type": "number", "required": False,
     "node_id": "node-1", "node_name": "Text to Image"},
)

GENERIC_FAULTS = frozenset({
    "http", "rate_limit", "html", "truncated_json", "api_error", "json", "slow", "trickle",
    "drop", "reset", "huge", "redirect_loop",
})
IMAGE_VARIANTS = {  # fault kind -> (file extension, content type)
    "gif_animated": ("gif", "image/gif"),
    "cmyk_jpeg": ("jpg", "image/jpeg"),
    "png16": ("png", "image/png"),
    "rgba_png": ("png", "image/png"),
    "webp": ("webp", "image/webp"),
    "exif_rotated": ("jpg", "image/jpeg"),
}
IMAGE_FAULTS = frozenset({"not_image", "truncated", "bomb", *IMAGE_VARIANTS})
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"),
           "WEBP": ("webp", "image/webp"), "GIF": ("gif", "image/gif")}
OUTPUT_TYPES = {  # output extension -> Content-Type
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm", "wav": "audio/wav",
    "glb": "model/gltf-binary", "obj": "model/obj", "stl": "model/stl", "ply": "model/x-ply",
}
PILLOW_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
NO_EXTENSION = "?noext"  # an output spec like "mp4?noext" gets a URL without extension
DATA_DIR = Path(__file__).with_name("simulator") / "data"
# POST faults after which the run exists (or is cancelled) anyway: the server did the work,
# the answer got lost.
POST_FAULTS_THAT_CREATE = frozenset({"slow", "trickle", "truncated_json", "drop", "reset"})


@dataclass(frozen=True)
class StepSpec:
    """One step of a scripted run: its name and how long it runs, in seconds."""

    name: str
    duration: float


DEFAULT_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 1.0),
                                       StepSpec("Image Upscaler", 1.0))
DEMO_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 2.5),
                                    StepSpec("Image Upscaler", 2.0))
# slow enough that the run is still going when its watch command has been pasted
CLI_DEMO_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 20.0),
                                        StepSpec("Image Upscaler", 15.0))
DEMO_MEDIA_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 1.5),
                                          StepSpec("Image to Video", 2.5),
                                          StepSpec("Text to Audio", 1.5),
                                          StepSpec("Image to 3D", 1.5))


@dataclass(frozen=True)
class Fault:
    """A misbehaviour injected instead of (or around) the normal answer.

    `times` is how many consecutive requests it applies to (None: forever). Image faults
    apply to every request of their image and ignore `times`.
    """

    kind: str
    status: int | None = field(default=None, kw_only=True)
    retry_after: int | None = field(default=None, kw_only=True)
    retry_after_in: str = field(default="body", kw_only=True)
    delay: float = field(default=0.0, kw_only=True)
    size: int | None = field(default=None, kw_only=True)
    body: Any = field(default=None, kw_only=True)
    times: int | None = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        if self.kind not in GENERIC_FAULTS | IMAGE_FAULTS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.retry_after_in not in ("body", "header", "both", "none"):
            raise ValueError(f"retry_after_in must be body/header/both/none, "
                             f"not {self.retry_after_in!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None")


class _FaultQueue:
    """Faults consumed in order, one per request; the caller holds the simulator's lock."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._items: deque[list[Any]] = deque()
        self.extend(faults)

    def extend(self, faults: Iterable[Fault]) -> None:
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {fault!r}")
            self._items.append([fault, fault.times])

    def take(self) -> Fault | None:
        if not self._items:
            return None
        item = self._items[0]
        if item[1] is not None:
            item[1] -= 1
            if item[1] <= 0:
                self._items.popleft()
        return item[0]


@dataclass
class _Workflow:
    id: str
    name: str
    description: str
    parameters: list[dict[str, Any]]
    steps: tuple[StepSpec, ...]
    images: int
    rate_limit: int | None
    webhook_url: str | None
    outputs: tuple[_Output, ...] | None = None
    created_at: float = field(default_factory=time.time)
    last_called_at: float | None = None
    post_faults: _FaultQueue = field(default_factory=_FaultQueue)
    schema_faults: _FaultQueue = field(default_factory=_FaultQueue)
    cancel_faults: _FaultQueue = field(default_factory=_FaultQueue)
    runs_started: int = 0

    def summary(self) -> dict[str, Any]:
        """The workflow's entry in GET /workflows."""
        updated = self.last_called_at or self.created_at
        return {"id": self.id, "name": self.name, "description": self.description,
                "rate_limit": self.rate_limit or DOCUMENTED_RATE_LIMIT,
                "call_count": self.runs_started,
                "last_called_at": _iso(self.last_called_at) if self.last_called_at else None,
                "created_at": _iso(self.created_at), "updated_at": _iso(updated)}


@dataclass(frozen=True)
class _Output:
    """One output file of a run: its kind (extension) and whether its URL shows it."""

    ext: str
    noext: bool = False

    @classmethod
    def parse(cls, spec: str) -> _Output:
        ext, noext = spec.lower(), spec.lower().endswith(NO_EXTENSION)
        ext = ext.removesuffix(NO_EXTENSION)
        if ext not in OUTPUT_TYPES:
            raise ValueError(f"unknown output kind {spec!r}; known: {', '.join(OUTPUT_TYPES)}")
        return cls(ext, noext)


@dataclass
class _Run:
    id: int
    workflow_id: str
    steps: tuple[StepSpec, ...]
    outcome: str
    outputs: tuple[_Output, ...]
    error: str
    prompt: str
    queue_time: float
    announce: str
    status_faults: _FaultQueue
    image_faults: dict[int, Fault]
    image_size: tuple[int, int]
    t0_mono: float
    video_bytes: int | None = None
    cancelled_at: float | None = None  # offset from t0 of an accepted cancel request
    t0_wall: float = field(default_factory=time.time)

    def step_bounds(self) -> list[tuple[float, float]]:
        """(start, end) offsets of each step from the run's creation."""
        bounds, at = [], self.queue_time
        for step in self.steps:
            bounds.append((at, at + step.duration))
            at += step.duration
        return bounds

    def end_offset(self) -> float:
        bounds = self.step_bounds()
        if not bounds:
            return self.queue_time
        return bounds[-1][0] if self.outcome == "cancelled" else bounds[-1][1]

    def ending(self) -> tuple[float, str]:
        """When the run ends (offset from t0) and how: a cancel request overrides the script."""
        if self.cancelled_at is not None:
            return self.cancelled_at, "cancelled"
        return self.end_offset(), self.outcome

    def status_at(self, offset: float) -> str:
        end, outcome = self.ending()
        if offset >= end:
            return outcome
        return "pending" if offset < self.queue_time else "running"

    def output_type(self, index: int) -> tuple[str, str]:
        """(extension, Content-Type) of output `index`; an image variant fault changes it."""
        fault = self.image_faults.get(index)
        if fault is not None and fault.kind in IMAGE_VARIANTS:
            return IMAGE_VARIANTS[fault.kind]
        ext = self.outputs[index].ext
        return ext, OUTPUT_TYPES[ext]


def _iso(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds and Z, the form the real API uses."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _run_body(run: _Run, origin: str, now: float | None = None) -> dict[str, Any]:
    """The status answer for `run` at monotonic time `now`, shaped like the API examples."""
    offset = (time.monotonic() if now is None else now) - run.t0_mono
    start = run.queue_time
    end, outcome = run.ending()

    def stamp(off: float) -> str:
        return _iso(run.t0_wall + off)

    status = run.status_at(offset)
    finished = status == outcome
    started = offset >= start and start <= end  # a run cancelled while queued never started
    execution = {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": status,
        "started_at": stamp(start) if started else None,
        "completed_at": stamp(end) if finished else None,
        "execution_time": round(max(0.0, end - start), 3) if finished else None,
    }
    body: dict[str, Any] = {"status": "success", "execution": execution}
    if status == "completed":
        body["output"] = {"output": _image_urls(run, origin, "files"),
                          "proxy_links": _image_urls(run, origin, "proxy"),
                          "status": "success"}
    if status == "failed":
        body["error"] = run.error
    body["steps"] = _steps_body(run, offset, stamp)
    return body


def _steps_body(run: _Run, offset: float, stamp: Callable[[float], str]) -> list[dict[str, Any]]:
    steps = []
    last = len(run.steps) - 1
    cancel = run.cancelled_at
    for index, (spec, (begin, finish)) in enumerate(zip(run.steps, run.step_bounds(), strict=True)):
        started = completed = None
        if cancel is not None and offset >= cancel and finish > cancel:
            # the step running at the cancel is cancelled; later ones never start
            if begin <= cancel:
                status, started, completed = "cancelled", stamp(begin), stamp(cancel)
            else:
                status = "pending"
        elif run.outcome == "cancelled" and index == last and offset >= begin:
            status = "cancelled"
        elif offset < begin:
            status = "pending"
        elif offset < finish:
            status, started = "running", stamp(begin)
        else:
            failed = run.outcome == "failed" and index == last
            status, started, completed = ("failed" if failed else "completed",
                                          stamp(begin), stamp(finish))
        if started is None and run.announce == "started":
            continue  # this step never started: a "started" script does not list it
        steps.append({"name": spec.name, "status": status,
                      "started_at": started, "completed_at": completed})
    return steps


def _image_urls(run: _Run, origin: str, kind: str) -> list[str]:
    urls = []
    for index, output in enumerate(run.outputs):
        suffix = "" if output.noext else "." + run.output_type(index)[0]
        urls.append(f"{origin}/{kind}/{run.id}/{index}{suffix}")
    return urls


def _validate(parameters: Sequence[Mapping[str, Any]], body: Any) -> dict[str, list[str]]:
    """Per-field messages in the API's (Laravel) style; empty when the body is acceptable."""
    if not isinstance(body, dict):
        return {"body": ["The request body must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    for param in parameters:
        key, value = param["key"], body.get(param["key"])
        if value is None or value == "":
            if param.get("required"):
                errors[key] = [f"The {key} field is required."]
        elif not _type_ok(param.get("type", "string"), value):
            errors[key] = [f"The {key} field must be a {param.get('type')}."]
    return errors


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return True  # types the simulator does not know (image, ...) are accepted as they come


# ---------------------------------------------------------------- images (Pillow, lazily)

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


def _encode(image: Any, fmt: str, **options: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _output_bytes(run: _Run, index: int) -> bytes:
    """The bytes of output `index` of `run`, of its kind (or of its image variant fault)."""
    fault = run.image_faults.get(index)
    ext = run.outputs[index].ext
    if (fault is not None and fault.kind in IMAGE_VARIANTS) or ext in PILLOW_FORMATS:
        return _image_bytes(run, index)
    if ext in ("mp4", "webm"):
        return sample_video(ext, run.video_bytes if ext == "mp4" else None)
    if ext == "wav":
        return tone_wav(220.0 * (1 + index % 4))
    return model_3d(ext)


def _image_bytes(run: _Run, index: int) -> bytes:
    """Output `index` as an image: normal, or the format variant its fault asks for."""
    fault = run.image_faults.get(index)
    variant = fault.kind if fault is not None and fault.kind in IMAGE_VARIANTS else None
    if variant == "exif_rotated":
        return _exif_rotated(run.prompt, index)
    image = render_image(run.prompt, index, run.image_size)
    if variant == "gif_animated":
        return _animated_gif(run.prompt, index, run.image_size)
    if variant == "cmyk_jpeg":
        return _encode(image.convert("CMYK"), "JPEG", quality=90)
    if variant == "png16":
        return _encode(image.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"),
                       "PNG")
    if variant == "rgba_png":
        from PIL import Image

        image.putalpha(Image.linear_gradient("L").rotate(90).resize(run.image_size))
        return _encode(image, "PNG")
    if variant == "webp":
        return _encode(image, "WEBP", quality=85)
    fmt = PILLOW_FORMATS[run.outputs[index].ext]
    if fmt == "GIF":  # a short animation, the kind of "video" a browser shows as an image
        return _animated_gif(run.prompt, index, run.image_size)
    return _encode(image.convert("RGB") if fmt == "JPEG" else image, fmt)


# ---------------------------------------------------------------- video, audio, 3D

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


def _animated_gif(prompt: str, index: int, size: tuple[int, int]) -> bytes:
    frames = [render_image(f"{prompt} (frame {n})", index, size) for n in range(3)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200,
                   loop=0)


def _exif_rotated(prompt: str, index: int) -> bytes:
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
    return _encode(stored, "JPEG", quality=92, exif=exif.tobytes())


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
        data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
                + _png_chunk(b"IEND", b""))
        if side == 30000:
            _BOMB_CACHE.append(data)
        return data


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


# ---------------------------------------------------------------- HTTP plumbing

@dataclass
class _Answer:
    """A complete HTTP answer; `chunks` streams a big body instead of holding it in memory."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Callable[[], Iterator[bytes]] | None = None
    length: int | None = None
    served: int | None = None  # the execution id whose file bytes this body counts toward


def _json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def _error(status: int, message: str, **extra: Any) -> _Answer:
    return _json_answer(status, {"status": "error", "message": message, **extra})


def _filler(total: int, head: bytes, fill: bytes = b"a") -> Callable[[], Iterator[bytes]]:
    """Stream `head` then filler up to `total` bytes, 64 KiB at a time."""
    def chunks() -> Iterator[bytes]:
        yield head[:total]
        left, block = total - min(len(head), total), fill * (65536 // len(fill))
        while left > 0:
            piece = block[:left]
            left -= len(piece)
            yield piece
    return chunks


def _huge_json(size: int) -> _Answer:
    """Valid JSON of exactly `size` bytes, so a client must refuse it by size, not by syntax."""
    head, tail = b'{"status": "success", "padding": "', b'"}'
    size = max(size, len(head) + len(tail))
    inner = _filler(size - len(tail), head)
    return _Answer(200, chunks=lambda: iter([*inner(), tail]), length=size)


def _byte_range(header: str, total: int) -> range | None:
    """The bytes a single `Range: bytes=...` asks for; empty if unsatisfiable, None if the
    header is not one range we understand (then the whole file is sent, as RFC 9110 allows)."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # bytes=-N: the last N bytes
        return range(max(0, total - int(match[2])), total if int(match[2]) else 0)
    first = int(match[1])
    last = int(match[2]) if match[2] else total - 1
    if match[2] and last < first:
        return None
    if first >= total:
        return range(0)
    return range(first, min(last, total - 1) + 1)


def _ranged(answer: _Answer, header: str | None) -> _Answer:
    """`answer` (a whole file) cut to the Range asked for: 206, or 416 when unsatisfiable."""
    answer.headers["Accept-Ranges"] = "bytes"
    if header is None or answer.status != 200 or answer.chunks is not None:
        return answer
    total = len(answer.body)
    wanted = _byte_range(header, total)
    if wanted is None:
        return answer
    if not wanted:
        return _Answer(416, content_type=answer.content_type,
                       headers={"Content-Range": f"bytes */{total}", "Accept-Ranges": "bytes"})
    headers = {**answer.headers,
               "Content-Range": f"bytes {wanted.start}-{wanted.stop - 1}/{total}"}
    return _Answer(206, answer.body[wanted.start:wanted.stop], answer.content_type,
                   headers=headers, served=answer.served)


def _huge_png(size: int) -> _Answer:
    """A PNG signature and a valid 512x512 header, then filler up to `size` bytes."""
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 512, 512, 8, 2,
                                                                  0, 0, 0))
    return _Answer(200, content_type="image/png", chunks=_filler(size, head, b"\0"), length=size)


class _Server(ThreadingHTTPServer):
    """Tracks its connections and handler threads so stop() can end every one of them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.handler_threads: set[threading.Thread] = set()
        self.accepted = 0
        self.track_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name=f"simulator-conn-{client_address[1]}", daemon=True)
        with self.track_lock:
            self.connections.add(request)
            self.handler_threads.add(thread)
            self.accepted += 1
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.track_lock:
                self.connections.discard(request)
                self.handler_threads.discard(threading.current_thread())

    def close_connections(self) -> None:
        """Wake handler threads blocked reading idle keep-alive connections."""
        with self.track_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer is normal here (faults, timeouts): stay quiet."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request logs would flood test output and notebooks."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        headers = dict(self.headers.items())
        simulator = self.server.simulator
        if simulator._wants_body(self.path, headers):
            body = self._read_body()
        else:
            # Unread, a body would be taken for the next request; reading it could cost
            # hundreds of MB for a request that gets a 401 anyway. Answer, then hang up.
            body = b""
            if self._has_body():
                self.close_connection = True
        answer, fault = simulator._respond(method, self.path, headers, body)
        if self.close_connection:
            answer.headers["Connection"] = "close"
        self._deliver(answer, fault, head_only=method == "HEAD")

    def _has_body(self) -> bool:
        if self.headers.get("Transfer-Encoding"):
            return True
        return (self.headers.get("Content-Length") or "0").strip() not in ("", "0")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # not supported: do not misread the next request
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _deliver(self, answer: _Answer, fault: Fault | None, *, head_only: bool = False) -> None:
        kind = fault.kind if fault else None
        if kind == "slow" and self.server.stopping.wait(fault.delay):  # type: ignore[union-attr]
            return
        if kind in ("drop", "reset"):
            self._hang_up(rst=kind == "reset")
            return
        self._send_head(answer)
        if head_only:
            return
        if kind == "trickle":
            self._trickle(answer.body, fault)  # type: ignore[arg-type]
        elif answer.chunks is not None:
            for chunk in answer.chunks():
                self._write(chunk, answer.served)
        else:
            for start in range(0, len(answer.body), 65536):
                self._write(answer.body[start:start + 65536], answer.served)

    def _write(self, data: bytes, served: int | None) -> None:
        """Write part of a body; file bytes count once the socket took them."""
        self.wfile.write(data)
        if served is not None:
            self.server.simulator._count_bytes(served, len(data))

    def _send_head(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        length = answer.length if answer.chunks is not None else len(answer.body)
        self.send_header("Content-Length", str(length))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _trickle(self, body: bytes, fault: Fault) -> None:
        step = fault.size or 16
        for start in range(0, len(body), step):
            if start and self.server.stopping.wait(fault.delay):
                return
            self.wfile.write(body[start:start + step])

    def _hang_up(self, *, rst: bool) -> None:
        """Close without answering; with rst, SO_LINGER 0 makes the close send a RST."""
        self.close_connection = True
        if rst:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        self.connection.close()


_STATUS_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/runs/([^/]+)/?$")
_CANCEL_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/runs/([^/]+)/cancel/?$")
_RUN_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/run/?$")
_WORKFLOW_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/?$")
_LIST_PATH = re.compile(r"^/api/v1/workflows/?$")
_IMAGE_PATH = re.compile(r"^/(files|proxy)/(\d+)/(\d+)(?:\.([A-Za-z0-9]+))?$")
_API_ROUTES = (("status", _STATUS_PATH), ("cancel", _CANCEL_PATH), ("run", _RUN_PATH),
               ("workflow", _WORKFLOW_PATH), ("list", _LIST_PATH))
_METHODS = {"run": "POST", "cancel": "POST"}  # the others are GET


# ---------------------------------------------------------------- the simulator

class Simulator:
    """A ModelsLab Workflows API on 127.0.0.1 with scripted runs and injectable faults.

    Use it as a context manager: `with Simulator() as sim: ...` starts it and stops it,
    leaving no thread behind.

    `rate_window` is the length in seconds of the sliding window of `add_workflow(rate_limit=)`
    (a minute on modelslab.com; shorter to play a compressed minute). `clock` is the monotonic
    clock that scripts runs and times the window; a test may pass one it moves by hand.
    """

    def __init__(self, api_key: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, *, rate_window: float = RATE_LIMIT_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_window <= 0:
            raise ValueError("rate_window must be > 0")
        self.api_key = api_key if api_key is not None else "sim-" + secrets.token_hex(8)
        self.host = host
        self.rate_window = rate_window
        self._clock = clock
        self._port = port
        self._lock = threading.RLock()
        self._list_faults = _FaultQueue()
        self._rate_limited_counts: Counter[str] = Counter()
        self._accepted: dict[str, list[float]] = {}
        self._bytes_served: Counter[int] = Counter()
        self._workflows: dict[str, _Workflow] = {}
        self._runs: dict[int, _Run] = {}
        self._next_id = FIRST_EXECUTION_ID
        self._requests: Counter[tuple[str, int | None]] = Counter()
        self._connections_base = 0  # accepted connections of the stopped server
        self._connections_offset = 0  # accepted connections before reset_counts
        self._rate_windows: dict[tuple[str, str], deque[float]] = {}
        self._image_cache: dict[tuple[int, int], bytes] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._register_demo()

    # -- lifecycle

    def start(self) -> Simulator:
        """Bind and serve on a background thread; returns self for chaining."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a Simulator starts once")
        self._server = _Server((self.host, self._port), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"simulator-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and end every connection and thread; safe to call twice."""
        server, self._server = self._server, None
        self._stopped = True
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        with server.track_lock:
            threads = list(server.handler_threads)
        for thread in threads:
            thread.join(10)
        self._connections_base = server.accepted

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v1"

    def status_url(self, workflow_id: str, execution_id: int | str) -> str:
        return f"{self.base_url}/workflows/{workflow_id}/runs/{execution_id}"

    # -- scripting

    def add_workflow(self, workflow_id: str | None = None, *, name: str = "Image Generator",
                     description: str = "Generates images using Stable Diffusion",
                     parameters: Sequence[Mapping[str, Any]] | None = None,
                     steps: Sequence[StepSpec | tuple[str, float]] | None = None,
                     images: int = 1, rate_limit: int | None = None,
                     webhook_url: str | None = None,
                     outputs: Sequence[str] | None = None) -> str:
        """Register a workflow (replacing one with the same id); returns its id.

        Its runs (launched by POST, or by add_run without images/outputs) make `outputs`
        (see add_run) when given, else `images` images; POST launches make `images` images.
        `rate_limit`: requests per `rate_window` per key, None for no limit (the API then
        reports the documented default of 10).
        """
        workflow_id = workflow_id or str(uuid.uuid4())
        params = [dict(p) for p in (DEFAULT_PARAMETERS if parameters is None else parameters)]
        parsed = None if outputs is None else tuple(_Output.parse(o) for o in outputs)
        workflow = _Workflow(workflow_id, name, description, params,
                             _step_specs(steps, DEFAULT_STEPS), images, rate_limit, webhook_url,
                             parsed)
        with self._lock:
            self._workflows[workflow_id] = workflow
        return workflow_id

    def add_run(self, workflow_id: str = DEMO_WORKFLOW_ID, *,
                steps: Sequence[StepSpec | tuple[str, float]] | None = None,
                outcome: str = "completed", images: int | None = None,
                error: str = "Image generation failed: Invalid prompt",
                prompt: str = "a lighthouse at dusk", queue_time: float = 0.0,
                announce: str = "all", status_faults: Iterable[Fault] = (),
                image_faults: Mapping[int, Fault] | None = None,
                image_size: tuple[int, int] = (512, 512), image_format: str = "PNG",
                execution_id: int | None = None, outputs: Sequence[str] | None = None,
                video_bytes: int | None = None) -> int:
        """Script a run that starts now and plays out in real time; returns its execution id.

        Its outputs: `outputs`, one file per kind listed (png jpg webp gif mp4 webm wav glb
        obj stl ply; "mp4?noext" gives a URL without extension, so only the Content-Type
        tells the kind); else `images` images in `image_format`; else the workflow's own
        outputs; else one image. `video_bytes` pads each MP4 to that size (a trailing `free`
        box keeps it valid). An unknown `workflow_id` is registered with default settings,
        so tests can invent ids.
        """
        _check_choice("outcome", outcome, ("completed", "failed", "cancelled"))
        _check_choice("announce", announce, ("all", "started"))
        _check_choice("image_format", image_format.upper(), tuple(FORMATS))
        with self._lock:
            if workflow_id not in self._workflows:
                self.add_workflow(workflow_id)
            made = self._outputs(self._workflows[workflow_id], outputs, images, image_format)
            run = _Run(self._claim_id(execution_id), workflow_id,
                       _step_specs(steps, DEFAULT_STEPS), outcome, made, error, prompt,
                       queue_time, announce, _FaultQueue(status_faults), dict(image_faults or {}),
                       tuple(image_size), self._clock(),  # type: ignore[arg-type]
                       video_bytes=video_bytes)
            self._runs[run.id] = run
        return run.id

    @staticmethod
    def _outputs(workflow: _Workflow, outputs: Sequence[str] | None, images: int | None,
                 image_format: str) -> tuple[_Output, ...]:
        if outputs is not None:
            return tuple(_Output.parse(o) for o in outputs)
        if images is None and workflow.outputs is not None:
            return workflow.outputs
        ext = FORMATS[image_format.upper()][0]
        return (_Output(ext),) * (1 if images is None else images)

    def _claim_id(self, execution_id: int | None) -> int:
        if execution_id is None:
            execution_id = self._next_id
        if execution_id in self._runs:
            raise ValueError(f"execution id {execution_id} already exists")
        self._next_id = max(self._next_id, execution_id + 1)
        return execution_id

    def post_faults(self, workflow_id: str, faults: Iterable[Fault]) -> None:
        """Queue faults for POST .../run of this workflow, one per request.

        After a slow, trickle, truncated_json, drop or reset fault the run is created anyway
        (the answer got lost, not the work), so a client retrying it would launch a second run.
        """
        with self._lock:
            self._workflows[workflow_id].post_faults.extend(faults)

    def workflow_faults(self, workflow_id: str, faults: Iterable[Fault]) -> None:
        """Queue faults for GET /workflows/{id} (the schema), one per request."""
        with self._lock:
            self._workflows[workflow_id].schema_faults.extend(faults)

    def cancel_faults(self, workflow_id: str, faults: Iterable[Fault]) -> None:
        """Queue faults for POST .../runs/{id}/cancel of this workflow, one per request.

        As with post_faults, after a slow, trickle, truncated_json, drop or reset fault the
        run is cancelled anyway; after the others it is not.
        """
        with self._lock:
            self._workflows[workflow_id].cancel_faults.extend(faults)

    def list_faults(self, faults: Iterable[Fault]) -> None:
        """Queue faults for GET /workflows (the list), one per request."""
        with self._lock:
            self._list_faults.extend(faults)

    def status_faults(self, execution_id: int, faults: Iterable[Fault]) -> None:
        """Queue more faults for status requests of a run (e.g. one launched by POST)."""
        with self._lock:
            self._runs[execution_id].status_faults.extend(faults)

    def image_faults(self, execution_id: int, faults: Mapping[int, Fault]) -> None:
        """Set faults for output images of a run: {output_index: Fault}."""
        with self._lock:
            run = self._runs[execution_id]
            run.image_faults.update(faults)
            for index in faults:
                self._image_cache.pop((execution_id, index), None)

    # -- inspection

    def runs_started(self, workflow_id: str) -> int:
        """Runs created by POST .../run for this workflow."""
        with self._lock:
            workflow = self._workflows.get(workflow_id)
            return workflow.runs_started if workflow else 0

    def run_ids(self, workflow_id: str | None = None) -> list[int]:
        """Execution ids of all runs (of one workflow), oldest first."""
        with self._lock:
            return [r.id for r in self._runs.values()
                    if workflow_id is None or r.workflow_id == workflow_id]

    def run_state(self, execution_id: int, elapsed: float | None = None) -> dict[str, Any]:
        """The body a status GET would return now, without faults and without counting it.

        `elapsed` (seconds since the run was added) asks for another moment of its script,
        so tests can check a timeline without sleeping.
        """
        with self._lock:
            run = self._runs[execution_id]
        now = self._clock() if elapsed is None else run.t0_mono + elapsed
        return _run_body(run, self.origin, now)

    def request_count(self, kind: str | None = None, execution_id: int | None = None) -> int:
        """Requests received: kind in {"status", "run", "cancel", "workflow", "list", "image"
        (a GET of an output file of any kind), "head" (a HEAD of one), "other"}."""
        with self._lock:
            return sum(n for (k, eid), n in self._requests.items()
                       if (kind is None or k == kind)
                       and (execution_id is None or eid == execution_id))

    @property
    def connection_count(self) -> int:
        """TCP connections accepted since start (or the last reset_counts)."""
        server = self._server
        accepted = server.accepted if server is not None else self._connections_base
        return accepted - self._connections_offset

    def rate_limited_count(self, workflow_id: str | None = None) -> int:
        """429 answers the rate limiter gave (of one workflow); injected faults not counted."""
        with self._lock:
            if workflow_id is None:
                return sum(self._rate_limited_counts.values())
            return self._rate_limited_counts[workflow_id]

    def accepted_request_times(self, workflow_id: str) -> list[float]:
        """Clock times of this workflow's requests that the rate limiter let through, oldest
        first, so a test can check that no `rate_window` ever held more than the limit."""
        with self._lock:
            return list(self._accepted.get(workflow_id, ()))

    def bytes_served(self, execution_id: int | None = None) -> int:
        """Body bytes of output files written to sockets (of one run's files)."""
        with self._lock:
            if execution_id is None:
                return sum(self._bytes_served.values())
            return self._bytes_served[execution_id]

    def reset_counts(self) -> None:
        """Zero request, byte, 429 and connection counts (runs and runs_started are kept)."""
        with self._lock:
            self._requests.clear()
            self._bytes_served.clear()
            self._rate_limited_counts.clear()
            self._accepted.clear()
            server = self._server
            self._connections_offset = (server.accepted if server is not None
                                        else self._connections_base)

    # -- request handling (called on handler threads)

    def _wants_body(self, raw_path: str, headers: Mapping[str, str]) -> bool:
        """Only an API request with the right key has its body read (see _Handler)."""
        if not urlsplit(raw_path).path.startswith("/api/"):
            return False
        return _header(headers, "key") == self.api_key

    def _respond(self, method: str, raw_path: str, headers: Mapping[str, str],
                 body: bytes) -> tuple[_Answer, Fault | None]:
        """Route one request; returns the answer and a fault for the handler to deliver it by."""
        path = urlsplit(raw_path).path
        image = _IMAGE_PATH.match(path)
        if image:
            return self._file(method, int(image[2]), int(image[3]), raw_path, headers)
        for kind, pattern in _API_ROUTES:
            match = pattern.match(path)
            if match:
                return self._api(kind, method, match.groups(), raw_path, headers, body)
        self._count("other", None)
        return _error(404, "Not found"), None

    def _count(self, kind: str, execution_id: int | None) -> None:
        with self._lock:
            self._requests[(kind, execution_id)] += 1

    def _count_bytes(self, execution_id: int, size: int) -> None:
        with self._lock:
            self._bytes_served[execution_id] += size

    def _api(self, kind: str, method: str, ids: tuple[str, ...], raw_path: str,
             headers: Mapping[str, str], body: bytes
             ) -> tuple[_Answer, Fault | None]:
        execution_id = _int_or_none(ids[1]) if kind in ("status", "cancel") else None
        self._count(kind, execution_id)
        key = _header(headers, "key")
        if key != self.api_key:
            return _error(401, "Invalid API key"), None
        if method != _METHODS.get(kind, "GET"):
            return _error(405, "Method not allowed"), None
        with self._lock:
            if kind == "list":  # a request of no one workflow: outside every rate limit
                return self._with_fault(self._list_faults.take(),
                                        _json_answer(200, self._list()), raw_path)
            workflow = self._workflows.get(ids[0])
            if workflow is None:
                return _error(404, "Workflow not found or API access not enabled"), None
            limited = self._rate_limited(workflow, key)
            if limited:
                return limited, None
            if kind == "status":
                return self._status(workflow, execution_id, raw_path)
            if kind == "cancel":
                return self._cancel(workflow, execution_id, raw_path)
            if kind == "workflow":
                return self._with_fault(workflow.schema_faults.take(),
                                        _json_answer(200, self._schema(workflow)), raw_path)
            return self._launch(workflow, body, raw_path)

    def _rate_limited(self, workflow: _Workflow, key: str) -> _Answer | None:
        """Sliding window per (workflow, key); None when the request may proceed."""
        now = self._clock()
        if workflow.rate_limit is not None:
            window = self._rate_windows.setdefault((workflow.id, key), deque())
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            if len(window) >= workflow.rate_limit:
                self._rate_limited_counts[workflow.id] += 1
                return self._too_many(window[0] + self.rate_window - now)
            window.append(now)
        self._accepted.setdefault(workflow.id, []).append(now)
        return None

    def _too_many(self, wait: float) -> _Answer:
        """A 429 whose retry_after is when a slot frees: whole seconds (at least 1) with the
        real minute, also as a Retry-After header; with a shorter, compressed window, float
        seconds in the body only, as a header must hold whole seconds."""
        if self.rate_window < RATE_LIMIT_WINDOW:
            return _error(429, "Rate limit exceeded", retry_after=max(0.001, round(wait, 3)))
        seconds = max(1, math.ceil(wait))
        answer = _error(429, "Rate limit exceeded", retry_after=seconds)
        answer.headers["Retry-After"] = str(seconds)
        return answer

    def _run_of(self, workflow: _Workflow, execution_id: int | None) -> _Run | None:
        run = self._runs.get(execution_id) if execution_id is not None else None
        return run if run is not None and run.workflow_id == workflow.id else None

    def _status(self, workflow: _Workflow, execution_id: int | None, raw_path: str
                ) -> tuple[_Answer, Fault | None]:
        run = self._run_of(workflow, execution_id)
        if run is None:
            return _error(404, "Execution not found"), None
        answer = _json_answer(200, _run_body(run, self.origin, self._clock()))
        return self._with_fault(run.status_faults.take(), answer, raw_path)

    def _cancel(self, workflow: _Workflow, execution_id: int | None, raw_path: str
                ) -> tuple[_Answer, Fault | None]:
        run = self._run_of(workflow, execution_id)
        if run is None:
            return _error(404, "Execution not found"), None
        offset = self._clock() - run.t0_mono
        if run.status_at(offset) not in ("pending", "running"):
            return _error(400, "Execution cannot be cancelled in its current state."), None
        fault = workflow.cancel_faults.take()
        if fault is not None and fault.kind not in POST_FAULTS_THAT_CREATE:
            return self._with_fault(fault, _Answer(200), raw_path)
        run.cancelled_at = offset
        answer = _json_answer(200, {"status": "success", "message": "Execution cancelled."})
        return self._with_fault(fault, answer, raw_path)

    def _list(self) -> dict[str, Any]:
        return {"status": "success",
                "workflows": [w.summary() for w in self._workflows.values()]}

    def _schema(self, workflow: _Workflow) -> dict[str, Any]:
        prefix = f"{self.base_url}/workflows/{workflow.id}"
        return {
            "status": "success",
            "workflow": {"id": workflow.id, "name": workflow.name,
                         "description": workflow.description,
                         "rate_limit": workflow.rate_limit or DOCUMENTED_RATE_LIMIT,
                         "webhook_url": workflow.webhook_url},
            "parameters": [dict(p) for p in workflow.parameters],
            "endpoints": {"run": f"{prefix}/run", "status": prefix + "/runs/{id}"},
        }

    def _launch(self, workflow: _Workflow, body: bytes, raw_path: str
                ) -> tuple[_Answer, Fault | None]:
        try:
            params = json.loads(body or b"null")
        except ValueError:
            params = None
        errors = _validate(workflow.parameters, params)
        if errors:
            return _json_answer(422, {"status": "error", "message": "Validation failed",
                                      "errors": errors}), None
        fault = workflow.post_faults.take()
        if fault is not None and fault.kind not in POST_FAULTS_THAT_CREATE:
            return self._with_fault(fault, _Answer(200), raw_path)
        run_id = self._launch_run(workflow, params)
        answer = _json_answer(202, {
            "status": "success", "message": "Workflow execution started.",
            "execution_id": run_id, "workflow_id": workflow.id,
            "status_url": self.status_url(workflow.id, run_id),
            "webhook_url": workflow.webhook_url,
        })
        return self._with_fault(fault, answer, raw_path)

    def _launch_run(self, workflow: _Workflow, params: dict[str, Any]) -> int:
        size = tuple(_clamp_dimension(params.get(k), 512) for k in ("width", "height"))
        images = None if workflow.outputs is not None else workflow.images
        run_id = self.add_run(workflow.id, steps=workflow.steps, images=images,
                              prompt=str(params.get("prompt") or ""),
                              image_size=size)  # type: ignore[arg-type]
        workflow.runs_started += 1
        workflow.last_called_at = time.time()
        return run_id

    def _with_fault(self, fault: Fault | None, normal: _Answer, raw_path: str
                    ) -> tuple[_Answer, Fault | None]:
        """Replace the normal answer per `fault`; delivery faults are left to the handler."""
        if fault is None or fault.kind in ("slow", "trickle", "drop", "reset"):
            return normal, fault
        return _fault_answer(fault, normal, self.origin + raw_path), None

    def _file(self, method: str, execution_id: int, index: int, raw_path: str,
              headers: Mapping[str, str]) -> tuple[_Answer, Fault | None]:
        """An output file, served without the key, whole or by Range, or its headers (HEAD)."""
        self._count("head" if method == "HEAD" else "image", execution_id)
        if method not in ("GET", "HEAD"):
            return _error(405, "Method not allowed"), None
        answer, fault = self._file_answer(execution_id, index, raw_path)
        if answer.status == 200:
            answer.served = execution_id
        if method == "HEAD" or fault is None:
            answer = _ranged(answer, _header(headers, "range"))
        return answer, fault

    def _file_answer(self, execution_id: int, index: int, raw_path: str
                     ) -> tuple[_Answer, Fault | None]:
        with self._lock:
            run = self._runs.get(execution_id)
        if run is None or not 0 <= index < len(run.outputs):
            return _error(404, "File not found"), None
        fault = run.image_faults.get(index)
        kind = fault.kind if fault is not None else None
        if kind == "bomb":
            return _Answer(200, decompression_bomb_png(), "image/png"), None
        if kind == "not_image":
            return _Answer(200, HTML_BAD_GATEWAY.encode(), "image/png"), None
        if kind == "huge":
            return _huge_png(fault.size or 60_000_000), None  # type: ignore[union-attr]
        data = self._cached_output(run, index)
        if kind == "truncated":
            data = data[: len(data) // 3]
        normal = _Answer(200, data, run.output_type(index)[1],
                         headers={"Cache-Control": "public, max-age=86400"})
        if kind is None or kind in IMAGE_VARIANTS or kind == "truncated":
            return normal, None
        return self._with_fault(fault, normal, raw_path)

    def _cached_output(self, run: _Run, index: int) -> bytes:
        """Generated on first request: most runs' outputs are never fetched."""
        key = (run.id, index)
        with self._lock:
            cached = self._image_cache.get(key)
        if cached is None:
            cached = _output_bytes(run, index)
            with self._lock:
                cached = self._image_cache.setdefault(key, cached)
        return cached

    def _register_demo(self) -> None:
        self.add_workflow(DEMO_WORKFLOW_ID, name=DEMO_WORKFLOW_NAME,
                          description="Generates an image from a prompt, then upscales it.",
                          parameters=DEMO_PARAMETERS, steps=DEMO_STEPS, images=2)
        self.add_workflow(DEMO_MEDIA_WORKFLOW_ID, name=DEMO_MEDIA_WORKFLOW_NAME,
                          description="Makes a key frame, animates it into a short clip, "
                                      "scores it and exports a 3D turntable model.",
                          steps=DEMO_MEDIA_STEPS, outputs=DEMO_MEDIA_OUTPUTS)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by case-insensitive name."""
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _fault_answer(fault: Fault, normal: _Answer, url: str) -> _Answer:
    """The answer a replacing fault gives instead of `normal`."""
    kind = fault.kind
    if kind == "http":
        status = fault.status or 500
        message = fault.body if isinstance(fault.body, str) else _phrase(status)
        return _error(status, message)
    if kind == "rate_limit":
        return _rate_limit_answer(fault)
    if kind == "html":
        return _Answer(200, HTML_BAD_GATEWAY.encode(), "text/html; charset=utf-8")
    if kind == "truncated_json":
        return _Answer(200, normal.body[: len(normal.body) // 2])
    if kind == "api_error":
        return _json_answer(200, {"status": "error",
                                  "message": fault.body or "Server busy, try again"})
    if kind == "json":
        return _json_answer(200, fault.body)
    if kind == "huge":
        return _huge_json(fault.size or 20_000_000)
    if kind == "redirect_loop":
        return _Answer(302, content_type="text/plain", headers={"Location": url})
    raise ValueError(f"fault {kind!r} does not apply here")


def _rate_limit_answer(fault: Fault) -> _Answer:
    wait = fault.retry_after if fault.retry_after is not None else 1
    where = fault.retry_after_in
    extra = {"retry_after": wait} if where in ("body", "both") else {}
    answer = _error(429, "Rate limit exceeded", **extra)
    if where in ("header", "both"):
        answer.headers["Retry-After"] = str(wait)
    return answer


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _step_specs(steps: Sequence[StepSpec | tuple[str, float]] | None,
                default: tuple[StepSpec, ...]) -> tuple[StepSpec, ...]:
    if steps is None:
        return default
    return tuple(s if isinstance(s, StepSpec) else StepSpec(str(s[0]), float(s[1])) for s in steps)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _clamp_dimension(value: Any, default: int) -> int:
    """POSTed width/height shape the images, within sizes Pillow draws in a blink."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(min(max(value, 64), 1024))
    return default


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """Serve a simulator until Ctrl-C; prints what a notebook needs to connect to it."""
    parser = argparse.ArgumentParser(prog="python -m modelslab_widget.simulator",
                                     description="A local ModelsLab Workflows API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="default: a random sim-... key")
    args = parser.parse_args(argv)
    # Ctrl-C (or a TERM) only sets an event: a KeyboardInterrupt could land anywhere, even in
    # the prints before a try block or halfway through stopping, and leave a traceback or a hang.
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C ends it even if stopping hangs

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    with Simulator(api_key=args.api_key, host=args.host, port=args.port) as sim:
        print(f"base_url: {sim.base_url}")
        print(f"api_key: {sim.api_key}")
        print(f"workflow_id: {DEMO_WORKFLOW_ID}")
        execution_id = sim.add_run(DEMO_WORKFLOW_ID, steps=CLI_DEMO_STEPS, images=2)
        print(f"execution_id: {execution_id}")
        print(f"media_workflow_id: {DEMO_MEDIA_WORKFLOW_ID}")
        print("\nA demo run has started; watch it from another terminal with:\n"
              f"  {watch_command(sim, DEMO_WORKFLOW_ID, execution_id)}\n"
              "Press Ctrl-C to stop the server.", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def watch_command(sim: Simulator, workflow_id: str, execution_id: int) -> str:
    """A shell line that watches a run of `sim` with the modelslab-widget command."""
    return (f"MODELSLAB_API_KEY={shlex.quote(sim.api_key)} "
            f"MODELSLAB_BASE_URL={shlex.quote(sim.base_url)} "
            f"modelslab-widget watch {shlex.quote(workflow_id)} {execution_id}")


if __name__ == "__main__":
    raise SystemExit(main())
