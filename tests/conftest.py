"""Shared fixtures: a real simulator over loopback, clients tuned for fast tests, and guards
that fail a test if a background thread raised or a thread was left running."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelslab_widget import WorkflowsClient, account, budget, eta
from modelslab_widget.runwatch import STRICT_ENV
from modelslab_widget.simulator import Simulator

# A phase change outside the run's transition table raises in tests (it only logs elsewhere).
os.environ[STRICT_ENV] = "1"

# A job a non-interactive shell starts in the background runs with SIGINT ignored, and every
# child it starts inherits that: the Ctrl-C tests' children would never see their Ctrl-C (a
# hang) and the soak's Ctrl-C test would be skipped. The suite needs Python's usual handling.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_for(condition: Callable[[], object], timeout: float = 10.0, step: float = 0.02) -> None:
    """Wait until ``condition()`` is true; fail the test if it never becomes true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {condition}")
        time.sleep(step)


def card_markup(widget) -> str:
    """The card as the browser shows it: the header, then the step rows on display."""
    return "".join([widget.header_view.value, *widget.step_rows_html])


def ours(thread: threading.Thread) -> bool:
    return thread.name.startswith(("modelslab-widget", "simulator"))


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if ours(t)]


@pytest.fixture(autouse=True)
def no_background_exceptions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """No exception may escape a background thread."""
    seen: list = []
    monkeypatch.setattr(threading, "excepthook", seen.append)
    yield seen
    assert not seen, f"exception escaped a background thread: {seen[0].exc_value!r}"


@pytest.fixture(autouse=True)
def fresh_duration_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> eta.DurationHistory:
    """Each test starts with no remembered step durations (they change polling), and a
    history file (the command line keeps one) goes to a fresh folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    history = eta.DurationHistory()
    monkeypatch.setattr(eta, "_shared", history)
    return history


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def fast_client(sim: Simulator) -> WorkflowsClient:
    """A client with short timeouts and near-zero back-off, so retries do not slow tests."""
    return WorkflowsClient(sim.api_key, base_url=sim.base_url, timeout=(2.0, 2.0),
                           backoff_factor=0.01)


@pytest.fixture
def client(sim: Simulator) -> Iterator[WorkflowsClient]:
    with fast_client(sim) as c:
        yield c


@pytest.fixture
def qsim() -> Iterator[Simulator]:
    """A simulator whose account may have three runs queued at once (a queue limit)."""
    with Simulator(queue_limit=3) as simulator:
        yield simulator


@pytest.fixture
def qclient(qsim: Simulator) -> Iterator[WorkflowsClient]:
    with fast_client(qsim) as c:
        yield c


@pytest.fixture
def sweeps(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Make sweeps (``grid=True``: ``Sweep.grid``) polling fast, each with its manifest in
    the test's folder; all closed afterwards."""
    from modelslab_widget import Sweep

    made: list[Sweep] = []

    def build(*args: Any, grid: bool = False, **kwargs: Any) -> Sweep:
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("manifest", tmp_path / f"sweep-{len(made)}.jsonl")
        sweep = Sweep.grid(*args, **kwargs) if grid else Sweep(*args, **kwargs)
        made.append(sweep)
        return sweep

    yield build
    for sweep in made:
        sweep.close()


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """After the test, every thread of ours (scheduler, pool, simulator) has ended."""
    yield
    deadline = time.monotonic() + 5.0
    while our_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not our_threads(), f"threads left running: {our_threads()}"


@pytest.fixture(autouse=True)
def fresh_budgets() -> Iterator[None]:
    """Each test starts with no request budgets, in a compressed minute of 1 s: a 429 that a
    test injects then paces its workflow at the limit per second, not per minute."""
    budget.shared_budgets().reset(window=1.0)
    account.shared_account_queues().reset()
    yield
    budget.shared_budgets().reset(window=budget.WINDOW)
    account.shared_account_queues().reset()
