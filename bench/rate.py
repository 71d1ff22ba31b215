"""Rate limits (issue 10): one request budget per workflow against each card on its own.

Run with ``make bench`` (or ``.venv/bin/python bench/rate.py``). Prints figures; asserts
nothing. A compressed minute: the simulator's rate window and the budgets' window are
``WINDOW`` seconds, and every duration of the scenario (90 s runs, 2 s polling) is scaled by
``WINDOW / 60``; delays are printed in real-minute seconds (scaled back) and in the scaled
seconds measured. The workflow allows ``LIMIT`` requests a window; every request of it counts.

A. Three 90 s runs of one workflow watched at once (poll_interval 2 s).
B. Six runs launched quickly from ``WorkflowLauncher``, each then watched by its card.

For each: 429 answers, worst and median delay from a run's real end (its ``completed_at``) to
the view showing it completed, against the ideal (runs x window / limit: every run checked in
turn at the limit's pace), watches ended by an error, launches lost (never started) or
doubled (started twice). "today" is the behaviour before the budget, measured in the same run:
each run polled by its own ``RunPoller`` with the old per-card handling of a 429 (counted as a
failure, backed off on its own, five in a row end watching), and launches sent at once, a 429
being an error the user must retry by hand.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from modelslab_widget import WorkflowRunWidget, WorkflowsClient, budget
from modelslab_widget.errors import ModelsLabError, RateLimitError
from modelslab_widget.launcher import WorkflowLauncher
from modelslab_widget.models import RunSnapshot
from modelslab_widget.poller import PollPolicy, RunPoller
from modelslab_widget.queued import QueuedRunWidget
from modelslab_widget.simulator import Simulator

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

def watched_today(runs: int) -> Outcome:
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

def launched_today(count: int) -> Outcome:
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


def main() -> None:
    budget.shared_budgets().reset(window=WINDOW)
    print(f"Rate limits: {LIMIT} requests per compressed minute of {WINDOW:g} s "
          f"(x{1 / SCALE:g} = real seconds), every request of the workflow counted")
    start = time.perf_counter()
    print("A. three 90 s runs of one workflow watched at once, polling every 2 s")
    print(watched_today(3).line("today", 3))
    print(watched_with_budget(3).line("budget", 3))
    print("B. six runs launched quickly from WorkflowLauncher, each watched by its card")
    print(launched_today(6).line("today", 6))
    print(launched_with_budget(6).line("budget", 6))
    print(f"(took {time.perf_counter() - start:.0f} s)")
    budget.shared_budgets().reset(window=budget.WINDOW)


if __name__ == "__main__":
    main()
