"""RunState: the value a watch hands its views, and the table of phase changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelslab_widget.errors import NotFoundError, ServerError
from modelslab_widget.models import RunSnapshot
from modelslab_widget.poller import WatchTimeout
from modelslab_widget.runstate import (
    FINAL,
    TRANSITIONS,
    WATCHING,
    Phase,
    Retrying,
    RunState,
    Stopped,
    diagram,
    with_item,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def state(phase: Phase = Phase.POLLING, status: str = "running", **parts) -> RunState:
    return RunState(phase=phase, snapshot=RunSnapshot(status=status), **parts)


def test_the_table_names_every_phase_and_only_the_end_goes_nowhere():
    assert set(TRANSITIONS) == set(Phase)
    assert [p for p, moves in TRANSITIONS.items() if not moves] == [Phase.UNWATCHED]
    assert all(Phase.UNWATCHED in moves for p, moves in TRANSITIONS.items()
               if p is not Phase.UNWATCHED)  # a view can always go away


def test_a_phase_may_stay_and_may_move_only_along_the_table():
    s = state(Phase.ENDED, "completed")
    assert s.moved_to(Phase.ENDED) and s.moved_to(Phase.SETTLED)
    assert not s.moved_to(Phase.POLLING) and not state(Phase.UNWATCHED).moved_to(Phase.POLLING)


def test_paused_is_a_view_stopped_before_the_end_and_timed_out_its_own_limit():
    stopped = state(Phase.STOPPED, interrupted=Stopped())
    assert stopped.paused and not stopped.timed_out and stopped.trouble is None
    timeout = WatchTimeout("Stopped watching after 5 s")
    timed_out = state(Phase.POLLING, interrupted=timeout)
    assert timed_out.paused and timed_out.timed_out and timed_out.trouble is timeout
    ended = state(Phase.SETTLED, "completed", interrupted=Stopped())
    assert not ended.paused and ended.ended and ended.done


def test_trouble_is_the_error_that_ended_watching_never_a_run_that_ended():
    error = NotFoundError("no such run")
    assert state(Phase.GAVE_UP, error=error).trouble is error
    assert state(Phase.GAVE_UP, error=error).gave_up
    assert state(Phase.UNWATCHED, "completed", error=error).trouble is None
    retrying = Retrying(ServerError("502"), 1, 5, 2.0)
    assert state(Phase.RETRYING, retrying=retrying).trouble is None  # not over: retrying


def test_watching_needs_the_view_to_want_it_and_a_watching_phase():
    assert state(Phase.PACED, wanted=True).watching
    assert not state(Phase.PACED, wanted=False).watching
    assert not state(Phase.STOPPED, wanted=True).watching
    assert WATCHING.isdisjoint(FINAL)


def test_done_when_final_or_this_view_stopped():
    assert state(Phase.SETTLED, "completed").done and state(Phase.GAVE_UP).done
    assert not state(Phase.ENDED, "completed").done  # thumbnails still loading
    assert state(Phase.POLLING, interrupted=Stopped()).done


def test_a_later_state_is_newer_and_looks_like_compares_what_views_draw():
    first = state(serial=3, polls=1)
    assert state(serial=4).newer_than(first) and not first.newer_than(first)
    assert first.newer_than(None)
    assert state(serial=9, polls=7).looks_like(first)  # only the poll count differs
    assert not state(serial=9, revision=1).looks_like(first)
    assert not first.looks_like(None)


def test_with_item_adds_or_replaces_by_index_in_order():
    class Item:
        def __init__(self, index: int) -> None:
            self.index = index

    a, b, b2 = Item(2), Item(0), Item(0)
    assert with_item((a,), b) == (b, a)
    assert with_item((b, a), b2) == (b2, a)


@pytest.mark.parametrize("phase", list(Phase))
def test_the_diagram_lists_where_each_phase_goes(phase):
    line = next(ln for ln in diagram().splitlines() if ln.startswith(phase.value + " "))
    goes = line.split("->", 1)[1].strip()
    assert goes == (", ".join(p.value for p in Phase if p in TRANSITIONS[phase]) or "(the end)")


def test_the_documented_diagram_is_the_table_of_today():
    written = (DOCS / "phases.txt").read_text(encoding="utf-8")
    assert written == diagram(), "run: .venv/bin/python tools/phase_diagram.py"
