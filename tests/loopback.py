"""Real loopback servers for answers the simulator does not give (canned answers, headers
that drip, redirects carrying a gzip bomb), shared by the client's, the downloads', the
media's, the saving's and the secrecy tests, and what those tests measure: the memory a call
grows by, and where a key shows in an error."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import socket
import threading
import tracemalloc
import typing
import zlib

from modelslab_widget import WorkflowsClient

Answer = tuple[int, bytes, dict[str, str]]


class CannedServer:
    """Serves fixed answers by (method, path) on 127.0.0.1 and records every request."""

    def __init__(self, routes: dict[tuple[str, str], Answer]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                canned.requests.append((self.command, self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body, headers = canned.routes.get(
                    (self.command, self.path), (404, b'{"message": "no route"}', {})
                )
                self.send_response(status)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    with contextlib.suppress(OSError):  # a client that read enough hangs up
                        self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="simulator-canned")
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if (m, p) == (method, path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def json_answer(status: int, body: object, **headers: str) -> Answer:
    return status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}


def canned_client(server: CannedServer, key: str = "secret-key-xyz", **options: typing.Any):
    return WorkflowsClient(key, base_url=f"{server.origin}/api/v1", backoff_factor=0.01,
                           **options)


# -- a server that never finishes its headers ----------------------------------------------


class DripServer:
    """A raw socket server that sends the status line and headers one byte every
    ``interval`` seconds, forever: each read gets data, so no socket timeout ever fires."""

    def __init__(self, interval: float = 0.1) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.interval = interval
        self.stopping = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, name="simulator-drip")
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), name="simulator-drip-conn").start()

    def _drip(self, conn: socket.socket) -> None:
        text = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 100_000
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in text:
                if self.stopping.wait(self.interval):
                    return
                conn.sendall(bytes([byte]))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


# -- redirects whose body would inflate to 300 MB -----------------------------------------


@functools.cache
def gzip_of_zeros(megabytes: int = 300) -> bytes:
    """A gzip stream that inflates to ``megabytes`` MB of zeros, made a MB at a time (~1.4 MB
    compressed), so the test itself never holds the inflated bytes."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip wrapper
    block = bytes(1 << 20)
    return b"".join([*(compressor.compress(block) for _ in range(megabytes)),
                     compressor.flush()])


def bomb_redirect(location: str) -> Answer:
    return 302, gzip_of_zeros(), {"Location": location, "Content-Encoding": "gzip"}


def peak_memory_growth(call: typing.Callable[[], object]) -> tuple[object, int]:
    """What ``call`` returned and the most memory Python held during it beyond what it held
    before (tracemalloc: unlike ru_maxrss, not hidden by an earlier test's higher peak)."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- where a key shows --------------------------------------------------------------------

TRACED_KEY = "sk-traced-secret-4711"  # a global: the test's own frame must not hold it


def key_sightings(error: BaseException, key: str) -> list[str]:
    """Where ``key`` shows in ``error`` or anything chained to it (``__cause__`` and
    ``__context__``, recursively): its str and repr, and the repr of every local of every
    frame of its traceback (what Sentry's or rich's capture_locals would print)."""
    found: list[str] = []
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if key in str(current) or key in repr(current):
            found.append(f"the message of {type(current).__name__}")
        tb = current.__traceback__
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                if key in repr(value):
                    found.append(f"local {name!r} of {tb.tb_frame.f_code.co_name}")
            tb = tb.tb_next
        pending += [current.__cause__, current.__context__]
    return found
