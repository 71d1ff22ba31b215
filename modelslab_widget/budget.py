"""One request budget per (account, workflow), shared by every request of that workflow.

ModelsLab gives each workflow its own rate limit (by default 10 requests a minute per user)
and answers 429 with a ``retry_after`` beyond it. The docs do not say whether status reads
count, so this module never slows anything down before the server has said so: until the
first 429 of a workflow every slot is granted at once (and only remembered). From the first
429 on, every request of that workflow in this process (status polls of all its runs, schema
reads, launches, cancels) asks its ``WorkflowBudget`` for a slot:

- a 429's ``retry_after`` is the server's word: the next request goes when it has passed
  (then at the budget's pacing, at most one window divided by the limit); our own count of
  the window is dropped then, as the server counts its window and has said when it has room;
- the budget allows ``allowed`` requests in any ``window`` (a minute), counting each request
  from its grant until ``window`` after its answer came; ``allowed`` starts at the
  workflow's ``rate_limit`` when known (``note_limit``), else the documented default of 10.
  Only 429s in a row (or without a ``retry_after``) halve it; each window without one adds
  one back, up to the limit (AIMD, as TCP does);
- it recovers by itself: after a quiet spell with no 429 (half a window the first time) it
  probes at twice the limit; when the server accepts that for a whole window the budget
  disengages (every request goes at once again, polls at the user's interval). A refused
  probe brings it back to the limit and the next probe waits two windows, so a real,
  sustained limit costs about one 429 every two minutes;
- a 429 saying the account's queue is full (``QueueFullError``) is not about this workflow's
  rate: it uses the slot up like any answer and leaves the budget as it was (``account.py``
  holds the launches);
- waiting requests are served in ``(priority, key)`` order: launches and cancels (``FIRST``)
  before schema reads (``SCHEMA``) before polls (``POLL``); a poll's key is when it wants to
  go (the run whose next state change is expected soonest first, the rest in turn).

A ``Slot`` is one request: ``request()`` hands one out (a callback on grant); the caller then
reports ``slot.done()`` once the answer came, ``slot.rate_limited(retry_after)`` for a 429, or
``slot.cancel()`` if it never sent the request. ``send_in_slot()`` does all of it for one
request of any kind (``RequestKind``), sending a POST again only after a 429. Callbacks run
on the scheduler's timer thread (or on the caller's thread when granted at once) and must be
quick: hand I/O to a pool.
Imports nothing of the package but ``scheduler``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from enum import Enum
from typing import Any, Generic, TypeVar

from .errors import QueueFullError, RateLimitError
from .scheduler import Job, Scheduler, shared_scheduler

FIRST = 0  # launches and cancels: the user is waiting on them
SCHEMA = 1  # schema reads
POLL = 2  # status polls

DEFAULT_LIMIT = 10  # requests per window, ModelsLab's documented default
WINDOW = 60.0  # seconds: the API's limits are per minute
MIN_ALLOWED = 1.0  # never plan fewer than one request a window
MAX_RETRY_AFTER = 3600.0  # a server asking for longer is not believed beyond an hour
PROBE = 2.0  # while probing, the budget allows this many times the limit
FIRST_QUIET = 0.5  # windows without a 429 before the first probe
QUIET_AFTER_REFUSED_PROBE = 2.0  # windows before probing again after a probe was refused
PROBE_LENGTH = 1.0  # windows of accepted probing (twice the limit in one) to disengage


class Slot:
    """One request's place in its workflow's budget (see the module docstring)."""

    __slots__ = ("_budget", "_on_grant", "epoch", "finished", "granted", "priority", "rank",
                 "withdrawn")

    def __init__(self, budget: WorkflowBudget, rank: tuple[int, float, int],
                 on_grant: Callable[[Slot], Any] | None) -> None:
        self._budget = budget
        self.rank = rank
        self.priority = rank[0]
        self._on_grant = on_grant
        self.granted = False
        self.finished = False
        self.withdrawn = False
        self.epoch = 0  # the budget's allowance generation when granted

    def __lt__(self, other: Slot) -> bool:
        return self.rank < other.rank

    @property
    def budget(self) -> WorkflowBudget:
        return self._budget

    def starts_in(self) -> float:
        """Estimated seconds until this slot is granted (0 once it is)."""
        return self._budget._starts_in(self)

    def done(self) -> None:
        """The request was sent and answered (anything but a 429)."""
        self._budget._finish(self, rate_limited=False, retry_after=None)

    def rate_limited(self, retry_after: float | None) -> None:
        """The request was answered 429 (it still counts: it was sent)."""
        self._budget._finish(self, rate_limited=True, retry_after=retry_after)

    def cancel(self) -> None:
        """Withdraw a waiting request, or give back a granted slot that was never used."""
        self._budget._withdraw(self)


class WorkflowBudget:
    """The request budget of one workflow for one account (thread-safe)."""

    def __init__(self, name: Hashable, window: float = WINDOW,
                 scheduler: Scheduler | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not window > 0:
            raise ValueError("window must be positive")
        self.name = name
        self.window = window
        self.margin = window * 0.02 + 0.05  # the server's clock sees a request a bit later
        self.known_limit: int | None = None  # the workflow's rate_limit, once seen
        self.limited = False  # True from the first 429 on
        self.allowed = float(DEFAULT_LIMIT)
        self._scheduler = scheduler or shared_scheduler()
        self._clock = clock  # the scheduler's clock (a fake one in tests, with its scheduler)
        # Re-entrant: a forgotten widget closed by garbage collection (at any allocation,
        # also while this thread holds the lock) leaves the budget through its poller.
        self._lock = threading.RLock()
        self._spent: deque[float] = deque()  # answer times of finished requests, oldest first
        self._in_flight: set[Slot] = set()
        self._waiting: list[Slot] = []  # heap by rank
        self._order = itertools.count()
        self._not_before = 0.0  # monotonic time a 429's retry_after allows again
        self._next_poll = 0.0  # requests are spread out: one per ``window / allowed`` at most
        self._epoch = 0
        self._last_change = 0.0  # of ``allowed``
        self._job: Job | None = None
        self._pollers: set[int] = set()
        self._limit_asked = False
        self._last_refusal = 0.0  # when the last 429 came
        self._refused_in_row = 0  # 429s since the last accepted answer
        self._quiet_needed = FIRST_QUIET * window  # without a 429 before the next probe
        self._probing_since: float | None = None

    # -- asking ---------------------------------------------------------------------------

    def request(self, priority: int, key: float | None = None,
                on_grant: Callable[[Slot], Any] | None = None) -> Slot:
        """A slot: granted at once when the budget has room (``slot.granted``; ``on_grant`` is
        then not called), else queued, and ``on_grant(slot)`` is called when it is granted.
        ``key`` orders requests of one priority (default: now, first come first served)."""
        now = self._clock()
        slot = Slot(self, (priority, now if key is None else key, next(self._order)), on_grant)
        with self._lock:
            if not self._waiting_before(slot) and self._room(now, priority) > 0:
                self._grant(slot, now)
                return slot
            heapq.heappush(self._waiting, slot)
            granted = self._pump_locked(now)
        _deliver(granted)
        return slot

    # -- learning ---------------------------------------------------------------------------

    def note_limit(self, rate_limit: int | None) -> None:
        """The workflow's ``rate_limit`` as the API reports it (schema or list)."""
        if rate_limit is None or rate_limit < 1:
            return
        with self._lock:
            ceiling = self._ceiling()
            self.known_limit = int(rate_limit)
            if self.allowed >= ceiling or self.allowed > self.known_limit:
                self.allowed = float(self.known_limit)
            granted = self._pump_locked(self._clock())
        _deliver(granted)

    def should_look_up_limit(self) -> bool:
        """True once, after the first 429, while the workflow's limit is unknown: the caller
        then reads it (the workflow list names every workflow's ``rate_limit``)."""
        with self._lock:
            ask = self.limited and self.known_limit is None and not self._limit_asked
            self._limit_asked = self._limit_asked or ask
            return ask

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 for a request sent without a slot (its sender did not ask the budget)."""
        with self._lock:
            self._rate_limited_locked(self._clock(), retry_after, current=True)

    @contextlib.contextmanager
    def spending(self, slot: Slot | None) -> Iterator[None]:
        """Around one request sent in ``slot`` (None: sent without one, e.g. when no slot came
        in time): a 429 gives the slot back with its ``retry_after`` (or tells the budget);
        any other ending (a queue-full 429 and errors included) uses the slot up."""
        try:
            yield
        except QueueFullError:  # the account's queue, not this workflow's rate
            if slot is not None:
                slot.done()
            raise
        except RateLimitError as error:
            if slot is not None:
                slot.rate_limited(error.retry_after)
            else:
                self.on_rate_limited(error.retry_after)
            raise
        except BaseException:
            if slot is not None:
                slot.done()
            raise
        if slot is not None:
            slot.done()

    # -- what it plans ----------------------------------------------------------------------

    def seconds_per_request(self) -> float:
        """Once limited: the planned spacing of this workflow's requests; 0 before."""
        return self.window / self.allowed if self.limited else 0.0

    def poll_interval(self, interval: float) -> float:
        """How often each watched run of this workflow can be checked: the user's
        ``interval``, or what the budget allows spread over every run polled."""
        with self._lock:
            runs = max(1, len(self._pollers))
        return max(interval, self.seconds_per_request() * runs)

    def join(self, poller: object) -> None:
        """A run of this workflow is being polled (counts toward ``poll_interval``)."""
        with self._lock:
            self._pollers.add(id(poller))

    def leave(self, poller: object) -> None:
        with self._lock:
            self._pollers.discard(id(poller))

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def __repr__(self) -> str:
        state = f"{self.allowed:g} per {self.window:g} s" if self.limited else "not limited"
        return f"WorkflowBudget({state}, {self.waiting} waiting)"

    # -- internals (lock held unless said) --------------------------------------------------

    def _ceiling(self) -> float:
        return float(self.known_limit or DEFAULT_LIMIT)

    def _waiting_before(self, slot: Slot) -> bool:
        return bool(self._waiting) and self._waiting[0].rank < slot.rank

    def _expire(self, now: float) -> None:
        horizon = now - self.window - self.margin
        while self._spent and self._spent[0] <= horizon:
            self._spent.popleft()

    def _room(self, now: float, priority: int = FIRST) -> float:
        """How many requests of ``priority`` may go now. Polls are also spread evenly over
        the window (a burst of them would check every run at once, then none for a while);
        launches and cancels only need room in the window."""
        self._expire(now)
        if self.limited:
            self._recover(now)
        if not self.limited:
            return math.inf
        if now < self._not_before or (self._spaced(priority, now) and now < self._next_poll):
            return 0
        return math.floor(self.allowed) - len(self._spent) - len(self._in_flight)

    def _spaced(self, priority: int, now: float) -> bool:
        """Whether requests of ``priority`` keep the planned spacing now: polls always; the
        others for a window after a 429 (the server then has room for one at a time: its
        ``retry_after`` names when the first place frees, not when all of them do)."""
        return priority > FIRST or now - self._last_refusal < self.window

    def _recover(self, now: float) -> None:
        """Additive increase below the limit (one more request a window for each window
        without a 429); at the limit, probe beyond it after a quiet spell, and disengage
        once the server has accepted the probe's pace for a while."""
        ceiling = self._ceiling()
        while self.allowed < ceiling and now - self._last_change >= self.window:
            self.allowed = min(ceiling, self.allowed + 1)
            self._last_change += self.window
        if self.allowed < ceiling:
            return
        if self._probing_since is None:
            if now - self._quiet_since() >= self._quiet_needed:
                self._probing_since = now
                self._set_allowed(ceiling * PROBE, now)
        elif now - self._probing_since >= PROBE_LENGTH * self.window:
            self._disengage()

    def _quiet_since(self) -> float:
        """Since when requests have gone without a 429 (the wait a 429 asked for is not
        quiet: nothing was sent)."""
        return max(self._last_refusal, self._not_before)

    def _set_allowed(self, allowed: float, now: float) -> None:
        self.allowed = max(MIN_ALLOWED, allowed)
        self._epoch += 1
        self._last_change = now

    def _disengage(self) -> None:
        """The server kept accepting more than the limit: it does not count our requests
        the way the budget assumed. Back to granting everything (until the next 429)."""
        self.limited = False
        self.allowed = self._ceiling()
        self._probing_since = None
        self._quiet_needed = FIRST_QUIET * self.window
        self._next_poll = 0.0
        self._epoch += 1

    def _grant(self, slot: Slot, now: float) -> None:
        slot.granted = True
        slot.epoch = self._epoch
        self._in_flight.add(slot)
        if self.limited:
            self._next_poll = now + self.window / self.allowed

    def _pump_locked(self, now: float) -> list[Slot]:
        """Grant waiting slots while there is room; schedule the next look. Returns the slots
        whose callbacks the caller must run (outside the lock)."""
        granted = []
        while self._waiting and self._room(now, self._waiting[0].priority) > 0:
            slot = heapq.heappop(self._waiting)
            self._grant(slot, now)
            granted.append(slot)
        self._schedule(now)
        return granted

    def _schedule(self, now: float) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None
        if not self._waiting:
            return
        when = self._next_room(now)
        if when is not None:
            self._job = self._scheduler.call_at(when, self._pump, in_pool=False)

    def _next_room(self, now: float) -> float | None:
        """When a slot may free (None: only when a request in flight is answered)."""
        if now < self._not_before:
            return self._not_before
        first = self._waiting[0].priority
        if self._spaced(first, now) and now < self._next_poll:
            spacing_ends = self._last_refusal + self.window  # for launches and cancels
            return self._next_poll if first > FIRST else min(self._next_poll, spacing_ends)
        moments = []
        if self._spent:
            moments.append(self._spent[0] + self.window + self.margin)
        if self.allowed < self._ceiling():
            moments.append(self._last_change + self.window)
        elif self._probing_since is None:
            moments.append(self._quiet_since() + self._quiet_needed)
        else:
            moments.append(self._probing_since + PROBE_LENGTH * self.window)
        return min(moments)

    def _pump(self) -> None:
        with self._lock:
            self._job = None
            granted = self._pump_locked(self._clock())
        _deliver(granted)

    def _finish(self, slot: Slot, *, rate_limited: bool, retry_after: float | None) -> None:
        now = self._clock()
        with self._lock:
            if slot.finished or slot.withdrawn or not slot.granted:
                return
            slot.finished = True
            self._in_flight.discard(slot)
            self._spent.append(now)
            if not rate_limited:
                self._refused_in_row = 0
            else:
                self._rate_limited_locked(now, retry_after, current=slot.epoch == self._epoch)
            granted = self._pump_locked(now)
        _deliver(granted)

    def _rate_limited_locked(self, now: float, retry_after: float | None,
                             current: bool) -> None:
        in_row = self._refused_in_row > 0
        self._refused_in_row += 1
        self._last_refusal = now
        told = retry_after is not None and math.isfinite(retry_after) and retry_after > 0
        if retry_after is not None and told:
            # The server's word on when it has room: the next request goes then (polls too:
            # the planned spacing restarts there), and our count of its window, which would
            # only add to its wait, is dropped.
            self._not_before = max(self._not_before, now + min(retry_after, MAX_RETRY_AFTER))
            self._next_poll = self._not_before
            self._spent.clear()
        if not self.limited:
            self.limited = True
            self._set_allowed(self._ceiling(), now)
        elif self._probing_since is not None:  # the probe went too far: back to the limit
            self._probing_since = None
            self._quiet_needed = QUIET_AFTER_REFUSED_PROBE * self.window
            self._set_allowed(self._ceiling(), now)
        elif current and (in_row or not told):  # refused again at the present pace: too high
            self._set_allowed(self.allowed / 2, now)

    def _withdraw(self, slot: Slot) -> None:
        with self._lock:
            if slot.finished or slot.withdrawn:
                return
            slot.withdrawn = True
            if slot.granted:
                self._in_flight.discard(slot)  # never sent: the server did not count it
            elif slot in self._waiting:
                self._waiting.remove(slot)
                heapq.heapify(self._waiting)
            granted = self._pump_locked(self._clock())
        _deliver(granted)

    def _starts_in(self, slot: Slot) -> float:
        with self._lock:
            if slot.granted or slot.withdrawn:
                return 0.0
            now = self._clock()
            ahead = sum(1 for other in self._waiting if other.rank < slot.rank)
            return max(0.0, self._time_for(ahead + 1, now) - now)

    def _time_for(self, needed: int, now: float) -> float:
        """When ``needed`` slots will have freed, by the requests already counted."""
        start = max(now, self._not_before)
        if not self.limited:
            return start
        self._expire(now)
        room = math.floor(self.allowed) - len(self._spent) - len(self._in_flight)
        if needed <= room:
            return start
        # Slots free as counted requests expire: the finished ones in order, then the ones
        # in flight (a window after now at the earliest), then one per planned spacing.
        frees = [t + self.window + self.margin for t in self._spent]
        frees += [now + self.window + self.margin] * len(self._in_flight)
        index = needed - max(0, room) - 1
        if index < len(frees):
            return max(start, frees[index])
        spacing = self.window / max(self.allowed, MIN_ALLOWED)
        last = frees[-1] if frees else start
        return max(start, last + spacing * (index - len(frees) + 1))


def _deliver(slots: list[Slot]) -> None:
    for slot in slots:
        callback = slot._on_grant
        if callback is not None:
            callback(slot)


class Budgets:
    """The budgets of a process, one per (account, workflow)."""

    def __init__(self, window: float = WINDOW, *, scheduler: Scheduler | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._scheduler = scheduler
        self._clock = clock
        self._lock = threading.Lock()
        self._budgets: dict[tuple[Hashable, str], WorkflowBudget] = {}

    def for_workflow(self, account: Hashable, workflow_id: str) -> WorkflowBudget:
        key = (account, str(workflow_id))
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = WorkflowBudget(
                    key, self.window, self._scheduler, self._clock)
            return budget

    def reset(self, window: float | None = None) -> None:
        """Forget every budget (and set the window of the budgets made from now on): for
        tests and benchmarks that play a compressed minute."""
        with self._lock:
            self._budgets.clear()
            if window is not None:
                self.window = window


_shared = Budgets()


def shared_budgets() -> Budgets:
    """The process's budgets (every view, poller and launcher uses these)."""
    return _shared


def budget_for(account: Hashable, workflow_id: str) -> WorkflowBudget:
    """The process's budget of a workflow (``account``: ``WorkflowsClient.account``)."""
    return _shared.for_workflow(account, workflow_id)


def note_limit(account: Hashable, workflow_id: str, rate_limit: int | None) -> None:
    """Remember a workflow's ``rate_limit`` (from its schema or the workflow list)."""
    budget_for(account, workflow_id).note_limit(rate_limit)


# == One request of any kind, sent in its slot ===============================================
#
# Every request of a workflow (a poll, a schema read, a launch, a cancel) is sent the same way:
# ask the budget for a slot (the kind decides its place in the line), send in it
# (``WorkflowBudget.spending``), and for a POST send again only after a 429 that was about the
# workflow's rate: a 429 means the request did not run, so a second launch or cancel cannot
# double the first. Any other failure of a POST is final (its answer may be lost while the run
# started); a queue-full 429 is the account's line's to handle (``account.py``), not re-sent
# here. ``SendInSlot`` does it without holding a thread while it waits (a launch may wait
# minutes); ``send_in_slot`` is the same on the calling thread, blocking.


class RequestKind(Enum):
    """What a request is: its place in the budget's line, and whether a 429 lets it go again."""

    POLL = "poll"
    SCHEMA = "schema read"
    LAUNCH = "launch"
    CANCEL = "cancel"

    @property
    def priority(self) -> int:
        """Launches and cancels first (the user waits on them), then schema reads, then polls."""
        return {RequestKind.POLL: POLL, RequestKind.SCHEMA: SCHEMA}.get(self, FIRST)

    @property
    def is_post(self) -> bool:
        """A POST is re-sent after a 429 (it did not run); a GET's caller has its own
        schedule (the next poll, the Reload button)."""
        return self in (RequestKind.LAUNCH, RequestKind.CANCEL)


POST_TRIES = 5  # sends of a POST when each is answered 429: the server's word, then give up
WAKE = 0.1  # seconds: how often a blocked sender looks at its timeout and its cancel event

T = TypeVar("T")


class SendInSlot(Generic[T]):
    """One request in its slot of ``budget`` (see the region comment above), sent by
    ``submit`` (a pool: ``scheduler.submit``) once the slot is granted.

    ``start()`` asks for the slot; ``withdraw()`` drops the request while it is not on its
    way (nothing is sent after it returns True); ``send_now()`` stops waiting and sends it
    without a slot. ``on_done(self)`` is called once it ended (``result()``, ``error``), and
    ``on_refused(self, error)`` after a 429 it waits to be sent again for (it may be
    withdrawn from then on), both on the thread that sent it. ``budget=None``: sent at once,
    once. ``cancel`` set: not sent again after a 429. Thread-safe.
    """

    def __init__(self, budget: WorkflowBudget | None, kind: RequestKind,
                 request: Callable[[], T], *, submit: Callable[[Callable[[], Any]], Any],
                 tries: int | None = None, cancel: threading.Event | None = None,
                 on_done: Callable[[SendInSlot[T]], Any] | None = None,
                 on_refused: Callable[[SendInSlot[T], RateLimitError], Any] | None = None,
                 ) -> None:
        if tries is not None and tries < 1:
            raise ValueError("tries must be at least 1")
        self.budget = budget
        self.kind = kind
        self.tries = 1 if budget is None or not kind.is_post else tries or POST_TRIES
        self.attempts = 0  # requests sent so far
        self._request = request
        self._submit = submit
        self._cancel = cancel
        self._on_done = on_done
        self._on_refused = on_refused
        self._lock = threading.RLock()
        self._ticket = 0  # which wait for a slot is current (a superseded grant is given back)
        self._slot: Slot | None = None  # the slot waited for, until its request goes
        self._using: Slot | None = None  # the slot of the request on its way
        self._in_flight = False
        self._withdrawn = False
        self._finished = threading.Event()
        self._result: T | None = None
        self.error: BaseException | None = None

    # -- what callers read -----------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def withdrawn(self) -> bool:
        return self._withdrawn

    @property
    def waiting(self) -> bool:
        """Waiting for its slot (not on its way, not ended)."""
        with self._lock:
            return not (self._in_flight or self.done or self._withdrawn)

    def result(self) -> T:
        """The answer, or the request's error raised; only once ``done``."""
        if not self.done:
            raise RuntimeError("the request has not been answered yet")
        if self.error is not None:
            raise self.error
        return self._result  # type: ignore[return-value]

    def starts_in(self) -> float:
        """Estimated seconds until the request goes (0 once it went)."""
        with self._lock:
            slot = self._slot
        return slot.starts_in() if slot is not None else 0.0

    # -- what callers do -------------------------------------------------------------------

    def start(self, *, inline: bool = False) -> None:
        """Ask for the slot. ``inline``: when it is granted at once, the request is sent on
        this thread before ``start`` returns (the caller blocks on it anyway)."""
        self._ask(inline=inline)

    def withdraw(self) -> bool:
        """Drop the request unless it is on its way or answered: True when nothing will be
        sent (its slot is given back)."""
        with self._lock:
            if self._in_flight or self.done:
                return False
            self._withdrawn = True
            slot, self._slot = self._slot, None
        if slot is not None:
            slot.cancel()
        return True

    def send_now(self) -> bool:
        """Stop waiting for the slot and send at once, in none (the user cannot wait longer;
        the server's answer says whether it had room). False when it was not waiting."""
        with self._lock:
            slot = self._slot
            if slot is None or slot.granted or not self.waiting:
                return False
            self._ticket += 1
            ticket, self._slot = self._ticket, None
        slot.cancel()
        self._submit(lambda: self._send(ticket, None))
        return True

    # -- internals -------------------------------------------------------------------------

    def _ask(self, *, inline: bool = False) -> None:
        with self._lock:
            if self._withdrawn or self.done:
                return
            self._ticket += 1
            ticket = self._ticket
            if self.budget is None:
                slot = None
            else:  # the budget only queues or grants under our lock; callbacks just submit
                slot = self.budget.request(self.kind.priority, on_grant=lambda granted: (
                    self._submit(lambda: self._send(ticket, granted))))
            self._slot = slot
        if slot is None or slot.granted:
            if inline:
                self._send(ticket, slot)
            else:
                self._submit(lambda: self._send(ticket, slot))

    def _send(self, ticket: int, slot: Slot | None) -> None:
        with self._lock:
            current = (ticket == self._ticket and not self._in_flight and not self.done
                       and not self._withdrawn)
            if current:
                self._in_flight, self._slot, self._using = True, None, slot
                self.attempts += 1
        if not current:  # withdrawn, superseded, or this grant was delivered twice
            if slot is not None and slot is not self._using:
                slot.cancel()  # granted, never used: the server did not count it
            return
        try:
            with self.budget.spending(slot) if self.budget is not None else _no_slot():
                answer = self._request()
        except RateLimitError as error:
            with self._lock:
                self._in_flight = False  # from here it may be withdrawn
                again = self.sends_again(error)
            if not again:
                self._finish(error=error)
                return
            if self._on_refused is not None:
                self._on_refused(self, error)
            self._ask()
        except Exception as error:  # the caller reads it from ``error`` / ``result()``
            self._finish(error=error)
        else:
            self._finish(answer=answer)

    def sends_again(self, error: RateLimitError) -> bool:
        """Whether a 429 is followed by another send: only one about the workflow's rate
        (nothing ran), within ``tries``, unless ``cancel`` is set."""
        stopped = self._cancel is not None and self._cancel.is_set()
        return (not isinstance(error, QueueFullError) and self.attempts < self.tries
                and not stopped)

    def _finish(self, *, answer: T | None = None, error: BaseException | None = None) -> None:
        with self._lock:
            self._in_flight = False
            self._result, self.error = answer, error
            self._finished.set()
        if self._on_done is not None:
            self._on_done(self)


@contextlib.contextmanager
def _no_slot() -> Iterator[None]:
    yield


def send_in_slot(budget: WorkflowBudget | None, kind: RequestKind, request: Callable[[], T],
                 *, cancel: threading.Event | None = None, timeout: float | None = None,
                 tries: int | None = None) -> T:
    """Send ``request()`` in its slot of ``budget``, on this thread, blocking until it is
    answered (see ``SendInSlot``): returns its answer or raises its error. ``timeout``: the
    longest wait for each slot, after which the request goes without one; ``cancel`` set:
    it goes at once and is not sent again. ``tries``: at most this many sends of a POST, each
    after a 429 (default ``POST_TRIES``; a GET is sent once)."""
    handed: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
    sending = SendInSlot(budget, kind, request, submit=handed.put, tries=tries, cancel=cancel)
    sending.start(inline=True)
    attempts, deadline = -1, None
    while not sending.done:
        if sending.attempts != attempts:  # a new wait began (the first, or after a 429)
            attempts = sending.attempts
            deadline = None if timeout is None else time.monotonic() + timeout
        stop = cancel is not None and cancel.is_set()
        if stop or (deadline is not None and time.monotonic() >= deadline):
            sending.send_now()
        try:
            handed.get(timeout=WAKE)()
        except queue.Empty:
            continue
    return sending.result()
