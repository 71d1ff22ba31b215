"""Untrusted text made safe to show: no control characters, a length cap, URLs without
credentials."""

from __future__ import annotations

import pytest

from modelslab_widget.sanitize import clean, shorten, shown_url


@pytest.mark.parametrize("evil", [
    "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "right\u202eleft", "a\u2028b", "zero\u200bwidth",
    "\ue000private", "nul\x00",
])
def test_no_control_format_or_separator_character_survives(evil):
    cleaned = clean(evil)
    assert all(char.isprintable() for char in cleaned), repr(cleaned)
    assert "?" in cleaned


def test_whitespace_runs_become_single_spaces():
    assert clean("  a\tb\n\nc\r\n  d  ") == "a b c d"


def test_clean_caps_length_with_an_ellipsis():
    assert clean("x" * 50, 10) == "x" * 9 + "…"
    assert clean("x" * 10, 10) == "x" * 10
    assert len(clean("y" * 100_000)) == 500


def test_clean_takes_any_object():
    assert clean(12345) == "12345" and clean(None) == "None"


def test_shorten_only_cuts_what_is_too_long():
    assert shorten("abcdef", 4) == "abc…"
    assert shorten("abcd", 4) == "abcd"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:PASSWORD@gw.example:8443/api/v1?key=SECRET#frag",
     "https://gw.example:8443/api/v1"),
    ("https://modelslab.com/api/v1", "https://modelslab.com/api/v1"),
    ("http://[::1/x", "the base URL"),
    ("https://gw.example/\x1b[2Jpath", "https://gw.example/?[2Jpath"),
])
def test_a_shown_url_has_no_credentials_query_fragment_or_controls(url, shown):
    assert shown_url(url) == shown
