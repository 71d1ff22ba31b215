"""One watch per run per process: every view of a run gets the same ``RunWatch``.

The key is the API account, the workflow and execution ID, and the scheduler the watch runs
on. Watches are held weakly: a watch no view holds any more goes away by itself.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from .client import WorkflowsClient
from .runtime import Runtime, default_runtime
from .runwatch import RunWatch
from .scheduler import Scheduler

Key = tuple[Any, ...]


class WatchRegistry:
    """The watches of a process, by run (see the module docstring)."""

    def __init__(self) -> None:
        self._watches: weakref.WeakValueDictionary[Key, RunWatch] = weakref.WeakValueDictionary()
        # Re-entrant: garbage collection can close a forgotten widget (ipywidgets' __del__
        # closes) at any allocation, also while this thread holds the lock, and closing one
        # forgets its watch.
        self._lock = threading.RLock()

    def watch_for(self, client: WorkflowsClient, workflow_id: str, execution_id: int | str, *,
                  runtime: Runtime | None = None, scheduler: Scheduler | None = None,
                  owns_client: bool = False) -> RunWatch:
        """The watch of this run, made on first use. A view that made its own client passes
        ``owns_client=True``: the watch closes it when the last view goes, and if another
        view's watch already exists, that client is closed at once (it would never be used)."""
        runtime = (runtime or default_runtime()).with_parts(scheduler=scheduler)
        key = (client.account, str(workflow_id), str(execution_id), id(runtime.scheduler))
        with self._lock:
            existing = self._watches.get(key)
        if existing is None:
            made = RunWatch(client, workflow_id, execution_id, runtime=runtime,
                            owns_client=owns_client, registry=self)
            with self._lock:
                existing = self._watches.setdefault(key, made)
                if existing is made:
                    made.registry_key = key
                    return made
            made.discard()  # another thread registered the same run a moment before us
        if owns_client and existing.client is not client:
            client.close()
        return existing

    def unlaunched(self, client: WorkflowsClient, workflow_id: str, *,
                   runtime: Runtime | None = None) -> RunWatch:
        """A watch for a launch not answered yet; filed under its run by ``adopt`` once
        ``RunWatch.bind`` gives it the execution ID."""
        return RunWatch(client, workflow_id, None, runtime=runtime, registry=self)

    def adopt(self, watch: RunWatch) -> None:
        """File a watch that has just learnt its run's ID. Should another view have made a
        watch of that run first, this one stays unregistered and ends with its last view."""
        key = (watch.client.account, watch.workflow_id, str(watch.execution_id),
               id(watch.runtime.scheduler))
        with self._lock:
            if self._watches.setdefault(key, watch) is watch:
                watch.registry_key = key

    def rekey(self, watch: RunWatch, key: Key) -> None:
        """File a watch under a new key (its client's key changed). Should another watch
        hold that key already, this one stays unregistered and ends with its last view."""
        with self._lock:
            if not watch.registry_key:
                return
            if self._watches.get(watch.registry_key) is watch:
                del self._watches[watch.registry_key]
            if self._watches.setdefault(key, watch) is watch:
                watch.registry_key = key

    def forget(self, watch: RunWatch) -> None:
        with self._lock:
            if watch.registry_key and self._watches.get(watch.registry_key) is watch:
                del self._watches[watch.registry_key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._watches)


_shared = WatchRegistry()


def watch_for(client: WorkflowsClient, workflow_id: str, execution_id: int | str, *,
              runtime: Runtime | None = None, scheduler: Scheduler | None = None,
              owns_client: bool = False) -> RunWatch:
    """The process's watch of this run (see ``WatchRegistry.watch_for``)."""
    return _shared.watch_for(client, workflow_id, execution_id, runtime=runtime,
                             scheduler=scheduler, owns_client=owns_client)


def unlaunched_watch(client: WorkflowsClient, workflow_id: str, *,
                     runtime: Runtime | None = None) -> RunWatch:
    """A watch of the process for a launch not answered yet (see ``WatchRegistry``)."""
    return _shared.unlaunched(client, workflow_id, runtime=runtime)
