"""A comm that records what would be sent to the front end, instead of sending it.

ipywidgets 8 opens each widget's comm through ``comm.create_comm`` (looked up at call time in
``ipywidgets/comm.py``), so replacing that factory before any widget exists routes every
``comm_open``, state update and ``comm_close`` through ``RecordingComm.publish_msg``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import comm
from comm.base_comm import BaseComm


@dataclass(frozen=True)
class Message:
    at: float  # time.time() when published
    thread: str  # name of the publishing thread
    kind: str  # comm_open, comm_msg, comm_close
    nbytes: int  # JSON of data + binary buffers
    tag: str | None  # set by Recorder.tagged() on the publishing thread


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._local = threading.local()

    def add(self, kind: str, nbytes: int) -> None:
        thread = threading.current_thread().name
        tag = getattr(self._local, "tag", None)
        self.messages.append(Message(time.time(), thread, kind, nbytes, tag))

    def mark(self) -> int:
        """An index to slice ``messages`` from later."""
        return len(self.messages)

    def since(self, mark: int) -> list[Message]:
        return self.messages[mark:]

    @contextlib.contextmanager
    def tagged(self, tag: str) -> Iterator[None]:
        previous = getattr(self._local, "tag", None)
        self._local.tag = tag
        try:
            yield
        finally:
            self._local.tag = previous


RECORDER = Recorder()


def _buffer_size(buffer: Any) -> int:
    return memoryview(buffer).nbytes


class RecordingComm(BaseComm):
    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                    buffers: Any = None, **keys: Any) -> None:
        size = len(json.dumps(data, default=str))
        size += sum(_buffer_size(b) for b in buffers or [])
        RECORDER.add(msg_type, size)


def install() -> Recorder:
    """Route every comm ipywidgets creates from now on through the recorder."""
    comm.create_comm = RecordingComm
    return RECORDER
