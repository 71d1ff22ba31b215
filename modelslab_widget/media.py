"""Output images: download, decode safely, and make small thumbnails for the browser.

Pillow decides what the bytes are (never the Content-Type), huge or bomb-like images are
refused before their pixels are decoded, EXIF orientation is applied, and each thumbnail is
encoded compactly: JPEG when opaque, PNG when it has transparency. Pillow is imported here
lazily so that ``import modelslab_widget`` stays light. Nothing here knows about widgets.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from .client import MAX_IMAGE_BYTES, WorkflowsClient
from .errors import ImageError, ModelsLabError

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_PIXELS = 64_000_000  # 8000x8000: far above any real output, far below a bomb
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Thumbnail:
    """One output image made small, or the reason it could not be."""

    index: int
    url: str
    image: PILImage.Image | None = None
    data: bytes = b""  # the encoded thumbnail sent to the front end
    format: str = "jpeg"  # "jpeg" or "png"
    original_size: tuple[int, int] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.image is not None


T = TypeVar("T")

def is_web_url(url: object) -> bool:
    """Only http(s) URLs are fetched or linked; ``file:``, ``javascript:``, ``data:`` never."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. "http://[::1/x.png": not a URL at all
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _open_checked(data: bytes) -> PILImage.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image (Pillow could not identify the data)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused a decompression bomb ({exc})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image too large to decode safely ({width}x{height} pixels)")
    return image


def _to_displayable(image: PILImage.Image) -> PILImage.Image:
    """A mode browsers show well: RGB, or RGBA when there is transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # Scale 16-bit and float data into 8 bits rather than clipping it to white.
        scaled = image.convert("I").point(lambda value: value * (1 / 256))
        return scaled.convert("L").convert("RGB")
    has_alpha = "A" in image.mode or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def make_thumbnail(data: bytes, size: int | tuple[int, int]) -> Thumbnail:
    """Decode ``data`` into a Thumbnail (index and url left for the caller to fill in)."""
    from PIL import Image, ImageOps

    box = (size, size) if isinstance(size, int) else (size[0], size[1])
    image = _open_checked(data)
    original = image.size
    try:
        # JPEG can decode straight at a fraction of full size: far less work for big images.
        image.draft("RGB", (box[0] * 2, box[1] * 2))
        ImageOps.exif_transpose(image, in_place=True)  # no full-size copy when upright
        image = _to_displayable(image)
        image.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"could not decode the image ({exc})") from None
    encoded, fmt = _encode(image)
    return Thumbnail(0, "", image, encoded, fmt, original)


def encode_small(image: PILImage.Image, size: int) -> tuple[bytes, str]:
    """A copy of a (thumbnail) image made at most ``size`` px, encoded like thumbnails."""
    small = _to_displayable(image.copy())
    small.thumbnail((size, size))
    return _encode(small)


def _encode(image: PILImage.Image) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if image.mode == "RGBA":
        image.save(buffer, "PNG", optimize=True)
        return buffer.getvalue(), "png"
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return buffer.getvalue(), "jpeg"


def load_thumbnail(
    client: WorkflowsClient,
    index: int,
    urls: Sequence[str],
    size: int | tuple[int, int],
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    cancel: threading.Event | None = None,
) -> Thumbnail:
    """Fetch the first of ``urls`` that works (an output URL, then its proxy link) and make
    its thumbnail; never raises for a bad image, the reason is in ``Thumbnail.error``."""

    def thumbnail_of(url: str) -> Thumbnail:
        return make_thumbnail(client.fetch_image(url, max_bytes, cancel=cancel), size)

    try:
        url, thumb = first_that_works(urls, thumbnail_of)
    except ModelsLabError as exc:
        return Thumbnail(index, urls[0] if urls else "", error=str(exc))
    return dataclasses.replace(thumb, index=index, url=url)


def candidates_for(outputs: Sequence[str], fallbacks: Sequence[str]) -> list[list[str]]:
    """Per output, the URLs to try in order: the output, then its proxy link (if different)."""
    return [
        [url, *([fallbacks[i]] if i < len(fallbacks) and fallbacks[i] != url else [])]
        for i, url in enumerate(outputs)
    ]


def first_that_works(candidates: Sequence[str], work: Callable[[str], T]) -> tuple[str, T]:
    """``(url, work(url))`` for the first http(s) candidate whose work raises no
    ModelsLabError; the last such error (or why there was nothing to try) otherwise."""
    error: ModelsLabError = ImageError("no http(s) URL for this output")
    for url in candidates:
        if not is_web_url(url):
            continue
        try:
            return url, work(url)
        except ModelsLabError as exc:
            error = exc
    raise error


def load_thumbnails(
    client: WorkflowsClient,
    outputs: Sequence[str],
    fallbacks: Sequence[str],
    size: int | tuple[int, int],
    *,
    submit: Callable[..., Future[Any]],
    on_ready: Callable[[Thumbnail], None],
    cancel: threading.Event | None = None,
) -> list[Future[Any]]:
    """Start one job per output (through ``submit``, a bounded pool) and call ``on_ready`` with
    each thumbnail as soon as it is made, so the gallery fills progressively."""

    def job(index: int, candidates: list[str]) -> None:
        if cancel is not None and cancel.is_set():
            return
        try:
            thumb = load_thumbnail(client, index, candidates, size, cancel=cancel)
        except Exception as exc:  # whatever went wrong, the gallery must hear of this image
            thumb = Thumbnail(index, candidates[0], error=f"could not load ({exc})")
        if cancel is None or not cancel.is_set():
            on_ready(thumb)

    return [
        submit(job, index, candidates)
        for index, candidates in enumerate(candidates_for(outputs, fallbacks))
    ]


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100
_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"),
          (b"RIFF", ".webp"))


def file_name_for(url: str, index: int) -> str:
    """A safe file name from a URL's last path segment: letters, digits, ``._-`` only, no
    leading dot, never a path (``..%2F`` and backslashes included); ``output-N`` when empty."""
    segment = re.split(r"[/\\]", unquote(urlsplit(url).path))[-1]
    name = _SAFE_NAME.sub("_", segment).lstrip("._-")
    if len(name) > _MAX_NAME:
        _, dot, suffix = name.rpartition(".")
        keep = f".{suffix}" if dot and 0 < len(suffix) <= 8 else ""
        name = name[: _MAX_NAME - len(keep)] + keep
    return name or f"output-{index + 1}"


def _with_suffix_for(name: str, data: bytes) -> str:
    if "." in name:
        return name
    return name + next((ext for magic, ext in _MAGIC if data.startswith(magic)), "")


def _write_new(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``name`` in ``directory``, or ``stem-1.ext``, ``stem-2.ext``, … if it
    exists: created exclusively, so an existing file (or symlink) is never overwritten."""
    stem, dot, suffix = name.rpartition(".")
    if not stem:
        stem, dot, suffix = name, "", ""
    for attempt in range(10_000):
        candidate = name if attempt == 0 else f"{stem}-{attempt}{dot}{suffix}"
        path = directory / candidate
        try:
            with path.open("xb") as file:
                try:
                    file.write(data)
                except BaseException:
                    file.close()
                    path.unlink(missing_ok=True)
                    raise
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free file name for {name!r} in {directory}")


def save_images(
    client: WorkflowsClient,
    urls: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    fallbacks: Sequence[str] = (),
    on_saved: Callable[[Path], None] | None = None,
    on_error: Callable[[int, str, Exception], None] | None = None,
) -> list[Path]:
    """Download each output at full size into ``directory`` (created if missing) and return
    the paths written. File names come from the URLs (see ``file_name_for``); existing files
    are never overwritten. ``fallbacks[i]`` (the proxy link) is tried when ``urls[i]`` fails.
    A failed output is passed to ``on_error`` and skipped; without ``on_error`` it raises."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for index, candidates in enumerate(candidates_for(urls, fallbacks)):
        try:
            url, data = first_that_works(candidates, client.fetch_image)
            path = _write_new(folder, _with_suffix_for(file_name_for(url, index), data), data)
        except (ModelsLabError, OSError) as error:
            if on_error is None:
                raise
            on_error(index, candidates[0], error)
            continue
        saved.append(path)
        if on_saved is not None:
            on_saved(path)
    return saved


def open_full_size(data: bytes) -> PILImage.Image:
    """Decode a full-size image (bomb-checked, EXIF orientation applied, pixels loaded)."""
    from PIL import ImageOps

    try:
        image = _open_checked(data)
        ImageOps.exif_transpose(image, in_place=True)
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"could not decode the image ({exc})") from None
    return image
