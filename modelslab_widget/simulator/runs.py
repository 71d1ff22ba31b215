"""Workflows and scripted runs: their state at any moment and the API's answer bodies."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .faults import IMAGE_VARIANTS, Fault, FaultQueue
from .media import (
    OUTPUT_TYPES,
    PILLOW_FORMATS,
    animated_gif,
    encode,
    exif_rotated,
    model_3d,
    render_image,
    sample_video,
    tone_wav,
)

DEMO_WORKFLOW_ID = "5f3c2a1e-8d4b-4e8b-9c1d-0a7b6e5f4d3c"


DEMO_WORKFLOW_NAME = "Text to Image + Upscale"


DEMO_MEDIA_WORKFLOW_ID = "9a7e4c2b-3f1d-4a6e-b8c5-2d0f1e3a4b5c"


DEMO_MEDIA_WORKFLOW_NAME = "Text to Video + Soundtrack"


DEMO_MEDIA_OUTPUTS = ("png", "mp4", "wav", "glb")


DOCUMENTED_RATE_LIMIT = 10  # what the API reports for a workflow without its own limit


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


NO_EXTENSION = "?noext"  # an output spec like "mp4?noext" gets a URL without extension


@dataclass(frozen=True)
class StepSpec:
    """One step of a scripted run: its name and how long it runs, in seconds."""

    name: str
    duration: float


DEFAULT_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 1.0),
                                       StepSpec("Image Upscaler", 1.0))


DEMO_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 2.5),
                                    StepSpec("Image Upscaler", 2.0))


DEMO_MEDIA_STEPS: tuple[StepSpec, ...] = (StepSpec("Text to Image", 1.5),
                                          StepSpec("Image to Video", 2.5),
                                          StepSpec("Text to Audio", 1.5),
                                          StepSpec("Image to 3D", 1.5))


@dataclass
class Workflow:
    id: str
    name: str
    description: str
    parameters: list[dict[str, Any]]
    steps: tuple[StepSpec, ...]
    images: int
    rate_limit: int | None
    webhook_url: str | None
    outputs: tuple[Output, ...] | None = None
    created_at: float = field(default_factory=time.time)
    last_called_at: float | None = None
    post_faults: FaultQueue = field(default_factory=FaultQueue)
    schema_faults: FaultQueue = field(default_factory=FaultQueue)
    cancel_faults: FaultQueue = field(default_factory=FaultQueue)
    runs_started: int = 0

    def summary(self) -> dict[str, Any]:
        """The workflow's entry in GET /workflows."""
        updated = self.last_called_at or self.created_at
        return {"id": self.id, "name": self.name, "description": self.description,
                "rate_limit": self.rate_limit or DOCUMENTED_RATE_LIMIT,
                "call_count": self.runs_started,
                "last_called_at": iso(self.last_called_at) if self.last_called_at else None,
                "created_at": iso(self.created_at), "updated_at": iso(updated)}


@dataclass(frozen=True)
class Output:
    """One output file of a run: its kind (extension) and whether its URL shows it."""

    ext: str
    noext: bool = False

    @classmethod
    def parse(cls, spec: str) -> Output:
        ext, noext = spec.lower(), spec.lower().endswith(NO_EXTENSION)
        ext = ext.removesuffix(NO_EXTENSION)
        if ext not in OUTPUT_TYPES:
            raise ValueError(f"unknown output kind {spec!r}; known: {', '.join(OUTPUT_TYPES)}")
        return cls(ext, noext)


@dataclass
class Run:
    id: int
    workflow_id: str
    steps: tuple[StepSpec, ...]
    outcome: str
    outputs: tuple[Output, ...]
    error: str
    prompt: str
    queue_time: float
    announce: str
    status_faults: FaultQueue
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


def iso(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds and Z, the form the real API uses."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_body(run: Run, origin: str, now: float | None = None) -> dict[str, Any]:
    """The status answer for `run` at monotonic time `now`, shaped like the API examples."""
    offset = (time.monotonic() if now is None else now) - run.t0_mono
    start = run.queue_time
    end, outcome = run.ending()

    def stamp(off: float) -> str:
        return iso(run.t0_wall + off)

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
        body["output"] = {"output": output_urls(run, origin, "files"),
                          "proxy_links": output_urls(run, origin, "proxy"),
                          "status": "success"}
    if status == "failed":
        body["error"] = run.error
    body["steps"] = _steps_body(run, offset, stamp)
    return body


def _steps_body(run: Run, offset: float, stamp: Callable[[float], str]) -> list[dict[str, Any]]:
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


def output_urls(run: Run, origin: str, kind: str) -> list[str]:
    urls = []
    for index, output in enumerate(run.outputs):
        suffix = "" if output.noext else "." + run.output_type(index)[0]
        urls.append(f"{origin}/{kind}/{run.id}/{index}{suffix}")
    return urls


def validate(parameters: Sequence[Mapping[str, Any]], body: Any) -> dict[str, list[str]]:
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


def output_bytes(run: Run, index: int) -> bytes:
    """The bytes of output `index` of `run`, of its kind (or of its image variant fault)."""
    fault = run.image_faults.get(index)
    ext = run.outputs[index].ext
    if (fault is not None and fault.kind in IMAGE_VARIANTS) or ext in PILLOW_FORMATS:
        return image_bytes(run, index)
    if ext in ("mp4", "webm"):
        return sample_video(ext, run.video_bytes if ext == "mp4" else None)
    if ext == "wav":
        return tone_wav(220.0 * (1 + index % 4))
    return model_3d(ext)


def image_bytes(run: Run, index: int) -> bytes:
    """Output `index` as an image: normal, or the format variant its fault asks for."""
    fault = run.image_faults.get(index)
    variant = fault.kind if fault is not None and fault.kind in IMAGE_VARIANTS else None
    if variant == "exif_rotated":
        return exif_rotated(run.prompt, index)
    image = render_image(run.prompt, index, run.image_size)
    if variant == "gif_animated":
        return animated_gif(run.prompt, index, run.image_size)
    if variant == "cmyk_jpeg":
        return encode(image.convert("CMYK"), "JPEG", quality=90)
    if variant == "png16":
        return encode(image.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"),
                       "PNG")
    if variant == "rgba_png":
        from PIL import Image

        image.putalpha(Image.linear_gradient("L").rotate(90).resize(run.image_size))
        return encode(image, "PNG")
    if variant == "webp":
        return encode(image, "WEBP", quality=85)
    fmt = PILLOW_FORMATS[run.outputs[index].ext]
    if fmt == "GIF":  # a short animation, the kind of "video" a browser shows as an image
        return animated_gif(run.prompt, index, run.image_size)
    return encode(image.convert("RGB") if fmt == "JPEG" else image, fmt)


def step_specs(steps: Sequence[StepSpec | tuple[str, float]] | None,
                default: tuple[StepSpec, ...]) -> tuple[StepSpec, ...]:
    if steps is None:
        return default
    return tuple(s if isinstance(s, StepSpec) else StepSpec(str(s[0]), float(s[1])) for s in steps)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


# An ID in a path: ASCII digits only, and few of them. str.isdigit also takes "²", which
# int() refuses, and int() refuses more than 4,300 digits: either raised on a handler thread
# (no answer, a traceback on the console) instead of a 404.
ID_PATTERN = "[0-9]{1,18}"


def id_or_none(text: str) -> int | None:
    """The ID a path segment names, or None when it is not one (answered with a 404)."""
    return int(text) if re.fullmatch(ID_PATTERN, text) else None


def clamp_dimension(value: Any, default: int) -> int:
    """POSTed width/height shape the images, within sizes Pillow draws in a blink."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(min(max(value, 64), 1024))
    return default
