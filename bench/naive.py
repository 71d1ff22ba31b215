"""The baseline: what a user writes by hand without this package.

A fixed-interval loop of plain ``requests.get`` (no Session, so a new TCP connection each
time) and ``time.sleep(interval)``, then a sequential download, ``Image.open`` and
``.thumbnail`` of each output.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import requests

TERMINAL = ("completed", "failed", "cancelled")


def watch(url: str, key: str, interval: float,
          on_answer: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Poll ``url`` every ``interval`` seconds until the run ends; returns the last answer."""
    while True:
        body = requests.get(url, headers={"key": key}, timeout=30).json()
        if on_answer is not None:
            on_answer(body)
        if body["execution"]["status"] in TERMINAL:
            return body
        time.sleep(interval)


def thumbnails(urls: list[str], size: int = 256) -> list[Any]:
    """Download and thumbnail each output, one after the other."""
    from PIL import Image

    thumbs = []
    for url in urls:
        image = Image.open(io.BytesIO(requests.get(url, timeout=30).content))
        image.thumbnail((size, size))
        thumbs.append(image)
    return thumbs


def full_decode_resize(data: bytes, size: int = 256) -> Any:
    """The naive thumbnail: decode every pixel, then resize."""
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB").resize((size, size))


def step_index(steps: list[dict[str, Any]]) -> int | None:
    """Which scripted boundary a step list shows: 0 once the first step started, k once k
    steps completed; None while everything is pending."""
    if all(step.get("status") == "pending" for step in steps):
        return None
    return sum(1 for step in steps if step.get("status") == "completed")
