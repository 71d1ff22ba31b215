"""The one rule for which URLs are fetched, linked or given to a player, and the host a
download is limited by. Imports nothing of the package (every layer may use it)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def is_web_url(url: object) -> bool:
    """An http(s) URL with a host: the only kind fetched, linked or played. ``file:``,
    ``javascript:``, ``data:``, ``https:///x`` and ``http://user@/x`` (no host) never are."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. "http://[::1/x.png": not a URL at all
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def url_host(url: str) -> str:
    """``host:port`` of a URL (lower case), the unit downloads are limited by; "" if none."""
    try:
        parts = urlsplit(url.strip())
        return f"{(parts.hostname or '').lower()}:{parts.port or ''}"
    except ValueError:
        return ""


def without_credentials(url: str) -> str | None:
    """The URL without any ``user:password@`` (a URL that is shown must never carry one);
    None for a string that is no URL at all."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
