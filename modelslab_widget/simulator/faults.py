"""Injected misbehaviour: the Fault a test queues and the queue that hands them out."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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


# POST faults after which the run exists (or is cancelled) anyway: the server did the work,
# the answer got lost.
POST_FAULTS_THAT_CREATE = frozenset({"slow", "trickle", "truncated_json", "drop", "reset"})


@dataclass(frozen=True)
class Fault:
    """A misbehaviour injected instead of (or around) the normal answer.

    `times` is how many consecutive requests it applies to (None: forever). Image faults
    apply to every request of their image and ignore `times`.
    """

    kind: str
    status: int | None = field(default=None, kw_only=True)
    retry_after: float | None = field(default=None, kw_only=True)
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


class FaultQueue:
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
