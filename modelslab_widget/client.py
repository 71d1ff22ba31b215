"""WorkflowsClient: HTTP, auth, timeouts, retries and error mapping for the Workflows API.

Retries are urllib3's ``Retry`` mounted on one keep-alive ``requests.Session``. GETs retry
connection and read errors and 502/503/504 with exponential back-off, honouring
``Retry-After``. ``POST .../run`` is retried only when the connection was never made, so a
run is never launched twice. A caller may pass a ``threading.Event`` as ``cancel``: setting it
cuts short any back-off sleep and stops further retries of that call, which is how the poller
keeps its promise of no request after ``stop()``.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ._version import __version__
from .errors import (
    AuthenticationError,
    ImageError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    ValidationError,
)
from .models import RunAccepted, RunSnapshot, WorkflowInfo

if TYPE_CHECKING:  # requests and urllib3 load on the first client, not on import (~60 ms)
    import requests
    from urllib3.util.retry import Retry

log = logging.getLogger("modelslab_widget")

DEFAULT_BASE_URL = "https://modelslab.com/api/v1"
DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
MAX_JSON_BYTES = 10 * 1024 * 1024  # a status answer is a few kB; anything this big is broken
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_RETRY_SLEEP = 10.0  # longer Retry-After waits belong to the poller, not a blocked call
MAX_RETRY_AFTER = 86_400.0  # a day: longer waits are not believed
MAX_REDIRECTS = 5  # the API does not redirect; a few hops for a proxy, then it is a loop
_CHUNK = 64 * 1024


class _Cancelled(Exception):
    """The caller's cancel event was set while a call was retrying."""


_call = threading.local()  # the cancel event of the call running on this thread, if any


def _cancel_event() -> threading.Event | None:
    return getattr(_call, "cancel", None)


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
            event = _cancel_event()
            if event is not None and event.is_set():
                raise _Cancelled()
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
            event = _cancel_event()
            if event is None:
                time.sleep(seconds)
            elif event.wait(seconds):
                raise _Cancelled()

    return CancellableRetry


@functools.cache
def key_safe_session_class() -> type[requests.Session]:
    """``requests.Session`` that drops the ``key`` header when a redirect leaves the API's
    host, as requests itself does for ``Authorization`` (built on first use)."""
    import requests

    class KeySafeSession(requests.Session):
        def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
            if self.should_strip_auth(response.request.url, prepared_request.url):
                prepared_request.headers.pop("key", None)
            super().rebuild_auth(prepared_request, response)

    return KeySafeSession


def _retry_policy(retries: int, backoff_factor: float) -> Retry:
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


def path_segment(value: Any, what: str) -> str:
    """Quote an ID as one URL path segment; refuse values that would change the path."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if text.strip() in {"", ".", ".."}:
        raise ValueError(f"{what} must not be empty, '.' or '..' (got {text!r})")
    return quote(text, safe="")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after_seconds(response: requests.Response, body: Any) -> float | None:
    """Seconds to wait from a 429: the body's ``retry_after`` first, then ``Retry-After``
    (a number or an HTTP date); always finite and capped by ``_seconds``."""
    if isinstance(body, Mapping):
        seconds = _seconds(body.get("retry_after"))
        if seconds is not None:
            return seconds
    header = response.headers.get("Retry-After")
    if not header:
        return None
    seconds = _seconds(header)
    if seconds is not None:
        return seconds
    import email.utils
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        moment = email.utils.parsedate_to_datetime(header)
        return _seconds(moment.timestamp() - time.time())
    return None


def _seconds(value: Any) -> float | None:
    """A finite, non-negative number of seconds (capped at a day), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, int):  # JSON integers have no size limit; float() would overflow
        return float(min(max(0, value), MAX_RETRY_AFTER))
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER) if math.isfinite(seconds) else None


def _checked_key(key: str | None) -> str | None:
    """The key without surrounding whitespace (a key read from a file often ends in a
    newline); a key that cannot go in a header is refused here, without showing it."""
    if key is None or not key.strip():
        return None
    key = key.strip()
    if any(ord(char) < 0x20 or ord(char) > 0xFF or ord(char) == 0x7F for char in key):
        raise ValueError(
            "the API key contains control or non-Latin-1 characters, which cannot be sent in "
            "an HTTP header: check how it was copied"
        )
    return key


def _server_message(body: Any, fallback: str) -> str:
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error")
        if isinstance(message, str) and message.strip():
            return message.strip()[:500]
    return fallback


def _field_errors(body: Any) -> dict[str, list[str]]:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(errors, Mapping):
        return {}
    result: dict[str, list[str]] = {}
    for name, messages in errors.items():
        items = messages if isinstance(messages, list) else [messages]
        result[str(name)[:200]] = [str(item)[:500] for item in items]
    return result


def error_for_response(response: requests.Response, body: Any) -> ModelsLabError:
    """Map a non-2xx answer to the matching ModelsLabError."""
    code = response.status_code
    # Not response.reason: a server's own reason phrase is not checked for our key.
    message = _server_message(body, f"HTTP {code}")
    if code in (401, 403):
        return AuthenticationError(
            f"The API key was rejected (HTTP {code}: {message}). "
            "Check MODELSLAB_API_KEY or the api_key you passed.",
            status_code=code,
        )
    if code == 404:
        return NotFoundError(f"Not found (HTTP 404: {message}).", status_code=code)
    if code == 422:
        errors = _field_errors(body)
        details = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in errors.items())
        text = f"Validation failed (HTTP 422): {details or message}"
        return ValidationError(text, errors=errors)
    if code == 429:
        wait = _retry_after_seconds(response, body)
        hint = f" Retry after {wait:g} s." if wait is not None else ""
        return RateLimitError(f"Rate limited (HTTP 429: {message}).{hint}", retry_after=wait)
    if code >= 500:
        return ServerError(f"Server error (HTTP {code}: {message}).", status_code=code)
    return ModelsLabError(f"Unexpected answer (HTTP {code}: {message}).", status_code=code)


_ACCOUNT_SALT = secrets.token_bytes(32)  # see WorkflowsClient.account

class WorkflowsClient:
    """A client of the ModelsLab Workflows API.

    ``api_key`` defaults to ``$MODELSLAB_API_KEY``, ``base_url`` to ``$MODELSLAB_BASE_URL``
    and then to the public API. The key is sent only in the ``key`` header of API requests
    (never to image hosts) and never shown.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff_factor: float = 0.5,
        pool_maxsize: int = 10,
    ) -> None:
        self._api_key = _checked_key(
            api_key if api_key is not None else os.environ.get("MODELSLAB_API_KEY")
        )
        chosen = base_url or os.environ.get("MODELSLAB_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = chosen.rstrip("/")
        self.timeout = timeout
        self._warn_if_cleartext()
        from requests.adapters import HTTPAdapter

        self._session = key_safe_session_class()()
        self._session.headers["User-Agent"] = f"modelslab-widget/{__version__}"
        self._session.max_redirects = MAX_REDIRECTS
        adapter = HTTPAdapter(
            max_retries=_retry_policy(retries, backoff_factor),
            pool_connections=4,
            pool_maxsize=pool_maxsize,
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    # -- public API ---------------------------------------------------------------------

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    @property
    def account(self) -> tuple[str, str]:
        """(base URL, a keyed digest of the API key): which account this client speaks for,
        comparable between clients without keeping the key readable (the digest's secret is
        per process, so it means nothing outside it)."""
        digest = hmac.new(_ACCOUNT_SALT, (self._api_key or "").encode(), "sha256").hexdigest()
        return self.base_url, digest

    def get_run(
        self, workflow_id: str, execution_id: int | str, *, cancel: threading.Event | None = None
    ) -> RunSnapshot:
        """The run's current status, steps and (once completed) outputs."""
        path = (
            f"workflows/{path_segment(workflow_id, 'workflow_id')}"
            f"/runs/{path_segment(execution_id, 'execution_id')}"
        )
        return RunSnapshot.from_api(self._request_json("GET", path, cancel=cancel))

    def run_workflow(
        self, workflow_id: str, params: Mapping[str, Any] | None = None
    ) -> int | str:
        """Start a run with ``params`` as the workflow's inputs; returns its execution ID."""
        path = f"workflows/{path_segment(workflow_id, 'workflow_id')}/run"
        body = self._request_json("POST", path, json_body=dict(params or {}))
        return RunAccepted.from_api(body).execution_id

    def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """The workflow's schema: name, description and parameters."""
        path = f"workflows/{path_segment(workflow_id, 'workflow_id')}"
        return WorkflowInfo.from_api(self._request_json("GET", path))

    def fetch_image(
        self,
        url: str,
        max_bytes: int = MAX_IMAGE_BYTES,
        *,
        cancel: threading.Event | None = None,
    ) -> bytes:
        """Download an output image (http/https only, at most ``max_bytes``) without the key."""
        scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
        if scheme not in ("http", "https"):
            raise ImageError(f"refused to fetch a non-http(s) URL (scheme {scheme!r})")
        try:
            with self._cancel_scope(cancel), self._send("GET", url, api=False) as response:
                if response.status_code != 200:
                    raise ImageError(f"HTTP {response.status_code} fetching the image")
                return self._read_capped(response, max_bytes, what="image", error=ImageError)
        except (NetworkError, ServerError) as exc:
            raise ImageError(str(exc)) from exc

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> WorkflowsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return f"WorkflowsClient(base_url={self.base_url!r}, api_key={key})"

    # -- plumbing -----------------------------------------------------------------------

    def _warn_if_cleartext(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            warnings.warn(
                f"base_url {self.base_url!r} is plain http: the API key would travel unencrypted",
                stacklevel=3,
            )

    @staticmethod
    @contextlib.contextmanager
    def _cancel_scope(cancel: threading.Event | None) -> Iterator[None]:
        previous = _cancel_event()
        _call.cancel = cancel
        try:
            yield
        finally:
            _call.cancel = previous

    def _request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        if not self._api_key:
            raise AuthenticationError(
                "No API key: pass api_key=... or set the MODELSLAB_API_KEY environment variable."
            )
        url = f"{self.base_url}/{path}"
        with self._cancel_scope(cancel), self._send(method, url, json_body=json_body) as response:
            raw = self._redacted(self._read_capped(response, MAX_JSON_BYTES, what="answer"))
            body = self._decode_json(raw, response)
            log.debug("%s %s -> HTTP %s", method, url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise error_for_response(response, body)
            if body is None and raw.strip() != b"null":
                raise ResponseFormatError(self._describe_non_json(raw, response))
            return body

    @contextlib.contextmanager
    def _send(
        self, method: str, url: str, *, json_body: Any = None, api: bool = True
    ) -> Iterator[requests.Response]:
        # A None header value removes the session default, so image hosts never see the key.
        headers = {"key": self._api_key if api else None, "Accept": "application/json"}
        if not api:
            headers["Accept"] = "image/*,*/*;q=0.5"
        import requests

        cancel = _cancel_event()
        if cancel is not None and cancel.is_set():  # stopped between scheduling and sending
            raise NetworkError(f"{method} {url} was cancelled")
        try:
            response = self._session.request(
                method, url, headers=headers, json=json_body, timeout=self.timeout, stream=True
            )
        except _Cancelled:
            raise NetworkError(f"{method} {url} was cancelled") from None
        except requests.TooManyRedirects:
            raise ServerError(f"{method} {url}: too many redirects (a redirect loop?)") from None
        except requests.Timeout:
            raise NetworkError(f"{method} {url}: the server did not answer in time") from None
        except requests.RequestException as exc:
            raise NetworkError(f"{method} {url}: {self._redact_text(_reason(exc))}") from None
        try:
            yield response
        finally:
            response.close()

    def _read_capped(
        self,
        response: requests.Response,
        limit: int,
        *,
        what: str,
        error: type[ModelsLabError] = ResponseFormatError,
    ) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise error(f"the {what} is {int(declared):,} bytes, more than the {limit:,} allowed")
        from urllib3.exceptions import HTTPError

        # read1 returns as soon as some bytes arrived, so a body that trickles in a few bytes
        # at a time still meets the deadline (iter_content would wait for each full chunk).
        deadline = time.monotonic() + _read_timeout(self.timeout) * 2
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := response.raw.read1(_CHUNK, decode_content=True):
                size += len(chunk)
                if size > limit:
                    raise error(f"the {what} is larger than the {limit:,} bytes allowed")
                if time.monotonic() > deadline:
                    raise NetworkError(f"the {what} arrived too slowly; gave up")
                chunks.append(chunk)
        except (HTTPError, OSError) as exc:
            raise NetworkError(f"reading the {what} failed: {_reason(exc)}") from None
        return b"".join(chunks)

    def _redact_text(self, text: str) -> str:
        key = self._api_key or ""
        return text.replace(key, "[redacted]") if len(key) >= 4 else text

    def _redacted(self, raw: bytes) -> bytes:
        """The body with our own key blanked out: a server that echoes it back must not get
        it into an error message, a log line or the widget."""
        key = (self._api_key or "").encode()
        return raw.replace(key, b"[redacted]") if len(key) >= 4 else raw

    @staticmethod
    def _decode_json(raw: bytes, response: requests.Response) -> Any:
        """The parsed body, or None when it is not JSON (the caller decides if that matters)."""
        try:
            return json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None

    @staticmethod
    def _describe_non_json(raw: bytes, response: requests.Response) -> str:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        start = raw[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        return f"expected a JSON answer, got {kind} starting {start!r}"


def _read_timeout(timeout: float | tuple[float, float]) -> float:
    return timeout[1] if isinstance(timeout, tuple) else timeout


def _reason(exc: BaseException) -> str:
    """A short, key-free description of a requests/urllib3 failure."""
    inner: BaseException | None = exc
    while inner is not None and inner.__context__ is not None and inner.args == ():
        inner = inner.__context__
    text = str(inner) if inner is not None else type(exc).__name__
    return text[:300] or type(exc).__name__
