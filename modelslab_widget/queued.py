"""QueuedRunWidget: the card of a launch made from a workflow's parameters.

When the workflow's request budget (``budget.py``) has no room, or the account's queue is
full (``account.py``: its launches wait in line until one of its runs ends),
``WorkflowLauncher.launch()`` does not fail: it returns a card at once. The launch itself is
a ``PendingRun`` (``pending.py``: the slot, the POST sent again only after a 429, never after
any other failure), and the card is the ordinary ``WorkflowRunWidget`` showing it: "Queued
here: starts in N s" while it waits, why the run was not started when the server refused,
and the run, on the pending run's own watch, once the server started it.

This class only makes that launch from ``params`` (or takes one already started).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .client import WorkflowsClient
from .pending import PendingRun
from .scheduler import Scheduler
from .widget import WorkflowRunWidget


class QueuedRunWidget(WorkflowRunWidget):
    """A run's card made before its launch was sent (see the module docstring and
    ``WorkflowRunWidget``'s ``pending``). ``on_state(card)`` is called on each change of its
    ``launch_state``."""

    def __init__(
        self,
        workflow_id: str,
        params: dict[str, Any],
        *,
        client: WorkflowsClient,
        scheduler: Scheduler | None = None,
        on_state: Callable[[WorkflowRunWidget], Any] | None = None,
        pending: PendingRun | None = None,
        **kwargs: Any,
    ) -> None:
        pending = pending or PendingRun(client, workflow_id, params,
                                        runtime=kwargs.get("runtime"), scheduler=scheduler)
        super().__init__(workflow_id, pending=pending, client=client, scheduler=scheduler,
                         on_launch=on_state, **kwargs)
