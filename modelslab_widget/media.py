"""Outputs: what kind each one is, and which of its URLs to try.

A URL's extension names the kind when it says (no request); otherwise a probe of a few KB is
sniffed: the first bytes must be the container of an output kind (``sniff``), never the
Content-Type alone. ``images`` decodes and thumbnails the images, ``saving`` writes any kind
to disk; both take their URLs from ``candidates_for`` and ``first_that_works`` here. Nothing
here knows about widgets or Pillow.
"""

from __future__ import annotations

import enum
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from .client import WorkflowsClient
from .downloads import OutputProbe
from .errors import ImageError, ModelsLabError
from .urls import is_web_url

T = TypeVar("T")


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


# -- sniffing: what the first bytes say ------------------------------------------------------


@dataclass(frozen=True)
class Sniffed:
    """A file type recognised from its first bytes: its kind, extension and media type."""

    kind: OutputKind
    extension: str  # with the dot: ".mp4"
    media_type: str


_SNIFF_BYTES = 4096  # what ``sniff`` reads at most (a probe fetches that much)
_OBJ_KEYWORDS = ("v", "vn", "vt", "vp", "f", "o", "g", "s", "l", "mtllib", "usemtl")


@dataclass(frozen=True)
class _Head:
    """The first bytes of a file and its URL's extension, as the sniffing rules read them."""

    data: bytes
    extension: str

    def at(self, offset: int, magic: bytes) -> bool:
        return self.data[offset:offset + len(magic)] == magic

    @functools.cached_property
    def text(self) -> str | None:
        """The head as text when it is plain ASCII/UTF-8 text (a cut multi-byte char
        allowed); None for binary data."""
        if b"\x00" in self.data:
            return None
        text = self.data.decode("utf-8", "ignore")
        printable = sum(char.isprintable() or char in "\r\n\t" for char in text)
        return text if text and printable >= 0.98 * len(text) else None


def _magic(*pairs: tuple[int, bytes]) -> Callable[[_Head], bool]:
    """A rule that holds when every ``(offset, bytes)`` is found at its offset."""
    return lambda head: all(head.at(offset, magic) for offset, magic in pairs)


def _mpeg_frame(head: _Head) -> bool:
    """An MPEG audio frame sync (11 set bits), as MP3 and ADTS AAC files start."""
    data = head.data
    return len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0


def _adts(head: _Head) -> bool:
    """A frame sync whose layer bits are 00: AAC in ADTS, not MP3."""
    return _mpeg_frame(head) and head.data[1] & 0x06 == 0


def _named_usdz(head: _Head) -> bool:
    """A zip behind a ``.usdz`` URL (a USDZ is a zip; any other zip is refused)."""
    return head.at(0, b"PK\x03\x04") and head.extension == "usdz"


def _usdz(head: _Head) -> bool:
    """A ``.usdz`` zip whose first member is a USD layer, as the format requires."""
    name_length = int.from_bytes(head.data[26:28], "little")
    first_name = head.data[30:30 + name_length].lower()
    return _named_usdz(head) and first_name.endswith((b".usd", b".usda", b".usdc"))


def _text_starting(word: str) -> Callable[[_Head], bool]:
    return lambda head: head.text is not None and head.text.lstrip().startswith(word)


def _gltf_json(head: _Head) -> bool:
    return _text_starting("{")(head) and '"asset"' in (head.text or "")


def _obj(head: _Head) -> bool:
    """Wavefront OBJ: text whose statements (the last, perhaps cut, line aside) all start
    with an OBJ keyword."""
    if head.text is None:
        return False
    lines = [line.strip() for line in head.text.splitlines()[:-1] or head.text.splitlines()]
    statements = [line for line in lines if line and not line.startswith("#")]
    return bool(statements) and all(
        line.split(None, 1)[0] in _OBJ_KEYWORDS for line in statements[:50]
    )


def _binary_stl(head: _Head) -> bool:
    """Binary STL has no magic: an 80-byte header and a triangle count, so only a ``.stl``
    URL makes one of it (saving then checks the size against the count)."""
    return head.extension == "stl" and len(head.data) >= 84


_IMAGE, _VIDEO, _AUDIO, _3D = (OutputKind.IMAGE, OutputKind.VIDEO, OutputKind.AUDIO,
                               OutputKind.MODEL3D)
_PLY = Sniffed(_3D, ".ply", "model/ply")
_STL = Sniffed(_3D, ".stl", "model/stl")
_M4A = Sniffed(_AUDIO, ".m4a", "audio/mp4")
# The first rule that holds decides; a rule with None refuses (a zip that is no USDZ, text
# that is no 3D format). Order matters where one container is a prefix of another.
_RULES: tuple[tuple[Callable[[_Head], bool], Sniffed | None], ...] = (
    (_magic((0, b"\x89PNG\r\n\x1a\n")), Sniffed(_IMAGE, ".png", "image/png")),
    (_magic((0, b"\xff\xd8\xff")), Sniffed(_IMAGE, ".jpg", "image/jpeg")),
    (_magic((0, b"GIF87a")), Sniffed(_IMAGE, ".gif", "image/gif")),
    (_magic((0, b"GIF89a")), Sniffed(_IMAGE, ".gif", "image/gif")),
    (_magic((0, b"BM")), Sniffed(_IMAGE, ".bmp", "image/bmp")),  # weak: Pillow confirms it
    (_magic((0, b"fLaC")), Sniffed(_AUDIO, ".flac", "audio/flac")),
    (_magic((0, b"OggS")), Sniffed(_AUDIO, ".ogg", "audio/ogg")),
    (_magic((0, b"ID3")), Sniffed(_AUDIO, ".mp3", "audio/mpeg")),
    (_magic((0, b"glTF")), Sniffed(_3D, ".glb", "model/gltf-binary")),
    (_magic((0, b"Kaydara FBX Binary")), Sniffed(_3D, ".fbx", "model/fbx")),
    (_magic((0, b"RIFF"), (8, b"WEBP")), Sniffed(_IMAGE, ".webp", "image/webp")),
    (_magic((0, b"RIFF"), (8, b"WAVE")), Sniffed(_AUDIO, ".wav", "audio/wav")),
    (_magic((4, b"ftyp"), (8, b"qt  ")), Sniffed(_VIDEO, ".mov", "video/quicktime")),
    (_magic((4, b"ftyp"), (8, b"M4A ")), _M4A),
    (_magic((4, b"ftyp"), (8, b"M4B ")), _M4A),
    (_magic((4, b"ftyp")), Sniffed(_VIDEO, ".mp4", "video/mp4")),
    # EBML: a WebM says so in its DocType, near the start; any other is Matroska.
    (lambda head: head.at(0, b"\x1a\x45\xdf\xa3") and b"webm" in head.data[:64],
     Sniffed(_VIDEO, ".webm", "video/webm")),
    (_magic((0, b"\x1a\x45\xdf\xa3")), Sniffed(_VIDEO, ".mkv", "video/x-matroska")),
    (_adts, Sniffed(_AUDIO, ".aac", "audio/aac")),
    (_mpeg_frame, Sniffed(_AUDIO, ".mp3", "audio/mpeg")),
    (_magic((0, b"ply\n")), _PLY),
    (_magic((0, b"ply\r\n")), _PLY),
    (_usdz, Sniffed(_3D, ".usdz", "model/vnd.usdz+zip")),
    (_named_usdz, None),
    (_text_starting("solid"), _STL),
    (_gltf_json, Sniffed(_3D, ".gltf", "model/gltf+json")),
    (_obj, Sniffed(_3D, ".obj", "model/obj")),
    (lambda head: head.text is not None, None),
    (_binary_stl, _STL),
)


def sniff(head: bytes, url: str = "") -> Sniffed | None:
    """What the first bytes of a file say it is, among the output kinds; None for anything
    else (HTML, scripts, archives, ...). ``url``'s extension only breaks ties between types
    that have no magic bytes of their own (OBJ and binary STL, a zip that is a USDZ)."""
    probe = _Head(head[:_SNIFF_BYTES], url_extension(url))
    return next((found for holds, found in _RULES if holds(probe)), None)


def binary_stl_size(head: bytes) -> int | None:
    """The size in bytes a binary STL with this head has (its triangle count says)."""
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
    if not is_web_url(url):
        return OutputInfo(index, url, OutputKind.FILE, error="not an http(s) URL")
    known = _KIND_BY_EXTENSION.get(url_extension(url))
    if known is not None:
        return OutputInfo(index, url, known[0], known[1])
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


# -- which URL of an output to use -----------------------------------------------------------


def candidates_for(outputs: Sequence[str], fallbacks: Sequence[str]) -> list[list[str]]:
    """Per output, the URLs to try in order: the output, then its proxy link (if different)."""
    return [
        [url, *([fallbacks[i]] if i < len(fallbacks) and fallbacks[i] != url else [])]
        for i, url in enumerate(outputs)
    ]


def first_that_works(candidates: Sequence[str], work: Callable[[str], T]) -> tuple[str, T]:
    """``(url, work(url))`` for the first web candidate (``urls.is_web_url``) whose work
    raises no ModelsLabError; the last such error (or why there was nothing to try)
    otherwise."""
    error: ModelsLabError = ImageError("no http(s) URL for this output")
    for url in candidates:
        if not is_web_url(url):
            continue
        try:
            return url, work(url)
        except ModelsLabError as exc:
            error = exc
    raise error
