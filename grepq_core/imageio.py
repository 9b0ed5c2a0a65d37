"""Read image bytes from anywhere and decode them to one RGB array.

Both GRepQ pathways (METHOD.md, "Two pathways") take 8-bit RGB photos; this
module turns whatever a collection holds into exactly that, or raises
`ImageError` with a short reason a dead-letter row can count.

Deviation from the reference code, which opens files with
``Image.open(path).convert("RGB")``: EXIF orientation is applied, transparent
pixels are composited over white instead of dropping the alpha channel (which
exposes whatever colour hides under alpha 0), and 16-bit images are scaled
instead of clipped. Every conversion is listed in `SUPPORTED_CONVERSIONS`.

Failure reasons:

| reason | cause |
| --- | --- |
| ``unreadable`` | missing file, no permission, a directory, a symlink loop, any ``OSError`` from the filesystem |
| ``empty_file`` | zero bytes |
| ``not_an_image`` | Pillow recognises no image format |
| ``decompression_bomb`` | declared size above ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before pixels are allocated) |
| ``truncated`` | the file ends before the pixel data does |
| ``corrupt`` | any other decoding failure |
"""

import contextlib
import io
import warnings

import fsspec
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grepq_core.errors import ImageError

__all__ = ["SUPPORTED_CONVERSIONS", "decode_image", "is_plain_jpeg", "load_image", "read_bytes"]

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


def read_bytes(uri: str) -> bytes:
    """All bytes of a local path or an fsspec URL (gs://, s3://, https://, memory://...).

    Only ``OSError`` (what fsspec filesystems raise for missing, forbidden or
    unreadable files) becomes ``unreadable``; anything else, such as a missing
    filesystem package, is a setup problem and propagates.
    """
    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageError("unreadable", f"{uri}: {exc}") from exc
    if not data:
        raise ImageError("empty_file", uri)
    return data


@contextlib.contextmanager
def _pillow_errors():
    """Map whatever Pillow raises on bad input to one `ImageError` with a reason."""
    try:
        # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; make that an
        # error here without touching the process's own warning filters.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decompression_bomb", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image", str(exc)) from exc
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(reason, str(exc)) from exc
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ImageError("corrupt", f"{type(exc).__name__}: {exc}") from exc


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to an HxWx3 uint8 RGB array (first frame, upright).

    The array may be read-only: it wraps Pillow's pixel buffer without a copy.
    """
    if not data:
        raise ImageError("empty_file")
    with _pillow_errors(), Image.open(io.BytesIO(data)) as im:
        im.load()  # inside the guard: truncation shows up only on load
        ImageOps.exif_transpose(im, in_place=True)
        return _to_rgb(im)


def is_plain_jpeg(data: bytes) -> bool:
    """Whether a GPU JPEG decoder can take these bytes: a JPEG in RGB/YCbCr or grey.

    Reads only the header (with the decompression-bomb guard); CMYK and YCCK
    JPEGs and every other format go to `decode_image` instead.
    """
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    with _pillow_errors(), Image.open(io.BytesIO(data)) as im:
        return im.format == "JPEG" and im.mode in ("RGB", "L")


def load_image(uri: str) -> np.ndarray:
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
