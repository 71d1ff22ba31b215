"""WorkflowsClient: HTTP, auth, timeouts, retries and error mapping for the Workflows API.

Retries are urllib3's ``Retry`` mounted on one keep-alive ``requests.Session``. GETs retry
connection and read errors and 502/503/504 with exponential back-off, honouring
``Retry-After``. ``POST .../run`` is retried only when the connection was never made, so a
run is never launched twice. A caller may pass a ``threading.Event`` as ``cancel``: setting it
cuts short any back-off sleep and stops further retries of that call, which is how the poller
keeps its promise of no request after ``stop()``.

Every call also has a wall-clock deadline covering connect, headers and body together; the
watchdog that enforces it, the output address policy and the cancellable ``Retry`` live in
``transport.py``. Output files are fetched by ``downloads.py`` through this client's sender,
bound to send no key: ``fetch_image``, ``open_output`` and ``probe`` hand their calls to it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from ._version import __version__
from .downloads import (
    DOWNLOAD_DEADLINE,
    MAX_IMAGE_BYTES,
    MAX_OUTPUT_BYTES,
    OutputFetcher,
    OutputProbe,
)
from .errors import (
    AuthenticationError,
    ImageError,
    MissingKeyError,
    ModelsLabError,
    NetworkError,
    NotFoundError,
    OutputError,
    QueueFullError,
    RateLimitError,
    ResponseFormatError,
    RunAlreadyEndedError,
    ServerError,
    ValidationError,
)
from .models import (
    RunAccepted,
    RunSnapshot,
    WorkflowInfo,
    WorkflowSummary,
    cancel_message,
    decode_json,
)
from .transport import (
    ADDRESS_KINDS,
    Cancelled,
    RefusedAddress,
    address_scope,
    cancel_event,
    cancel_scope,
    capped_body,
    current_deadline,
    deadline_passed,
    deadline_scope,
    environment_proxy,
    failure_reason,
    host_kinds,
    is_loopback,
    key_pattern,
    key_safe_session_class,
    next_hop,
    retry_policy,
    watched_adapter_class,
)
from .urls import without_credentials

if TYPE_CHECKING:  # requests and urllib3 load on the first client, not on import (~60 ms)
    import requests

log = logging.getLogger("modelslab_widget")

DEFAULT_BASE_URL = "https://modelslab.com/api/v1"
DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
MAX_JSON_BYTES = 10 * 1024 * 1024  # a status answer is a few kB; anything this big is broken
MAX_RETRY_AFTER = 86_400.0  # a day: longer waits are not believed
MAX_REDIRECTS = 5  # the API does not redirect; a few hops for a proxy, then it is a loop


F = TypeVar("F", bound=Callable[..., Any])


def key_free_errors(method: F) -> F:
    """Errors leave a public call with no ``__context__`` or ``__cause__``: a chained
    requests exception holds the prepared request, and its headers hold the key."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ModelsLabError as exc:
            _unchain(exc)
            raise  # a bare raise sets no new context

    return call  # type: ignore[return-value]


def _unchain(exc: BaseException) -> None:
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = False


def path_segment(value: Any, what: str) -> str:
    """Quote an ID as one URL path segment; refuse values that would change the path."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if text.strip() in {"", ".", ".."}:
        raise ValueError(f"{what} must not be empty, '.' or '..' (got {text!r})")
    return quote(text, safe="")



def json_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's parameters as sent, checked first: a value JSON cannot carry (a date, NaN) is
    the caller's mistake, told as a ValueError naming the parameter before anything is sent,
    not a TypeError from inside requests whose frames hold the request and its key."""
    body = dict(params or {})
    for name, value in body.items():
        problem = _json_problem(value)
        if problem is not None:
            raise ValueError(f"parameter {name!r} cannot be sent as JSON: {problem}")
    problem = _json_problem(body)  # what is left: names JSON cannot carry
    if problem is not None:
        raise ValueError(f"the parameters cannot be sent as JSON: {problem}")
    return body


def _json_problem(value: Any) -> str | None:
    import json

    try:
        json.dumps(value, allow_nan=False)  # as requests encodes a body
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc)[:200] or type(exc).__name__
    return None


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


def _checked_base_url(url: str) -> str:
    """The base URL, refused (without repeating it) when it carries a user name or password:
    repr, every message and so the card would show them, and so would the notebook."""
    netloc = ""
    with contextlib.suppress(ValueError):  # a malformed URL fails where it is used
        netloc = urlsplit(url).netloc
    if "@" in netloc:
        raise ValueError(
            "base_url must not carry a user name or password (user:password@host): they "
            "would be shown in messages and on the card. Drop them from the URL and put the "
            "gateway's credentials in a ~/.netrc entry for its host (or the file named by "
            "$NETRC), which is sent as HTTP basic auth to that host only"
        )
    return url


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


# The account's queue limit (rate-limits.mdx): "Maximum 5 queued requests allowed." Matched
# loosely (any wording naming a queue), so a reworded message is still told apart from a
# workflow's rate limit; the number, when there is one, is the plan's limit.
_QUEUE_WORDS = re.compile(r"\bqueue", re.IGNORECASE)
_QUEUE_LIMIT = re.compile(r"(\d{1,4})\s+(?:queued|in\s+(?:the\s+)?queue)", re.IGNORECASE)


def _queue_limit_in(message: str) -> int | None:
    match = _QUEUE_LIMIT.search(message)
    return int(match.group(1)) if match else None


def error_for_response(response: requests.Response, body: Any) -> ModelsLabError:
    """Map a non-2xx answer to the matching ModelsLabError."""
    code = response.status_code
    # Not response.reason: a server's own reason phrase is not checked for our key.
    message = _server_message(body, f"HTTP {code}")
    if code in (401, 403):
        return AuthenticationError(
            f"The API key was rejected (HTTP {code}: {message}).",
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
        if _QUEUE_WORDS.search(message):
            return QueueFullError(f"The account's queue is full (HTTP 429: {message}).{hint}",
                                  retry_after=wait, limit=_queue_limit_in(message))
        return RateLimitError(f"Rate limited (HTTP 429: {message}).{hint}", retry_after=wait)
    if code >= 500:
        return ServerError(f"Server error (HTTP {code}: {message}).", status_code=code)
    return ModelsLabError(f"Unexpected answer (HTTP {code}: {message}).", status_code=code)


@functools.cache
def _account_salt() -> bytes:
    """The per-process secret of ``WorkflowsClient.account`` (made on first use: hmac and
    secrets are not worth their import time to a kernel that never watches a run)."""
    import secrets

    return secrets.token_bytes(32)

class WorkflowsClient:
    """A client of the ModelsLab Workflows API.

    ``api_key`` defaults to ``$MODELSLAB_API_KEY``, ``base_url`` to ``$MODELSLAB_BASE_URL``
    and then to the public API. The key is sent only in the ``key`` header of API requests
    (never to output hosts: see ``downloads.py``) and never shown.
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
        deadline: float | None = None,
        download_deadline: float = DOWNLOAD_DEADLINE,
        allow_private_outputs: bool | None = None,
    ) -> None:
        #: The key was read from MODELSLAB_API_KEY (none was passed), so
        #: ``reload_key_from_environment()`` may read it again.
        self.key_from_environment = api_key is None
        self._api_key = _checked_key(
            api_key if api_key is not None else os.environ.get("MODELSLAB_API_KEY")
        )
        self._account: tuple[str, str] | None = None
        chosen = base_url or os.environ.get("MODELSLAB_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = _checked_base_url(chosen).rstrip("/")
        self.timeout = timeout
        #: Seconds one API call may take in all (connect, headers, body, retries); by default
        #: the connect timeout plus twice the read timeout.
        self.deadline = deadline if deadline is not None else _default_deadline(timeout)
        #: Seconds one output download or probe may take, connect to last byte.
        self.download_deadline = download_deadline
        #: Output URLs on loopback, link-local or private addresses: True fetches them,
        #: False never does, None (the default) fetches those of the same kind as the API's
        #: own address (the simulator's loopback, a self-hosted gateway's private network).
        #: Refused outputs are still linked. Redirects are checked the same way.
        self.allow_private_outputs = allow_private_outputs
        self._base_kinds: frozenset[str] | None = None
        self._key_pattern = key_pattern(self._api_key)
        self._warn_if_cleartext()
        self._session = key_safe_session_class()()
        self._session.headers["User-Agent"] = f"modelslab-widget/{__version__}"
        adapter = watched_adapter_class()(
            max_retries=retry_policy(retries, backoff_factor),
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
        if self._account is None:  # made once per key (so no import is needed at exit)
            import hmac

            key = (self._api_key or "").encode()
            self._account = self.base_url, hmac.new(_account_salt(), key, "sha256").hexdigest()
        return self._account

    def reload_key_from_environment(self) -> bool:
        """Read ``$MODELSLAB_API_KEY`` again when the key came from it (no ``api_key`` was
        passed): what a user does after "No API key" or a rejected key is set the variable
        and retry. True when the key changed (and with it ``account``)."""
        if not self.key_from_environment:
            return False
        key = _checked_key(os.environ.get("MODELSLAB_API_KEY"))
        if key == self._api_key:
            return False
        # The pattern first: no answer to a request with the new key is ever redacted with
        # the old pattern. (Retry reloads once watching ended: nothing of it is in flight.)
        self._key_pattern = key_pattern(key)
        self._api_key = key
        self._account = None
        return True

    @key_free_errors
    def get_run(
        self, workflow_id: str, execution_id: int | str, *, cancel: threading.Event | None = None
    ) -> RunSnapshot:
        """The run's current status, steps and (once completed) outputs."""
        path = (
            f"workflows/{path_segment(workflow_id, 'workflow_id')}"
            f"/runs/{path_segment(execution_id, 'execution_id')}"
        )
        return RunSnapshot.from_api(self._request_json("GET", path, cancel=cancel))

    @key_free_errors
    def run_workflow(
        self, workflow_id: str, params: Mapping[str, Any] | None = None
    ) -> int | str:
        """Start a run with ``params`` as the workflow's inputs; returns its execution ID."""
        path = f"workflows/{path_segment(workflow_id, 'workflow_id')}/run"
        body = self._request_json("POST", path, json_body=json_params(params))
        return RunAccepted.from_api(body).execution_id

    @key_free_errors
    def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """The workflow's schema: name, description and parameters."""
        path = f"workflows/{path_segment(workflow_id, 'workflow_id')}"
        return WorkflowInfo.from_api(self._request_json("GET", path))

    @key_free_errors
    def cancel_run(
        self, workflow_id: str, execution_id: int | str, *, cancel: threading.Event | None = None
    ) -> str:
        """Ask the API to cancel a run; returns the server's message ("Execution cancelled.").

        Raises RunAlreadyEndedError when the run has already completed, failed or been
        cancelled (HTTP 400), NotFoundError, AuthenticationError, RateLimitError. Like
        ``run_workflow``'s POST it is re-sent only when the connection was never made.
        """
        path = (
            f"workflows/{path_segment(workflow_id, 'workflow_id')}"
            f"/runs/{path_segment(execution_id, 'execution_id')}/cancel"
        )

        def already_ended(response: requests.Response, body: Any) -> ModelsLabError | None:
            if response.status_code != 400:
                return None
            reason = _server_message(body, "HTTP 400")
            return RunAlreadyEndedError(
                f"Run {execution_id} has already ended and cannot be cancelled ({reason})."
            )

        body = self._request_json("POST", path, cancel=cancel, error_for=already_ended)
        return cancel_message(body)

    @key_free_errors
    def list_workflows(self) -> list[WorkflowSummary]:
        """The caller's API-enabled workflows (``GET /workflows``)."""
        return WorkflowSummary.list_from_api(self._request_json("GET", "workflows"))

    @key_free_errors
    def fetch_image(
        self,
        url: str,
        max_bytes: int = MAX_IMAGE_BYTES,
        *,
        cancel: threading.Event | None = None,
    ) -> bytes:
        """Download an output image (http/https only, at most ``max_bytes``) without the key."""
        return self._outputs().fetch_image(url, max_bytes, cancel=cancel)

    def open_output(
        self,
        url: str,
        *,
        max_bytes: int = MAX_OUTPUT_BYTES,
        cancel: threading.Event | None = None,
        error: type[ImageError] = OutputError,
        deadline: float | None = None,
    ) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """Stream an output file (http/https only, never with the key) as chunks of bytes, at
        most ``max_bytes`` in all and within ``download_deadline`` seconds from connect to
        last byte; failures raise ``error`` (OutputError unless told)."""
        return self._outputs().open(url, max_bytes=max_bytes, cancel=cancel, error=error,
                                    deadline=deadline)

    @key_free_errors
    def probe(self, url: str, *, cancel: threading.Event | None = None) -> OutputProbe:
        """Learn what an output URL serves without downloading it: a HEAD request, then, when
        it gives no telling content type, a ``Range: bytes=0-4095`` GET of which at most 4 KB
        are read even if the server ignores the range (that connection is then closed)."""
        return self._outputs().probe(url, cancel=cancel)

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
        if parts.scheme != "http":
            return  # https: even through an http proxy it is a CONNECT tunnel, end to end TLS
        if not is_loopback(parts.hostname or ""):
            warnings.warn(
                f"base_url {self.base_url!r} is plain http: the API key would travel unencrypted",
                stacklevel=3,
            )
            return
        proxy = environment_proxy(self.base_url)
        if proxy is not None:
            # A loopback base URL is safe only while the traffic stays on this machine; an
            # HTTP(S)_PROXY variable sends it, key and all, to the proxy in clear.
            warnings.warn(
                f"base_url {self.base_url!r} is plain http and the environment routes it through "
                f"the proxy {proxy!r}: the API key would travel unencrypted",
                stacklevel=3,
            )

    def output_address_kinds(self) -> frozenset[str]:
        """The kinds of address (see ``address_kind``) output downloads may reach, and so
        may an API call's redirects once they leave the API's host."""
        if self.allow_private_outputs:
            return frozenset(ADDRESS_KINDS)
        if self.allow_private_outputs is False:
            return frozenset({"public"})
        if self._base_kinds is None:  # resolved once, on the first download
            host = urlsplit(self.base_url).hostname or ""
            kinds = set(host_kinds(host).values()) - {"reserved"}
            self._base_kinds = frozenset({"public", *kinds})
        return self._base_kinds

    def _outputs(self) -> OutputFetcher:
        """This client's downloads, made per call (see ``OutputFetcher`` for why)."""
        return OutputFetcher(functools.partial(self._send, api=False), self.output_address_kinds,
                             deadline=self.deadline, download_deadline=self.download_deadline)

    def _request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        cancel: threading.Event | None = None,
        error_for: Callable[[requests.Response, Any], ModelsLabError | None] | None = None,
    ) -> Any:
        """The decoded JSON answer of one API call; ``error_for`` may map a non-2xx answer to
        a call-specific error before the generic mapping (cancel's 400, for one)."""
        if not self._api_key:
            raise MissingKeyError(
                "No API key: pass api_key=... or set the MODELSLAB_API_KEY environment variable."
            )
        url = f"{self.base_url}/{path}"
        with (
            cancel_scope(cancel),
            deadline_scope(self.deadline),
            self._send(method, url, json_body=json_body) as response,
        ):
            body_chunks = capped_body(response, MAX_JSON_BYTES, "answer", ResponseFormatError)
            raw = self._redacted(b"".join(body_chunks))
            body = self._decode_json(raw, response)
            log.debug("%s %s -> HTTP %s", method, url, response.status_code)
            if not 200 <= response.status_code < 300:
                raise (error_for and error_for(response, body)) or error_for_response(
                    response, body
                )
            if body is None and raw.strip() != b"null":
                raise ResponseFormatError(self._describe_non_json(raw, response))
            return body

    def _headers(self, api: bool, keyed: bool) -> dict[str, str | None]:
        # Built here, not in _send, so that no frame of a traceback holds the key in a local.
        # A None header value removes the session default, so other hosts never see the key.
        if api:
            return {"key": self._api_key if keyed else None, "Accept": "application/json"}
        return {"key": None, "Accept": "image/*,video/*,audio/*,model/*,*/*;q=0.5"}

    @contextlib.contextmanager
    def _send(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        api: bool = True,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Iterator[requests.Response]:
        response = self._follow(method, url, json_body, api, extra_headers or {})
        try:
            yield response
        finally:
            response.close()

    def _follow(
        self, method: str, url: str, json_body: Any, api: bool, extra_headers: Mapping[str, str]
    ) -> requests.Response:
        """The answer at the end of at most ``MAX_REDIRECTS`` redirects, each followed here
        (requests would read each redirect's whole body first, uncapped). The key goes only
        to the API's own host: once a hop leaves it, no later hop carries the key, and an API
        call's later hops may reach only the addresses an output download may."""
        keyed = api
        with contextlib.ExitStack() as scopes:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_not_cancelled(method, url)
                response = self._send_once(method, url, json_body, api, keyed, extra_headers)
                hop = self._next_hop(response, method)
                if hop is None:
                    return response
                response.close()  # unread: only its Location matters, never its body
                target_method, target = hop
                if response.status_code not in (307, 308):
                    json_body = None  # as requests: a 301/302/303 drops the body
                if keyed and self._session.should_strip_auth(url, target):
                    keyed = False
                    if api:
                        scopes.enter_context(address_scope(self.output_address_kinds()))
                method, url = target_method, target
        raise ServerError(f"{method} {self._shown(url)}: too many redirects (a redirect loop?)")

    def _check_not_cancelled(self, method: str, url: str) -> None:
        """Before each hop: a call stopped between scheduling and sending, or between two
        hops of a redirect chain, sends nothing more."""
        cancel = cancel_event()
        if cancel is not None and cancel.is_set():
            raise NetworkError(f"{method} {self._shown(url)} was cancelled")

    def _next_hop(self, response: requests.Response, method: str) -> tuple[str, str] | None:
        failure: ModelsLabError | None = None
        try:
            return next_hop(response, method)
        except ValueError:
            failure = ServerError(
                f"{method} {self._shown(response.url)}: HTTP {response.status_code} redirects "
                "to an address that is no http(s) URL; not followed"
            )
        response.close()
        raise failure  # outside the handler: the ValueError's frames are not chained

    def _send_once(
        self,
        method: str,
        url: str,
        json_body: Any,
        api: bool,
        keyed: bool,
        extra_headers: Mapping[str, str],
    ) -> requests.Response:
        failure: ModelsLabError | None = None
        try:
            response = self._session.request(
                method, url, headers={**self._headers(api, keyed), **extra_headers},
                json=json_body, timeout=self.timeout, stream=True, allow_redirects=False,
            )
        except Exception as exc:  # every failure is mapped: none escapes bare
            failure = self._send_failure(method, url, exc, api)
        if failure is not None:
            # Raised here, outside the handler, so the error has no __context__: the requests
            # exception's frames hold the prepared request, and that holds the key.
            raise failure
        self._redact_headers(response)  # before anything reads them: the Location too
        return response

    def _send_failure(
        self, method: str, url: str, exc: Exception, api: bool
    ) -> ModelsLabError:
        import requests

        where = f"{method} {self._shown(url)}"
        if deadline_passed():
            seconds = current_deadline().seconds  # type: ignore[union-attr]
            return NetworkError(f"{where}: no complete answer within {seconds:g} s")
        if isinstance(exc, Cancelled):
            return NetworkError(f"{where} was cancelled")
        if isinstance(exc, RefusedAddress):
            if api:  # an API call redirected off the API's host, to an inner address
                return ServerError(f"{where}: a redirect led to {exc.address}, a {exc.kind} "
                                   "address, which is not followed")
            return OutputError(str(exc))
        if isinstance(exc, requests.Timeout):
            return NetworkError(f"{where}: the server did not answer in time")
        if isinstance(exc, requests.RequestException):
            return NetworkError(f"{where}: {self._redact_text(failure_reason(exc))}")
        # Anything else (a bug, a URL requests cannot take): still a ModelsLabError, so no
        # caller sees a bare exception whose frames hold the request and its key.
        reason = self._redact_text(str(exc)[:300])
        return ModelsLabError(f"{where} failed: {type(exc).__name__}: {reason}")

    def _redact_text(self, text: str) -> str:
        if self._key_pattern is None:
            return text
        raw = text.encode("utf-8", "surrogateescape")
        return self._key_pattern.sub(b"[redacted]", raw).decode("utf-8", "surrogateescape")

    def _redact_headers(self, response: requests.Response) -> None:
        """Blank our key out of every header value, in place: headers are server text like
        bodies, and messages (a non-JSON Content-Type, say) and the probe quote them."""
        if self._key_pattern is None:
            return
        for name, value in list(response.headers.items()):
            raw = value.encode("latin-1", "replace")  # http.client decoded them as latin-1
            redacted = self._key_pattern.sub(b"[redacted]", raw)
            if redacted != raw:
                response.headers[name] = redacted.decode("latin-1")

    def _shown(self, url: str) -> str:
        """A URL as a message may show it: key-free, and without any user name or password
        (an output's or a redirect's URL is server text)."""
        bare = without_credentials(url)
        return "(a malformed URL)" if bare is None else self._redact_text(bare)

    def _redacted(self, raw: bytes) -> bytes:
        """The body with our own key blanked out, literal, JSON-escaped (``\\u0073…``) or
        percent-encoded: a server that echoes it back must not get it into an error message,
        a log line or the widget."""
        return raw if self._key_pattern is None else self._key_pattern.sub(b"[redacted]", raw)

    @staticmethod
    def _decode_json(raw: bytes, response: requests.Response) -> Any:
        """The parsed body, or None when it is not JSON (the caller decides if that matters)."""
        try:
            # Capped while parsing: an answer listing millions of steps keeps its first ones.
            return decode_json(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None

    @staticmethod
    def _describe_non_json(raw: bytes, response: requests.Response) -> str:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        start = raw[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        return f"expected a JSON answer, got {kind} starting {start!r}"


def _read_timeout(timeout: float | tuple[float, float]) -> float:
    return timeout[1] if isinstance(timeout, tuple) else timeout


def _default_deadline(timeout: float | tuple[float, float]) -> float:
    connect = timeout[0] if isinstance(timeout, tuple) else timeout
    return connect + 2 * _read_timeout(timeout)


