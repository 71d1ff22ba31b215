"""Output downloads: the files a run made, fetched from hosts that are not the API's.

An output URL is server text. Each is checked (http or https) before anything is sent, then
fetched without the key, only from the kinds of address the client allows (every hop and the
peer actually connected are checked under ``transport.address_scope``), at most a byte cap,
within a wall-clock deadline and until the caller's cancel event is set. The client lends its
sender (redirects followed hop by hop, failures mapped to key-free errors): this module never
imports the client, which imports it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from .errors import ImageError, ModelsLabError, NetworkError, OutputError, ServerError
from .transport import (
    address_scope,
    byte_count,
    cancel_scope,
    capped_body,
    deadline_scope,
    media_type,
    read_prefix,
)

if TYPE_CHECKING:  # requests loads on the first client, not on import
    import requests

MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_OUTPUT_BYTES = 2 * 1024**3  # a saved output (a long video) may be big, never unbounded
DOWNLOAD_DEADLINE = 600.0  # seconds for one whole output download, connect to last byte
PROBE_BYTES = 4096  # enough for any container's magic bytes
# Content types that say nothing about what a file is; a probe then looks at its first bytes.
_VAGUE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream",
                          "application/binary", "application/unknown"})


@dataclass(frozen=True)
class OutputProbe:
    """What an output URL serves, learnt without downloading it: the HEAD answer's type and
    length, and (when those say nothing) up to ``PROBE_BYTES`` first bytes."""

    url: str
    content_type: str | None = None
    content_length: int | None = None
    head: bytes = b""


class Send(Protocol):
    """The client's sender, bound to send no key: one request with its redirects followed,
    the final answer closed when the block ends."""

    def __call__(
        self, method: str, url: str, *, extra_headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractContextManager[requests.Response]: ...


@dataclass(frozen=True)
class OutputFetcher:
    """One client's downloads: its key-free sender, the address kinds it allows (asked at
    each download, after the URL's check: the first resolves the API's host) and its
    deadlines. A client makes one per call rather than keeping it, since one kept would
    hold the client's bound methods and tie a reference cycle."""

    send: Send
    address_kinds: Callable[[], frozenset[str]]
    deadline: float  # an image or a probe: as long as an API call may take
    download_deadline: float  # a streamed output, connect to last byte

    def fetch_image(
        self, url: str, max_bytes: int = MAX_IMAGE_BYTES, *, cancel: threading.Event | None = None
    ) -> bytes:
        """The whole image: its bytes are decoded at once, so they are read at once."""
        with self.open(url, max_bytes=max_bytes, cancel=cancel, error=ImageError,
                       deadline=self.deadline) as chunks:
            return b"".join(chunks)

    @contextlib.contextmanager
    def open(
        self,
        url: str,
        *,
        max_bytes: int = MAX_OUTPUT_BYTES,
        cancel: threading.Event | None = None,
        error: type[ImageError] = OutputError,
        deadline: float | None = None,
    ) -> Iterator[Iterator[bytes]]:
        """The output as chunks of bytes; every failure is an ``error``."""
        _check_output_url(url, error)
        failure: ModelsLabError | None = None
        with cancel_scope(cancel), address_scope(self.address_kinds()), \
                deadline_scope(deadline or self.download_deadline):
            try:
                with self.send("GET", url) as response:
                    if response.status_code != 200:
                        raise error(f"HTTP {response.status_code} fetching the output")
                    yield capped_body(response, max_bytes, "output", error)
            except (NetworkError, ServerError) as exc:
                failure = error(str(exc))  # raised below, outside this handler: no context
        if failure is not None:
            raise failure

    def probe(self, url: str, *, cancel: threading.Event | None = None) -> OutputProbe:
        """A HEAD request, then, when it names no telling type, a range GET of the first
        ``PROBE_BYTES``; every failure is an OutputError."""
        _check_output_url(url, OutputError)
        failure: ModelsLabError | None = None
        with cancel_scope(cancel), address_scope(self.address_kinds()), \
                deadline_scope(self.deadline):
            try:
                found = self._head(url)
                if found.content_type in _VAGUE_TYPES or found.content_type is None:
                    found = self._first_bytes(found)
                return found
            except (NetworkError, ServerError) as exc:
                failure = OutputError(str(exc))  # raised below, outside this handler
        raise failure

    def _head(self, url: str) -> OutputProbe:
        """The type and length a HEAD names; nothing when it fails (many hosts refuse HEAD)."""
        with self.send("HEAD", url) as response:
            if response.status_code != 200:
                return OutputProbe(url)
            return OutputProbe(url, media_type(response.headers.get("Content-Type")),
                               byte_count(response.headers.get("Content-Length")))

    def _first_bytes(self, found: OutputProbe) -> OutputProbe:
        """``found`` with the first ``PROBE_BYTES``: at most that is read even when the server
        ignores the range (the connection is then closed, not drained)."""
        extra = {"Range": f"bytes=0-{PROBE_BYTES - 1}"}
        with self.send("GET", found.url, extra_headers=extra) as response:
            if response.status_code not in (200, 206):
                raise OutputError(f"HTTP {response.status_code} probing the output")
            head = read_prefix(response, PROBE_BYTES)
            content_type = found.content_type or media_type(response.headers.get("Content-Type"))
            return OutputProbe(found.url, content_type, _whole_length(response, found), head)


def _whole_length(response: requests.Response, found: OutputProbe) -> int | None:
    """The whole file's size: a 206 names it after the slash of its Content-Range."""
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return byte_count(total) or found.content_length
    if found.content_length is None:
        return byte_count(response.headers.get("Content-Length"))
    return found.content_length


def _check_output_url(url: object, error: type[ModelsLabError]) -> None:
    scheme: str | None = None
    with contextlib.suppress(ValueError):  # "http://[::1/x" is no URL at all
        scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme is None:
        raise error("refused to fetch a URL that cannot be parsed")
    if scheme not in ("http", "https"):
        raise error(f"refused to fetch a non-http(s) URL (scheme {scheme!r})")
