"""The shared scheduler and its worker pool: bounded threads that end when idle, jobs that
run on time without drift, cancellation."""

from __future__ import annotations

import threading
import time

from modelslab_widget.scheduler import Scheduler, WorkerPool

from .conftest import wait_for


def test_pool_is_bounded_runs_everything_and_ends_when_idle():
    pool = WorkerPool(3, "test-pool", idle_seconds=0.2)
    peak = []
    futures = [
        pool.submit(lambda n=n: (peak.append(pool.thread_count), n * 2)[1]) for n in range(200)
    ]
    assert [f.result(5) for f in futures] == [n * 2 for n in range(200)]
    assert max(peak) <= 3
    wait_for(lambda: pool.thread_count == 0, timeout=3)
    assert pool.submit(lambda: "again").result(5) == "again"  # starts a worker anew


def test_pool_hands_exceptions_to_the_future():
    pool = WorkerPool(1, "test-pool", idle_seconds=0.1)
    future = pool.submit(lambda: 1 / 0)
    assert isinstance(future.exception(5), ZeroDivisionError)


def test_work_submitted_while_workers_retire_is_never_stranded():
    pool = WorkerPool(2, "test-pool", idle_seconds=0.01)
    for _ in range(300):  # submit right around the moment idle workers give up
        assert pool.submit(lambda: True).result(2)
        time.sleep(0.011)


def test_scheduler_keeps_time_and_ends_its_threads():
    scheduler = Scheduler(max_workers=2)
    seen: list[float] = []
    start = time.monotonic()
    for n in range(5):
        scheduler.call_at(start + 0.1 * (n + 1), lambda: seen.append(time.monotonic() - start))
    wait_for(lambda: len(seen) == 5, timeout=3)
    assert all(abs(t - 0.1 * (n + 1)) < 0.05 for n, t in enumerate(sorted(seen)))
    wait_for(lambda: scheduler.thread_count == 0, timeout=3)


def test_cancelled_jobs_do_not_run_and_let_the_timer_end():
    scheduler = Scheduler()
    ran = threading.Event()
    job = scheduler.call_later(0.3, ran.set)
    job.cancel()
    wait_for(lambda: scheduler.thread_count == 0, timeout=2)
    assert not ran.wait(0.4)


def test_a_cancelled_job_under_a_later_one_leaves_the_heap_and_the_later_one_runs():
    scheduler = Scheduler()
    ran: list[str] = []
    first = scheduler.call_later(0.05, lambda: ran.append("cancelled"), in_pool=False)
    scheduler.call_later(0.15, lambda: ran.append("later"), in_pool=False)
    first.cancel()
    wait_for(lambda: ran == ["later"], timeout=3)
    wait_for(lambda: scheduler.thread_count == 0, timeout=3)


def test_a_sooner_job_wakes_a_timer_waiting_for_a_later_one_and_cancelling_that_ends_it():
    """The timer is told of a new job only when it is the soonest, and of a cancel only when
    it was waiting for that job: both must still reach it."""
    scheduler = Scheduler()
    ran = threading.Event()
    later = scheduler.call_later(30.0, lambda: None, in_pool=False)
    wait_for(lambda: scheduler.thread_count == 1)  # the timer waits for the 30 s job
    scheduler.call_later(0.05, ran.set, in_pool=False)
    assert ran.wait(5)  # not after 30 s: as the soonest, it woke the timer
    later.cancel()  # the only job left, the one waited for: the timer ends now
    wait_for(lambda: scheduler.thread_count == 0, timeout=3)


class _Counter:
    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1


def test_one_ticker_ticks_every_subscriber_together_until_they_leave():
    scheduler = Scheduler()
    ticker = scheduler.ticker
    ticker.period = 0.05
    first, second = _Counter(), _Counter()
    ticker.add(first.tick)
    ticker.add(second.tick)
    ticker.add(second.tick)  # a second add of the same subscriber changes nothing
    wait_for(lambda: first.ticks >= 3, timeout=3)
    # one job calls both, one after the other: they are never more than one tick apart
    assert abs(first.ticks - second.ticks) <= 1
    ticker.discard(first)
    left_at = first.ticks
    wait_for(lambda: second.ticks >= left_at + 3, timeout=3)
    assert first.ticks == left_at
    ticker.discard(second)
    wait_for(lambda: scheduler.thread_count == 0, timeout=3)


def test_a_forgotten_subscriber_stops_the_ticker():
    scheduler = Scheduler()
    scheduler.ticker.period = 0.05
    counters = [_Counter()]
    scheduler.ticker.add(counters[0].tick)
    wait_for(lambda: counters[0].ticks >= 1, timeout=3)
    counters.clear()  # held weakly by the ticker: nothing else keeps it
    wait_for(lambda: scheduler.thread_count == 0, timeout=3)


def test_idle_workers_do_not_serialise_a_burst_of_work():
    pool = WorkerPool(4, "test-pool", idle_seconds=5)
    pool.submit(lambda: None).result(2)  # one worker now idles, waiting for work
    barrier = threading.Barrier(4, timeout=3)
    futures = [pool.submit(barrier.wait) for _ in range(4)]  # needs 4 at once to pass
    assert all(f.exception(5) is None for f in futures)
    pool.shutdown()


# -- lanes: downloads never hold up polls, a few per host, time limits always fire ----------

import contextlib  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402

from modelslab_widget import WorkflowRunWidget  # noqa: E402
from modelslab_widget.poller import WatchTimeout  # noqa: E402
from modelslab_widget.scheduler import MAX_PER_HOST  # noqa: E402
from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault  # noqa: E402


class DrippingImageHost:
    """A raw socket server that answers every request with headers dripped one byte every
    0.2 s (never a whole answer: each read gets data, so no socket timeout fires), and counts
    how many connections it holds at once."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.open = self.peak = self.connections = 0
        self.thread = threading.Thread(target=self._serve, name="simulator-drip-images")
        self.thread.start()

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/out/{index}.png"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self.lock:
                self.connections += 1
                self.open += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._drip, args=(conn,), name="simulator-drip-conn").start()

    def _drip(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 10_000:
                if self.stopping.wait(0.2):
                    break
                conn.sendall(bytes([byte]))
        with self.lock:
            self.open -= 1

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


def completed_answer(execution_id: int, urls: list[str]) -> dict:
    return {
        "status": "success",
        "execution": {"id": execution_id, "workflow_id": DEMO_WORKFLOW_ID, "status": "completed",
                      "started_at": "2024-01-01T00:00:00Z",
                      "completed_at": "2024-01-01T00:00:01Z", "execution_time": 1.0},
        "steps": [{"name": "Text to Image", "status": "completed"}],
        "output": {"output": urls, "status": "success"},
    }


def test_dripping_image_hosts_never_stop_another_card_polling_or_a_time_limit(sim, client):
    hosts = [DrippingImageHost(), DrippingImageHost()]
    cards: list[WorkflowRunWidget] = []
    try:
        # A completed run whose eight outputs sit on two image hosts that drip their headers:
        # its thumbnail downloads take the whole download lane for the client's deadline.
        urls = [host.url(i) for i in range(4) for host in hosts]
        stuck = sim.add_run(steps=[("a", 0.0)])
        sim.status_faults(stuck, [Fault("json", body=completed_answer(stuck, urls), times=None)])
        cards.append(WorkflowRunWidget(DEMO_WORKFLOW_ID, stuck, client=client,
                                       poll_interval=0.05, thumbnail_size=64,
                                       max_thumbnails=8))
        wait_for(lambda: sum(host.open for host in hosts) == 2 * MAX_PER_HOST)

        # Meanwhile a healthy run in the same kernel is polled and completes on time ...
        healthy = sim.add_run(steps=[("Text to Image", 0.3), ("Image Upscaler", 0.3)], images=0)
        card = WorkflowRunWidget(DEMO_WORKFLOW_ID, healthy, client=client, poll_interval=0.05)
        cards.append(card)
        started = time.monotonic()
        assert card.wait(5).status == "completed"
        took = time.monotonic() - started
        # ... and a card's own time limit fires although every download worker is busy.
        slow = sim.add_run(steps=[("Text to Image", 60.0)])
        limited = WorkflowRunWidget(DEMO_WORKFLOW_ID, slow, client=client, poll_interval=0.05,
                                    timeout=0.3)
        cards.append(limited)
        with pytest.raises(WatchTimeout):
            limited.wait(5)

        assert took < 2.0, f"the healthy card took {took:.2f} s for a 0.6 s run"
        assert card.polls >= 5
        assert [host.open for host in hosts] == [MAX_PER_HOST] * 2
        assert [host.peak for host in hosts] == [MAX_PER_HOST] * 2  # never more per host
        assert sim.request_count("status", stuck) == 1  # the stuck run itself is done polling
    finally:
        for card in cards:
            card.close()
        for host in hosts:
            host.close()


def test_host_lanes_run_at_most_per_host_at_once_and_everything_eventually():
    scheduler = Scheduler(max_workers=1, max_downloads=3, max_per_host=2)
    gate = threading.Event()
    running: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def job(host: str, n: int) -> int:
        with lock:
            running[host] += 1
            peak[host] = max(peak[host], running[host])
        gate.wait(5)
        with lock:
            running[host] -= 1
        return n

    futures = [scheduler.submit_download(host, job, host, n) for n in range(5) for host in "ab"]
    # two of host a are inside job() (admitted is not enough: they may not have started)
    wait_for(lambda: running["a"] == 2 and scheduler.downloads_running("a") == 2)
    assert scheduler.submit(lambda: "poll").result(5) == "poll"  # the poll lane is free
    gate.set()
    assert sorted(f.result(5) for f in futures) == sorted(list(range(5)) * 2)
    assert max(peak.values()) == 2 and min(peak.values()) >= 1  # never 3 of one host
    wait_for(lambda: scheduler.downloads_running("a") == scheduler.downloads_running("b") == 0)
    scheduler.shutdown()
    wait_for(lambda: scheduler.thread_count == 0, timeout=5)


def test_a_card_closed_by_garbage_collection_inside_the_tickers_add_does_not_deadlock():
    """ipywidgets' __del__ closes a forgotten card at any allocation, also while this thread is
    inside Ticker.add; closing discards it from the ticker, re-entering its lock."""
    scheduler = Scheduler()
    ticker = scheduler.ticker
    forgotten = _Counter()
    ticker.add(forgotten.tick)

    class Reentrant:
        """A bound method whose owner, when the ticker reads it, closes another card."""

        def tick(self) -> None: ...

        @property
        def __self__(self):  # the ticker reads the owner of a bound method, under its lock
            ticker.discard(forgotten)  # what __del__ -> close() does, on this same thread
            return owner

    done = threading.Event()

    owner = _Counter()

    def add() -> None:
        method = Reentrant()
        method.__func__ = _Counter.tick  # type: ignore[attr-defined]
        ticker.add(method)  # type: ignore[arg-type]
        done.set()

    thread = threading.Thread(target=add, daemon=True)
    thread.start()
    assert done.wait(5), "Ticker.add deadlocked on a re-entrant discard"
    scheduler.shutdown()


def test_threads_start_with_no_lock_of_the_scheduler_held(monkeypatch):
    """Thread.start() waits for the new thread, which may first collect garbage, and a
    forgotten card's __del__ takes the scheduler's locks: starting under one deadlocked."""
    scheduler = Scheduler()
    held: list[tuple[str, bool]] = []
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        locked = scheduler._cond._is_owned() or scheduler._pool._cond._is_owned()
        held.append((thread.name, locked))
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    ran = threading.Event()
    scheduler.call_later(0, ran.set)  # starts the timer thread, then a pool worker
    assert ran.wait(5)
    assert len(held) >= 2 and not any(locked for _, locked in held), held
    scheduler.shutdown()
