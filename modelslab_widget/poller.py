"""Background polling of one run's status, on the shared scheduler (``scheduler.py``).

A ``RunPoller`` polls without drift, backs off on transient errors, honours a 429's wait,
ends on permanent errors, on ``stop()`` and when its listener is garbage.
Nothing here knows about widgets.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .client import WorkflowsClient
from .errors import AuthenticationError, ModelsLabError, NotFoundError, RateLimitError
from .models import RunSnapshot
from .scheduler import Job, Scheduler, shared_scheduler

log = logging.getLogger("modelslab_widget")

MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 3600.0  # a server asking for longer is not believed beyond an hour
MAX_QUIET_INTERVALS = 10  # however sure the estimate, poll at least every 10 intervals


class PollListener(Protocol):
    """What a poller reports to; held weakly, so a forgotten listener ends its poller."""

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None: ...

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None: ...

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None: ...


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll and when to give up: the one source of these defaults, checked
    when made (every view takes its ``poll_interval``, ``timeout``, ... through here)."""

    interval: float = 2.0
    timeout: float | None = None  # seconds of watching before giving up; None = no limit
    max_failures: int = 5  # transient failures in a row that end watching
    backoff_base: float = 1.0

    def __post_init__(self) -> None:
        if not self.interval > 0:  # also refuses nan
            raise ValueError("poll_interval must be positive")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("timeout must be positive (or None for no limit)")
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if not self.backoff_base >= 0:
            raise ValueError("backoff_base must not be negative")

    def backoff(self, failures: int, retry_after: float | None) -> float:
        """Exponential back-off with full jitter above the interval; never below a 429's wait."""
        ceiling = min(MAX_BACKOFF, self.backoff_base * 2 ** min(failures - 1, 30))
        delay = max(self.interval, random.uniform(ceiling / 2, ceiling))
        wait = retry_after if retry_after is not None and math.isfinite(retry_after) else 0.0
        return max(delay, min(wait, MAX_RETRY_AFTER))


class WatchTimeout(TimeoutError):
    """Watching ran longer than its ``timeout`` without the run ending."""


class RunPoller:
    """Polls one run until it ends, is stopped, or its listener is garbage. (A time limit is
    each view's own: ``RunWatch`` keeps it, since several views share one poller.)"""

    def __init__(
        self,
        client: WorkflowsClient,
        workflow_id: str,
        execution_id: int | str,
        listener: PollListener,
        policy: PollPolicy | None = None,
        scheduler: Scheduler | None = None,
        next_change: Callable[[RunSnapshot], float | None] | None = None,
    ) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.execution_id = execution_id
        self.policy = policy or PollPolicy()
        self.polls = 0
        self._listener = weakref.ref(listener)
        # Seconds until the run's state could next change (from earlier runs' timings), if known.
        self._next_change = next_change
        self._scheduler = scheduler or shared_scheduler()
        self._lock = threading.Lock()
        self._active = False
        self._cancel = threading.Event()
        self._next_poll: Job | None = None
        self._failures = 0
        self._next_due = 0.0
        # The pending poll's token (None while a poll is in flight), and whether the next one
        # should come at once: how poll_soon() moves a poll forward without a second chain.
        self._due_token: object | None = None
        self._soon = False

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> None:
        """Begin polling now (a no-op while already active)."""
        with self._lock:
            if self._active:
                return
            self._active = True
            self._cancel = threading.Event()
            self._failures = 0
            self._next_due = time.monotonic()
            self._soon = False
            self._schedule(self._cancel)

    def stop(self) -> None:
        """Stop polling: once this returns no new request is started for this run."""
        with self._lock:
            self._deactivate()

    def _deactivate(self) -> bool:
        """Mark inactive and drop pending jobs (lock held); False if it was already inactive."""
        if not self._active:
            return False
        self._active = False
        self._cancel.set()  # also cuts short urllib3 back-off sleeps of a call in flight
        if self._next_poll is not None:
            self._next_poll.cancel()
        self._next_poll = None
        return True

    def _schedule(self, cancel: threading.Event) -> None:
        """Schedule the next poll at ``_next_due`` (lock held)."""
        token = self._due_token = object()
        self._next_poll = self._scheduler.call_at(
            self._next_due, lambda: self._poll_once(cancel, token)
        )

    def poll_soon(self) -> None:
        """Poll now rather than at the next scheduled time (after an accepted cancel, so the
        final status shows promptly); a poll in flight is followed at once by another."""
        with self._lock:
            if not self._active:
                return
            if self._due_token is None:  # a poll is in flight: its successor comes at once
                self._soon = True
                return
            if self._next_poll is not None:
                self._next_poll.cancel()
            self._next_due = time.monotonic()
            self._schedule(self._cancel)

    def _poll_once(self, cancel: threading.Event, token: object = None) -> None:
        with self._lock:
            if not self._active or cancel is not self._cancel or token is not self._due_token:
                return  # stopped, scheduled by an earlier session, or moved by poll_soon()
            self._due_token = None
            self.polls += 1
        try:
            snapshot = self.client.get_run(self.workflow_id, self.execution_id, cancel=cancel)
        except ModelsLabError as error:
            self._guarded(self._handle_error, error, cancel)
        except Exception as error:  # an answer or a state nobody foresaw: end, never hang
            log.exception("polling failed")
            self._finish(cancel, None, error)
        else:
            self._guarded(self._handle_snapshot, snapshot, cancel)

    def _guarded(self, handle: Callable[[Any, threading.Event], None], value: Any,
                 cancel: threading.Event) -> None:
        """Run a handler; if it fails, watching ends with that error instead of silently."""
        try:
            handle(value, cancel)
        except Exception as error:
            log.exception("handling a poll failed")
            self._finish(cancel, None, error)

    def _handle_snapshot(self, snapshot: RunSnapshot, cancel: threading.Event) -> None:
        listener = self._live_listener(cancel)
        if listener is None:
            return
        self._failures = 0
        listener.on_snapshot(snapshot, self.polls)
        if snapshot.is_terminal:
            self._finish(cancel, snapshot, None)
        else:
            self._schedule_next(cancel, self._quiet_delay(snapshot), from_due=True)

    def _quiet_delay(self, snapshot: RunSnapshot) -> float:
        """The interval, or longer while no change is expected: poll again half an interval
        before the earliest expected change, so the lag stays what regular polling gives."""
        interval = self.policy.interval
        expected = self._next_change(snapshot) if self._next_change else None
        if expected is None:
            return interval
        return max(interval, min(expected - interval / 2, interval * MAX_QUIET_INTERVALS))

    def _handle_error(self, error: ModelsLabError, cancel: threading.Event) -> None:
        listener = self._live_listener(cancel)
        if listener is None:
            return
        if isinstance(error, (AuthenticationError, NotFoundError)) or not error.transient:
            self._finish(cancel, None, error)
            return
        self._failures += 1
        if self._failures >= self.policy.max_failures:
            self._finish(cancel, None, error)
            return
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        delay = self.policy.backoff(self._failures, retry_after)
        listener.on_poll_error(error, self._failures, delay)
        self._schedule_next(cancel, delay, from_due=False)

    def _schedule_next(self, cancel: threading.Event, delay: float, *, from_due: bool) -> None:
        """Next poll ``delay`` after the last one was due (no drift from request time), or
        after now when backing off; never in the past."""
        now = time.monotonic()
        base = self._next_due if from_due else now
        with self._lock:
            if cancel.is_set():
                return
            # soon only after a good answer: a 429 or an error keeps its back-off
            self._next_due = now if self._soon and from_due else max(now, base + delay)
            self._soon = False
            self._schedule(cancel)

    def _finish(
        self, cancel: threading.Event, snapshot: RunSnapshot | None, error: BaseException | None
    ) -> None:
        with self._lock:
            if cancel is not self._cancel or not self._deactivate():
                return
        listener = self._listener()
        if listener is not None:
            listener.on_finished(snapshot, error)

    def _live_listener(self, cancel: threading.Event) -> PollListener | None:
        """The listener if this poll still matters; stops polling if the listener is gone."""
        if cancel.is_set():
            return None
        listener = self._listener()
        if listener is None:
            self.stop()
        return listener
