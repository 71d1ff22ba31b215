"""Outputs of any kind streamed to disk, where the bytes decide and nothing is overwritten.

A file is kept only when its first bytes are the container of an output kind (``media.sniff``)
and, for an image, when Pillow identifies an allowed format in it (``images``); it is named
after its URL, made safe, with the detected type's extension, never the server's. Downloads
go to a hidden part file created exclusively and are linked to their name only when
complete: an existing file or symlink is never written through or replaced.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .client import WorkflowsClient
from .downloads import MAX_OUTPUT_BYTES
from .errors import ModelsLabError, OutputError
from .images import ALLOWED_IMAGE_FORMATS, image_extension
from .media import (
    OutputKind,
    Sniffed,
    binary_stl_size,
    candidates_for,
    first_that_works,
    sniff,
    url_extension,
)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100
# Names Windows reserves in every folder, whatever the extension ("CON.png" is the console);
# neutralised on every OS, since a saved folder may be copied to Windows later.
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
# A text format (OBJ, ASCII STL) has no magic bytes: it is judged on at least this much.
_TEXT_JUDGED_ON = 512


def file_name_for(url: str, index: int) -> str:
    """A safe file name from a URL's last path segment: letters, digits, ``._-`` only, no
    leading dot, never a path (``..%2F`` and backslashes included), never a Windows reserved
    name; ``output-N`` when empty."""
    segment = re.split(r"[/\\]", unquote(urlsplit(url).path))[-1]
    name = _SAFE_NAME.sub("_", segment).lstrip("._-")
    if len(name) > _MAX_NAME:
        _, dot, suffix = name.rpartition(".")
        keep = f".{suffix}" if dot and 0 < len(suffix) <= 8 else ""
        name = name[: _MAX_NAME - len(keep)] + keep
    name = name or f"output-{index + 1}"
    if name.split(".", 1)[0].upper() in _RESERVED_NAMES:
        name = f"_{name}"
    return name


def name_for_type(url: str, index: int, extension: str) -> str:
    """The URL's safe name with its extension replaced by the detected one (a server's
    ``numpy.py`` that holds a PNG is saved as ``numpy.png``, and one that holds a script is
    never saved as ``.py``)."""
    name = file_name_for(url, index)
    stem, dot, _ = name.rpartition(".")
    stem = (stem if dot and stem else name).rstrip(".") or f"output-{index + 1}"
    return f"{stem}{extension}"


@contextlib.contextmanager
def _part_file(directory: Path) -> Iterator[tuple[Path, io.BufferedWriter]]:
    """A new hidden file in ``directory`` for a download in progress, created exclusively
    (so never through an existing symlink) and removed unless the caller moved it away."""
    for _ in range(100):
        path = directory / f".modelslab-{secrets.token_hex(8)}.part"
        try:
            file = path.open("xb")
        except FileExistsError:
            continue
        try:
            with file:
                yield path, file
        finally:
            path.unlink(missing_ok=True)
        return
    raise FileExistsError(f"no free temporary name in {directory}")


def _link_new(part: Path, directory: Path, name: str) -> Path:
    """Give the finished ``part`` file the name ``name`` in ``directory``, or ``stem-1.ext``,
    ``stem-2.ext``, … if that exists: ``os.link`` fails on any existing entry, a symlink
    included, so nothing is ever overwritten or written through."""
    stem, dot, suffix = name.rpartition(".")
    if not stem:
        stem, dot, suffix = name, "", ""
    for attempt in range(10_000):
        candidate = directory / (name if attempt == 0 else f"{stem}-{attempt}{dot}{suffix}")
        try:
            os.link(part, candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free file name for {name!r} in {directory}")


def save_output(
    client: WorkflowsClient,
    url: str,
    directory: str | os.PathLike[str],
    index: int = 0,
    *,
    kinds: frozenset[OutputKind] | None = None,
    allow_unknown: bool = False,
    max_bytes: int = MAX_OUTPUT_BYTES,
    cancel: threading.Event | None = None,
) -> Path:
    """Stream one output to a new file in ``directory`` and return its path.

    The bytes decide: the first ones must be a container of an output kind (``sniff``), an
    image must be one Pillow identifies as an allowed format, and the file's extension is the
    detected type's, never the server's. Anything else raises OutputError before more than
    the first chunk is read, unless ``allow_unknown`` (then it is saved as ``.bin``).
    ``kinds`` limits what is accepted (``save_images`` passes IMAGE only)."""
    folder = Path(directory)
    with client.open_output(url, max_bytes=max_bytes, cancel=cancel) as chunks, \
            _part_file(folder) as (part, file):
        head, sniffed, extension = _write_checked(chunks, file, url, kinds, allow_unknown)
        file.flush()
        if sniffed is not None and sniffed.kind is OutputKind.IMAGE:
            extension = _checked_image_extension(part, allow_unknown)
        if sniffed is not None and sniffed.extension == ".stl" and not head.lstrip().startswith(
            b"solid"
        ) and binary_stl_size(head) != file.tell():
            raise OutputError("refused: not a binary STL (its size does not match its header)")
        return _link_new(part, folder, name_for_type(url, index, extension))


def _write_checked(
    chunks: Iterable[bytes],
    file: io.BufferedWriter,
    url: str,
    kinds: frozenset[OutputKind] | None,
    allow_unknown: bool,
) -> tuple[bytes, Sniffed | None, str]:
    """Write ``chunks`` to ``file`` once their head is accepted (``_accepted_extension``
    raises otherwise, before the rest is read); the head, what it was sniffed as and the
    extension to save it with."""
    head = b""
    sniffed: Sniffed | None = None
    extension: str | None = None
    for chunk in chunks:
        if extension is not None:
            file.write(chunk)
            continue
        head += chunk
        sniffed = sniff(head, url)
        # Magic bytes sit in the first few; a text format is judged on what came, at least
        # _TEXT_JUDGED_ON bytes. Refused types stop the download here.
        if sniffed is None and len(head) < _TEXT_JUDGED_ON:
            continue
        extension = _accepted_extension(sniffed, head, url, kinds, allow_unknown)
        file.write(head)
    if extension is None:  # the whole body was shorter than _TEXT_JUDGED_ON bytes
        sniffed = sniff(head, url)
        extension = _accepted_extension(sniffed, head, url, kinds, allow_unknown)
        file.write(head)
    return head, sniffed, extension


def _checked_image_extension(part: Path, allow_unknown: bool) -> str:
    found = image_extension(part)
    if found is None and not allow_unknown:
        raise OutputError("refused: not an image Pillow can open as "
                          f"{', '.join(ALLOWED_IMAGE_FORMATS)}")
    return found or ".bin"


def _extension_hint(url: str) -> str:
    extension = url_extension(url)
    return f"'.{extension}'" if extension else "with no extension"


def _accepted_extension(
    sniffed: Sniffed | None,
    head: bytes,
    url: str,
    kinds: frozenset[OutputKind] | None,
    allow_unknown: bool,
) -> str:
    if sniffed is not None and (kinds is None or sniffed.kind in kinds):
        return sniffed.extension
    if allow_unknown:
        return ".bin"
    start = head[:24].decode("ascii", "replace").strip()
    what = f"a {sniffed.kind.value} ({sniffed.media_type})" if sniffed else "an unknown type"
    wanted = ", ".join(sorted(kind.value for kind in kinds)) if kinds else "an output kind"
    raise OutputError(
        f"refused to save output {_extension_hint(url)}: "
        f"its bytes are {what}, not {wanted} (it starts {start!r}); pass allow_unknown=True "
        "to save it anyway as .bin"
    )


def save_outputs(
    client: WorkflowsClient,
    urls: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    fallbacks: Sequence[str] = (),
    allow_unknown: bool = False,
    kinds: frozenset[OutputKind] | None = None,
    on_saved: Callable[[Path], None] | None = None,
    on_error: Callable[[int, str, Exception], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Download every output, any kind, into ``directory`` (created if missing), streamed to
    disk in chunks, and return the paths written, in order. Each file is checked and named
    by ``save_output``; existing files are never overwritten. ``fallbacks[i]`` (the proxy
    link) is tried when ``urls[i]`` fails. A failed output is passed to ``on_error`` and
    skipped; without ``on_error`` the first failure raises (OutputError or OSError)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for index, candidates in enumerate(candidates_for(urls, fallbacks)):

        def save(url: str, index: int = index) -> Path:
            return save_output(client, url, folder, index, kinds=kinds,
                               allow_unknown=allow_unknown, cancel=cancel)

        try:
            _, path = first_that_works(candidates, save)
        except (ModelsLabError, OSError) as error:
            if on_error is None:
                raise
            on_error(index, candidates[0], error)
            continue
        saved.append(path)
        if on_saved is not None:
            on_saved(path)
    return saved


def save_images(
    client: WorkflowsClient,
    urls: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    fallbacks: Sequence[str] = (),
    on_saved: Callable[[Path], None] | None = None,
    on_error: Callable[[int, str, Exception], None] | None = None,
) -> list[Path]:
    """``save_outputs`` for images only: each must be an image Pillow identifies as an allowed
    format, and is named with that format's extension (see ``file_name_for``)."""
    return save_outputs(client, urls, directory, fallbacks=fallbacks,
                        kinds=frozenset({OutputKind.IMAGE}), on_saved=on_saved,
                        on_error=on_error)
