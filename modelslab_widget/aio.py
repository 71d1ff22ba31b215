"""Waiting without blocking, and updates applied by the thread that waits.

``until_done`` is what ``await card.wait_async()`` and ``await board.wait_async()`` are made
of: the run model's ``when_done`` hook fires on a background thread and hands the news to the
event loop with ``call_soon_threadsafe``; no thread sits blocked in ``wait()``.

``DeferredUpdates`` is the Colab fallback. Colab does not show widget changes sent from a
background thread (googlecolab/colabtools#3373), so there a card queues what its background
threads would have drawn and the thread that waits for it (``wait()``, ``wait_async()``,
normally the kernel's main thread, inside the cell the user is running) applies it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .runwatch import RunWatch

if TYPE_CHECKING:  # asyncio costs ~20 ms to import; only an await needs it
    import asyncio


def in_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` package is loaded in every kernel)."""
    return "google.colab" in sys.modules


class DeferredUpdates:
    """View updates queued by background threads and applied by a waiting thread, in order."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._calls: deque[Callable[[], Any]] = deque()
        self._listeners: list[Callable[[], None]] = []
        self._local = threading.local()

    def defer(self, call: Callable[[], Any]) -> bool:
        """Queue ``call`` when on a background thread; False (call it yourself) when on the
        main thread or on a thread that is applying updates right now."""
        if threading.current_thread() is threading.main_thread():
            return False
        if getattr(self._local, "applying", False):
            return False
        self.put(call)
        return True

    def put(self, call: Callable[[], Any]) -> None:
        with self._ready:
            self._calls.append(call)
            self._ready.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def wake(self) -> None:
        """Wake whoever waits for updates (with nothing to apply)."""
        self.put(_nothing)

    def apply(self) -> int:
        """Apply the queued updates on this thread; how many there were."""
        applied = 0
        self._local.applying = True
        try:
            while True:
                with self._ready:
                    if not self._calls:
                        return applied
                    call = self._calls.popleft()
                call()
                applied += 1
        finally:
            self._local.applying = False

    def pending(self) -> int:
        with self._ready:
            return len(self._calls)

    def wait(self, timeout: float | None) -> bool:
        """Block until there is something to apply; False if ``timeout`` passed first."""
        with self._ready:
            return self._ready.wait_for(lambda: bool(self._calls), timeout)

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (on the queueing thread) whenever an update is queued; returns
        the function that stops it."""
        with self._ready:
            self._listeners.append(listener)

        def remove() -> None:
            with self._ready:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove


def _nothing() -> None:
    return None


def _post(loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> None:
    """Run ``call`` on the loop's thread; a loop already closed is no longer interested."""
    # RuntimeError: the loop was closed (the waiting coroutine is long gone)
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(call)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def until_done(
    watch: RunWatch,
    view: Any,
    timeout: float | None = None,
    updates: DeferredUpdates | None = None,
) -> None:
    """Return once ``watch.done_for(view)`` (what ``wait()`` waits for) without blocking the
    event loop; raise ``TimeoutError`` when ``timeout`` passes first. With ``updates``, the
    view's queued updates are applied on the loop's thread as they come."""
    import asyncio

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stop_listening = None
    if updates is not None:
        stop_listening = updates.listen(lambda: _post(loop, updates.apply))
        updates.apply()
    watch.when_done(view, lambda: _post(loop, lambda: _resolve(done)))
    if watch.done_for(view):  # already: no need to go round the loop (timeout=0 works)
        done.cancel()
    try:
        if not done.cancelled():
            await asyncio.wait_for(done, timeout)
    except asyncio.TimeoutError:  # an alias of TimeoutError from 3.11; not in 3.10
        raise TimeoutError(f"the run did not finish within {timeout:g} s") from None
    finally:
        if stop_listening is not None:
            stop_listening()
            updates.apply()  # type: ignore[union-attr]
