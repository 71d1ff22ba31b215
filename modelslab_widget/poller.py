"""Background polling of run status: one scheduler thread and one worker pool for the process.

Every poller (and any other timed job, such as a widget's elapsed-time tick) goes through the
shared ``Scheduler``: a heap of due times served by one timer thread, which hands HTTP work to
a bounded pool of daemon workers. The thread count therefore does not grow with the number of
runs watched, and both the timer thread and the pool are shut down whenever no job is left,
so an idle kernel holds no threads of ours. Nothing here knows about widgets.
"""

from __future__ import annotations

import atexit
import collections
import heapq
import itertools
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from .client import WorkflowsClient
from .errors import AuthenticationError, ModelsLabError, NotFoundError, RateLimitError
from .models import RunSnapshot

log = logging.getLogger("modelslab_widget")

MAX_WORKERS = 4  # polls take milliseconds; 4 keep 100 runs and their images moving
MAX_BACKOFF = 30.0
WORKER_IDLE = 1.0  # seconds a worker waits for more work before it ends
MAX_WAIT = 3600.0  # longest single sleep of the timer thread (far-off jobs just wait again)
MAX_RETRY_AFTER = 3600.0  # a server asking for longer is not believed beyond an hour
MAX_QUIET_INTERVALS = 10  # however sure the estimate, poll at least every 10 intervals


THREAD_PREFIX = "modelslab-widget"  # every thread this package starts has it
TIMER_THREAD_NAME = f"{THREAD_PREFIX}-timer"

class Job:
    """A scheduled call; ``cancel()`` makes sure it will not run (if it has not started)."""

    __slots__ = ("_wake", "cancelled", "due", "fn", "in_pool")

    def __init__(
        self, due: float, fn: Callable[[], Any], in_pool: bool, wake: Callable[[], None]
    ) -> None:
        self.due = due
        self.fn = fn
        self.in_pool = in_pool
        self.cancelled = False
        self._wake = wake

    def cancel(self) -> None:
        self.cancelled = True
        self._wake()  # so the timer thread drops it now, and can exit if nothing is left


_WorkItem = tuple[Future[Any], Callable[..., Any], tuple]


class WorkerPool:
    """Up to ``max_workers`` daemon threads running submitted calls, with standard Futures.
    A worker ends after ``idle_seconds`` without work, so an idle kernel holds no threads.

    Not ``ThreadPoolExecutor``: it joins its workers at interpreter exit, so a status request
    waiting out its read timeout would hold a closing kernel for that long. A daemon worker
    blocked on the network simply ends with the process.
    """

    def __init__(self, max_workers: int, name: str, idle_seconds: float = WORKER_IDLE) -> None:
        self._max_workers = max_workers
        self._name = name
        self._idle_seconds = idle_seconds
        # One lock covers the queue, the threads and the count of workers waiting for work,
        # so "more work queued than workers waiting for it" is exact when submit() decides
        # whether to add a worker (a worker takes its item and stops waiting in one step).
        self._cond = threading.Condition(threading.Lock())
        self._work: collections.deque[_WorkItem | None] = collections.deque()
        self._threads: set[threading.Thread] = set()
        self._waiting = 0
        self._started = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._cond:
            self._work.append((future, fn, args))
            if len(self._work) > self._waiting and len(self._threads) < self._max_workers:
                self._start_worker()
            self._cond.notify()
        return future

    def shutdown(self) -> None:
        """Let every worker end once the work already queued is done."""
        with self._cond:
            self._work.extend([None] * len(self._threads))
            self._cond.notify_all()

    @property
    def thread_count(self) -> int:
        with self._cond:
            return len(self._threads)

    def _start_worker(self) -> None:
        name = f"{self._name}_{next(self._started)}"
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._threads.add(thread)
        thread.start()

    def _run(self) -> None:
        while (item := self._next()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the Future, like an executor does
                future.set_exception(exc)

    def _next(self) -> _WorkItem | None:
        """The next call, or None when it is time for this worker to end (a shutdown, or
        ``idle_seconds`` without work; decided under the lock submit() takes, so work put in
        meanwhile always finds a waiting worker or starts one)."""
        with self._cond:
            while not self._work:
                self._waiting += 1
                woken = self._cond.wait(self._idle_seconds)
                self._waiting -= 1
                if not woken and not self._work:
                    break
            item = self._work.popleft() if self._work else None
            if item is None:  # leave the count in the same step, so submit() sees it
                self._threads.discard(threading.current_thread())
            return item


class Scheduler:
    """A heap of due times on one timer thread, and a bounded worker pool, both started on demand.

    The threads live only while there is work: when the heap is empty and no pool job is
    running, the timer thread returns and the pool is shut down.
    """

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self._max_workers = max_workers
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._timer: threading.Thread | None = None
        self._pool = WorkerPool(max_workers, THREAD_PREFIX)

    def call_at(self, due: float, fn: Callable[[], Any], *, in_pool: bool = True) -> Job:
        """Run ``fn`` at monotonic time ``due``: in the pool, or inline on the timer thread
        (only for quick calls that do no I/O)."""
        job = Job(due, fn, in_pool, self._wake)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), job))
            self._ensure_timer()
            self._cond.notify()
        return job

    def call_later(self, delay: float, fn: Callable[[], Any], *, in_pool: bool = True) -> Job:
        return self.call_at(time.monotonic() + max(0.0, delay), fn, in_pool=in_pool)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the worker pool now (the pool has its own lock)."""
        future = self._pool.submit(fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    @property
    def thread_count(self) -> int:
        """Threads this scheduler currently holds (timer and pool workers)."""
        with self._cond:
            timer = 1 if self._timer is not None and self._timer.is_alive() else 0
            return timer + self._pool.thread_count

    def shutdown(self) -> None:
        """Drop every pending job and let the threads end (used at interpreter exit)."""
        with self._cond:
            for _, _, job in self._heap:
                job.cancel()
            self._heap.clear()
            self._cond.notify()
        self._pool.shutdown()

    # -- internals ----------------------------------------------------------------------

    def _ensure_timer(self) -> None:
        if self._timer is None:
            self._timer = threading.Thread(
                target=self._timer_loop, name=TIMER_THREAD_NAME, daemon=True
            )
            self._timer.start()

    def _timer_loop(self) -> None:
        while True:
            with self._cond:
                job = self._next_due_job()
                if job is None:
                    self._timer = None
                    return
            # Outside the lock: starting a pool worker must not hold up call_at() callers.
            if job.in_pool:
                self.submit(_run_unless_cancelled, job)
            else:
                self._run_inline(job)

    def _next_due_job(self) -> Job | None:
        """Wait (with the lock held) for the earliest job to fall due; None when none are left."""
        while self._heap:
            if all(entry[2].cancelled for entry in self._heap):
                self._heap.clear()  # cancelled jobs deep in the heap would keep us alive
                break
            due, _, job = self._heap[0]
            if job.cancelled:
                heapq.heappop(self._heap)
                continue
            delay = due - time.monotonic()
            if delay <= 0:
                heapq.heappop(self._heap)
                return job
            self._cond.wait(min(delay, MAX_WAIT))
        return None

    @staticmethod
    def _run_inline(job: Job) -> None:
        try:
            job.fn()
        except Exception:
            log.exception("scheduled callback failed")


def _run_unless_cancelled(job: Job) -> None:
    """A job cancelled after it was handed to the pool, but before it started, does not run."""
    if not job.cancelled:
        job.fn()


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("background job failed", exc_info=future.exception())


_scheduler = Scheduler()
atexit.register(_scheduler.shutdown)


def shared_scheduler() -> Scheduler:
    """The process-wide scheduler every poller and widget uses."""
    return _scheduler


class PollListener(Protocol):
    """What a poller reports to; held weakly, so a forgotten listener ends its poller."""

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None: ...

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None: ...

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None: ...


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll and when to give up."""

    interval: float = 2.0
    timeout: float | None = None  # seconds of watching before giving up; None = no limit
    max_failures: int = 5  # transient failures in a row that end watching
    backoff_base: float = 1.0

    def backoff(self, failures: int, retry_after: float | None) -> float:
        """Exponential back-off with full jitter above the interval; never below a 429's wait."""
        ceiling = min(MAX_BACKOFF, self.backoff_base * 2 ** min(failures - 1, 30))
        delay = max(self.interval, random.uniform(ceiling / 2, ceiling))
        wait = retry_after if retry_after is not None and math.isfinite(retry_after) else 0.0
        return max(delay, min(wait, MAX_RETRY_AFTER))


class WatchTimeout(TimeoutError):
    """Watching ran longer than its ``timeout`` without the run ending."""


class RunPoller:
    """Polls one run until it ends, is stopped, times out, or its listener is garbage."""

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
        self._timeout_job: Job | None = None
        self._failures = 0
        self._next_due = 0.0

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
            cancel = self._cancel
            self._next_poll = self._scheduler.call_at(
                self._next_due, lambda: self._poll_once(cancel)
            )
            if self.policy.timeout is not None:  # math.inf is fine: the timer clamps its waits
                self._timeout_job = self._scheduler.call_later(
                    self.policy.timeout, lambda: self._time_out(cancel)
                )

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
        for job in (self._next_poll, self._timeout_job):
            if job is not None:
                job.cancel()
        self._next_poll = self._timeout_job = None
        return True

    def _poll_once(self, cancel: threading.Event) -> None:
        with self._lock:
            if not self._active or cancel is not self._cancel:
                return  # stopped, or scheduled by an earlier watching session
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
            self._next_due = max(now, base + delay)
            self._next_poll = self._scheduler.call_at(
                self._next_due, lambda: self._poll_once(cancel)
            )

    def _time_out(self, cancel: threading.Event) -> None:
        seconds = self.policy.timeout
        error = WatchTimeout(
            f"Stopped watching after {seconds:g} s: the run had not finished. "
            "Call start() to keep watching."
        )
        self._finish(cancel, None, error)

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
