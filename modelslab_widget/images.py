"""Output images decoded safely: thumbnails for the gallery, full-size images on request.

Pillow decides what image bytes are (never the Content-Type), and only from an allowed list of
formats (an EPS must never reach Ghostscript); huge or bomb-like images are refused before
their pixels are decoded, and decoding shares a memory budget so that a few big 16-bit images
at once cannot take gigabytes. EXIF orientation is applied, and each thumbnail is encoded
compactly: JPEG when opaque, PNG when it has transparency. Pillow is imported lazily so that
``import modelslab_widget`` stays light. Nothing here knows about widgets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .client import WorkflowsClient
from .downloads import MAX_IMAGE_BYTES
from .errors import ImageError, ModelsLabError
from .media import first_that_works

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_PIXELS = 64_000_000  # 8000x8000: far above any real output, far below a bomb
JPEG_QUALITY = 85
# The only formats Pillow may decode from a server: what image models produce. Anything else
# (EPS and PostScript above all, which Pillow hands to Ghostscript) is "not an image".
ALLOWED_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Bytes of decoded pixels all threads may hold at once; one image bigger than this still
# decodes, alone. Four 16-bit 8000x8000 PNGs would otherwise take a few GB together.
DECODE_BUDGET = 768 * 1024**2


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


def _open_checked(data: bytes) -> PILImage.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(
            "not an image (Pillow could not identify it as "
            f"{', '.join(ALLOWED_IMAGE_FORMATS)})"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused a decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"could not read the image header ({exc})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image too large to decode safely ({width}x{height} pixels)")
    return image


class _DecodeBudget:
    """Bytes of decoded pixels in use across threads; a decode waits for room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        with self._cond:
            # Alone, any image may go (it passed MAX_PIXELS); otherwise wait for room.
            self._cond.wait_for(lambda: self.in_use == 0 or self.in_use + amount <= self.capacity)
            self.in_use += amount
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= amount
                self._cond.notify_all()


_budget = _DecodeBudget(DECODE_BUDGET)


def _decoded_bytes(image: PILImage.Image) -> int:
    """What decoding ``image`` will hold: its pixels, twice over for the working copy."""
    width, height = image.size
    per_pixel = 4 if image.mode in ("I", "F", "RGBA", "RGBX", "CMYK", "RGB") else len(
        image.getbands()
    )
    if image.mode.startswith("I;16"):
        per_pixel = 2
    return 2 * width * height * per_pixel


def _to_displayable(image: PILImage.Image) -> PILImage.Image:
    """A mode browsers show well: RGB, or RGBA when there is transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    if _is_deep(image):
        # Scale 16-bit and float data into 8 bits rather than clipping it to white.
        scaled = image.convert("I").point(lambda value: value * (1 / 256))
        return scaled.convert("L").convert("RGB")
    has_alpha = "A" in image.mode or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _is_deep(image: PILImage.Image) -> bool:
    return image.mode.startswith("I;16") or image.mode in ("I", "F")


def make_thumbnail(data: bytes, size: int | tuple[int, int]) -> Thumbnail:
    """Decode ``data`` into a Thumbnail (index and url left for the caller to fill in)."""
    from PIL import Image, ImageOps

    box = (size, size) if isinstance(size, int) else (size[0], size[1])
    image = _open_checked(data)
    original = image.size
    try:
        # JPEG can decode straight at a fraction of full size: far less work for big images.
        image.draft("RGB", (box[0] * 2, box[1] * 2))
        with _budget.reserve(_decoded_bytes(image)):
            image.load()
            if _is_deep(image):
                # Shrink 16-bit and float pixels before converting them: converting first
                # would make full-size 32-bit copies (256 MB each for 8000x8000). NEAREST is
                # the one resampler Pillow has for these modes; LANCZOS follows at 4x.
                image = image.resize(_within(image.size, (box[0] * 4, box[1] * 4)),
                                     Image.Resampling.NEAREST)
            ImageOps.exif_transpose(image, in_place=True)  # no full-size copy when upright
            image = _to_displayable(image)
            image.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"could not decode the image ({exc})") from None
    encoded, fmt = _encode(image)
    return Thumbnail(0, "", image, encoded, fmt, original)


def _within(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled down (never up) to fit ``box``, keeping its aspect ratio."""
    width, height = size
    scale = min(1.0, box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


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


def open_full_size(data: bytes) -> PILImage.Image:
    """Decode a full-size image (allowed formats only, bomb-checked, at most MAX_PIXELS,
    within the shared decode budget, EXIF orientation applied, pixels loaded)."""
    from PIL import ImageOps

    try:
        image = _open_checked(data)
        with _budget.reserve(_decoded_bytes(image)):
            ImageOps.exif_transpose(image, in_place=True)
            image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"could not decode the image ({exc})") from None
    return image


def image_extension(path: Path) -> str | None:
    """The extension of the allowed image format Pillow finds in the file at ``path``
    (from its header only: no pixels are decoded); None when it holds none of them."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=ALLOWED_IMAGE_FORMATS) as image:
            fmt = image.format or ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return None
    return {"JPEG": ".jpg", "MPO": ".jpg"}.get(fmt, f".{fmt.lower()}")
