"""RunPoller: polling one run over real sockets; it ends when its listener is garbage."""

from __future__ import annotations

import math
import threading
import time

import pytest

from modelslab_widget.poller import PollPolicy
from modelslab_widget.scheduler import Scheduler

from .conftest import fast_client, wait_for
from .fake_clock import FakeScheduler


class _Listener:
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def on_snapshot(self, snapshot, polls):
        self.seen.append(snapshot)

    def on_poll_error(self, error, failures, retry_in):
        pass

    def on_finished(self, snapshot, error):
        pass


def test_a_poller_whose_listener_is_garbage_stops():
    """On a fake clock the simulator shares: once the listener is garbage the poller goes
    inactive at its next poll, and twenty intervals later it has sent nothing more."""
    import gc

    from modelslab_widget.poller import RunPoller
    from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Simulator

    clock = FakeScheduler(start=time.monotonic())  # the poller times its polls by monotonic
    with Simulator(clock=clock) as sim, fast_client(sim) as client:
        seen: list = []
        listener = _Listener(seen)
        eid = sim.add_run(steps=[("Long", 7200)])
        poller = RunPoller(client, DEMO_WORKFLOW_ID, eid, listener, PollPolicy(interval=0.05),
                           scheduler=clock)
        poller.start()
        clock.advance_until(lambda: len(seen) >= 2)
        del listener
        gc.collect()
        clock.advance_until(lambda: not poller.active, limit=1.0)
        count = sim.request_count("status", execution_id=eid)
        clock.advance(1.0)
        assert sim.request_count("status", execution_id=eid) == count


@pytest.mark.parametrize("retry_after", [math.inf, 1e12])
def test_absurd_retry_after_does_not_kill_the_timer(retry_after):
    assert PollPolicy(interval=1).backoff(1, retry_after) <= 3600
    scheduler = Scheduler()
    far = scheduler.call_later(1e12, lambda: None)
    ran = threading.Event()
    scheduler.call_later(0.05, ran.set)
    assert ran.wait(2), "the timer thread stopped serving jobs"
    far.cancel()


class _Recorder(_Listener):
    """Notes errors, pacing and the end."""

    def __init__(self) -> None:
        super().__init__([])
        self.errors: list = []
        self.paced: list = []
        self.ended: list = []

    def on_poll_error(self, error, failures, retry_in):
        self.errors.append(error)

    def on_paced(self, seconds):
        self.paced.append(seconds)

    def on_finished(self, snapshot, error):
        self.ended.append((snapshot, error))


def test_a_429_is_paced_never_counted_as_a_failure(sim, client):
    """Without a budget too: six 429s in a row with max_failures=2 neither end watching nor
    show as errors; the run ends completed and the listener heard how it was paced."""
    from modelslab_widget.poller import PollPolicy, RunPoller
    from modelslab_widget.simulator import DEMO_WORKFLOW_ID, Fault

    eid = sim.add_run(steps=[("Fast", 0.0)],
                      status_faults=[Fault("rate_limit", retry_after=0, times=6)])
    listener = _Recorder()
    poller = RunPoller(client, DEMO_WORKFLOW_ID, eid, listener,
                       PollPolicy(interval=0.01, max_failures=2, backoff_base=0.01))
    poller.start()
    wait_for(lambda: listener.ended, timeout=10)
    snapshot, error = listener.ended[0]
    assert error is None and snapshot.status == "completed"
    assert listener.errors == [] and listener.paced and listener.paced[-1] is None
    assert sim.request_count("status", execution_id=eid) == 7


def test_a_poll_waits_for_its_slot_and_stop_gives_it_back(sim, client):
    """With a budget that has no room, the poll waits; stop() withdraws it: no request."""
    from modelslab_widget.budget import WorkflowBudget
    from modelslab_widget.poller import PollPolicy, RunPoller
    from modelslab_widget.simulator import DEMO_WORKFLOW_ID

    plan = WorkflowBudget("test", window=30.0)
    plan.note_limit(1)
    plan.request(0).rate_limited(None)  # limited, and the one request of the window is spent
    eid = sim.add_run(steps=[("Long", 30)])
    listener = _Recorder()
    poller = RunPoller(client, DEMO_WORKFLOW_ID, eid, listener, PollPolicy(interval=0.01),
                       budget=plan)
    poller.start()
    wait_for(lambda: plan.waiting == 1)
    poller.stop()
    assert plan.waiting == 0 and sim.request_count("status", execution_id=eid) == 0
