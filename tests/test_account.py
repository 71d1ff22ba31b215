"""The account's launch queue (account.py) on a fake clock: held launches keep their order, go
one at a time when a run of the account ends (or after retry_after when none is known), and
are never lost or let go twice."""

from __future__ import annotations

import pytest

from modelslab_widget.account import KNOWN_RUNS_FALLBACK, AccountQueue
from modelslab_widget.errors import QueueFullError

from .fake_clock import FakeClock

FULL = QueueFullError("Maximum 5 queued requests allowed.", retry_after=30, limit=5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock) -> AccountQueue:
    return AccountQueue(scheduler=clock, clock=clock)


class Launch:
    """A launch as a card holds it: counts how often its turn came."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def __call__(self) -> None:
        self.log.append(self.name)


def test_an_open_queue_lets_every_launch_go_at_once(queue):
    assert queue.enter(Launch("a", [])) and queue.enter(Launch("b", []))
    assert not queue.holding


def test_held_launches_go_in_order_one_per_ended_run(queue, clock):
    log: list[str] = []
    queue.run_active("run 1")
    queue.run_active("run 2")
    first = Launch("first", log)
    queue.refused(first, FULL)
    assert queue.limit == 5 and queue.holding
    later = [Launch(name, log) for name in ("second", "third")]
    assert not any(queue.enter(launch) for launch in later)
    clock.advance(FULL.retry_after)  # runs of ours hold the queue: their ends open it
    assert log == []
    queue.run_ended("run 1")
    assert log == ["first"]
    queue.run_ended("run 1")  # heard twice: one end, one turn
    assert log == ["first"]
    queue.refused(first, FULL)  # still full (a run started elsewhere): front of the line
    queue.run_ended("run 2")
    assert log == ["first", "first"]
    queue.sent()
    assert queue.holding and queue.waiting == 2  # the others still wait for an end


def test_with_no_run_known_the_first_in_line_goes_after_retry_after(queue, clock):
    log: list[str] = []
    queue.refused(Launch("a", log), FULL)
    assert not queue.enter(Launch("b", log))
    assert queue.opens_in() == pytest.approx(30)
    clock.advance(29.9)
    assert log == []
    clock.advance(0.2)
    assert log == ["a"]
    queue.sent()  # accepted: b still waits, with the safety net set again
    clock.advance(30.1)
    assert log == ["a", "b"]
    queue.sent()
    assert not queue.holding and queue.enter(Launch("c", log))


def test_a_run_whose_watch_stopped_cannot_hold_the_line_forever(queue, clock):
    log: list[str] = []
    queue.run_active("run 1")
    queue.refused(Launch("a", log), FULL)
    clock.advance(30 * KNOWN_RUNS_FALLBACK + 0.1)
    assert log == ["a"]
    queue.refused(Launch("a", log), FULL)
    queue.run_forgotten("run 1")  # its end will not be heard: back to retry_after
    clock.advance(30.1)
    assert log == ["a", "a"]


def test_a_removed_launch_is_never_let_go_and_its_turn_passes_on(queue, clock):
    log: list[str] = []
    queue.run_active("run")
    a, b = Launch("a", log), Launch("b", log)
    queue.refused(a, FULL)
    queue.enter(b)
    assert queue.remove(a) and not queue.remove(a)
    queue.run_ended("run")
    assert log == ["b"]
    queue.pass_turn()  # b was not sent after all (removed as it went): nobody is left
    assert log == ["b"] and queue.waiting == 0


def test_an_ended_run_with_nobody_waiting_opens_the_queue(queue):
    log: list[str] = []
    refused = Launch("a", log)
    queue.run_active("run")
    queue.refused(refused, FULL)
    assert queue.remove(refused)  # its card was removed: nobody waits, the queue is full
    assert queue.holding and queue.waiting == 0
    queue.run_ended("run")
    assert not queue.holding and log == []
