"""One scheduler thread and one worker pool for the whole process.

Every timed job of the package (status polls, a card's elapsed-time tick, downloads) goes
through the shared ``Scheduler``: a heap of due times served by one timer thread, which hands
blocking work to a bounded pool of daemon workers. The thread count therefore does not grow
with the number of runs watched, and both the timer thread and the pool end whenever no job is
left, so an idle kernel holds no threads of ours. Generic: nothing here knows about runs.
"""

from __future__ import annotations

import atexit
import collections
import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("modelslab_widget")

MAX_WORKERS = 4  # polls take milliseconds; 4 keep 100 runs moving
# Downloads (thumbnails, probes) run in a lane of their own, so a slow image host can never
# hold up a status poll; and at most MAX_PER_HOST of them talk to one host at once, so one
# dripping host cannot take the whole lane from the others (it takes two such hosts at once
# to fill the lane, and then only until the download deadline). Four per host: a card's
# gallery (four slots by default) loads all at once from one image host.
MAX_DOWNLOADS = 8
MAX_PER_HOST = 4
WORKER_IDLE = 1.0  # seconds a worker waits for more work before it ends
MAX_WAIT = 3600.0  # longest single sleep of the timer thread (far-off jobs just wait again)


THREAD_PREFIX = "modelslab-widget"  # every thread this package starts has it
TIMER_THREAD_NAME = f"{THREAD_PREFIX}-timer"

class Job:
    """A scheduled call; ``cancel()`` makes sure it will not run (if it has not started)."""

    __slots__ = ("_wake", "cancelled", "due", "fn", "in_pool")

    def __init__(
        self, due: float, fn: Callable[[], Any], in_pool: bool, wake: Callable[[Job], None]
    ) -> None:
        self.due = due
        self.fn = fn
        self.in_pool = in_pool
        self.cancelled = False
        self._wake = wake

    def cancel(self) -> None:
        self.cancelled = True
        self._wake(self)  # so the timer thread drops it now, and can exit if nothing is left


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
        worker = None
        with self._cond:
            self._work.append((future, fn, args))
            if len(self._work) > self._waiting and len(self._threads) < self._max_workers:
                worker = self._new_worker()
            self._cond.notify()
        if worker is not None:
            _start(worker)
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

    def _new_worker(self) -> threading.Thread:
        """A worker counted (lock held) for the caller to start once it released the lock."""
        name = f"{self._name}_{next(self._started)}"
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._threads.add(thread)
        return thread

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

    def __init__(self, max_workers: int = MAX_WORKERS, *, max_downloads: int = MAX_DOWNLOADS,
                 max_per_host: int = MAX_PER_HOST) -> None:
        self._max_workers = max_workers
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._timer: threading.Thread | None = None
        self._ticker: Ticker | None = None
        self._pool = WorkerPool(max_workers, THREAD_PREFIX)
        self._downloads = HostLanes(
            WorkerPool(max_downloads, f"{THREAD_PREFIX}-download"), max_per_host
        )

    def call_at(self, due: float, fn: Callable[[], Any], *, in_pool: bool = True) -> Job:
        """Run ``fn`` at monotonic time ``due``: in the pool, or inline on the timer thread
        (only for quick calls that do no I/O)."""
        job = Job(due, fn, in_pool, self._wake)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), job))
            timer = self._new_timer()
            if self._heap[0][2] is job:  # sooner than what the timer waits for: tell it
                self._cond.notify()
        if timer is not None:
            _start(timer)
        return job

    def call_later(self, delay: float, fn: Callable[[], Any], *, in_pool: bool = True) -> Job:
        return self.call_at(time.monotonic() + max(0.0, delay), fn, in_pool=in_pool)

    @property
    def ticker(self) -> Ticker:
        """This scheduler's once-a-second ticker (made on first use)."""
        with self._cond:
            if self._ticker is None:
                self._ticker = Ticker(self)
            return self._ticker

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the worker pool now (the pool has its own lock)."""
        future = self._pool.submit(fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def submit_download(self, host: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the download lane: never in the workers that poll, and at most
        ``max_per_host`` at once for ``host`` (later ones queue without holding a worker)."""
        future = self._downloads.submit(host, fn, *args)
        future.add_done_callback(_log_failure)
        return future

    def downloads_running(self, host: str) -> int:
        """Downloads from ``host`` running right now (at most ``max_per_host``)."""
        return self._downloads.running(host)

    def _wake(self, job: Job) -> None:
        """A job was cancelled: the timer needs to hear it only if it is waiting for that
        very job (a later one leaves the heap when it reaches the top). Every status request
        sets and cancels a watchdog due long after the next poll: no wake for it."""
        with self._cond:
            if self._heap and self._heap[0][2] is job:
                self._cond.notify()

    @property
    def thread_count(self) -> int:
        """Threads this scheduler currently holds (timer, poll and download workers)."""
        with self._cond:
            timer = 1 if self._timer is not None and self._timer.is_alive() else 0
            return timer + self._pool.thread_count + self._downloads.thread_count

    def shutdown(self) -> None:
        """Drop every pending job and let the threads end (used at interpreter exit)."""
        with self._cond:
            for _, _, job in self._heap:
                job.cancel()
            self._heap.clear()
            self._cond.notify()
        self._pool.shutdown()
        self._downloads.shutdown()

    # -- internals ----------------------------------------------------------------------

    def _new_timer(self) -> threading.Thread | None:
        """The timer thread to start (lock held) when there is none; the caller starts it
        after releasing the lock (see ``_start``)."""
        if self._timer is not None:
            return None
        self._timer = threading.Thread(
            target=self._timer_loop, name=TIMER_THREAD_NAME, daemon=True
        )
        return self._timer

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
        # Cancelled jobs leave the heap when they reach its top: once the top is live, the
        # heap holds work, so no scan of the whole heap is needed (a wake is O(log n)).
        while self._heap:
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


class HostLanes:
    """A worker pool where at most ``per_host`` jobs of one host run at once; the others wait
    in that host's queue (holding no worker) and start as earlier ones finish."""

    def __init__(self, pool: WorkerPool, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self._pool = pool
        self._per_host = per_host
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._queued: dict[str, collections.deque[_WorkItem]] = {}

    @property
    def thread_count(self) -> int:
        return self._pool.thread_count

    def running(self, host: str) -> int:
        with self._lock:
            return self._running.get(host, 0)

    def submit(self, host: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._running.get(host, 0) >= self._per_host:
                self._queued.setdefault(host, collections.deque()).append((future, fn, args))
                return future
            self._running[host] = self._running.get(host, 0) + 1
        self._start(host, (future, fn, args))
        return future

    def shutdown(self) -> None:
        with self._lock:
            queued = [item for items in self._queued.values() for item in items]
            self._queued.clear()
        for future, _, _ in queued:
            future.cancel()
        self._pool.shutdown()

    def _start(self, host: str, item: _WorkItem) -> None:
        self._pool.submit(self._run, host, item)

    def _run(self, host: str, item: _WorkItem) -> None:
        future, fn, args = item
        try:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the Future, like an executor does
                    future.set_exception(exc)
        finally:
            self._next(host)

    def _next(self, host: str) -> None:
        """This host's slot is free: start its next queued job, or give the slot back."""
        with self._lock:
            queue = self._queued.get(host)
            item = queue.popleft() if queue else None
            if queue is not None and not queue:
                del self._queued[host]
            if item is None:
                self._running[host] -= 1
                if not self._running[host]:
                    del self._running[host]
        if item is not None:
            self._start(host, item)


class Ticker:
    """Calls every subscriber once a ``period`` on the timer thread, from one job: a hundred
    cards' moving timers cost one wake a second, not a hundred. Subscribers are held weakly
    (a forgotten card stops ticking) and must be quick (they run inline)."""

    def __init__(self, scheduler: Scheduler, period: float = 1.0) -> None:
        self._scheduler = scheduler
        self.period = period
        # Re-entrant: garbage collection can close a forgotten card (ipywidgets' __del__
        # closes) at any allocation, also inside add(), and closing it discards it here.
        self._lock = threading.RLock()
        self._subscribers: dict[int, weakref.WeakMethod[Callable[[], Any]]] = {}
        self._job: Job | None = None

    def add(self, method: Callable[[], Any]) -> None:
        """Call the bound ``method`` every period from the next tick on (again: no-op)."""
        with self._lock:
            self._subscribers[id(method.__self__)] = weakref.WeakMethod(method)  # type: ignore[attr-defined]
            if self._job is None:
                self._job = self._scheduler.call_later(self.period, self._tick, in_pool=False)

    def discard(self, owner: object) -> None:
        """``owner``'s method is called no more (whatever it subscribed)."""
        with self._lock:
            self._subscribers.pop(id(owner), None)
            if not self._subscribers and self._job is not None:
                self._job.cancel()
                self._job = None

    def _tick(self) -> None:
        with self._lock:
            methods = [ref() for ref in self._subscribers.values()]
            self._subscribers = {
                key: ref for key, ref in self._subscribers.items() if ref() is not None}
            live = bool(self._subscribers)
            self._job = (self._scheduler.call_later(self.period, self._tick, in_pool=False)
                         if live else None)
        for method in methods:
            if method is not None:
                try:
                    method()
                except Exception:
                    log.exception("a tick failed")


def _start(thread: threading.Thread) -> None:
    """Start a thread with no lock of ours held. ``start()`` waits for the new thread to
    run, and the new thread may first collect garbage: ipywidgets' ``__del__`` closes a
    forgotten card, which takes the scheduler's locks. Held here, that is a deadlock."""
    thread.start()


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


def weak_callback(method: Callable[..., Any]) -> Callable[..., Any]:
    """A bound method for a job that does not keep its object alive: a job in the heap must
    not stop a forgotten widget or watch from being collected. Returns None once it is gone."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        target = ref()
        return target(*args) if target is not None else None

    return call
