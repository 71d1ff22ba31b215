"""Listeners: the callbacks a model tells of its changes, each called outside the model's
lock, a failing one logged and skipped (a view's bug must not stop the model). Imports
nothing of the package."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("modelslab_widget")

T = TypeVar("T")


class Listeners(Generic[T]):
    """A thread-safe list of ``callback(news)``; ``tell(news)`` calls each in turn."""

    def __init__(self, what: str) -> None:
        self._what = what  # named in the log when one fails: "a sweep view"
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[T], object]] = []

    def add(self, callback: Callable[[T], object]) -> Callable[[], None]:
        """Listen; returns how to stop."""
        with self._lock:
            self._callbacks.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
        return stop

    def tell(self, news: T) -> None:
        """Call every callback with ``news`` (call it with no lock of the model held)."""
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(news)
            except Exception:
                log.exception("%s failed", self._what)
