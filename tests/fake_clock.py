"""A clock that moves only when a test says so, with the scheduler interface the budget uses
(``call_at`` returning a cancellable job), so time-driven logic runs without sleeping."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from modelslab_widget.scheduler import Ticker


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


class FakeScheduler(FakeClock):
    """A FakeClock that also takes the scheduler's other work: downloads and pool jobs run
    as jobs due now (at the next ``advance``, or ``run_due()``); its ticker is the real
    ``Ticker``, ticking on this clock."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)
        self._ticker: Any = None

    def submit_download(self, host: str, fn: Callable[..., Any], *args: Any) -> FakeJob:
        return self.call_at(self.now, lambda: fn(*args))

    def submit(self, fn: Callable[..., Any], *args: Any) -> FakeJob:
        return self.call_at(self.now, lambda: fn(*args))

    def run_due(self) -> None:
        self.advance(0)

    @property
    def ticker(self) -> Any:
        """The once-a-second ticker every card shares, ticking on this clock."""
        if self._ticker is None:
            self._ticker = Ticker(self)  # type: ignore[arg-type]
        return self._ticker

    def advance_until(self, condition: Callable[[], object], step: float = 0.05,
                      limit: float = 3600.0) -> None:
        """Move time on in ``step`` s until ``condition()`` holds; fail past ``limit`` s."""
        moved = 0.0
        while not condition():
            if moved >= limit:
                raise AssertionError(f"not met within {limit} s of fake time: {condition}")
            self.advance(step)
            moved += step


class FakePoller:
    """A poller a test drives: ``answer``, ``fail``, ``pace`` and ``finish`` call the watch
    as ``RunPoller`` does from its threads; nothing is sent anywhere."""

    def __init__(self, client: Any, workflow_id: str, execution_id: Any, *, listener: Any,
                 policy: Any, scheduler: Any, next_change: Any, budget: Any) -> None:
        self.listener = listener
        self.policy = policy
        self.budget = None  # cancels go straight to the client
        self.polls = 0
        self.active = False
        self.starts = 0
        self.soon = 0

    def start(self) -> None:
        if not self.active:
            self.active, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.active = False

    def poll_soon(self) -> None:
        self.soon += 1

    def answer(self, snapshot: Any) -> None:
        self.polls += 1
        self.listener.on_snapshot(snapshot, self.polls)

    def fail(self, error: Any, failures: int = 1, retry_in: float = 2.0) -> None:
        self.polls += 1
        self.listener.on_poll_error(error, failures, retry_in)

    def pace(self, seconds: float | None) -> None:
        self.listener.on_paced(seconds)

    def finish(self, snapshot: Any = None, error: BaseException | None = None) -> None:
        """The run ended (``snapshot``) or watching failed (``error``): as RunPoller, the
        poller goes inactive first, then tells the watch."""
        self.active = False
        self.listener.on_finished(snapshot, error)


def fake_runtime() -> tuple[Any, list[FakePoller]]:
    """A runtime on a fresh fake clock whose watches poll with ``FakePoller``s (listed in the
    order made): the run's state machine without sockets or sleeps."""
    from modelslab_widget.account import AccountQueues
    from modelslab_widget.budget import Budgets
    from modelslab_widget.eta import DurationHistory
    from modelslab_widget.runtime import Runtime

    clock = FakeScheduler()
    pollers: list[FakePoller] = []

    def poller(*args: Any, **kwargs: Any) -> FakePoller:
        pollers.append(FakePoller(*args, **kwargs))
        return pollers[-1]

    runtime = Runtime(clock, Budgets(scheduler=clock, clock=clock),  # type: ignore[arg-type]
                      AccountQueues(scheduler=clock, clock=clock),  # type: ignore[arg-type]
                      DurationHistory(), clock=clock, poller=poller)
    return runtime, pollers
