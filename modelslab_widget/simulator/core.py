"""The Simulator: its lifecycle, scripting and inspection API, and request routing."""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .answers import (
    HTML_BAD_GATEWAY,
    Answer,
    error_answer,
    fault_answer,
    huge_png,
    json_answer,
    ranged,
)
from .faults import IMAGE_VARIANTS, POST_FAULTS_THAT_CREATE, Fault, FaultQueue
from .media import FORMATS, decompression_bomb_png
from .runs import (
    DEFAULT_PARAMETERS,
    DEFAULT_STEPS,
    DEMO_MEDIA_OUTPUTS,
    DEMO_MEDIA_STEPS,
    DEMO_MEDIA_WORKFLOW_ID,
    DEMO_MEDIA_WORKFLOW_NAME,
    DEMO_PARAMETERS,
    DEMO_STEPS,
    DEMO_WORKFLOW_ID,
    DEMO_WORKFLOW_NAME,
    DOCUMENTED_RATE_LIMIT,
    ID_PATTERN,
    Output,
    Run,
    StepSpec,
    Workflow,
    check_choice,
    clamp_dimension,
    id_or_none,
    output_bytes,
    run_body,
    step_specs,
    validate,
)
from .server import Backend, Server

FIRST_EXECUTION_ID = 12345


RATE_LIMIT_WINDOW = 60.0


_STATUS_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/runs/([^/]+)/?$")


_CANCEL_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/runs/([^/]+)/cancel/?$")


_RUN_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/run/?$")


_WORKFLOW_PATH = re.compile(r"^/api/v1/workflows/([^/]+)/?$")


_LIST_PATH = re.compile(r"^/api/v1/workflows/?$")


_IMAGE_PATH = re.compile(
    rf"^/(files|proxy)/({ID_PATTERN})/({ID_PATTERN})(?:\.([A-Za-z0-9]+))?$")


_API_ROUTES = (("status", _STATUS_PATH), ("cancel", _CANCEL_PATH), ("run", _RUN_PATH),
               ("workflow", _WORKFLOW_PATH), ("list", _LIST_PATH))


_METHODS = {"run": "POST", "cancel": "POST"}  # the others are GET


# Parameters that shape the picture, not its caption.
_UNSHOWN = frozenset({"prompt", "width", "height"})


def picture_text(params: Mapping[str, Any]) -> str:
    """What a launched run's pictures show (and are coloured by): the prompt, then every
    other parameter as ``key=value``."""
    others = [f"{key}={value}" for key, value in sorted(params.items())
              if key not in _UNSHOWN and value not in (None, "")]
    return " · ".join([str(params.get("prompt") or ""), *others]).strip(" ·")


class Simulator:
    """A ModelsLab Workflows API on 127.0.0.1 with scripted runs and injectable faults.

    Use it as a context manager: `with Simulator() as sim: ...` starts it and stops it,
    leaving no thread behind.

    `rate_window` is the length in seconds of the sliding window of `add_workflow(rate_limit=)`
    (a minute on modelslab.com; shorter to play a compressed minute). `clock` is the monotonic
    clock that scripts runs and times the window; a test may pass one it moves by hand.
    `queue_limit` is the account's queue limit of `rate-limits.mdx` (5, 10 or 15 by plan;
    None: no limit): a launch while that many launched runs are still pending or running
    gets the documented 429 (`queue_full_answer`), whatever the workflow.
    """

    def __init__(self, api_key: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, *, rate_window: float = RATE_LIMIT_WINDOW,
                 clock: Callable[[], float] = time.monotonic,
                 queue_limit: int | None = None) -> None:
        if rate_window <= 0:
            raise ValueError("rate_window must be > 0")
        if queue_limit is not None and queue_limit < 1:
            raise ValueError("queue_limit must be >= 1 (or None for no limit)")
        self.queue_limit = queue_limit
        self.queue_full_count = 0  # launches refused because the account's queue was full
        self._launched: list[int] = []  # runs started by POST .../run, oldest first
        self._launch_params: dict[int, dict[str, Any]] = {}
        self.api_key = api_key if api_key is not None else "sim-" + secrets.token_hex(8)
        self.host = host
        self.rate_window = rate_window
        self._clock = clock
        self._port = port
        self._lock = threading.RLock()
        self._list_faults = FaultQueue()
        self._rate_limited_counts: Counter[str] = Counter()
        self._accepted: dict[str, list[float]] = {}
        self._refused: dict[str, list[float]] = {}
        self._bytes_served: Counter[int] = Counter()
        self._workflows: dict[str, Workflow] = {}
        self._runs: dict[int, Run] = {}
        self._next_id = FIRST_EXECUTION_ID
        self._requests: Counter[tuple[str, int | None]] = Counter()
        self._connections_base = 0  # accepted connections of the stopped server
        self._connections_offset = 0  # accepted connections before reset_counts
        self._rate_windows: dict[tuple[str, str], deque[float]] = {}
        self._image_cache: dict[tuple[int, int], bytes] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._register_demo()

    # -- lifecycle

    def start(self) -> Simulator:
        """Bind and serve on a background thread; returns self for chaining."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a Simulator starts once")
        backend = Backend(self._wants_body, self._respond, self._count_bytes)
        self._server = Server((self.host, self._port), backend)
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
        parsed = None if outputs is None else tuple(Output.parse(o) for o in outputs)
        workflow = Workflow(workflow_id, name, description, params,
                             step_specs(steps, DEFAULT_STEPS), images, rate_limit, webhook_url,
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
        check_choice("outcome", outcome, ("completed", "failed", "cancelled"))
        check_choice("announce", announce, ("all", "started"))
        check_choice("image_format", image_format.upper(), tuple(FORMATS))
        with self._lock:
            if workflow_id not in self._workflows:
                self.add_workflow(workflow_id)
            made = self._outputs(self._workflows[workflow_id], outputs, images, image_format)
            run = Run(self._claim_id(execution_id), workflow_id,
                       step_specs(steps, DEFAULT_STEPS), outcome, made, error, prompt,
                       queue_time, announce, FaultQueue(status_faults), dict(image_faults or {}),
                       tuple(image_size), self._clock(),  # type: ignore[arg-type]
                       video_bytes=video_bytes)
            self._runs[run.id] = run
        return run.id

    @staticmethod
    def _outputs(workflow: Workflow, outputs: Sequence[str] | None, images: int | None,
                 image_format: str) -> tuple[Output, ...]:
        if outputs is not None:
            return tuple(Output.parse(o) for o in outputs)
        if images is None and workflow.outputs is not None:
            return workflow.outputs
        ext = FORMATS[image_format.upper()][0]
        return (Output(ext),) * (1 if images is None else images)

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
        return run_body(run, self.origin, now)

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

    def refused_request_times(self, workflow_id: str) -> list[float]:
        """Clock times of this workflow's requests the rate limiter answered 429, oldest
        first: with `accepted_request_times`, every request a client sent, so a test can
        check how many it sent in any window."""
        with self._lock:
            return list(self._refused.get(workflow_id, ()))

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
            self._refused.clear()
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
                 body: bytes) -> tuple[Answer, Fault | None]:
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
        return error_answer(404, "Not found"), None

    def _count(self, kind: str, execution_id: int | None) -> None:
        with self._lock:
            self._requests[(kind, execution_id)] += 1

    def _count_bytes(self, execution_id: int, size: int) -> None:
        with self._lock:
            self._bytes_served[execution_id] += size

    def _api(self, kind: str, method: str, ids: tuple[str, ...], raw_path: str,
             headers: Mapping[str, str], body: bytes
             ) -> tuple[Answer, Fault | None]:
        key = _header(headers, "key")
        # Without the key a request gets a 401 whatever its path, and nothing of the path is
        # used but to count it by execution ID, which id_or_none reads without ever raising
        # (None when it is not one: with the key, that is a 404).
        execution_id = id_or_none(ids[1]) if kind in ("status", "cancel") else None
        self._count(kind, execution_id)
        if key != self.api_key:
            return error_answer(401, "Invalid API key"), None
        if method != _METHODS.get(kind, "GET"):
            return error_answer(405, "Method not allowed"), None
        with self._lock:
            if kind == "list":  # a request of no one workflow: outside every rate limit
                return self._with_fault(self._list_faults.take(),
                                        json_answer(200, self._list()), raw_path)
            workflow = self._workflows.get(ids[0])
            if workflow is None:
                return error_answer(404, "Workflow not found or API access not enabled"), None
            limited = self._rate_limited(workflow, key)
            if limited:
                return limited, None
            if kind == "status":
                return self._status(workflow, execution_id, raw_path)
            if kind == "cancel":
                return self._cancel(workflow, execution_id, raw_path)
            if kind == "workflow":
                return self._with_fault(workflow.schema_faults.take(),
                                        json_answer(200, self._schema(workflow)), raw_path)
            return self._launch(workflow, body, raw_path)

    def _rate_limited(self, workflow: Workflow, key: str) -> Answer | None:
        """Sliding window per (workflow, key); None when the request may proceed."""
        now = self._clock()
        if workflow.rate_limit is not None:
            window = self._rate_windows.setdefault((workflow.id, key), deque())
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            if len(window) >= workflow.rate_limit:
                self._rate_limited_counts[workflow.id] += 1
                self._refused.setdefault(workflow.id, []).append(now)
                return self._too_many(window[0] + self.rate_window - now)
            window.append(now)
        self._accepted.setdefault(workflow.id, []).append(now)
        return None

    def _too_many(self, wait: float) -> Answer:
        """A 429 whose retry_after is when a slot frees: whole seconds (at least 1) with the
        real minute, also as a Retry-After header; with a shorter, compressed window, float
        seconds in the body only, as a header must hold whole seconds."""
        if self.rate_window < RATE_LIMIT_WINDOW:
            return error_answer(429, "Rate limit exceeded", retry_after=max(0.001, round(wait, 3)))
        seconds = max(1, math.ceil(wait))
        answer = error_answer(429, "Rate limit exceeded", retry_after=seconds)
        answer.headers["Retry-After"] = str(seconds)
        return answer

    def _run_of(self, workflow: Workflow, execution_id: int | None) -> Run | None:
        run = self._runs.get(execution_id) if execution_id is not None else None
        return run if run is not None and run.workflow_id == workflow.id else None

    def _status(self, workflow: Workflow, execution_id: int | None, raw_path: str
                ) -> tuple[Answer, Fault | None]:
        run = self._run_of(workflow, execution_id)
        if run is None:
            return error_answer(404, "Execution not found"), None
        answer = json_answer(200, run_body(run, self.origin, self._clock()))
        return self._with_fault(run.status_faults.take(), answer, raw_path)

    def _cancel(self, workflow: Workflow, execution_id: int | None, raw_path: str
                ) -> tuple[Answer, Fault | None]:
        run = self._run_of(workflow, execution_id)
        if run is None:
            return error_answer(404, "Execution not found"), None
        offset = self._clock() - run.t0_mono
        if run.status_at(offset) not in ("pending", "running"):
            return error_answer(400, "Execution cannot be cancelled in its current state."), None
        fault = workflow.cancel_faults.take()
        if fault is not None and fault.kind not in POST_FAULTS_THAT_CREATE:
            return self._with_fault(fault, Answer(200), raw_path)
        run.cancelled_at = offset
        answer = json_answer(200, {"status": "success", "message": "Execution cancelled."})
        return self._with_fault(fault, answer, raw_path)

    def _list(self) -> dict[str, Any]:
        return {"status": "success",
                "workflows": [w.summary() for w in self._workflows.values()]}

    def _schema(self, workflow: Workflow) -> dict[str, Any]:
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

    def _launch(self, workflow: Workflow, body: bytes, raw_path: str
                ) -> tuple[Answer, Fault | None]:
        try:
            params = json.loads(body or b"null")
        except ValueError:
            params = None
        errors = validate(workflow.parameters, params)
        if errors:
            return json_answer(422, {"status": "error", "message": "Validation failed",
                                      "errors": errors}), None
        if self._queue_full():
            self.queue_full_count += 1
            return self._queue_full_answer(), None
        fault = workflow.post_faults.take()
        if fault is not None and fault.kind not in POST_FAULTS_THAT_CREATE:
            return self._with_fault(fault, Answer(200), raw_path)
        run_id = self._launch_run(workflow, params)
        self._launched.append(run_id)
        self._launch_params[run_id] = dict(params)
        answer = json_answer(202, {
            "status": "success", "message": "Workflow execution started.",
            "execution_id": run_id, "workflow_id": workflow.id,
            "status_url": self.status_url(workflow.id, run_id),
            "webhook_url": workflow.webhook_url,
        })
        return self._with_fault(fault, answer, raw_path)

    def launch_params(self, execution_id: int) -> dict[str, Any]:
        """The parameters the POST that started this run carried."""
        with self._lock:
            return dict(self._launch_params[execution_id])

    def queued_runs(self) -> int:
        """Launched runs still pending or running: what the account's queue limit counts."""
        with self._lock:
            now = self._clock()
            self._launched = [run_id for run_id in self._launched
                              if self._runs[run_id].status_at(now - self._runs[run_id].t0_mono)
                              in ("pending", "running")]
            return len(self._launched)

    def _queue_full(self) -> bool:
        return self.queue_limit is not None and self.queued_runs() >= self.queue_limit

    def _queue_full_answer(self) -> Answer:
        """The documented answer (``api-examples/rate-limited.json``), its wait scaled with a
        compressed minute."""
        wait = 30 * self.rate_window / RATE_LIMIT_WINDOW
        return error_answer(
            429, f"Rate limit exceeded. Maximum {self.queue_limit} queued requests allowed.",
            retry_after=int(wait) if wait == int(wait) else round(wait, 3))

    def _launch_run(self, workflow: Workflow, params: dict[str, Any]) -> int:
        """Start a run of ``params``: its pictures differ with every parameter (the prompt,
        then the others as ``key=value``), so runs of a sweep compare something."""
        size = tuple(clamp_dimension(params.get(k), 512) for k in ("width", "height"))
        images = None if workflow.outputs is not None else workflow.images
        run_id = self.add_run(workflow.id, steps=workflow.steps, images=images,
                              prompt=picture_text(params),
                              image_size=size)  # type: ignore[arg-type]
        workflow.runs_started += 1
        workflow.last_called_at = time.time()
        return run_id

    def _with_fault(self, fault: Fault | None, normal: Answer, raw_path: str
                    ) -> tuple[Answer, Fault | None]:
        """Replace the normal answer per `fault`; delivery faults are left to the handler."""
        if fault is None or fault.kind in ("slow", "trickle", "drop", "reset"):
            return normal, fault
        return fault_answer(fault, normal, self.origin + raw_path), None

    def _file(self, method: str, execution_id: int, index: int, raw_path: str,
              headers: Mapping[str, str]) -> tuple[Answer, Fault | None]:
        """An output file, served without the key, whole or by Range, or its headers (HEAD)."""
        self._count("head" if method == "HEAD" else "image", execution_id)
        if method not in ("GET", "HEAD"):
            return error_answer(405, "Method not allowed"), None
        answer, fault = self._file_answer(execution_id, index, raw_path)
        if answer.status == 200:
            answer.served = execution_id
        if method == "HEAD" or fault is None:
            answer = ranged(answer, _header(headers, "range"))
        return answer, fault

    def _file_answer(self, execution_id: int, index: int, raw_path: str
                     ) -> tuple[Answer, Fault | None]:
        with self._lock:
            run = self._runs.get(execution_id)
        if run is None or not 0 <= index < len(run.outputs):
            return error_answer(404, "File not found"), None
        fault = run.image_faults.get(index)
        kind = fault.kind if fault is not None else None
        if kind == "bomb":
            return Answer(200, decompression_bomb_png(), "image/png"), None
        if kind == "not_image":
            return Answer(200, HTML_BAD_GATEWAY.encode(), "image/png"), None
        if kind == "huge":
            return huge_png(fault.size or 60_000_000), None  # type: ignore[union-attr]
        data = self._cached_output(run, index)
        if kind == "truncated":
            data = data[: len(data) // 3]
        normal = Answer(200, data, run.output_type(index)[1],
                         headers={"Cache-Control": "public, max-age=86400"})
        if kind is None or kind in IMAGE_VARIANTS or kind == "truncated":
            return normal, None
        return self._with_fault(fault, normal, raw_path)

    def _cached_output(self, run: Run, index: int) -> bytes:
        """Generated on first request: most runs' outputs are never fetched."""
        key = (run.id, index)
        with self._lock:
            cached = self._image_cache.get(key)
        if cached is None:
            cached = output_bytes(run, index)
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
