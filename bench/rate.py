"""Rate limits (issue 10): one request budget per workflow against each card on its own.

Run with ``make bench`` (or ``.venv/bin/python bench/rate.py``). Prints figures; asserts
nothing. A compressed minute: the simulator's rate window and the budgets' window are
``WINDOW`` seconds, and every duration of the scenario (90 s runs, 2 s polling) is scaled by
``WINDOW / 60``; delays are printed in real-minute seconds (scaled back) and in the scaled
seconds measured. The workflow allows ``LIMIT`` requests a window; every request of it counts.

A. Three 90 s runs of one workflow watched at once (poll_interval 2 s).
B. Six runs launched quickly from ``WorkflowLauncher``, each then watched by its card.
C. Taking the server at its word, each against a naive loop that sleeps exactly a 429's
   ``retry_after`` and otherwise polls at the interval:
   two one-off 429s asking 1.5 s six requests apart; one one-off 429 (when is the run polled
   at the user's interval again?); a sustained limit of 10 a minute for four minutes; a
   queue-full 429 on a launch while a run is watched at 0.5 s; a run four times faster than
   its workflow's history (real seconds, not scaled).

For each: 429 answers, worst and median delay from a run's real end (its ``completed_at``) to
the view showing it completed, against the ideal (runs x window / limit: every run checked in
turn at the limit's pace), watches ended by an error, launches lost (never started) or
doubled (started twice). "per card" is the naive baseline, measured in the same run: each run
polled by its own ``RunPoller`` that handles a 429 on its own (counted as a failure, backed
off alone, five in a row end watching), and launches sent at once, a 429 being an error the
user must retry by hand.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from modelslab_widget import WorkflowRunWidget, WorkflowsClient, budget, eta
from modelslab_widget.errors import ModelsLabError, RateLimitError
from modelslab_widget.launcher import WorkflowLauncher
from modelslab_widget.models import RunSnapshot, Step
from modelslab_widget.poller import PollPolicy, RunPoller
from modelslab_widget.queued import QueuedRunWidget
from modelslab_widget.simulator import Fault, Simulator

WINDOW = 6.0  # seconds: the compressed minute
SCALE = WINDOW / 60.0
LIMIT = 10
RUN_SECONDS = 90 * SCALE
INTERVAL = 2 * SCALE
PARAMETERS = [{"key": "prompt", "type": "string", "required": True}]


class OldPoller(RunPoller):
    """The poller as it was before the budget: a 429 is a failure of this card alone."""

    def _handle_error(self, error: ModelsLabError, cancel: threading.Event) -> None:
        listener = self._live_listener(cancel)
        if listener is None:
            return
        if not error.transient:
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


class Seen:
    """A poller's listener noting when the run was seen ended."""

    def __init__(self) -> None:
        self.snapshot: RunSnapshot | None = None
        self.shown_at: float | None = None  # wall clock
        self.error: BaseException | None = None
        self.done = threading.Event()

    def on_snapshot(self, snapshot: RunSnapshot, polls: int) -> None:
        if snapshot.is_terminal and self.shown_at is None:
            self.snapshot, self.shown_at = snapshot, time.time()

    def on_poll_error(self, error: ModelsLabError, failures: int, retry_in: float) -> None:
        pass

    def on_finished(self, snapshot: RunSnapshot | None, error: BaseException | None) -> None:
        self.error = error
        self.done.set()


class Outcome:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.ended_by_error = 0
        self.lost = 0
        self.doubled = 0
        self.rate_limited = 0

    def line(self, label: str, runs: int) -> str:
        ideal = runs * WINDOW / LIMIT
        if self.delays:
            worst, median = max(self.delays), statistics.median(self.delays)
            delays = (f"delay worst {worst / SCALE:5.1f} s, median {median / SCALE:5.1f} s "
                      f"(ideal {ideal / SCALE:.0f} s; scaled {worst:.2f}/{median:.2f}/"
                      f"{ideal:.2f} s)")
        else:
            delays = "no run shown ended"
        return (f"{label:<8} 429s {self.rate_limited:2d} · {delays} · watches ended by error "
                f"{self.ended_by_error} · launches lost {self.lost}, doubled {self.doubled}")


def delay_of(snapshot: RunSnapshot | None, shown_at: float | None) -> float | None:
    if snapshot is None or shown_at is None or snapshot.completed_at is None:
        return None
    return shown_at - snapshot.completed_at.timestamp()


def new_workflow(sim: Simulator) -> str:
    steps = [("Text to Image", RUN_SECONDS / 2), ("Image Upscaler", RUN_SECONDS / 2)]
    return sim.add_workflow(rate_limit=LIMIT, steps=steps, parameters=PARAMETERS)


def client_of(sim: Simulator) -> WorkflowsClient:
    return WorkflowsClient(sim.api_key, base_url=sim.base_url, timeout=(2.0, 5.0))


# ---------------------------------------------------------------- A. three runs watched

def watched_per_card(runs: int) -> Outcome:
    outcome = Outcome()
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = new_workflow(sim)
        steps = [("Text to Image", RUN_SECONDS / 2), ("Image Upscaler", RUN_SECONDS / 2)]
        listeners = [Seen() for _ in range(runs)]
        pollers = [OldPoller(client, workflow, sim.add_run(workflow, steps=steps), seen,
                             PollPolicy(interval=INTERVAL)) for seen in listeners]
        for poller in pollers:
            poller.start()
        collect_pollers(outcome, listeners, pollers)
        outcome.rate_limited = sim.rate_limited_count(workflow)
    return outcome


def collect_pollers(outcome: Outcome, listeners: list[Seen], pollers: list[RunPoller]) -> None:
    for seen in listeners:
        seen.done.wait(RUN_SECONDS + 20 * WINDOW)
        delay = delay_of(seen.snapshot, seen.shown_at)
        if delay is not None:
            outcome.delays.append(delay)
        outcome.ended_by_error += seen.error is not None
    for poller in pollers:
        poller.stop()


def watched_with_budget(runs: int) -> Outcome:
    outcome = Outcome()
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = new_workflow(sim)
        steps = [("Text to Image", RUN_SECONDS / 2), ("Image Upscaler", RUN_SECONDS / 2)]
        cards = [WorkflowRunWidget(workflow, sim.add_run(workflow, steps=steps), client=client,
                                   poll_interval=INTERVAL) for _ in range(runs)]
        collect_cards(outcome, cards)
        outcome.rate_limited = sim.rate_limited_count(workflow)
    return outcome


def collect_cards(outcome: Outcome, cards: list[WorkflowRunWidget]) -> None:
    shown: dict[int, float] = {}

    def watcher(index: int) -> Callable[[dict[str, Any]], None]:
        def seen(change: dict[str, Any]) -> None:
            if change["new"] in ("completed", "failed", "cancelled"):
                shown.setdefault(index, time.time())
        return seen

    for index, card in enumerate(cards):
        if card.status == "completed":
            shown[index] = time.time()
        card.observe(watcher(index), "status")
    for index, card in enumerate(cards):
        try:
            card.wait(RUN_SECONDS + 20 * WINDOW)
        except Exception:  # what ended a watch counts, whatever it is
            outcome.ended_by_error += 1
            continue
        delay = delay_of(card.snapshot, shown.get(index))
        if delay is not None:
            outcome.delays.append(delay)
    for card in cards:
        card.close()


# ---------------------------------------------------------------- B. six quick launches

def launched_per_card(count: int) -> Outcome:
    outcome = Outcome()
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = new_workflow(sim)
        client.get_workflow(workflow)  # the launcher reads the schema first
        listeners, pollers = [], []
        for number in range(count):
            try:
                eid = client.run_workflow(workflow, {"prompt": f"lighthouse {number}"})
            except ModelsLabError:  # shown as an error: the user must launch again by hand
                outcome.lost += 1
                continue
            seen = Seen()
            poller = OldPoller(client, workflow, eid, seen, PollPolicy(interval=INTERVAL))
            poller.start()
            listeners.append(seen)
            pollers.append(poller)
        collect_pollers(outcome, listeners, pollers)
        outcome.doubled = max(0, sim.runs_started(workflow) - (count - outcome.lost))
        outcome.rate_limited = sim.rate_limited_count(workflow)
    return outcome


def launched_with_budget(count: int) -> Outcome:
    outcome = Outcome()
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = new_workflow(sim)
        launcher = WorkflowLauncher(workflow, client=client, poll_interval=INTERVAL)
        cards = []
        for number in range(count):
            launcher.inputs["prompt"].value = f"lighthouse {number}"
            card = launcher.launch()
            if card is None:
                outcome.lost += 1
            else:
                cards.append(card)
        queued = sum(isinstance(card, QueuedRunWidget) for card in cards)
        collect_cards(outcome, cards)
        outcome.lost += sum(isinstance(card, QueuedRunWidget) and card.launch_error is not None
                            for card in cards)
        outcome.doubled = max(0, sim.runs_started(workflow) - (count - outcome.lost))
        outcome.rate_limited = sim.rate_limited_count(workflow)
        launcher.close()
    print(f"         ({queued} of {count} launches waited their turn in the budget)")
    return outcome


# ---------------------------------------------------------------- C. the server's word

LONG_RUN = [("Text to Image", 300 * SCALE), ("Image Upscaler", 300 * SCALE)]


def naive_watch(client: WorkflowsClient, workflow: str, eid: int, interval: float,
                stop: threading.Event, seen_end: list[float]) -> None:
    """The loop a user writes, done right: sleep what a 429 asks, else the interval."""
    while not stop.is_set():
        try:
            if client.get_run(workflow, eid).is_terminal:
                seen_end.append(time.time())
                return
            stop.wait(interval)
        except RateLimitError as error:
            stop.wait(error.retry_after or interval)


def watched(kind: str, client: WorkflowsClient, workflow: str, eid: int,
            interval: float) -> tuple[Callable[[], None], list[float]]:
    """Watch a run with a card ("project") or the naive loop: how to stop, and the wall
    time at which the watcher saw the run end (filled then)."""
    seen_end: list[float] = []
    if kind == "project":
        card = WorkflowRunWidget(workflow, eid, client=client, poll_interval=interval)
        card.observe(lambda change: seen_end.append(time.time())
                     if change["new"] == "completed" else None, "status")
        return card.close, seen_end
    stop = threading.Event()
    thread = threading.Thread(target=naive_watch,
                              args=(client, workflow, eid, interval, stop, seen_end))
    thread.start()
    return (lambda: (stop.set(), thread.join())), seen_end


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def after_one_off_429s(kind: str) -> str:
    """Two one-off 429s asking 1.5 s, six requests apart, on a run watched at 1 s: how long
    after each 429 the next request went."""
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = sim.add_workflow(steps=LONG_RUN)
        eid = sim.add_run(workflow, steps=LONG_RUN, images=0)
        stop, _ = watched(kind, client, workflow, eid, 1 * SCALE)
        gaps = []
        for at in (5, 11):
            wait_until(lambda at=at: sim.request_count("status", eid) >= at, 30 * WINDOW)
            sent = sim.request_count("status", eid)
            sim.status_faults(eid, [Fault("rate_limit", retry_after=1.5 * SCALE)])
            wait_until(lambda sent=sent: sim.request_count("status", eid) >= sent + 2,
                       3 * WINDOW)
            times = sim.accepted_request_times(workflow)
            gaps.append((times[sent + 1] - times[sent]) / SCALE if len(times) > sent + 1
                        else math.inf)
        stop()
    return " · ".join(f"{gap:.1f} s" for gap in gaps) + " after the 429s (asked 1.5 s)"


def back_to_interval(kind: str) -> str:
    """One one-off 429 on a run watched at 1 s: when is it polled at 1 s again (for good)?"""
    watched_for = 3 * WINDOW
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = sim.add_workflow(steps=LONG_RUN)
        eid = sim.add_run(workflow, steps=LONG_RUN, images=0)
        stop, _ = watched(kind, client, workflow, eid, 1 * SCALE)
        wait_until(lambda: sim.request_count("status", eid) >= 5, 30 * WINDOW)
        sim.status_faults(eid, [Fault("rate_limit", retry_after=1.5 * SCALE)])
        refused_at = time.monotonic()
        time.sleep(watched_for)
        stop()
        times = [t for t in sim.accepted_request_times(workflow) if t > refused_at]
    slow = [b for a, b in itertools.pairwise(times) if b - a > 1.5 * SCALE]
    if not slow:
        return "at the 1 s interval right after the 429"
    if times[-1] - slow[-1] < WINDOW / 2:
        return f"still slowed {watched_for / SCALE:.0f} s after the 429"
    return f"at the 1 s interval again {(slow[-1] - refused_at) / SCALE:.0f} s after the 429"


def under_a_sustained_limit(kind: str) -> str:
    """A real limit of 10 a minute, a run watched at 1 s for four minutes: 429s after the
    first, and polls a minute."""
    with Simulator(rate_window=WINDOW) as sim, client_of(sim) as client:
        workflow = sim.add_workflow(rate_limit=LIMIT, steps=LONG_RUN)
        eid = sim.add_run(workflow, steps=LONG_RUN, images=0)
        stop, _ = watched(kind, client, workflow, eid, 1 * SCALE)
        wait_until(lambda: sim.rate_limited_count(workflow) >= 1, 30 * WINDOW)
        first = time.monotonic()
        time.sleep(4 * WINDOW)
        stop()
        span = (first, first + 4 * WINDOW)
        later = [t for t in sim.refused_request_times(workflow) if span[0] < t <= span[1]]
        polls = [t for t in sim.accepted_request_times(workflow) if span[0] < t <= span[1]]
    return f"{len(later)} 429s after the first in 4 min · {len(polls) / 4:.1f} polls a minute"


def queue_full_launch() -> str:
    """Queue limit 1: a run watched at 0.5 s, then a second launch refused queue-full: the
    first run's polls in the next 10 s, and when the held launch went after its end (real
    seconds: no rate window is involved)."""
    try:
        simulator = Simulator(queue_limit=1)
    except TypeError:
        return "n/a (no queue limit in this simulator)"
    run = [("Text to Image", 5.5), ("Image Upscaler", 5.5)]
    with simulator as sim, client_of(sim) as client:
        workflow = sim.add_workflow(steps=run, parameters=PARAMETERS)
        launcher = WorkflowLauncher(workflow, client=client, poll_interval=0.5)
        launcher.inputs["prompt"].value = "a lighthouse"
        first = launcher.launch()
        second = launcher.launch()
        refused_at = time.monotonic()
        time.sleep(10)
        polls = sum(1 for t in sim.accepted_request_times(workflow) if t > refused_at)
        wait_until(lambda: first is not None and first.status == "completed", 30)
        ended = first.snapshot.completed_at.timestamp() if first and first.snapshot else None
        wait_until(lambda: second is not None and second.execution_id is not None, 30)
        sent_after = time.time() - ended if ended else math.inf
        launcher.close()
    return (f"{polls} polls of the watched run in the next 10 s (20 at 0.5 s) · held launch "
            f"sent {sent_after:.2f} s after its end (goal <= 0.5 s + the POST)")


def much_faster_repeat_run(kind: str) -> str:
    """History says 14 s; the run takes 3.5 s, watched at 0.5 s: how late its end is seen."""
    with Simulator() as sim, client_of(sim) as client:
        workflow = sim.add_workflow()
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        middle, end = start + timedelta(seconds=7), start + timedelta(seconds=14)
        taught = RunSnapshot(status="completed", workflow_id=workflow, steps=(
            Step("Text to Image", "completed", start, middle),
            Step("Image Upscaler", "completed", middle, end)))
        for _ in range(3):
            eta.shared_history().record(taught)
        eid = sim.add_run(workflow, steps=[("Text to Image", 1.75), ("Image Upscaler", 1.75)],
                          images=0)
        stop, seen_end = watched(kind, client, workflow, eid, 0.5)
        wait_until(lambda: bool(seen_end), 30)
        stop()
        ended = client.get_run(workflow, eid).completed_at
    if not seen_end or ended is None:
        return "end never seen"
    lag = seen_end[0] - ended.timestamp()
    return f"end seen {lag:.2f} s after it (goal <= 1.5 s: 2 x 0.5 s + 0.5 s)"


def main() -> None:
    budget.shared_budgets().reset(window=WINDOW)
    print(f"Rate limits: {LIMIT} requests per compressed minute of {WINDOW:g} s "
          f"(x{1 / SCALE:g} = real seconds), every request of the workflow counted")
    start = time.perf_counter()
    print("A. three 90 s runs of one workflow watched at once, polling every 2 s")
    print(watched_per_card(3).line("per card", 3))
    print(watched_with_budget(3).line("budget", 3))
    print("B. six runs launched quickly from WorkflowLauncher, each watched by its card")
    print(launched_per_card(6).line("per card", 6))
    print(launched_with_budget(6).line("budget", 6))
    print("C. the server's word: each row for the project and the naive loop")
    rows = [("two one-off 429s asking 1.5 s", after_one_off_429s),
            ("one one-off 429, run watched at 1 s", back_to_interval),
            ("a sustained limit of 10 a minute", under_a_sustained_limit),
            ("a run 4x faster than its history", much_faster_repeat_run)]
    for title, scenario in rows:
        print(f"  {title}")
        print(f"    project  {scenario('project')}")
        print(f"    naive    {scenario('naive')}")
    print("  a queue-full 429 on a launch while another run is watched at 0.5 s")
    print(f"    project  {queue_full_launch()}")
    print(f"(took {time.perf_counter() - start:.0f} s)")
    budget.shared_budgets().reset(window=budget.WINDOW)


if __name__ == "__main__":
    main()
