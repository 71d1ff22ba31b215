"""A clock that moves only when a test says so, with the scheduler interface the budget uses
(``call_at`` returning a cancellable job), so time-driven logic runs without sleeping."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class FakeJob:
    def __init__(self, due: float, fn: Callable[[], Any]) -> None:
        self.due = due
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """``clock()`` is the time; ``advance(seconds)`` moves it, running each job due on the way
    at its own due time, in order (a job may schedule more)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._jobs: list[tuple[float, int, FakeJob]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_at(self, due: float, fn: Callable[[], Any], *, in_pool: bool = True) -> FakeJob:
        job = FakeJob(due, fn)
        heapq.heappush(self._jobs, (due, next(self._order), job))
        return job

    def call_later(self, delay: float, fn: Callable[[], Any], *, in_pool: bool = True) -> FakeJob:
        return self.call_at(self.now + max(0.0, delay), fn)

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._jobs and self._jobs[0][0] <= until:
            due, _, job = heapq.heappop(self._jobs)
            if job.cancelled:
                continue
            self.now = max(self.now, due)
            job.fn()
        self.now = until
