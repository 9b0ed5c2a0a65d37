"""Decode image bytes to one upright 8-bit RGB array.

Both GRepQ pathways (docs/method.md, "Two pathways") take 8-bit RGB photos; this
module turns whatever a collection holds into exactly that, or raises
`ImageError` with a short reason a dead-letter row can count.

Deviation from the reference code, which opens files with
``Image.open(path).convert("RGB")``: EXIF orientation is applied, transparent
pixels are composited over white instead of dropping the alpha channel (which
exposes whatever colour hides under alpha 0), and 16-bit images are scaled
instead of clipped. Every conversion is listed in `SUPPORTED_CONVERSIONS`.
Every ``detail`` is deterministic (no memory addresses), so identical runs
give identical dead-letter rows.

Failure reasons, all at ``stage="decode"`` (reading has its own, in
grepq_core/images/read.py; cutting views adds ``extreme_aspect_ratio`` at
``stage="prepare"``):

| reason | cause |
| --- | --- |
| ``not_an_image`` | Pillow recognises no image format (also zero bytes) |
| ``unsupported_format`` | an image format recognisable by its signature that this Pillow cannot decode: 12- or 16-bit JPEG, HEIF, JPEG XL, AVIF without libavif, or any format whose Pillow decoder is missing (JPEG 2000 without OpenJPEG) |
| ``decompression_bomb`` | declared size above ``max_pixels`` (default ``PIL.Image.MAX_IMAGE_PIXELS``; checked before pixels are allocated) |
| ``truncated`` | the file ends before the pixel data does |
| ``corrupt`` | any other decoding failure |
"""

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from grepq_core.errors import ImageError
from grepq_core.images.read import clean_detail, read_bytes

__all__ = ["SUPPORTED_CONVERSIONS", "decode_image", "is_plain_jpeg", "load_image"]

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
        raise ImageError("decompression_bomb", clean_detail(str(exc))) from exc
    except UnidentifiedImageError as exc:
        unsupported = _unsupported_format(data)
        if unsupported:
            raise ImageError("unsupported_format", f"{unsupported}: Pillow cannot decode it") from exc
        raise ImageError("not_an_image", clean_detail(str(exc))) from exc
    except OSError as exc:
        message = clean_detail(str(exc))
        raise ImageError(_os_error_reason(message), message) from exc
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ImageError("corrupt", clean_detail(f"{type(exc).__name__}: {exc}")) from exc


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
    """`read_bytes` then `decode_image` (a key of an output: `decode_image(sources.read(key))`)."""
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
