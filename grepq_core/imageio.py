"""Read image bytes from anywhere and decode them to one RGB array.

Both GRepQ pathways (docs/method.md, "Two pathways") take 8-bit RGB photos; this
module turns whatever a collection holds into exactly that, or raises
`ImageError` with a short reason a dead-letter row can count.

Deviation from the reference code, which opens files with
``Image.open(path).convert("RGB")``: EXIF orientation is applied, transparent
pixels are composited over white instead of dropping the alpha channel (which
exposes whatever colour hides under alpha 0), and 16-bit images are scaled
instead of clipped. Every conversion is listed in `SUPPORTED_CONVERSIONS`.

Local paths are read with plain ``open()``, never parsed as URLs: a file
named ``a::b.jpg`` or ``x#y.jpg`` is that file. Every ``detail`` is
deterministic (no memory addresses), so identical runs give identical
dead-letter rows.

Failure reasons (`read_bytes` raises the first four with ``stage="read"``,
the decoder the others with ``stage="decode"``; `grepq_core.views` adds
``extreme_aspect_ratio`` at ``stage="prepare"``):

| reason | cause |
| --- | --- |
| ``unreadable`` | missing file, no permission, a directory, a broken symlink or a symlink loop, any ``OSError`` from the filesystem |
| ``not_a_regular_file`` | a FIFO, socket or device (also through a symlink): refused before opening, as reading one can block forever or never end |
| ``too_large`` | more than ``max_bytes`` (`DEFAULT_MAX_BYTES`, 256 MiB), refused before reading where the size is known |
| ``empty_file`` | zero bytes (found by `read_bytes` only; `decode_image` calls no bytes ``not_an_image``) |
| ``not_an_image`` | Pillow recognises no image format |
| ``unsupported_format`` | an image format recognisable by its signature that this Pillow cannot decode: 12- or 16-bit JPEG, HEIF, JPEG XL, AVIF without libavif, or any format whose Pillow decoder is missing (JPEG 2000 without OpenJPEG) |
| ``decompression_bomb`` | declared size above ``max_pixels`` (default ``PIL.Image.MAX_IMAGE_PIXELS``; checked before pixels are allocated) |
| ``truncated`` | the file ends before the pixel data does |
| ``corrupt`` | any other decoding failure |
"""

import contextlib
import io
import os
import re
import stat
import warnings

import fsspec
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from grepq_core.errors import ImageError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_CONVERSIONS",
    "decode_image",
    "is_local_path",
    "is_plain_jpeg",
    "load_image",
    "read_bytes",
]

# Far above any photo (a 100 MP camera JPEG is about 50 MiB), far below a worker's memory.
DEFAULT_MAX_BYTES = 256 * 2**20

SUPPORTED_CONVERSIONS = {
    "RGB": "unchanged",
    "L, 1": "grey copied to R, G and B",
    "P": "palette looked up",
    "RGBA, LA, PA, RGBa": "composited over white",
    "any mode with a transparency key (P, L, RGB)": "composited over white",
    "CMYK": "Pillow's CMYK to RGB (Adobe-inverted JPEGs are un-inverted by Pillow)",
    "YCbCr, LAB, HSV": "Pillow's conversion to RGB",
    "I;16, I;16L, I;16B, I;16N, I": "0..65535 scaled to 0..255 (not clipped); values outside 0..65535 stretched from their own min..max; grey to R, G and B",
    "F": "0..1 scaled to 0..255; values outside 0..1 stretched from their own min..max; grey to R, G and B",
    "animated (GIF, APNG, WebP, multi-page TIFF)": "first frame only",
    "EXIF orientation 2-8": "rotated / mirrored upright before anything else",
}

# Modes too deep for Pillow's 8-bit convert (which clips): their nominal range.
_HIGH_DEPTH_RANGE = {
    "I;16": 65535.0,
    "I;16L": 65535.0,
    "I;16B": 65535.0,
    "I;16N": 65535.0,
    "I": 65535.0,
    "F": 1.0,
}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa"}


def read_bytes(uri: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """All bytes of a local path or an fsspec URL (gs://, s3://, https://, memory://...).

    Local paths (str, or bytes for file names that are not UTF-8; see
    `is_local_path`) are opened with plain ``open()`` and only if they are
    regular files, so a FIFO cannot hang the job nor /dev/zero fill memory.
    Files over `max_bytes` are refused before reading where the size is
    known, and no more than ``max_bytes + 1`` bytes are ever read.

    Only ``OSError`` (what filesystems raise for missing, forbidden or
    unreadable files) becomes ``unreadable``; anything else, such as a missing
    fsspec filesystem package, is a setup problem and propagates.
    """
    if is_local_path(uri):
        data = _read_local(_strip_file_scheme(uri), max_bytes)
    else:
        data = _read_remote(os.fsdecode(uri), max_bytes)
    if not data:
        raise ImageError("empty_file", f"{_display(uri)}: 0 bytes", stage="read")
    return data


def is_local_path(uri: str | bytes) -> bool:
    """Whether `uri` names a local file: no ``scheme://`` at all, or ``file://`` (as the read stage decides)."""
    text = os.fsdecode(uri)
    return "://" not in text or text.startswith("file://")


def _strip_file_scheme(uri: str | bytes) -> str | bytes:
    """The path of a ``file://`` URI, taken literally (no percent-decoding, as fsspec and Beam do)."""
    prefix = b"file://" if isinstance(uri, bytes) else "file://"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


def _read_local(path: str | bytes, max_bytes: int) -> bytes:
    """A regular local file's bytes, its kind and size checked before anything is read."""
    try:
        _check_local(path, os.stat(path), max_bytes)
        # O_NONBLOCK: if the path became a FIFO since the stat, open returns
        # at once instead of waiting for a writer, and the fstat refuses it.
        with open(path, "rb", opener=_open_nonblocking) as f:
            size = _check_local(path, os.fstat(f.fileno()), max_bytes)
            return _read_capped(f, path, max_bytes, size)
    except OSError as exc:
        raise ImageError("unreadable", f"{_display(path)}: {_clean(exc.strerror or str(exc))}", stage="read") from exc


def _open_nonblocking(path, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def _check_local(path: str | bytes, info: os.stat_result, max_bytes: int) -> int:
    """Refuse anything but a regular file within `max_bytes`; return its size."""
    if stat.S_ISDIR(info.st_mode):
        raise ImageError("unreadable", f"{_display(path)}: is a directory", stage="read")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError("not_a_regular_file", f"{_display(path)}: {_file_kind(info.st_mode)}", stage="read")
    _check_size(path, info.st_size, max_bytes)
    return info.st_size


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), f"file type {stat.S_IFMT(mode):o}")


def _check_size(uri: str | bytes, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise ImageError("too_large", f"{_display(uri)}: {size} bytes, more than the {max_bytes} allowed",
                         stage="read")


def _read_capped(f, uri: str | bytes, max_bytes: int, size: int | None) -> bytes:
    """At most ``max_bytes + 1`` bytes of `f`: enough to tell a file over the cap, even one still growing.

    `size` (when known) sizes the first read, so a small file does not make
    Python allocate the whole cap.
    """
    limit = max_bytes + 1
    data = f.read(limit if size is None else min(size + 1, limit))
    if size is not None and len(data) == size + 1 < limit:  # grew since its size was taken
        data += f.read(limit - len(data))
    _check_size(uri, len(data), max_bytes)
    return data


def _read_remote(uri: str, max_bytes: int) -> bytes:
    """An fsspec URL's bytes; its size, when the filesystem reports one, is checked before reading."""
    try:
        with fsspec.open(uri, "rb") as f:
            size = getattr(f, "size", None)
            size = size if isinstance(size, int) else None
            _check_size(uri, size, max_bytes)
            return _read_capped(f, uri, max_bytes, size)
    except OSError as exc:
        raise ImageError("unreadable", f"{uri}: {_clean(str(exc))}", stage="read") from exc


def _display(uri: str | bytes) -> str:
    """A path as valid UTF-8 text for a detail: undecodable bytes become \\xNN escapes."""
    raw = uri if isinstance(uri, bytes) else uri.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


# An object's default repr, e.g. Pillow's "cannot identify image file <_io.BytesIO object at 0x7f...>".
_ADDRESS_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def _clean(message: str) -> str:
    """`message` without object reprs holding memory addresses, which differ from run to run."""
    return _ADDRESS_REPR.sub("", message)


@contextlib.contextmanager
def _pillow_errors(data: bytes):
    """Map whatever Pillow raises on `data` to one `ImageError` with a reason and a deterministic detail."""
    try:
        # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; make that an
        # error here without touching the process's own warning filters.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decompression_bomb", _clean(str(exc))) from exc
    except UnidentifiedImageError as exc:
        unsupported = _unsupported_format(data)
        if unsupported:
            raise ImageError("unsupported_format", f"{unsupported}: Pillow cannot decode it") from exc
        raise ImageError("not_an_image", _clean(str(exc))) from exc
    except OSError as exc:
        message = _clean(str(exc))
        raise ImageError(_os_error_reason(message), message) from exc
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ImageError("corrupt", _clean(f"{type(exc).__name__}: {exc}")) from exc


def _os_error_reason(message: str) -> str:
    """Reason for an ``OSError`` Pillow raised after it identified the format."""
    lower = message.lower()
    if lower.startswith("decoder ") and lower.endswith(" not available"):  # e.g. no OpenJPEG for JPEG 2000
        return "unsupported_format"
    return "truncated" if "truncated" in lower else "corrupt"


# ISO BMFF major brands (bytes 8..12, after "ftyp") of formats Pillow itself has no plugin for.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")


def _unsupported_format(data: bytes) -> str | None:
    """The name of a format Pillow could not identify but its signature gives away, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        precision = _jpeg_precision(data)
        return None if precision in (None, 8) else f"{precision}-bit JPEG"
    brand = data[8:12] if data[4:8] == b"ftyp" else b""
    if brand in _HEIF_BRANDS:
        return "HEIF"
    if brand in (b"avif", b"avis") and not features.check("avif"):
        return "AVIF"
    if data.startswith(_JXL_SIGNATURES):
        return "JPEG XL"
    return None


_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def _jpeg_precision(data: bytes) -> int | None:
    """Sample precision from a JPEG's start-of-frame header, or None if there is none before the scan."""
    i = 2
    while i + 4 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            return data[i + 4] if i + 4 < len(data) else None
        if marker == 0xDA or marker == 0xD9:  # start of scan, end of image
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes to an HxWx3 uint8 RGB array (first frame, upright).

    `max_pixels` lowers the decompression-bomb limit below Pillow's
    ``MAX_IMAGE_PIXELS`` without touching that global; like it, it is checked
    on the declared size, before any pixel is allocated. The array may be
    read-only: it wraps Pillow's pixel buffer without a copy.
    """
    with _pillow_errors(data), Image.open(io.BytesIO(data)) as im:
        _check_pixels(im, max_pixels)
        im.load()  # inside the guard: truncation shows up only on load
        ImageOps.exif_transpose(im, in_place=True)
        return _to_rgb(im)


def _check_pixels(im: Image.Image, max_pixels: int | None) -> None:
    if max_pixels is not None and im.width * im.height > max_pixels:
        raise ImageError(
            "decompression_bomb", f"{im.width}x{im.height} = {im.width * im.height} pixels, more than {max_pixels}")


def is_plain_jpeg(data: bytes) -> bool:
    """Whether a GPU JPEG decoder can take these bytes: a JPEG in RGB/YCbCr or grey.

    Reads only the header (with the decompression-bomb guard); CMYK and YCCK
    JPEGs and every other format go to `decode_image` instead.
    """
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    with _pillow_errors(data), Image.open(io.BytesIO(data)) as im:
        return im.format == "JPEG" and im.mode in ("RGB", "L")


def load_image(uri: str | bytes) -> np.ndarray:
    """`read_bytes` then `decode_image`."""
    return decode_image(read_bytes(uri))


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Apply the conversion `SUPPORTED_CONVERSIONS` lists for `im.mode`."""
    if im.mode in _HIGH_DEPTH_RANGE:
        grey = _scale_to_uint8(np.asarray(im), _HIGH_DEPTH_RANGE[im.mode])
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _scale_to_uint8(values: np.ndarray, nominal_max: float) -> np.ndarray:
    """Map 0..nominal_max linearly to 0..255, keeping exposure.

    Data outside the nominal range (signed or wider than 16 bits) has no
    agreed white point, so it is stretched from its own min..max instead.
    """
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > nominal_max:
        scale_low, scale_high = low, max(high, low + 1e-12)
    else:
        scale_low, scale_high = 0.0, nominal_max
    scaled = (values - scale_low) * (255.0 / (scale_high - scale_low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
