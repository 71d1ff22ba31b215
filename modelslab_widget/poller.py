"""Background polling of one run's status, on the shared scheduler (``scheduler.py``).

A ``RunPoller`` polls without drift, backs off on transient errors, ends on permanent errors,
on ``stop()`` and when its listener is garbage. A 429 is never a failure: the poll waits as the
server asks and, given its workflow's ``WorkflowBudget`` (``budget.py``), every poll takes a
slot of that budget, shared with every other request of the workflow.
Nothing here knows about widgets.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .budget import POLL, Slot, WorkflowBudget, note_limit
from .client import WorkflowsClient
from .errors import AuthenticationError, ModelsLabError, NotFoundError, RateLimitError
from .models import RunSnapshot
from .scheduler import Job, Scheduler, shared_scheduler

log = logging.getLogger("modelslab_widget")

MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 3600.0  # a server asking for longer is not believed beyond an hour
MAX_QUIET_INTERVALS = 10  # however sure the estimate, poll at least every 10 intervals
# Once the run could be ending (even if much faster than usual), a poll at least every 2
# intervals and 0.4 s: an early end is then seen within 2 intervals and half a second (the
# answer's own time included), never an estimate's error later.
NEAR_END_INTERVALS = 2
NEAR_END_SLACK = 0.4


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

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PollPolicy:
        """The policy in a card's keyword options (``poll_interval``, ``timeout``,
        ``max_failures``, ``backoff_base``; the defaults for those not given): how a board
        row or a queued card polls like the card it stands for."""
        return cls(options.get("poll_interval", cls.interval), options.get("timeout"),
                   options.get("max_failures", cls.max_failures),
                   options.get("backoff_base", cls.backoff_base))

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
        next_change: Callable[[RunSnapshot], tuple[float, float] | None] | None = None,
        budget: WorkflowBudget | None = None,
    ) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.execution_id = execution_id
        self.policy = policy or PollPolicy()
        self.polls = 0
        self._listener = weakref.ref(listener)
        # From earlier runs' timings, if known: seconds until the run's state could next
        # change, and how long it surely will not end yet.
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
        #: the workflow's request budget; None polls at the interval, pacing only by 429s
        self.budget = budget
        self._slot: Slot | None = None  # a poll waiting for its slot of the budget
        self._rate_limits = 0  # 429s in a row
        self._last: RunSnapshot | None = None
        self._paced: float | None = None  # seconds between checks the limit allows, if slower

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
            self._rate_limits = 0
            self._next_due = time.monotonic()
            self._soon = False
            if self.budget is not None:
                self.budget.join(self)
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
        if self._slot is not None:
            self._slot.cancel()
            self._slot = None
        if self.budget is not None:
            self.budget.leave(self)
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
            slot = None
            if self.budget is not None:
                slot = self.budget.request(POLL, self._rank(), on_grant=lambda granted: (
                    self._scheduler.submit(self._send, cancel, granted)))
                if not slot.granted:
                    self._slot = slot  # the budget calls back when it is this poll's turn
                    return
        self._send(cancel, slot)

    def _send(self, cancel: threading.Event, slot: Slot | None) -> None:
        with self._lock:
            if self._slot is slot:
                self._slot = None
            if not self._active or cancel is not self._cancel:
                if slot is not None:
                    slot.cancel()  # granted, never sent: give it back
                return
            self.polls += 1
        # The slot learns how the request went: a 429 gives it back with its wait, else done.
        spending = (contextlib.nullcontext() if slot is None or self.budget is None
                    else self.budget.spending(slot))
        try:
            with spending:
                snapshot = self.client.get_run(self.workflow_id, self.execution_id,
                                               cancel=cancel)
        except ModelsLabError as error:
            self._guarded(self._handle_error, error, cancel)
        except Exception as error:  # an answer or a state nobody foresaw: end, never hang
            log.exception("polling failed")
            self._finish(cancel, None, error)
        else:
            self._guarded(self._handle_snapshot, snapshot, cancel)

    def _rank(self) -> float:
        """Where this poll stands among the workflow's waiting polls: when it was due, or,
        once earlier runs' timings say when this run should next change, that moment less one
        round of the budget (an imminent change goes first, a far one waits its turn)."""
        last = self._last
        expected = self._next_change(last) if self._next_change and last is not None else None
        if expected is None or self.budget is None:
            return self._next_due
        return time.monotonic() + expected[0] - self.budget.poll_interval(self.policy.interval)

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
        self._rate_limits = 0
        self._last = snapshot
        limited = self.budget is not None and self.budget.limited and not snapshot.is_terminal
        self._tell_paced(listener, self._budget_pace() if limited else None)
        listener.on_snapshot(snapshot, self.polls)
        if snapshot.is_terminal:
            self._finish(cancel, snapshot, None)
        else:
            self._schedule_next(cancel, self._quiet_delay(snapshot), from_due=True)

    def _quiet_delay(self, snapshot: RunSnapshot) -> float:
        """The interval, or longer while no change is expected: poll again half an interval
        before the earliest expected change, so the lag stays what regular polling gives.
        Quieter than ``NEAR_END_INTERVALS`` (and the slack) only while the run cannot be
        ending yet, so a run far quicker than its history is still seen ended soon."""
        interval = self.policy.interval
        expected = self._next_change(snapshot) if self._next_change else None
        if expected is None:
            return interval
        next_change, far_from_end = expected
        quiet = min(next_change - interval / 2, interval * MAX_QUIET_INTERVALS)
        near_end = interval * NEAR_END_INTERVALS + NEAR_END_SLACK
        return max(interval, min(quiet, max(near_end, far_from_end)))

    def _handle_error(self, error: ModelsLabError, cancel: threading.Event) -> None:
        listener = self._live_listener(cancel)
        if listener is None:
            return
        if isinstance(error, (AuthenticationError, NotFoundError)) or not error.transient:
            self._finish(cancel, None, error)
            return
        if isinstance(error, RateLimitError):
            self._handle_rate_limit(error, cancel, listener)
            return
        self._failures += 1
        if self._failures >= self.policy.max_failures:
            self._finish(cancel, None, error)
            return
        delay = self.policy.backoff(self._failures, None)
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

    # -- rate limits: pacing, never failure -----------------------------------------------

    def _handle_rate_limit(self, error: RateLimitError, cancel: threading.Event,
                           listener: PollListener) -> None:
        """A 429: the run was not polled, nothing failed. With a budget the next poll just
        asks for its slot again (the budget holds it back past ``retry_after``); without one
        it waits at least ``retry_after``, backing off while 429s go on."""
        self._rate_limits += 1
        if self.budget is not None and self.budget.should_look_up_limit():
            self._scheduler.submit(_learn_limits, self.client)
        wait = min(error.retry_after or 0.0, MAX_RETRY_AFTER)
        if self.budget is not None:
            delay = self.policy.interval
            pace = max(self.budget.poll_interval(self.policy.interval), wait)
        else:
            delay = pace = self.policy.backoff(self._rate_limits, error.retry_after)
        self._tell_paced(listener, pace)
        self._schedule_next(cancel, delay, from_due=False)

    def _budget_pace(self) -> float | None:
        """Seconds between this run's checks that the budget allows, when slower than the
        interval (None when the interval is kept)."""
        if self.budget is None:
            return None
        pace = self.budget.poll_interval(self.policy.interval)
        return pace if pace > self.policy.interval * 1.05 else None

    def _tell_paced(self, listener: PollListener, pace: float | None) -> None:
        """Tell the listener (if it listens: ``on_paced`` is optional) how often the rate
        limit lets this run be checked; None once it no longer slows it down."""
        if pace is not None and self._paced is not None and abs(pace - self._paced) < 0.5:
            return  # about the same: no news
        if pace is None and self._paced is None:
            return
        self._paced = pace
        on_paced = getattr(listener, "on_paced", None)
        if on_paced is not None:
            on_paced(pace)


def _learn_limits(client: WorkflowsClient) -> None:
    """Read every workflow's ``rate_limit`` from the workflow list (a request of no one
    workflow), so a budget that met its first 429 plans with the real limit, not the default."""
    try:
        workflows = client.list_workflows()
    except Exception as error:  # the documented default stays; polling goes on regardless
        log.debug("could not read the workflows' rate limits: %s", error)
        return
    for workflow in workflows:
        note_limit(client.account, workflow.id, workflow.rate_limit)
