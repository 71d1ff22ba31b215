"""Launches held while the account's queue is full.

ModelsLab limits how many runs an account may have queued (5, 10 or 15 by plan;
``rate-limits.mdx``). A launch over it is answered ``429 "... Maximum 5 queued requests
allowed."`` (``QueueFullError``). That says nothing about any workflow's rate: status polls,
schema reads and cancels are not slowed, and no workflow budget is touched. Only launches
wait, here, one ``AccountQueue`` per account:

- a refused launch started nothing, so it may be sent again; it goes back to the front of
  the line, and every launch after it joins the line behind it (in order, none lost, none
  sent twice: each is let go once, and comes back only when refused again);
- the first in line goes when one of the account's runs that this process knows of ends
  (their watches say so: ``run_active`` / ``run_ended``), or after the 429's ``retry_after``
  when the process knows of none (then the queue is full of runs started elsewhere);
- the line opens again once a launch is accepted with nobody behind it.

Callbacks (``send``) run on the scheduler's timer thread or on the thread that reported the
run's end, outside the lock, and must be quick (hand the POST to a pool). Imports nothing of
the package but ``scheduler`` and ``errors``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

from .errors import QueueFullError
from .scheduler import Job, Scheduler, shared_scheduler

DEFAULT_WAIT = 30.0  # seconds, when a queue-full 429 does not say (the documented answer's)
# With runs of ours in the queue, their ends open it; this wait (times retry_after) is only
# a safety net for a run whose watch stopped before it ended.
KNOWN_RUNS_FALLBACK = 4

Send = Callable[[], object]


class AccountQueue:
    """The launches of one account held while its queue is full (thread-safe)."""

    def __init__(self, scheduler: Scheduler | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit: int | None = None  # the plan's queue limit, once a 429 has named it
        self.refusals = 0  # queue-full 429s reported
        self._scheduler = scheduler or shared_scheduler()
        self._clock = clock
        # Re-entrant: a forgotten widget closed by garbage collection forgets its run here.
        self._lock = threading.RLock()
        self._line: deque[Send] = deque()
        self._full = False  # refused, and no launch accepted since with nobody behind it
        self._active: set[Hashable] = set()  # runs of the account known to be unfinished
        self._wait = DEFAULT_WAIT
        self._job: Job | None = None
        self._opens_at: float | None = None

    # -- launches ---------------------------------------------------------------------------

    @property
    def holding(self) -> bool:
        """Launches wait here now (a new one would join the line)."""
        with self._lock:
            return self._full or bool(self._line)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._line)

    def enter(self, send: Send) -> bool:
        """A launch wants to go: True when it may go now (the caller sends it); else it joins
        the end of the line and ``send()`` is called when its turn comes."""
        with self._lock:
            if not self._full and not self._line:
                return True
            self._line.append(send)
            return False

    def refused(self, send: Send, error: QueueFullError) -> None:
        """The launch ``send`` was answered queue-full: it waits at the front of the line."""
        with self._lock:
            self._note_full(error)
            self._line.appendleft(send)
            self._arm()

    def sent(self) -> None:
        """A launch was accepted: the queue had room; it opens when nobody is behind it."""
        with self._lock:
            if not self._line:
                self._full = False
                self._disarm()
            else:  # the rest wait for a run to end, with the safety net still set
                self._arm()

    def pass_turn(self) -> None:
        """A launch that was let go is not sent after all (removed, or refused for another
        reason): the next in line goes instead, if the queue is still held."""
        with self._lock:
            send = self._take() if self._full else None
        if send is not None:
            send()

    def remove(self, send: Send) -> bool:
        """Take a launch out of the line (the user removed it); False if it was not there."""
        with self._lock:
            try:
                self._line.remove(send)
            except ValueError:
                return False
            return True

    def opens_in(self) -> float | None:
        """Seconds until the first in line goes if no known run ends first (None: when one
        of the account's runs ends)."""
        with self._lock:
            if self._opens_at is None or self._active:
                return None
            return max(0.0, self._opens_at - self._clock())

    # -- what the account's runs do (from their watches) -------------------------------------

    def run_active(self, run: Hashable) -> None:
        with self._lock:
            self._active.add(run)

    def run_ended(self, run: Hashable) -> None:
        """A run of the account ended: its place in the queue is free for the next launch."""
        with self._lock:
            if run not in self._active:
                return
            self._active.discard(run)
            send = self._take()
            if send is None:
                self._full = False  # room for the next launch, and nobody is waiting
        if send is not None:
            send()

    def run_forgotten(self, run: Hashable) -> None:
        """A run's watch ended before the run did: its end will not be heard."""
        with self._lock:
            self._active.discard(run)
            if self._line:
                self._arm()

    # -- internals (lock held) --------------------------------------------------------------

    def _note_full(self, error: QueueFullError) -> None:
        self.refusals += 1
        self._full = True
        self.limit = error.limit or self.limit
        wait = error.retry_after
        self._wait = wait if wait is not None and wait > 0 else DEFAULT_WAIT

    def _take(self) -> Send | None:
        if not self._line:
            return None
        self._disarm()
        return self._line.popleft()

    def _arm(self) -> None:
        """The safety net: let the first in line go after ``retry_after`` (longer while runs
        of ours hold the queue: their ends open it first)."""
        self._disarm()
        wait = self._wait * (KNOWN_RUNS_FALLBACK if self._active else 1)
        self._opens_at = self._clock() + wait
        self._job = self._scheduler.call_at(self._opens_at, self._fallback, in_pool=False)

    def _disarm(self) -> None:
        if self._job is not None:
            self._job.cancel()
        self._job = None
        self._opens_at = None

    def _fallback(self) -> None:
        with self._lock:
            self._job = None
            self._opens_at = None
            send = self._take()
        if send is not None:
            send()


class AccountQueues:
    """The account queues of a process, one per account (``WorkflowsClient.account``)."""

    def __init__(self, scheduler: Scheduler | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._scheduler = scheduler  # None: the shared scheduler (a fake one in tests)
        self._clock = clock
        self._lock = threading.Lock()
        self._queues: dict[Hashable, AccountQueue] = {}

    def for_account(self, account: Hashable) -> AccountQueue:
        with self._lock:
            queue = self._queues.get(account)
            if queue is None:
                queue = self._queues[account] = AccountQueue(self._scheduler, self._clock)
            return queue

    def reset(self) -> None:
        """Forget every queue (for tests)."""
        with self._lock:
            self._queues.clear()


_shared = AccountQueues()


def shared_account_queues() -> AccountQueues:
    return _shared


def account_queue(account: Hashable) -> AccountQueue:
    """The process's queue of launches of ``account``."""
    return _shared.for_account(account)
