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


def test_idle_workers_do_not_serialise_a_burst_of_work():
    pool = WorkerPool(4, "test-pool", idle_seconds=5)
    pool.submit(lambda: None).result(2)  # one worker now idles, waiting for work
    barrier = threading.Barrier(4, timeout=3)
    futures = [pool.submit(barrier.wait) for _ in range(4)]  # needs 4 at once to pass
    assert all(f.exception(5) is None for f in futures)
    pool.shutdown()
