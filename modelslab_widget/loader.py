"""OutputsLoader: learns each output's kind and makes the images' thumbnails, for one watch.

Work goes to the scheduler's download lanes (a few at a time per host, never the workers that
poll), so a slow image host cannot stall any watch. Video and audio are never downloaded here:
the browser streams them from their URL. The loader only reports; its watch decides what that
means for the run's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .client import WorkflowsClient
from .images import Thumbnail, load_thumbnail
from .media import OutputInfo, OutputKind, candidates_for, describe_output, kind_from_url
from .models import RunSnapshot
from .scheduler import Scheduler
from .urls import is_web_url, url_host

log = logging.getLogger("modelslab_widget")


@dataclass(frozen=True)
class LoadPlan:
    """What ``OutputsLoader.need`` started: whether the thumbnails start over (a bigger size
    was asked for), and whether any load is still going."""

    restart: bool = False
    busy: bool = False


class OutputsLoader:
    """Loads the outputs of one run for its watch (see the module docstring)."""

    def __init__(
        self,
        client: WorkflowsClient,
        scheduler: Scheduler,
        *,
        on_output: Callable[[OutputInfo], None],
        on_thumbnail: Callable[[Thumbnail], None],
        on_idle: Callable[[], None],
        run_name: str = "",
    ) -> None:
        self._client = client
        self._scheduler = scheduler
        self._on_output = on_output
        self._on_thumbnail = on_thumbnail
        self._on_idle = on_idle
        self.run_name = run_name  # for log lines
        self._lock = threading.Lock()
        self._loaded = (0, 0)  # (size, count) of the thumbnails loaded or loading
        self._loading = 0
        self._generation = 0  # a reload at a larger size drops the older loads' results
        self._known: dict[int, OutputInfo] = {}  # each output's kind, learnt once
        self._cancel = threading.Event()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._loading > 0

    def need(self, snapshot: RunSnapshot | None, size: int, count: int) -> LoadPlan:
        """Start loading the thumbnails of ``count`` outputs at ``size`` px that are not
        loaded yet (of a completed run only)."""
        with self._lock:
            if snapshot is None or snapshot.status != "completed" or not snapshot.outputs:
                return LoadPlan(busy=self._loading > 0)
            count = min(count, len(snapshot.outputs))
            loaded_size, loaded_count = self._loaded
            if size <= 0 or count <= 0 or (size <= loaded_size and count <= loaded_count):
                return LoadPlan(busy=self._loading > 0)
            restart = size > loaded_size
            if restart:  # a bigger view came: load them all again, at its size
                self._generation += 1
                start = 0
            else:  # same size: only the outputs not loaded yet
                size, start = loaded_size, loaded_count
            self._loaded = (size, count)
            outputs = candidates_for(snapshot.outputs, snapshot.proxy_links)[start:count]
            self._loading += len(outputs)
            generation = self._generation
        for index, candidates in enumerate(outputs, start):
            self._scheduler.submit_download(url_host(candidates[0]), self._load, index,
                                            candidates, size, generation)
        return LoadPlan(restart=restart, busy=True)

    def kinds(self, urls: tuple[str, ...]) -> list[OutputKind]:
        """Each output's kind, in order: as described, else as its URL's extension says
        (no request), else FILE."""
        with self._lock:
            known = dict(self._known)
        return [known[i].kind if i in known else kind_from_url(url) or OutputKind.FILE
                for i, url in enumerate(urls)]

    def close(self) -> None:
        """Stop: loads in flight give up, and nothing more is reported."""
        self._cancel.set()

    def _load(self, index: int, candidates: list[str], size: int, generation: int) -> None:
        """One output, on a download lane: learn its kind (its URL's extension, else a probe
        of a few KB), then, for an image only, make its thumbnail."""
        thumb: Thumbnail | None = None
        try:
            if self._cancel.is_set():
                return
            info = self._described(index, candidates)
            if info.kind is OutputKind.IMAGE:
                thumb = load_thumbnail(self._client, index, candidates, size,
                                       cancel=self._cancel)
        except Exception as exc:  # whatever went wrong, the watch must hear of this output
            log.exception("loading output %d of run %s failed", index, self.run_name)
            thumb = Thumbnail(index, candidates[0], error=f"could not load ({exc})")
        finally:
            self._finished(thumb, generation)

    def _finished(self, thumb: Thumbnail | None, generation: int) -> None:
        """Report the thumbnail, then count the load as done: in that order, so that the
        idle word (the watch settles on it) comes after every load's thumbnail, whichever
        thread finishes last."""
        with self._lock:
            current = generation == self._generation
        if thumb is not None and current and not self._cancel.is_set():
            self._on_thumbnail(thumb)
        with self._lock:
            self._loading -= 1
            idle = self._loading == 0
        if idle and not self._cancel.is_set():
            self._on_idle()

    def _described(self, index: int, candidates: list[str]) -> OutputInfo:
        """The output's kind, learnt once (a reload at a bigger size reuses it)."""
        with self._lock:
            known = self._known.get(index)
        if known is not None:
            return known
        info = describe(self._client, index, candidates, self._cancel)
        with self._lock:
            info = self._known.setdefault(index, info)
        self._on_output(info)
        return info


def describe(client: WorkflowsClient, index: int, candidates: list[str],
             cancel: threading.Event) -> OutputInfo:
    """The first telling description among an output's URLs (the output, then its proxy
    link). A URL that is not http(s) is never fetched: unless its extension names another
    kind it goes the image way, whose placeholder says why there is no picture."""
    web = [url for url in candidates if is_web_url(url)]
    if not web:
        url = candidates[0] if candidates else ""
        return OutputInfo(index, url, kind_from_url(url) or OutputKind.IMAGE,
                          error="not an http(s) URL")
    info = describe_output(client, web[0], index, cancel=cancel)
    for url in web[1:]:
        if info.error is None:
            break
        info = describe_output(client, url, index, cancel=cancel)
    return info
