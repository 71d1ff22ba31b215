"""RunState: the life of one watched run as a value, and the table of how it may change.

A ``RunWatch`` (``runwatch.py``) holds one ``RunState`` and replaces it, never edits it; its
phase moves only along ``TRANSITIONS``. Every view is handed the new state (``show(state)``)
and draws it: whether the run is paused, ended or broken off is read here, in one place, not
worked out again by each view. What belongs to one view (stopped by its own Stop, its own
time limit) is filled in per view by ``RunWatch.state_for(view)``.

Nothing here imports the rest of the package except the models and the errors it carries.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ModelsLabError
from .models import RunSnapshot

if TYPE_CHECKING:  # only types: runstate must not pull in Pillow or the client
    from .images import Thumbnail
    from .media import OutputInfo


class Phase(enum.Enum):
    """Where a watched run is, as its watch knows it."""

    NOT_STARTED = "not started"  # no view has asked for the run to be polled yet
    POLLING = "polling"  # status requests go out at the views' interval
    RETRYING = "retrying"  # the last request failed (5xx, network, bad body): trying again
    PACED = "paced"  # the workflow's rate limit spaces the requests wider than asked
    STOPPED = "stopped"  # every view stopped watching before the run ended
    ENDED = "ended"  # the run reached a final status; its outputs are loading
    SETTLED = "settled"  # the run ended and its outputs are in
    GAVE_UP = "gave up"  # watching ended on an error (a bad key, an unknown run, ...)
    UNWATCHED = "unwatched"  # the last view went away: the watch is over


P = Phase
_WATCHING_MOVES = frozenset({P.POLLING, P.RETRYING, P.PACED, P.STOPPED, P.ENDED, P.SETTLED,
                             P.GAVE_UP, P.UNWATCHED})

#: Every phase a phase may move to (staying in the same phase is always allowed).
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # GAVE_UP: the launch the watch was made for started no run (refused, lost, removed).
    P.NOT_STARTED: frozenset({P.POLLING, P.GAVE_UP, P.UNWATCHED}),
    P.POLLING: _WATCHING_MOVES - {P.POLLING},
    # A final answer first ends the trouble (POLLING or PACED), then the run.
    P.RETRYING: _WATCHING_MOVES - {P.RETRYING, P.ENDED, P.SETTLED},
    P.PACED: _WATCHING_MOVES - {P.PACED},
    # An end heard just as the last view stopped is still the run's end (with no view
    # left to want thumbnails, it settles at once).
    P.STOPPED: frozenset({P.POLLING, P.SETTLED, P.GAVE_UP, P.UNWATCHED}),
    P.ENDED: frozenset({P.SETTLED, P.UNWATCHED}),
    P.SETTLED: frozenset({P.ENDED, P.UNWATCHED}),  # ENDED: a view wants bigger thumbnails
    P.GAVE_UP: frozenset({P.POLLING, P.UNWATCHED}),  # POLLING: Retry
    P.UNWATCHED: frozenset(),
}

WATCHING = frozenset({P.POLLING, P.RETRYING, P.PACED})
#: Watching is over for now: the run ended, or watching gave up on an error.
ENDS = frozenset({P.ENDED, P.SETTLED, P.GAVE_UP})
#: ``wait()`` returns (or raises) once the watch reached one of these.
FINAL = frozenset({P.SETTLED, P.GAVE_UP, P.UNWATCHED})


class IllegalTransition(RuntimeError):
    """A phase change the table does not allow: a bug in the watch, never the server's."""


class Stopped(Exception):
    """The view's own stop(): not an error, only why that view is no longer watching."""


@dataclass(frozen=True)
class Retrying:
    """A transient failure: attempt ``failures`` of ``max_failures``, next try in ``retry_in``."""

    error: ModelsLabError
    failures: int
    max_failures: int
    retry_in: float


@dataclass(frozen=True)
class RunState:
    """One moment of a watched run (see the module docstring). Replaced, never changed."""

    phase: Phase = Phase.NOT_STARTED
    serial: int = 0  # counts the watch's states: a view skips one older than it has drawn
    snapshot: RunSnapshot | None = None
    #: counts the answers that changed what a view shows (status, steps, outputs, error)
    revision: int = 0
    polls: int = 0
    first_seen: datetime | None = None  # when the run was first seen running
    error: BaseException | None = None  # what ended watching before the run ended (GAVE_UP)
    retrying: Retrying | None = None  # the current transient trouble (RETRYING)
    paced: float | None = None  # seconds between checks the rate limit allows, if slower
    outputs: tuple[OutputInfo, ...] = ()  # each output's kind, in output order, once known
    thumbnails: tuple[Thumbnail, ...] = ()  # in output order, as they arrive
    cancelling: bool = False  # a cancel was asked for and the run has not ended yet
    cancel_error: ModelsLabError | None = None  # why the last cancel was refused
    # -- this view's own part (RunWatch.state_for) --
    wanted: bool = False  # this view wants the run watched
    interrupted: BaseException | None = None  # why this view stopped: Stopped or its timeout

    def moved_to(self, phase: Phase) -> bool:
        """May this state's phase become ``phase``? (The same phase always may.)"""
        return phase is self.phase or phase in TRANSITIONS[self.phase]

    @property
    def ended(self) -> bool:
        """The run reached a final status (completed, failed or cancelled)."""
        return self.snapshot is not None and self.snapshot.is_terminal

    @property
    def final(self) -> bool:
        """Nothing more will come for any view: settled, given up, or unwatched."""
        return self.phase in FINAL

    @property
    def done(self) -> bool:
        """``wait()`` by this view returns or raises now: final, or this view stopped."""
        return self.final or self.interrupted is not None

    @property
    def watching(self) -> bool:
        """This view wants the run watched and requests are going out."""
        return self.wanted and self.phase in WATCHING

    @property
    def paused(self) -> bool:
        """This view stopped (its Stop or its time limit) and the run has not ended."""
        return self.interrupted is not None and not self.ended and not self.watching

    @property
    def timed_out(self) -> bool:
        """This view stopped at its own time limit before the run ended."""
        return self.paused and not isinstance(self.interrupted, Stopped)

    @property
    def gave_up(self) -> bool:
        """Watching ended on an error before the run ended (the card offers Retry)."""
        return self.phase is Phase.GAVE_UP and self.error is not None

    @property
    def trouble(self) -> BaseException | None:
        """Why watching ended without the run ending, to show as an error: the watch's error,
        else this view's time limit; None when the run ended or the view was only stopped."""
        if self.ended:
            return None
        if self.gave_up:
            return self.error
        return self.interrupted if self.timed_out else None

    @property
    def status(self) -> str:
        """The run's status as last answered; ``"unknown"`` before the first answer."""
        return self.snapshot.status if self.snapshot is not None else "unknown"

    def newer_than(self, other: RunState | None) -> bool:
        """Is this a later state of the watch than ``other`` (None: nothing drawn yet)?"""
        return other is None or self.serial > other.serial

    def looks_like(self, other: RunState | None) -> bool:
        """Would a view draw ``other`` as it draws this? (Only the poll count or the
        snapshot's moving parts differ.)"""
        return other is not None and all(
            getattr(self, name) == getattr(other, name) for name in _DRAWN)

    @property
    def idle(self) -> bool:
        """No view watches the run, and it has neither ended nor given up."""
        return self.phase in (Phase.NOT_STARTED, Phase.STOPPED)



# What views draw of a state: the fields ``looks_like`` compares.
_DRAWN = ("phase", "revision", "error", "retrying", "paced", "outputs", "thumbnails",
          "cancelling", "cancel_error", "wanted", "interrupted")


def diagram() -> str:
    """The transition table as text, one phase a line: what ``docs/phases.txt`` holds
    (``tools/phase_diagram.py`` writes it; a test checks it has not drifted)."""
    width = max(len(phase.value) for phase in Phase)
    lines = [f"{phase.value:<{width}}  ->  "
             + (", ".join(p.value for p in Phase if p in TRANSITIONS[phase]) or "(the end)")
             for phase in Phase]
    return "\n".join(lines) + "\n"


def with_item(items: tuple[Any, ...], item: Any) -> tuple[Any, ...]:
    """``items`` (in ``.index`` order) with ``item`` added or replacing the one of its index."""
    kept = [existing for existing in items if existing.index != item.index]
    return tuple(sorted([*kept, item], key=lambda existing: existing.index))
