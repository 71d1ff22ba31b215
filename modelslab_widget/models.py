"""Parse Workflows API answers into small frozen dataclasses.

The server is untrusted: fields may be missing, null or of the wrong type. Anything that can be
tolerated is (a missing timestamp is None, an unknown status is kept as is); a body that is not
the documented shape at all raises ResponseFormatError naming what was wrong, and the API's own
``{"status": "error", "message": ...}`` raises APIError. Nothing else escapes these parsers.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import APIError, ResponseFormatError

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# Spellings seen in the wild for the documented statuses.
_STATUS_ALIASES = {"canceled": "cancelled", "queued": "pending", "processing": "running"}
_FRACTION = re.compile(r"\.(\d+)")
MAX_TEXT = 10_000  # longest server string we keep: enough for any real message
# What one answer may hold. Real runs have tens of steps and outputs and real schemas tens of
# parameters; beyond these a view shows the first ones and says how many more there were.
MAX_STEPS = 1000  # the card shows a window of them; the fault matrix has 1,000-step runs
MAX_OUTPUTS = 200
MAX_PARAMETERS = 200
# Every JSON array or object in an answer keeps at most this many items while it is parsed
# (``decode_json``): a 9 MB answer listing 3 million steps never becomes 3 million objects.
MAX_JSON_ITEMS = 1000
CLOCK_SKEW = 2.0  # seconds the server's clock may run ahead of ours before we stop trusting it


def parse_status(value: Any, default: str = "unknown") -> str:
    """Normalise a status: lower-case and trimmed; unknown words are kept, not guessed."""
    if not isinstance(value, str) or not value.strip():
        return default
    word = value.strip().lower()[:64]
    return _STATUS_ALIASES.get(word, word)


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or an offset, any number of fraction digits) -> aware datetime, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat only takes 3 or 6 fraction digits.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
        aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        aware.astimezone(timezone.utc)  # year 1 with a positive offset cannot be shown in UTC
    except (ValueError, OverflowError):
        return None
    return aware


def format_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def seconds_since(moment: datetime | None, now: datetime | None = None) -> float | None:
    """Seconds from a server timestamp to ``now``; None when the server's clock is clearly
    ahead of ours (then a local clock is the better guide)."""
    if moment is None:
        return None
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    return max(0.0, seconds) if seconds >= -CLOCK_SKEW else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)  # a 400-digit integer overflows
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        try:
            return _number(float(value))
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    """A server string, or a readable form of a non-string (an error may come as an object)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("message") or value.get("error") or value
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_TEXT]


def _object(payload: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        kind = "null" if payload is None else type(payload).__name__
        raise ResponseFormatError(f"{what}: expected a JSON object, got {kind}")
    return payload


def _raise_if_error(payload: Mapping[str, Any]) -> None:
    if payload.get("status") == "error":
        message = _text(payload.get("message")) or _text(payload.get("error"))
        raise APIError(message or "the API answered with status 'error' and no message")


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(item for item in value if isinstance(item, str) and item)
    return ()


@dataclass(frozen=True)
class Step:
    """One step of a run, as the API reported it."""

    name: str
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to completion; None while the step has not finished."""
        if self.started_at is None or self.completed_at is None:
            return None
        return max(0.0, (self.completed_at - self.started_at).total_seconds())

    def seconds(self, now: datetime | None = None) -> float | None:
        """The duration once finished, a live timer while running, else None."""
        if self.duration is not None:
            return self.duration
        return seconds_since(self.started_at, now) if self.status == "running" else None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_api(cls, data: Any, index: int = 0) -> Step:
        item = _object(data, f"steps[{index}]")
        return cls(
            name=_text(item.get("name")) or f"Step {index + 1}",
            status=parse_status(item.get("status")),
            started_at=parse_timestamp(item.get("started_at")),
            completed_at=parse_timestamp(item.get("completed_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, used for the widget's ``steps`` trait."""
        return {
            "name": self.name,
            "status": self.status,
            "started_at": format_timestamp(self.started_at),
            "completed_at": format_timestamp(self.completed_at),
            "duration": self.duration,
        }


def _parse_steps(value: Any) -> tuple[tuple[Step, ...], int]:
    """(the first MAX_STEPS steps, how many more the answer listed)."""
    if value is None:
        return (), 0
    if not isinstance(value, (list, tuple)):
        raise ResponseFormatError(f"'steps': expected a list, got {type(value).__name__}")
    steps = tuple(Step.from_api(item, index) for index, item in enumerate(value[:MAX_STEPS]))
    return steps, max(0, len(value) - MAX_STEPS) + dropped_items(value)


def _parse_outputs(value: Any) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """(output URLs, proxy links, how many outputs beyond MAX_OUTPUTS the answer listed) from
    ``output``; tolerates a bare list of URLs."""
    if isinstance(value, Mapping):
        outputs, proxies = value.get("output"), value.get("proxy_links")
    else:
        outputs, proxies = value, None
    if not _strings(outputs):  # the proxy links stand in for missing outputs
        outputs = proxies
    listed = _strings(outputs)
    dropped = max(0, len(listed) - MAX_OUTPUTS) + dropped_items(outputs)
    return listed[:MAX_OUTPUTS], _strings(proxies)[:MAX_OUTPUTS], dropped


@dataclass(frozen=True)
class RunSnapshot:
    """What the API said about a run at one moment."""

    status: str
    execution_id: int | str | None = None
    workflow_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    execution_time: float | None = None
    steps: tuple[Step, ...] = ()
    outputs: tuple[str, ...] = ()
    proxy_links: tuple[str, ...] = ()
    error: str | None = None
    #: Steps and outputs the answer listed beyond MAX_STEPS / MAX_OUTPUTS (not kept).
    dropped_steps: int = 0
    dropped_outputs: int = 0

    @property
    def is_terminal(self) -> bool:
        """True once the run has completed, failed or been cancelled."""
        return self.status in TERMINAL_STATUSES

    @property
    def steps_done(self) -> int:
        return sum(1 for step in self.steps if step.status == "completed")

    def elapsed(
        self, now: datetime | None = None, first_seen: datetime | None = None
    ) -> float | None:
        """Seconds the run has taken: the API's figure once it ended; while it runs, a live
        clock from the server's start time, or from ``first_seen`` (when we first saw it
        running) if the two clocks disagree."""
        if self.is_terminal:
            if self.execution_time is not None:
                return self.execution_time
            if self.started_at and self.completed_at:
                return max(0.0, (self.completed_at - self.started_at).total_seconds())
            return None
        now = now or datetime.now(timezone.utc)
        elapsed = seconds_since(self.started_at, now)
        if elapsed is None and first_seen is not None and self.status == "running":
            elapsed = max(0.0, (now - first_seen).total_seconds())
        return elapsed

    @classmethod
    def from_api(cls, payload: Any) -> RunSnapshot:
        """Parse a run-status answer (or a webhook payload, which is flat)."""
        body = _object(payload, "run status")
        _raise_if_error(body)
        execution = body.get("execution")
        if execution is None:
            if parse_status(body.get("status")) in {"success", "unknown"}:
                raise ResponseFormatError("run status: no 'execution' object in the answer")
            execution = body  # webhook payloads carry the run's fields at the top level
        execution = _object(execution, "'execution'")
        outputs, proxy_links, dropped_outputs = _parse_outputs(body.get("output"))
        steps, dropped_steps = _parse_steps(body.get("steps"))
        return cls(
            status=parse_status(execution.get("status")),
            execution_id=_identifier(execution.get("id", body.get("execution_id"))),
            workflow_id=_text(execution.get("workflow_id", body.get("workflow_id"))),
            started_at=parse_timestamp(execution.get("started_at")),
            completed_at=parse_timestamp(execution.get("completed_at")),
            execution_time=_number(execution.get("execution_time")),
            steps=steps,
            outputs=outputs,
            proxy_links=proxy_links,
            error=_text(body.get("error")) or _text(execution.get("error")),
            dropped_steps=dropped_steps,
            dropped_outputs=dropped_outputs,
        )

    def __repr__(self) -> str:
        return (
            f"RunSnapshot(execution_id={self.execution_id!r}, status={self.status!r}, "
            f"steps={self.steps_done}/{len(self.steps)}, outputs={len(self.outputs)})"
        )


def _identifier(value: Any) -> int | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        return value if isinstance(value, int) else value[:200]
    return None


@dataclass(frozen=True)
class RunAccepted:
    """The 202 answer of ``POST /workflows/{id}/run``."""

    execution_id: int | str
    workflow_id: str | None = None
    status_url: str | None = None
    message: str | None = None

    @classmethod
    def from_api(cls, payload: Any) -> RunAccepted:
        body = _object(payload, "run accepted")
        _raise_if_error(body)
        execution_id = _identifier(body.get("execution_id"))
        if execution_id is None or execution_id == "":
            raise ResponseFormatError("run accepted: no 'execution_id' in the answer")
        return cls(
            execution_id=execution_id,
            workflow_id=_text(body.get("workflow_id")),
            status_url=_text(body.get("status_url")),
            message=_text(body.get("message")),
        )


@dataclass(frozen=True)
class Parameter:
    """One input of a workflow, from its schema."""

    key: str
    type: str = "string"
    required: bool = False
    node_id: str | None = None
    node_name: str | None = None

    @classmethod
    def from_api(cls, data: Any, index: int = 0) -> Parameter:
        item = _object(data, f"parameters[{index}]")
        key = _text(item.get("key"))
        if not key:
            raise ResponseFormatError(f"parameters[{index}]: no 'key'")
        return cls(
            key=key,
            type=parse_status(item.get("type"), default="string"),
            required=item.get("required") is True,
            node_id=_text(item.get("node_id")),
            node_name=_text(item.get("node_name")),
        )


@dataclass(frozen=True)
class WorkflowInfo:
    """A workflow's schema: its name and the parameters a run takes."""

    id: str
    name: str
    description: str = ""
    rate_limit: int | None = None
    webhook_url: str | None = None
    parameters: tuple[Parameter, ...] = ()
    endpoints: Mapping[str, str] = field(default_factory=dict)
    #: Parameters the schema listed beyond MAX_PARAMETERS (not kept).
    dropped_parameters: int = 0

    @classmethod
    def from_api(cls, payload: Any) -> WorkflowInfo:
        body = _object(payload, "workflow")
        _raise_if_error(body)
        workflow = _object(body.get("workflow"), "'workflow'")
        params = body.get("parameters") or []
        if not isinstance(params, list):
            raise ResponseFormatError("'parameters': expected a list")
        endpoints = body.get("endpoints")
        rate_limit = _number(workflow.get("rate_limit"))
        return cls(
            id=_text(workflow.get("id")) or "",
            name=_text(workflow.get("name")) or "Untitled workflow",
            description=_text(workflow.get("description")) or "",
            rate_limit=int(rate_limit) if rate_limit is not None else None,
            webhook_url=_text(workflow.get("webhook_url")),
            parameters=tuple(
                Parameter.from_api(p, i) for i, p in enumerate(params[:MAX_PARAMETERS])
            ),
            dropped_parameters=max(0, len(params) - MAX_PARAMETERS) + dropped_items(params),
            endpoints={
                str(k): str(v) for k, v in endpoints.items() if isinstance(v, str)
            } if isinstance(endpoints, Mapping) else {},
        )


def _count(value: Any) -> int | None:
    """A whole, non-negative count from a server number, else None (never inf or NaN)."""
    number = _number(value)
    if number is None or number < 0:
        return None
    return int(min(number, 2**63 - 1))


@dataclass(frozen=True)
class WorkflowSummary:
    """One of the caller's API-enabled workflows, as ``GET /workflows`` lists it."""

    id: str
    name: str
    description: str = ""
    rate_limit: int | None = None
    call_count: int | None = None
    last_called_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_api(cls, data: Any, index: int = 0) -> WorkflowSummary:
        item = _object(data, f"workflows[{index}]")
        return cls(
            id=_text(item.get("id")) or "",
            name=_text(item.get("name")) or "Untitled workflow",
            description=_text(item.get("description")) or "",
            rate_limit=_count(item.get("rate_limit")),
            call_count=_count(item.get("call_count")),
            last_called_at=parse_timestamp(item.get("last_called_at")),
            created_at=parse_timestamp(item.get("created_at")),
            updated_at=parse_timestamp(item.get("updated_at")),
        )

    @classmethod
    def list_from_api(cls, payload: Any) -> list[WorkflowSummary]:
        """Parse the whole list answer; a missing or null ``workflows`` is an empty list,
        entries that are not objects are skipped (one bad row should not hide the others)."""
        body = _object(payload, "workflow list")
        _raise_if_error(body)
        items = body.get("workflows")
        if items is None:
            return []
        if not isinstance(items, (list, tuple)):
            raise ResponseFormatError(f"'workflows': expected a list, got {type(items).__name__}")
        return [cls.from_api(item, i) for i, item in enumerate(items) if isinstance(item, Mapping)]


def cancel_message(payload: Any) -> str:
    """The message of a cancel answer (``{"status": "success", "message": ...}``); a 200 with
    no usable message still means the server accepted the cancel."""
    if payload is None:
        return "Execution cancelled."
    body = _object(payload, "cancel answer")
    _raise_if_error(body)
    return _text(body.get("message")) or "Execution cancelled."


# -- decoding answers with bounded size -------------------------------------------------------


class CappedList(list):  # type: ignore[type-arg]
    """A JSON array cut at ``MAX_JSON_ITEMS`` while parsing; ``dropped`` items were skipped."""

    dropped: int = 0


def dropped_items(value: Any) -> int:
    """How many items ``decode_json`` skipped from this array (0 for anything else)."""
    return value.dropped if isinstance(value, CappedList) else 0


_STRING = r'"(?:[^"\\]|\\.)*+"'
_FLAT_CONTAINER = (rf"\{{(?:[^\"\[\]{{}}]++|{_STRING})*+\}}"
                   rf"|\[(?:[^\"\[\]{{}}]++|{_STRING})*+\]")
# A run of anything but a nested container: plain characters, strings, and objects or arrays
# with nothing nested in them. Skipping the rest of a long array is one match of this, in C.
_FLAT_RUN_SOURCE = rf'(?:[^"\[\]{{}}]++|{_STRING}|{_FLAT_CONTAINER})*+'
_INNER_SOURCE = rf"{_STRING}|{_FLAT_CONTAINER}"
_COMMA_IN_CONTAINER = re.compile(r"[\[{][^\]}]*,")
_SPACE = re.compile(r"[ \t\n\r]*")
_MAX_DEPTH = 64


@functools.cache
def _flat_run() -> re.Pattern[str]:
    """Compiled on first use: compiling these two takes ~15 ms, which every
    ``import modelslab_widget`` paid although only answers of 1,000+ items need them."""
    return re.compile(_FLAT_RUN_SOURCE)


@functools.cache
def _inner() -> re.Pattern[str]:
    return re.compile(_INNER_SOURCE)


_scan_scalar = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C; scalars only


def decode_json(text: str, max_items: int = MAX_JSON_ITEMS) -> Any:
    """``json.loads(text)``, except that every array and object keeps at most ``max_items``
    items: the rest is skipped while parsing, never built (a cut array is a ``CappedList``
    that counts what it dropped). Raises ValueError when ``text`` is not JSON."""
    if text.count(",") < max_items:  # no array or object can be too long: the C parser
        return json.loads(text)
    decoder = _CappedDecoder(text, max_items)
    value, end = decoder.value(_SPACE.match(text, 0).end(), 0)  # type: ignore[union-attr]
    if _SPACE.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise ValueError("extra data after the JSON value")
    return value


class _CappedDecoder:
    """A small recursive-descent JSON parser for the containers (scalars go to the C scanner),
    which stops building a container at ``max_items`` and skips the rest in bulk."""

    def __init__(self, text: str, max_items: int) -> None:
        self.text = text
        self.max_items = max_items

    def char(self, index: int) -> str:
        if index >= len(self.text):
            raise ValueError("the JSON ends early")
        return self.text[index]

    def space(self, index: int) -> int:
        return _SPACE.match(self.text, index).end()  # type: ignore[union-attr]

    def value(self, index: int, depth: int) -> tuple[Any, int]:
        if depth > _MAX_DEPTH:
            raise ValueError("JSON nested too deeply")
        char = self.char(index)
        if char == "{":
            return self.container(index + 1, depth + 1, "}")
        if char == "[":
            return self.container(index + 1, depth + 1, "]")
        try:
            return _scan_scalar(self.text, index)  # type: ignore[no-any-return]
        except StopIteration:
            raise ValueError(f"not JSON at character {index}") from None

    def container(self, index: int, depth: int, closer: str) -> tuple[Any, int]:
        is_object = closer == "}"
        pairs: list[tuple[str, Any]] = []
        items: CappedList = CappedList()
        index = self.space(index)
        if self.char(index) == closer:
            return ({} if is_object else items), index + 1
        while True:
            if len(pairs) + len(items) >= self.max_items:
                items.dropped, index = self.skip_rest(index, closer, depth)
                break
            if is_object:
                key, index = self.value(index, depth)
                if not isinstance(key, str):
                    raise ValueError("an object key must be a string")
                index = self.space(index)
                if self.char(index) != ":":
                    raise ValueError(f"expected ':' at character {index}")
                item, index = self.value(self.space(index + 1), depth)
                pairs.append((key, item))
            else:
                item, index = self.value(index, depth)
                items.append(item)
            index = self.space(index)
            char = self.char(index)
            if char == closer:
                index += 1
                break
            if char != ",":
                raise ValueError(f"expected ',' or {closer!r} at character {index}")
            index = self.space(index + 1)
        return (dict(pairs) if is_object else items), index

    def skip_rest(self, index: int, closer: str, depth: int) -> tuple[int, int]:
        """Skip to just after ``closer``; (items skipped, the index after it)."""
        commas = 0
        while True:
            end = _flat_run().match(self.text, index).end()  # type: ignore[union-attr]
            commas += _top_level_commas(self.text[index:end])
            char = self.char(end)
            if char == closer:
                return commas + 1, end + 1
            if char in "[{" and depth < _MAX_DEPTH:  # something nested: skip it by parts
                _, index = self.skip_rest(end + 1, "]" if char == "[" else "}", depth + 1)
                continue
            raise ValueError(f"unexpected {char!r} at character {end}")


def _top_level_commas(span: str) -> int:
    """Commas outside strings and (flat) containers in a run ``_flat_run()`` matched: the
    items it separates. Cheap in the common case, where nothing inside holds a comma."""
    if '"' not in span and not _COMMA_IN_CONTAINER.search(span):
        return span.count(",")
    return _inner().sub("", span).count(",")
