"""Untrusted text made safe to show: server text, error messages and URLs, before any view
(a terminal, a log, a traceback, the card) prints them.

No escape sequence, C0/C1 control, bidi override or line separator survives ``clean``; long
text is capped with an ellipsis; a URL shown never carries a user name, password, query or
fragment. HTML escaping is the card's (``render``), on top of this. Imports nothing of the
package but ``urls``, so every module may use it, ``errors`` included.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

from .urls import without_credentials

# Control, format, private-use, unassigned and line/paragraph separator characters.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean(text: object, limit: int = 500) -> str:
    """Server text made safe to print: no escape sequences or other control characters,
    whitespace runs as single spaces, at most ``limit`` characters."""
    chars = []
    for char in str(text)[: limit + 1]:
        if char in "\t\n\r\v\f":
            chars.append(" ")
        elif unicodedata.category(char) in _UNPRINTABLE:
            chars.append("?")
        else:
            chars.append(char)
    return shorten(re.sub(r" {2,}", " ", "".join(chars)).strip(), limit)


def shown_url(url: str) -> str:
    """A URL fit to print: scheme, host, port and path; never a user name, password, query
    or fragment (any of which may carry a credential)."""
    bare = without_credentials(url)
    if bare is None:
        return "the base URL"
    parts = urlsplit(bare)
    return clean(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), 300)
