"""Outputs: what kind each is, thumbnails of images, and saving any kind to disk safely.

Pillow decides what image bytes are (never the Content-Type), and only from an allowed list of
formats (an EPS must never reach Ghostscript); huge or bomb-like images are refused before
their pixels are decoded, and decoding shares a memory budget so that a few big 16-bit images
at once cannot take gigabytes. EXIF orientation is applied, and each thumbnail is encoded
compactly: JPEG when opaque, PNG when it has transparency. Other outputs (video, audio, 3D)
are recognised by their URL's extension when it says, else by a probe of a few KB, and saved
only when their first bytes are the container their kind says. Pillow is imported lazily so
that ``import modelslab_widget`` stays light. Nothing here knows about widgets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote, urlsplit

from .client import MAX_IMAGE_BYTES, MAX_OUTPUT_BYTES, OutputProbe, WorkflowsClient
from .errors import ImageError, ModelsLabError, OutputError
from .urls import is_web_url

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


T = TypeVar("T")

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


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100
# Names Windows reserves in every folder, whatever the extension ("CON.png" is the console);
# neutralised on every OS, since a saved folder may be copied to Windows later.
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)


class OutputKind(str, enum.Enum):
    """What an output is, as far as showing and saving it goes."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    MODEL3D = "model3d"
    FILE = "file"  # anything else: linked, saved only when asked (allow_unknown)


# .gif is an image here although ModelsLab lists it among video outputs: an animated GIF is
# shown (animated) by an <img>, Pillow thumbnails its first frame, and saving it checks it as
# an image, so nothing is lost and no video player is needed.
_KIND_BY_EXTENSION: dict[str, tuple[OutputKind, str]] = {
    **{ext: (OutputKind.IMAGE, f"image/{sub}") for ext, sub in (
        ("png", "png"), ("jpg", "jpeg"), ("jpeg", "jpeg"), ("webp", "webp"), ("gif", "gif"),
        ("bmp", "bmp"))},
    **{ext: (OutputKind.VIDEO, f"video/{sub}") for ext, sub in (
        ("mp4", "mp4"), ("m4v", "mp4"), ("webm", "webm"), ("mov", "quicktime"),
        ("mkv", "x-matroska"))},
    **{ext: (OutputKind.AUDIO, f"audio/{sub}") for ext, sub in (
        ("wav", "wav"), ("mp3", "mpeg"), ("flac", "flac"), ("ogg", "ogg"), ("oga", "ogg"),
        ("m4a", "mp4"), ("aac", "aac"))},
    **{ext: (OutputKind.MODEL3D, f"model/{sub}") for ext, sub in (
        ("glb", "gltf-binary"), ("gltf", "gltf+json"), ("obj", "obj"), ("stl", "stl"),
        ("ply", "ply"), ("fbx", "fbx"), ("usdz", "vnd.usdz+zip"))},
}
_KIND_BY_MEDIA_TOP = {"image": OutputKind.IMAGE, "video": OutputKind.VIDEO,
                      "audio": OutputKind.AUDIO, "model": OutputKind.MODEL3D}


def url_extension(url: str) -> str:
    """The lower-case extension of a URL's last path segment ("" when it has none)."""
    try:
        segment = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    except ValueError:
        return ""
    stem, dot, ext = segment.rpartition(".")
    return ext.lower() if dot and stem and len(ext) <= 8 else ""


def kind_from_url(url: str) -> OutputKind | None:
    """The output's kind from its URL's extension; None when the extension says nothing."""
    known = _KIND_BY_EXTENSION.get(url_extension(url))
    return known[0] if known else None


def kind_from_media_type(media_type: str | None) -> OutputKind | None:
    """The kind a Content-Type names (``image/png`` -> IMAGE), None when it names none."""
    if not media_type:
        return None
    top, _, sub = media_type.partition("/")
    if media_type == "application/ogg":
        return OutputKind.AUDIO
    if sub in ("vnd.usdz+zip", "gltf-binary", "gltf+json", "stl", "sla"):
        return OutputKind.MODEL3D
    return _KIND_BY_MEDIA_TOP.get(top)


@dataclass(frozen=True)
class Sniffed:
    """A file type recognised from its first bytes: its kind, extension and media type."""

    kind: OutputKind
    extension: str  # with the dot: ".mp4"
    media_type: str


_SIMPLE_MAGIC: tuple[tuple[bytes, Sniffed], ...] = (
    (b"\x89PNG\r\n\x1a\n", Sniffed(OutputKind.IMAGE, ".png", "image/png")),
    (b"\xff\xd8\xff", Sniffed(OutputKind.IMAGE, ".jpg", "image/jpeg")),
    (b"GIF87a", Sniffed(OutputKind.IMAGE, ".gif", "image/gif")),
    (b"GIF89a", Sniffed(OutputKind.IMAGE, ".gif", "image/gif")),
    (b"BM", Sniffed(OutputKind.IMAGE, ".bmp", "image/bmp")),  # weak: Pillow confirms it
    (b"fLaC", Sniffed(OutputKind.AUDIO, ".flac", "audio/flac")),
    (b"OggS", Sniffed(OutputKind.AUDIO, ".ogg", "audio/ogg")),
    (b"ID3", Sniffed(OutputKind.AUDIO, ".mp3", "audio/mpeg")),
    (b"glTF", Sniffed(OutputKind.MODEL3D, ".glb", "model/gltf-binary")),
    (b"Kaydara FBX Binary", Sniffed(OutputKind.MODEL3D, ".fbx", "model/fbx")),
)
_SNIFF_BYTES = 4096
_OBJ_KEYWORDS = ("v", "vn", "vt", "vp", "f", "o", "g", "s", "l", "mtllib", "usemtl")


def sniff(head: bytes, url: str = "") -> Sniffed | None:
    """What the first bytes of a file say it is, among the output kinds; None for anything
    else (HTML, scripts, archives, ...). ``url``'s extension only breaks ties between types
    that have no magic bytes of their own (OBJ and binary STL, a zip that is a USDZ)."""
    for magic, found in _SIMPLE_MAGIC:
        if head.startswith(magic):
            return found
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed(OutputKind.IMAGE, ".webp", "image/webp")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed(OutputKind.AUDIO, ".wav", "audio/wav")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return Sniffed(OutputKind.VIDEO, ".mov", "video/quicktime")
        if brand in (b"M4A ", b"M4B "):
            return Sniffed(OutputKind.AUDIO, ".m4a", "audio/mp4")
        return Sniffed(OutputKind.VIDEO, ".mp4", "video/mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM says so in its DocType
        if b"webm" in head[:64]:
            return Sniffed(OutputKind.VIDEO, ".webm", "video/webm")
        return Sniffed(OutputKind.VIDEO, ".mkv", "video/x-matroska")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync; layer bits 00 mean ADTS AAC instead of MP3.
        if head[1] & 0x06 == 0:
            return Sniffed(OutputKind.AUDIO, ".aac", "audio/aac")
        return Sniffed(OutputKind.AUDIO, ".mp3", "audio/mpeg")
    if head.startswith((b"ply\n", b"ply\r\n")):
        return Sniffed(OutputKind.MODEL3D, ".ply", "model/ply")
    extension = url_extension(url)
    if head.startswith(b"PK\x03\x04") and extension == "usdz":
        name_length = int.from_bytes(head[26:28], "little")
        first_name = head[30:30 + name_length].lower()
        if first_name.endswith((b".usd", b".usda", b".usdc")):
            return Sniffed(OutputKind.MODEL3D, ".usdz", "model/vnd.usdz+zip")
        return None
    text = _text_head(head)
    if text is not None:
        if text.lstrip().startswith("solid"):
            return Sniffed(OutputKind.MODEL3D, ".stl", "model/stl")
        if text.lstrip().startswith("{") and '"asset"' in text:
            return Sniffed(OutputKind.MODEL3D, ".gltf", "model/gltf+json")
        if _looks_like_obj(text):
            return Sniffed(OutputKind.MODEL3D, ".obj", "model/obj")
        return None
    if extension == "stl" and len(head) >= 84:
        # Binary STL has no magic: an 80-byte header and a triangle count. Saving checks
        # that the file's size matches the count (see _size_is_right).
        return Sniffed(OutputKind.MODEL3D, ".stl", "model/stl")
    return None


def _text_head(head: bytes) -> str | None:
    """The head as text when it is plain ASCII/UTF-8 text (a cut multi-byte char allowed)."""
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", "ignore")
    printable = sum(char.isprintable() or char in "\r\n\t" for char in text)
    return text if text and printable >= 0.98 * len(text) else None


def _looks_like_obj(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines()[:-1] or text.splitlines()]
    statements = [line for line in lines if line and not line.startswith("#")]
    return bool(statements) and all(
        line.split(None, 1)[0] in _OBJ_KEYWORDS for line in statements[:50]
    )


def _binary_stl_size(head: bytes) -> int | None:
    return 84 + 50 * int.from_bytes(head[80:84], "little") if len(head) >= 84 else None


# -- describing outputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class OutputInfo:
    """One output as the gallery needs it; ``content_type`` and ``size`` are None when not
    known (a kind known from the extension costs no request, so no size either)."""

    index: int
    url: str
    kind: OutputKind
    content_type: str | None = None
    size: int | None = None
    error: str | None = None


def describe_output(
    client: WorkflowsClient,
    url: str,
    index: int = 0,
    *,
    probe: bool = True,
    cancel: threading.Event | None = None,
) -> OutputInfo:
    """The output's kind: from its URL's extension (no request), else from a probe (a HEAD,
    then at most 4 KB of it) when ``probe``; a non-web URL is FILE and never fetched. Never
    raises a ModelsLabError: a failed probe leaves the kind FILE and says why in ``error``."""
    known = _KIND_BY_EXTENSION.get(url_extension(url)) if is_web_url(url) else None
    if known is not None:
        return OutputInfo(index, url, known[0], known[1])
    if not is_web_url(url):
        return OutputInfo(index, url, OutputKind.FILE, error="not an http(s) URL")
    if not probe:
        return OutputInfo(index, url, OutputKind.FILE)
    try:
        found = client.probe(url, cancel=cancel)
    except ModelsLabError as exc:
        return OutputInfo(index, url, OutputKind.FILE, error=str(exc))
    return _info_from_probe(index, found)


def _info_from_probe(index: int, found: OutputProbe) -> OutputInfo:
    sniffed = sniff(found.head, found.url) if found.head else None
    kind = sniffed.kind if sniffed else kind_from_media_type(found.content_type)
    media_type = sniffed.media_type if sniffed else found.content_type
    return OutputInfo(index, found.url, kind or OutputKind.FILE, media_type, found.content_length)


def describe_outputs(
    client: WorkflowsClient,
    urls: Sequence[str],
    *,
    probe: bool = True,
    cancel: threading.Event | None = None,
) -> list[OutputInfo]:
    """``describe_output`` for each URL, in order; only URLs whose extension says nothing
    cost requests (one HEAD, and a 4 KB ranged GET when the HEAD does not tell)."""
    return [
        describe_output(client, url, index, probe=probe, cancel=cancel)
        for index, url in enumerate(urls)
    ]


# -- saving --------------------------------------------------------------------------------


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


def _image_extension(path: Path) -> str | None:
    """The extension of the allowed image format Pillow finds in ``path`` (header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=ALLOWED_IMAGE_FORMATS) as image:
            fmt = image.format or ""
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return None
    return {"JPEG": ".jpg", "MPO": ".jpg"}.get(fmt, f".{fmt.lower()}")


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
        head = b""
        sniffed: Sniffed | None = None
        extension: str | None = None
        for chunk in chunks:
            if extension is None:
                head += chunk
                sniffed = sniff(head[:_SNIFF_BYTES], url)
                # Magic bytes sit in the first few; a text format (OBJ, ASCII STL) is judged
                # on what came, at least 512 bytes. Refused types stop the download here.
                if sniffed is None and len(head) < 512:
                    continue
                extension = _accepted_extension(sniffed, head, url, kinds, allow_unknown)
                file.write(head)
            else:
                file.write(chunk)
        if extension is None:  # the whole body was shorter than 512 bytes
            sniffed = sniff(head, url)
            extension = _accepted_extension(sniffed, head, url, kinds, allow_unknown)
            file.write(head)
        file.flush()
        written = file.tell()
        if sniffed is not None and sniffed.kind is OutputKind.IMAGE:
            found = _image_extension(part)
            if found is None and not allow_unknown:
                raise OutputError("refused: not an image Pillow can open as "
                                  f"{', '.join(ALLOWED_IMAGE_FORMATS)}")
            extension = found or ".bin"
        if sniffed is not None and sniffed.extension == ".stl" and not head.lstrip().startswith(
            b"solid"
        ) and _binary_stl_size(head) != written:
            raise OutputError("refused: not a binary STL (its size does not match its header)")
        return _link_new(part, folder, name_for_type(url, index, extension))


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
