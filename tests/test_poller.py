"""RunPoller: polling one run over real sockets; it ends when its listener is garbage."""

from __future__ import annotations

import time

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
