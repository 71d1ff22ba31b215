"""Checks of the arguments users pass: one wording for every public constructor.

A wrong value gets a ``ValueError`` that names the argument and repeats the value; a keyword
the constructor does not take gets the ``TypeError`` Python gives, with the closest name it
does take (``poll_intervall`` -> ``poll_interval``), instead of being swallowed by a base
class. Imports nothing of the package.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def whole_number(value: Any, name: str, minimum: int = 0) -> int:
    """``value`` if it is an int of at least ``minimum`` (not a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum} (got {value!r})")
    return value


def known_keywords(given: Iterable[str], allowed: Iterable[str], owner: str,
                   named: Iterable[str] = ()) -> None:
    """TypeError for the first keyword in ``given`` that is not in ``allowed``; the hint
    also looks among ``named`` (the owner's own parameters, which never reach ``given``)."""
    accepted = set(allowed)
    choices = sorted(accepted | set(named))
    for name in given:
        if name in accepted:
            continue
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}{hint}")
