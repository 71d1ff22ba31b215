"""The HTTP side: a threading server that tracks its connections so stop() ends them,
and the handler (keep-alive, HEAD, key checked before a body is read, fault delivery).

It knows nothing of the simulated API: what to answer comes from a ``Backend``, three
callables the ``Simulator`` (``core``) hands it."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .answers import Answer
from .faults import Fault

CONNECTION_TIMEOUT = 5.0  # idle keep-alive connections end by themselves after this


@dataclass(frozen=True)
class Backend:
    """What the server asks of whoever answers its requests."""

    #: ``wants_body(path, headers)``: read the request's body? (Only for a request that
    #: will use it: an unread body is cheaper than hundreds of MB read for a 401.)
    wants_body: Callable[[str, Mapping[str, str]], bool]
    #: ``respond(method, path, headers, body)``: the answer, and a fault to deliver it by.
    respond: Callable[[str, str, Mapping[str, str], bytes], tuple[Answer, Fault | None]]
    #: ``count_bytes(execution_id, size)``: ``size`` bytes of a run's file are being sent.
    count_bytes: Callable[[int, int], None]


class Server(ThreadingHTTPServer):
    """Tracks its connections and handler threads so stop() can end every one of them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.handler_threads: set[threading.Thread] = set()
        self.accepted = 0
        self.track_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name=f"simulator-conn-{client_address[1]}", daemon=True)
        with self.track_lock:
            self.connections.add(request)
            self.handler_threads.add(thread)
            self.accepted += 1
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.track_lock:
                self.connections.discard(request)
                self.handler_threads.discard(threading.current_thread())

    def close_connections(self) -> None:
        """Wake handler threads blocked reading idle keep-alive connections."""
        with self.track_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-answer is normal here (faults, timeouts): stay quiet."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request logs would flood test output and notebooks."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        headers = dict(self.headers.items())
        backend = self.server.backend
        if backend.wants_body(self.path, headers):
            body = self._read_body()
        else:
            # Unread, a body would be taken for the next request; reading it could cost
            # hundreds of MB for a request that gets a 401 anyway. Answer, then hang up.
            body = b""
            if self._has_body():
                self.close_connection = True
        answer, fault = backend.respond(method, self.path, headers, body)
        if self.close_connection:
            answer.headers["Connection"] = "close"
        self._deliver(answer, fault, head_only=method == "HEAD")

    def _has_body(self) -> bool:
        if self.headers.get("Transfer-Encoding"):
            return True
        return (self.headers.get("Content-Length") or "0").strip() not in ("", "0")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # not supported: do not misread the next request
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _deliver(self, answer: Answer, fault: Fault | None, *, head_only: bool = False) -> None:
        kind = fault.kind if fault else None
        if kind == "slow" and self.server.stopping.wait(fault.delay):  # type: ignore[union-attr]
            return
        if kind in ("drop", "reset"):
            self._hang_up(rst=kind == "reset")
            return
        self._send_head(answer)
        if head_only:
            return
        if kind == "trickle":
            self._trickle(answer.body, fault)  # type: ignore[arg-type]
        elif answer.chunks is not None:
            for chunk in answer.chunks():
                self._write(chunk, answer.served)
        else:
            for start in range(0, len(answer.body), 65536):
                self._write(answer.body[start:start + 65536], answer.served)

    def _write(self, data: bytes, served: int | None) -> None:
        """Write part of a body. File bytes are counted just before they are handed to the
        socket, so a client that has read them always finds them counted (counting after
        the write raced with the reader: it could see the bytes before the count)."""
        if served is not None:
            self.server.backend.count_bytes(served, len(data))
        self.wfile.write(data)

    def _send_head(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        length = answer.length if answer.chunks is not None else len(answer.body)
        self.send_header("Content-Length", str(length))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _trickle(self, body: bytes, fault: Fault) -> None:
        step = fault.size or 16
        for start in range(0, len(body), step):
            if start and self.server.stopping.wait(fault.delay):
                return
            self.wfile.write(body[start:start + step])

    def _hang_up(self, *, rst: bool) -> None:
        """Close without answering; with rst, SO_LINGER 0 makes the close send a RST."""
        self.close_connection = True
        if rst:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        self.connection.close()
