"""Listeners: each callback told in turn, a failing one logged and the rest still told, and
a stopped one told no more."""

from __future__ import annotations

from modelslab_widget.listeners import Listeners


def test_each_listener_is_told_a_failing_one_is_logged_and_a_stopped_one_is_not(caplog):
    listeners: Listeners[int] = Listeners("a test view")
    heard: list[tuple[str, int]] = []
    listeners.add(lambda news: heard.append(("first", news)))
    listeners.add(lambda news: 1 / 0)
    stop = listeners.add(lambda news: heard.append(("last", news)))
    listeners.tell(1)
    assert heard == [("first", 1), ("last", 1)] and "a test view failed" in caplog.text
    stop()
    stop()  # twice is harmless
    listeners.tell(2)
    assert heard[2:] == [("first", 2)]
