"""RunPoller: polling one run over real sockets; it ends when its listener is garbage."""

from __future__ import annotations

import math
import threading
import time

import pytest

from modelslab_widget.poller import PollPolicy
from modelslab_widget.scheduler import Scheduler

from .conftest import wait_for


class _Listener:
    def __init__(self, seen: list) -> None:
        self.seen = seen

    def on_snapshot(self, snapshot, polls):
        self.seen.append(snapshot)

    def on_poll_error(self, error, failures, retry_in):
        pass

    def on_finished(self, snapshot, error):
        pass


def test_a_poller_whose_listener_is_garbage_stops(sim, client):
    import gc

    from modelslab_widget.poller import PollPolicy, RunPoller
    from modelslab_widget.simulator import DEMO_WORKFLOW_ID

    seen: list = []
    listener = _Listener(seen)
    eid = sim.add_run(steps=[("Long", 30)])
    poller = RunPoller(client, DEMO_WORKFLOW_ID, eid, listener, PollPolicy(interval=0.05))
    poller.start()
    wait_for(lambda: len(seen) >= 2)
    del listener
    gc.collect()
    wait_for(lambda: not poller.active, timeout=3)
    count = sim.request_count("status", execution_id=eid)
    time.sleep(0.3)
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
