"""The transport under the Workflows API client: per-call cancellation and wall-clock
deadlines, which addresses output downloads may reach, urllib3's ``Retry`` made cancellable,
a ``requests.Session`` that keeps the key on the API's host, and key-safe failure texts.

Every call has a wall-clock deadline covering connect, headers and body together (the socket
timeouts bound each read, so a server dripping one byte every half second would never trip
them): the connections register their sockets with the call, and a watchdog on the shared
scheduler's timer thread shuts them down when the deadline passes, which ends any blocked read.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ModelsLabError, NetworkError
from .scheduler import shared_scheduler
from .urls import is_web_url

if TYPE_CHECKING:  # requests and urllib3 load on the first client, not on import (~60 ms)
    import requests
    from urllib3.util.retry import Retry

MAX_RETRY_SLEEP = 10.0  # longer Retry-After waits belong to the poller, not a blocked call
_CHUNK = 64 * 1024


# -- one call: its cancel event and its deadline -----------------------------------------------

class Cancelled(Exception):
    """The caller's cancel event was set while a call was retrying."""


_call = threading.local()  # the cancel event of the call running on this thread, if any


def cancel_event() -> threading.Event | None:
    return getattr(_call, "cancel", None)


class _Deadline:
    """The wall-clock deadline of one call: the sockets it uses are shut down when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.due = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = False
        # in_pool=False: shutting a socket down is instant, and the pool may be busy with the
        # very downloads whose deadline this is.
        self._job = shared_scheduler().call_later(seconds, self._expire, in_pool=False)

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            self._sockets.append(sock)
            expired = self.expired
        if expired:  # a retry connected after the deadline: it must not get to read either
            _shut(sock)

    def finish(self) -> None:
        """The call is over: its sockets go back to the pool untouched, the watchdog is off."""
        with self._lock:
            self._done = True
            self._sockets.clear()
        self._job.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket.shutdown on purpose: SSLSocket.shutdown would also drop its SSL object
    # under the reading thread's feet; shutting the file descriptor ends the read cleanly.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def current_deadline() -> _Deadline | None:
    return getattr(_call, "deadline", None)


def deadline_passed() -> bool:
    deadline = current_deadline()
    return deadline is not None and deadline.expired



@contextlib.contextmanager
def cancel_scope(cancel: threading.Event | None) -> Iterator[None]:
    """Calls on this thread in this scope stop retrying (and sleeping) once ``cancel`` is set."""
    previous = cancel_event()
    _call.cancel = cancel
    try:
        yield
    finally:
        _call.cancel = previous


@contextlib.contextmanager
def deadline_scope(seconds: float) -> Iterator[_Deadline]:
    """Connections used in this scope are shut down ``seconds`` from now."""
    previous = current_deadline()
    deadline = _call.deadline = _Deadline(seconds)
    try:
        yield deadline
    finally:
        deadline.finish()
        _call.deadline = previous


@contextlib.contextmanager
def address_scope(kinds: frozenset[str]) -> Iterator[None]:
    """Connections made in this scope (redirects included) may reach only addresses of
    these kinds (see ``address_kind``)."""
    previous = _allowed_kinds()
    _call.allowed_kinds = kinds
    try:
        yield
    finally:
        _call.allowed_kinds = previous


# -- which addresses output downloads may reach ------------------------------------------------


ADDRESS_KINDS = ("public", "private", "loopback", "link-local", "reserved")


class RefusedAddress(Exception):
    """An output download would reach an address its client does not fetch from."""

    def __init__(self, message: str, address: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.address = address
        self.kind = kind


def address_kind(address: str) -> str:
    """What kind of address an IP is: "public", "private" (RFC 1918, unique local, shared
    CGNAT space), "loopback" (also 0.0.0.0 and ::, which reach this machine), "link-local"
    (169.254.0.0/16 holds the cloud metadata services) or "reserved" (multicast and the like)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_reserved:
        return "reserved"
    if ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10"):
        return "private"
    return "public"


def host_kinds(host: str) -> dict[str, str]:
    """{address: kind} for every address ``host`` resolves to ({} when it does not)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return {}
    return {str(info[4][0]): address_kind(str(info[4][0])) for info in infos}


def _allowed_kinds() -> frozenset[str] | None:
    return getattr(_call, "allowed_kinds", None)


def _refuse(address: str, kind: str) -> None:
    raise RefusedAddress(
        f"refused to fetch an output from {address}, a {kind} address: outputs inside the "
        "network are linked, not fetched; WorkflowsClient(allow_private_outputs=True) "
        "allows them",
        address, kind,
    )


def _check_host(host: str) -> None:
    allowed = _allowed_kinds()
    if allowed is None:
        return
    for address, kind in host_kinds(host).items():
        if kind not in allowed:
            _refuse(address, kind)


def _check_peer(sock: socket.socket) -> None:
    allowed = _allowed_kinds()
    if allowed is None:
        return
    try:
        address = str(sock.getpeername()[0])
    except (OSError, IndexError):
        return  # not connected: nothing was reached
    kind = address_kind(address)
    if kind not in allowed:
        _shut(sock)
        _refuse(address, kind)


@functools.cache
def watched_pool_classes() -> dict[str, type]:
    """urllib3 pools whose connections report their socket to the running call's deadline,
    both when they connect and when a kept-alive connection is reused for a request."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watch(sock: Any) -> None:
        deadline = current_deadline()
        if deadline is not None:
            deadline.watch(sock)

    def new_conn(conn: Any, connect: Callable[[], socket.socket]) -> socket.socket:
        direct = not conn.proxy  # through a proxy, the proxy is who fetches the output
        if direct:
            _check_host(conn.host)  # refuse before any packet goes to an inner address
        sock = connect()
        watch(sock)  # before the TLS handshake, which a slow server can drip too
        if direct:
            try:
                _check_peer(sock)  # what was really reached (DNS may answer differently)
            except RefusedAddress:
                sock.close()
                raise
        return sock

    def reuse(conn: Any) -> None:
        watch(conn.sock)
        if conn.sock is not None and not conn.proxy:
            _check_peer(conn.sock)  # a kept-alive connection opened by an API call

    class WatchedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return new_conn(self, super()._new_conn)

        def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            reuse(self)
            super().request(*args, **kwargs)

    class WatchedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return new_conn(self, super()._new_conn)

        def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
            reuse(self)
            super().request(*args, **kwargs)

    class WatchedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    return {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}


@functools.cache
def watched_adapter_class() -> type:
    """``HTTPAdapter`` whose pools (direct or through a proxy) use the watched connections."""
    from requests.adapters import HTTPAdapter

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = watched_pool_classes()

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(*args, **kwargs)
            manager.pool_classes_by_scheme = watched_pool_classes()
            return manager

    return WatchedAdapter



def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False



# -- retries that stop when the call is cancelled; a session that keeps the key ----------------

@functools.cache
def cancellable_retry_class() -> type[Retry]:
    """urllib3's ``Retry``, subclassed so that back-off sleeps end, and retries stop, when the
    call is cancelled (built on first use, so importing this module does not load urllib3)."""
    from urllib3.util.retry import Retry

    class CancellableRetry(Retry):

        # urllib3 would also retry any 429 that carries Retry-After, blocking the call for the
        # whole wait; a 429 goes back to the caller instead, as a RateLimitError to schedule.
        RETRY_AFTER_STATUS_CODES = frozenset({503})

        def increment(self, *args: Any, **kwargs: Any) -> Retry:  # type: ignore[override]
            event = cancel_event()
            if (event is not None and event.is_set()) or deadline_passed():
                raise Cancelled()
            return super().increment(*args, **kwargs)

        def get_retry_after(self, response: Any) -> float | None:
            seconds = super().get_retry_after(response)
            return None if seconds is None else min(seconds, MAX_RETRY_SLEEP)

        def _sleep_backoff(self) -> None:
            self._interruptible_sleep(self.get_backoff_time())

        def sleep_for_retry(self, response: Any) -> bool:
            seconds = self.get_retry_after(response) if response is not None else None
            if seconds is None:
                return False
            self._interruptible_sleep(seconds)
            return True

        @staticmethod
        def _interruptible_sleep(seconds: float) -> None:
            if seconds <= 0:
                return
            deadline = current_deadline()
            if deadline is not None:  # a back-off sleep never outlasts the call's deadline
                seconds = min(seconds, max(0.0, deadline.due - time.monotonic()))
            event = cancel_event()
            if event is None:
                time.sleep(seconds)
            elif event.wait(seconds):
                raise Cancelled()
            if deadline_passed():
                raise Cancelled()

    return CancellableRetry


@functools.cache
def key_safe_session_class() -> type[requests.Session]:
    """``requests.Session`` that never follows a redirect itself: even with
    ``allow_redirects=False`` requests reads a redirect's whole body (``resp.content``, to
    prepare ``Response.next``) before any cap of ours applies, and a 302 whose gzip body
    inflates to gigabytes would fill the kernel's memory. The client follows redirects hop by
    hop instead (``next_hop``), closing each redirect unread."""
    import requests

    class KeySafeSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self._environment_settings: dict[Any, Any] = {}

        def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
            return iter(())

        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any,
                                       verify: Any, cert: Any) -> Any:
            """requests' own answer, kept per host: it reads the proxy variables on every
            request by walking the whole of ``os.environ`` twice, a third of a status poll's
            CPU in a large environment. The proxy and CA-bundle variables are thus read once
            per host and session (a client made after a change sees it)."""
            try:
                key = (urlsplit(str(url))[:2], tuple(sorted((proxies or {}).items())),
                       stream, verify, cert)
                hash(key)
            except (TypeError, ValueError):  # an unhashable setting: not kept
                return super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings = self._environment_settings.get(key)
            if settings is None:
                settings = super().merge_environment_settings(url, proxies, stream, verify,
                                                              cert)
                self._environment_settings[key] = settings
            return {**settings, "proxies": dict(settings["proxies"])}

    return KeySafeSession


REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def next_hop(response: requests.Response, method: str) -> tuple[str, str] | None:
    """(method, URL) of the request a redirect answer asks for, or None when the answer is
    no redirect. The method changes as requests (and browsers) change it: 303, and 302 or a
    POST's 301, become GET. ValueError when the Location is no http(s) URL."""
    if response.status_code not in REDIRECT_CODES or "Location" not in response.headers:
        return None
    from urllib.parse import urldefrag, urljoin

    from requests.utils import requote_uri

    # http.client decodes headers as latin-1; a non-ASCII Location is nearly always UTF-8.
    location = response.headers["Location"].strip().encode("latin-1", "replace")
    target = urldefrag(urljoin(response.url, location.decode("utf-8", "replace")))[0]
    if not is_web_url(target):  # also "http://[::1/x", which is no URL at all
        raise ValueError("not an http(s) URL with a host")
    urlsplit(target).port  # noqa: B018 -- ValueError for a port that is no number or too big
    status = response.status_code
    if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
        method = "GET"
    return method, requote_uri(target)


def retry_policy(retries: int, backoff_factor: float) -> Retry:
    return cancellable_retry_class()(
        total=retries,
        connect=retries,  # the request never left: safe for POST too
        read=retries,  # only for allowed_methods (GET): a POST read error is never retried
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=(502, 503, 504),
        backoff_factor=backoff_factor,
        backoff_max=8.0,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand back the last answer so it maps to a clear error
        raise_on_redirect=True,
    )



# -- reading bodies; key-free texts and header values ------------------------------------------

def capped_chunks(
    response: requests.Response, limit: int, what: str, error: type[ModelsLabError]
) -> Iterator[bytes]:
    from urllib3.exceptions import HTTPError

    size = 0
    failure: ModelsLabError | None = None
    # read1 returns as soon as some bytes arrived, so a body that trickles in a few bytes
    # at a time is cut off by the deadline, not by the next full chunk.
    while True:
        try:
            chunk = response.raw.read1(_CHUNK, decode_content=True)
        except (HTTPError, OSError) as exc:
            failure = NetworkError(f"reading the {what} failed: {failure_reason(exc)}")
            break
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            failure = error(f"the {what} is larger than the {limit:,} bytes allowed")
            break
        yield chunk
    deadline = current_deadline()
    if deadline is not None and deadline.expired:
        failure = NetworkError(f"the {what} did not arrive within {deadline.seconds:g} s")
    if failure is not None:
        raise failure


def capped_body(
    response: requests.Response, limit: int, what: str, error: type[ModelsLabError]
) -> Iterator[bytes]:
    """The body in chunks as they arrive, at most ``limit`` bytes, within the call's deadline
    (the watchdog ends a read that would outlast it). A declared length over the cap is
    refused now, before the caller takes a chunk (or opens a file for them)."""
    declared = byte_count(response.headers.get("Content-Length"))
    if declared is not None and declared > limit:
        raise error(f"the {what} is {declared:,} bytes, more than the {limit:,} allowed")
    return capped_chunks(response, limit, what, error)


def read_prefix(response: requests.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body, whatever the server sends after them."""
    from urllib3.exceptions import HTTPError

    data = b""
    with contextlib.suppress(HTTPError, OSError):
        while len(data) < limit:
            chunk = response.raw.read1(limit - len(data), decode_content=False)
            if not chunk:
                break
            data += chunk
    return data


def key_pattern(key: str | None) -> re.Pattern[bytes] | None:
    """A pattern matching the key however a server may have encoded it: each character as
    itself, ``%hh`` or ``\\u00hh`` (hex digits in either case), mixed freely."""
    if key is None or len(key) < 4:
        return None
    parts = []
    for char in key.encode("latin-1"):
        hex_digits = "".join(
            f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{char:02x}"
        )
        literal = re.escape(bytes([char])).decode("latin-1")
        escaped = r"\\/" if char == ord("/") else literal  # JSON may also write "\/"
        parts.append(f"(?:{literal}|{escaped}|%{hex_digits}|\\\\[uU]00{hex_digits})")
    return re.compile("".join(parts).encode("latin-1"))


def environment_proxy(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, ALL_PROXY, NO_PROXY) would route ``url`` to."""
    from requests.utils import get_environ_proxies, select_proxy

    proxy = select_proxy(url, get_environ_proxies(url))
    return proxy or None


def media_type(header: str | None) -> str | None:
    if not header:
        return None
    return header.split(";")[0].strip().lower()[:100] or None


def byte_count(value: str | None) -> int | None:
    """A header's byte count, or None: ASCII digits only ("²".isdigit() is true too)."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 20 else None


def failure_reason(exc: BaseException) -> str:
    """A short, key-free description of a requests/urllib3 failure: for a server that cannot
    be reached, "could not connect (connection refused)" rather than urllib3's pool text."""
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

    root: BaseException = exc
    for _ in range(5):  # requests' ConnectionError -> MaxRetryError -> its reason
        if root.args and isinstance(root.args[0], MaxRetryError):
            root = root.args[0]
        elif isinstance(root, MaxRetryError) and root.reason is not None:
            root = root.reason
        else:
            break
    if isinstance(root, NameResolutionError):
        return "could not resolve the host name"
    if isinstance(root, NewConnectionError):
        cause = root.__cause__
        why = getattr(cause, "strerror", None) or type(cause).__name__
        return f"could not connect ({str(why).lower()})"
    inner: BaseException | None = exc
    while inner is not None and inner.__context__ is not None and inner.args == ():
        inner = inner.__context__
    text = str(inner) if inner is not None else type(exc).__name__
    return text[:300] or type(exc).__name__
