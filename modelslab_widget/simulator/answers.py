"""HTTP answers as values: JSON bodies, errors, streamed big bodies, byte ranges and
the answers faults give instead of the normal one."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .faults import Fault
from .media import png_chunk

HTML_BAD_GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class Answer:
    """A complete HTTP answer; `chunks` streams a big body instead of holding it in memory."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Callable[[], Iterator[bytes]] | None = None
    length: int | None = None
    served: int | None = None  # the execution id whose file bytes this body counts toward


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def error_answer(status: int, message: str, **extra: Any) -> Answer:
    return json_answer(status, {"status": "error", "message": message, **extra})


def _filler(total: int, head: bytes, fill: bytes = b"a") -> Callable[[], Iterator[bytes]]:
    """Stream `head` then filler up to `total` bytes, 64 KiB at a time."""
    def chunks() -> Iterator[bytes]:
        yield head[:total]
        left, block = total - min(len(head), total), fill * (65536 // len(fill))
        while left > 0:
            piece = block[:left]
            left -= len(piece)
            yield piece
    return chunks


def huge_json(size: int) -> Answer:
    """Valid JSON of exactly `size` bytes, so a client must refuse it by size, not by syntax."""
    head, tail = b'{"status": "success", "padding": "', b'"}'
    size = max(size, len(head) + len(tail))
    inner = _filler(size - len(tail), head)
    return Answer(200, chunks=lambda: iter([*inner(), tail]), length=size)


def _byte_range(header: str, total: int) -> range | None:
    """The bytes a single `Range: bytes=...` asks for; empty if unsatisfiable, None if the
    header is not one range we understand (then the whole file is sent, as RFC 9110 allows)."""
    # ASCII digits, at most 18: int() refuses more than 4,300 (raising on the handler thread)
    match = re.fullmatch(r"\s*bytes\s*=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*", header)
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # bytes=-N: the last N bytes
        return range(max(0, total - int(match[2])), total if int(match[2]) else 0)
    first = int(match[1])
    last = int(match[2]) if match[2] else total - 1
    if match[2] and last < first:
        return None
    if first >= total:
        return range(0)
    return range(first, min(last, total - 1) + 1)


def ranged(answer: Answer, header: str | None) -> Answer:
    """`answer` (a whole file) cut to the Range asked for: 206, or 416 when unsatisfiable."""
    answer.headers["Accept-Ranges"] = "bytes"
    if header is None or answer.status != 200 or answer.chunks is not None:
        return answer
    total = len(answer.body)
    wanted = _byte_range(header, total)
    if wanted is None:
        return answer
    if not wanted:
        return Answer(416, content_type=answer.content_type,
                       headers={"Content-Range": f"bytes */{total}", "Accept-Ranges": "bytes"})
    headers = {**answer.headers,
               "Content-Range": f"bytes {wanted.start}-{wanted.stop - 1}/{total}"}
    return Answer(206, answer.body[wanted.start:wanted.stop], answer.content_type,
                   headers=headers, served=answer.served)


def huge_png(size: int) -> Answer:
    """A PNG signature and a valid 512x512 header, then filler up to `size` bytes."""
    head = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 512, 512, 8, 2,
                                                                  0, 0, 0))
    return Answer(200, content_type="image/png", chunks=_filler(size, head, b"\0"), length=size)


def fault_answer(fault: Fault, normal: Answer, url: str) -> Answer:
    """The answer a replacing fault gives instead of `normal`."""
    kind = fault.kind
    if kind == "http":
        status = fault.status or 500
        message = fault.body if isinstance(fault.body, str) else _phrase(status)
        return error_answer(status, message)
    if kind == "rate_limit":
        return _rate_limit_answer(fault)
    if kind == "html":
        return Answer(200, HTML_BAD_GATEWAY.encode(), "text/html; charset=utf-8")
    if kind == "truncated_json":
        return Answer(200, normal.body[: len(normal.body) // 2])
    if kind == "api_error":
        return json_answer(200, {"status": "error",
                                  "message": fault.body or "Server busy, try again"})
    if kind == "json":
        return json_answer(200, fault.body)
    if kind == "huge":
        return huge_json(fault.size or 20_000_000)
    if kind == "redirect_loop":
        return Answer(302, content_type="text/plain", headers={"Location": url})
    raise ValueError(f"fault {kind!r} does not apply here")


def _rate_limit_answer(fault: Fault) -> Answer:
    wait = fault.retry_after if fault.retry_after is not None else 1
    where = fault.retry_after_in
    extra = {"retry_after": wait} if where in ("body", "both") else {}
    answer = error_answer(429, "Rate limit exceeded", **extra)
    if where in ("header", "both"):
        answer.headers["Retry-After"] = str(wait)
    return answer


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"
