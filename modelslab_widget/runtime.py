"""Runtime: the machinery every watch of a process shares, passed in as one object.

A watch needs a scheduler (timers and worker threads), the request budgets of each workflow,
the launch queue of each account, the duration history it learns estimates from, a clock, and
something that polls. ``default_runtime()`` is the process's: what every card, board, sweep
and terminal view uses unless given another. Tests give a runtime on a fake clock with a fake
poller, so the run's state machine is driven without sockets or sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .account import AccountQueues, shared_account_queues
from .budget import Budgets, shared_budgets
from .eta import DurationHistory, shared_history
from .poller import RunPoller
from .scheduler import Scheduler, shared_scheduler

if TYPE_CHECKING:
    from .runwatch import Poller

#: Makes a watch's poller: ``(client, workflow_id, execution_id, *, listener, policy,
#: scheduler, next_change, budget)``; ``RunPoller`` unless a test gives another.
PollerFactory = Callable[..., "Poller"]


@dataclass(frozen=True)
class Runtime:
    """What watches share (see the module docstring). Frozen: a new one replaces it."""

    scheduler: Scheduler
    budgets: Budgets
    accounts: AccountQueues
    history: DurationHistory
    clock: Callable[[], float] = time.monotonic
    poller: PollerFactory = RunPoller

    def with_parts(self, **parts: Any) -> Runtime:
        """This runtime with some parts replaced (None values keep the part)."""
        given = {name: part for name, part in parts.items() if part is not None}
        return type(self)(**{**self.__dict__, **given})


def default_runtime() -> Runtime:
    """The process's runtime: the shared scheduler, budgets, account queues and history
    (read at each call, so ``use_history_file()`` takes effect for watches made after it)."""
    return Runtime(shared_scheduler(), shared_budgets(), shared_account_queues(),
                   shared_history())
