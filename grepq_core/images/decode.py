"""Decode image bytes to one upright 8-bit RGB array, within a memory budget.

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

Memory: before any pixel is allocated, the image's declared size prices
what decoding it will take (`memory_needed`: Pillow's own pixels, the
codec's buffers, the RGB result and what the caller adds per pixel) against
`DecodeLimits.max_memory` (grepq_core/images/limits.py). Conversions and
the EXIF rotation then work on bands of rows (`Upright.bands`), so no
whole-image temporary beyond those is ever made, whatever the mode (a
16-bit image no longer becomes float64).

Metadata: damaged EXIF, ICC or text metadata never costs good pixels. An
EXIF block that cannot be parsed leaves the image unrotated; a file that
Pillow refuses because of its metadata is decoded again without it
(grepq_core/images/metadata.py). Either way `Upright.ignored` says so.

Failure reasons, all at ``stage="decode"`` (reading has its own, in
grepq_core/images/read.py; cutting views adds ``extreme_aspect_ratio`` at
``stage="prepare"``; a decode past its time budget is ``too_slow``,
grepq_core/images/deadline.py):

| reason | cause |
| --- | --- |
| ``not_an_image`` | Pillow recognises no image format (also zero bytes) |
| ``unsupported_format`` | an image format recognisable by its signature that this Pillow cannot decode: 12- or 16-bit JPEG, HEIF, JPEG XL, AVIF without libavif, a TIFF of floating-point samples Pillow has no mode for (RGB float, 16- or 64-bit float), or any format whose Pillow decoder is missing (JPEG 2000 without OpenJPEG) |
| ``decompression_bomb`` | declared size above ``max_pixels`` (default ``PIL.Image.MAX_IMAGE_PIXELS``; checked before pixels are allocated) |
| ``too_large`` | decoding it would take more than ``max_memory`` bytes (`memory_needed`; checked before pixels are allocated) |
| ``truncated`` | the file ends before the pixel data does |
| ``corrupt`` | any other decoding failure |
"""

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from grepq_core.errors import ImageError
from grepq_core.images.limits import DecodeLimits
from grepq_core.images.metadata import without_metadata
from grepq_core.images.read import clean_detail, read_bytes

__all__ = ["SUPPORTED_CONVERSIONS", "MAX_DEVICE_SCANS", "Upright", "decode_image", "decode_rgb", "device_decodable",
           "load_image", "memory_needed", "opened"]

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

# A progressive JPEG with more scans than this is decoded by Pillow under the time budget, never on a device:
# decode time grows with the scan count, and a device decoder cannot be stopped (libjpeg's default script has 10).
MAX_DEVICE_SCANS = 32
# Rows are converted in bands of about this many pixels, so temporaries stay small: at most
# `_BAND_BYTES_PER_PIXEL` a pixel of one band (compositing alpha over white takes about 26).
BAND_PIXELS = 1 << 20
_BAND_BYTES_PER_PIXEL = 32

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
# Bytes per pixel Pillow stores for a mode: 1 for these, 2 for 16-bit grey, else 4 (RGB is stored as RGBX).
_ONE_BYTE_MODES = {"1", "L", "P"}
_ORIENTATION_TAG = 0x0112


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
    except MemoryError as exc:
        raise ImageError("too_large", "the decoder ran out of memory") from exc
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
    bits = _tiff_float_bits(data)
    return None if bits is None else f"TIFF of {bits}-bit floating-point samples"


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


_TIFF_ORDER = {b"II*\x00": "little", b"MM\x00*": "big"}
_TIFF_BITS, _TIFF_SAMPLE_FORMAT, _TIFF_FLOAT = 258, 339, 3


def _tiff_float_bits(data: bytes) -> int | None:
    """The sample width of a classic TIFF whose first image holds floating-point samples, else None.

    Reads the first IFD only, for a `unsupported_format` detail: Pillow
    decodes one 32-bit float channel (mode F) but not RGB, 16- or 64-bit floats.
    """
    order = _TIFF_ORDER.get(data[:4])
    if order is None or len(data) < 8:
        return None
    number = lambda at, size: int.from_bytes(data[at:at + size], order)  # noqa: E731
    ifd = number(4, 4)
    tags = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * number(ifd, 2), 12):
        if entry + 12 > len(data):
            break
        count, width = number(entry + 4, 4), 2 if number(entry + 2, 2) == 3 else 4  # SHORT or LONG
        at = entry + 8 if count * width <= 4 else number(entry + 8, 4)  # the first value, inline or at an offset
        tags[number(entry, 2)] = number(at, width)
    return tags.get(_TIFF_BITS, 32) if tags.get(_TIFF_SAMPLE_FORMAT) == _TIFF_FLOAT else None


def _stored_bytes_per_pixel(mode: str) -> int:
    return 1 if mode in _ONE_BYTE_MODES else 2 if mode.startswith("I;16") else 4


def _codec_bytes_per_pixel(im: Image.Image) -> int:
    """What the format's decoder holds besides Pillow's pixels, per pixel (tests/test_decode_memory.py measures it).

    A progressive JPEG keeps every DCT coefficient (2 bytes per component);
    OpenJPEG decodes to 32-bit planes plus a tile buffer; libtiff holds a
    whole strip, which may be the whole image; libwebp and libavif decode
    to their own RGBA buffer, which Pillow copies. The other formats decode
    row by row.
    """
    bands, stored = len(im.getbands()), _stored_bytes_per_pixel(im.mode)
    if im.format in ("JPEG", "MPO") and im.info.get("progressive"):
        return 2 * bands
    if im.format == "JPEG2000":
        return 4 * bands + stored
    if im.format == "TIFF":
        return stored
    if im.format in ("WEBP", "AVIF"):
        return 12
    return 0


def memory_needed(im: Image.Image, later_bytes_per_pixel: int = 0) -> int:
    """Bytes decoding `im` (opened, not loaded) to RGB takes at its peak, plus what the caller adds per pixel.

    Pillow's pixels and the codec's buffers, the RGB result (3 bytes per
    pixel) and one band of temporaries; the rotation and the conversions
    work band by band and add nothing per pixel.
    """
    per_pixel = _stored_bytes_per_pixel(im.mode) + _codec_bytes_per_pixel(im) + 3 + later_bytes_per_pixel
    return im.width * im.height * per_pixel + BAND_PIXELS * _BAND_BYTES_PER_PIXEL


def _check_size(im: Image.Image, limits: DecodeLimits) -> None:
    pixels = im.width * im.height
    if limits.max_pixels is not None and pixels > limits.max_pixels:
        raise ImageError("decompression_bomb",
                         f"{im.width}x{im.height} = {pixels} pixels, more than {limits.max_pixels}")
    need = memory_needed(im, limits.later_bytes_per_pixel)
    if limits.max_memory is not None and need > limits.max_memory:
        raise ImageError("too_large", f"{im.width}x{im.height} {im.format} ({im.mode}) needs about {need >> 20} MiB "
                         f"to decode, more than the {limits.max_memory >> 20} MiB allowed")


class Upright:
    """A loaded image and how to read it as upright 8-bit RGB rows, band by band.

    `width` and `height` are the upright size; `ignored` names metadata
    that was damaged and left out (None when nothing was).
    """

    def __init__(self, im: Image.Image, ignored: str | None):
        self._im = im
        self.ignored = ignored
        self._orientation = self._read_orientation()
        self._transposed = self._orientation >= 5
        self.width, self.height = (im.height, im.width) if self._transposed else im.size
        self._scale = self._scale_range() if im.mode in _HIGH_DEPTH_RANGE else None

    def _read_orientation(self) -> int:
        """The EXIF orientation (1-8); 1 when the EXIF block cannot be parsed, which `ignored` then says."""
        try:
            orientation = self._im.getexif().get(_ORIENTATION_TAG, 1)
        except Exception:  # noqa: BLE001 - Pillow raises many types on damaged EXIF
            self.ignored = self.ignored or "damaged EXIF"
            return 1
        return orientation if orientation in range(1, 9) else 1

    def _scale_range(self) -> tuple[float, float]:
        """The value range mapped to 0..255: nominal, or the image's own min..max when values leave it.

        Data outside the nominal range (signed or wider than 16 bits) has no
        agreed white point, so it is stretched from its own min..max instead.
        """
        nominal = _HIGH_DEPTH_RANGE[self._im.mode]
        low, high = (float(v) for v in self._im.getextrema())
        if low < 0 or high > nominal:
            return low, max(high, low + 1e-12)
        return 0.0, nominal

    def bands(self):
        """(first row, HxWx3 uint8 rows) covering the upright image top to bottom.

        Each band is cut from the stored image (rows, or columns when the
        orientation transposes), converted, then flipped into place; small
        images come as one band without a copy.
        """
        rows = max(1, BAND_PIXELS // self.width)
        for top in range(0, self.height, rows):
            bottom = min(top + rows, self.height)
            yield top, self._band(top, bottom)

    def _band(self, top: int, bottom: int) -> np.ndarray:
        """Upright rows top..bottom: the stored rows or columns they come from, converted and flipped."""
        im, o = self._im, self._orientation
        length = im.width if self._transposed else im.height
        start, stop = (top, bottom) if o in (1, 2, 5, 6) else (length - bottom, length - top)
        whole = (start, stop) == (0, length)
        box = (start, 0, stop, im.height) if self._transposed else (0, start, im.width, stop)
        band = self._rgb(im if whole else im.crop(box))
        if self._transposed:
            band = band.transpose(1, 0, 2)
        flip_rows, flip_columns = {1: (False, False), 2: (False, True), 3: (True, True), 4: (True, False),
                                   5: (False, False), 6: (False, True), 7: (True, True), 8: (True, False)}[o]
        return band[::-1 if flip_rows else 1, ::-1 if flip_columns else 1]

    def _rgb(self, im: Image.Image) -> np.ndarray:
        """Apply the conversion `SUPPORTED_CONVERSIONS` lists for `im.mode`."""
        if self._scale is not None:
            grey = _scale_to_uint8(np.asarray(im), *self._scale)
            return np.repeat(grey[:, :, None], 3, axis=2)
        if im.mode in _ALPHA_MODES or "transparency" in im.info:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im.convert("RGBA"))
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map low..high linearly to 0..255, in one band-sized float64 array."""
    scaled = values.astype(np.float64)
    scaled -= low
    scaled *= 255.0 / (high - low)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


@contextlib.contextmanager
def opened(data: bytes, limits: DecodeLimits = DecodeLimits()):
    """The image in `data`, size-checked and loaded, as an `Upright`; `ImageError` when it cannot be.

    When Pillow refuses the file and it holds metadata, it is tried once
    more without (a damaged ICC profile or a huge text chunk costs no
    pixels); if that fails too, the first error stands.
    """
    with contextlib.ExitStack() as stack:
        try:
            upright = Upright(stack.enter_context(_loaded(data, limits)), None)
        except ImageError as error:
            stripped = without_metadata(data) if error.reason in ("not_an_image", "corrupt") else None
            if stripped is None:
                raise
            try:
                upright = Upright(stack.enter_context(_loaded(stripped, limits)), "damaged metadata")
            except ImageError:
                raise error from None
        yield upright


@contextlib.contextmanager
def _loaded(data: bytes, limits: DecodeLimits):
    with _pillow_errors(data), Image.open(io.BytesIO(data)) as im:
        _check_size(im, limits)
        im.load()  # inside the guard: truncation shows up only on load
        yield im


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """Decode encoded image bytes to an HxWx3 uint8 RGB array (first frame, upright).

    In this process, with no time limit (grepq_core/images/deadline.py has
    one). A small image's array may be read-only: it wraps Pillow's pixel
    buffer without a copy.
    """
    return decode_rgb(data, limits)[0]


def decode_rgb(data: bytes, limits: DecodeLimits = DecodeLimits()) -> tuple[np.ndarray, str | None]:
    """`decode_image`, and the damaged metadata it left out (None when none)."""
    with opened(data, limits) as upright:
        out = None
        for top, band in upright.bands():
            if len(band) == upright.height:
                return np.ascontiguousarray(band), upright.ignored
            if out is None:
                out = np.empty((upright.height, upright.width, 3), np.uint8)
            out[top:top + len(band)] = band
        return out, upright.ignored


def device_decodable(data: bytes, limits: DecodeLimits = DecodeLimits()) -> bool:
    """Whether a GPU JPEG decoder can take these bytes: a JPEG in RGB/YCbCr or grey, cheap to decode.

    Reads only the header. CMYK and YCCK JPEGs, every other format, and
    JPEGs whose decode time or memory is not bounded by the limits (more
    than `MAX_DEVICE_SCANS` scans, or over the memory budget) go to the
    Pillow decode instead, which the budgets can stop.
    """
    if not data.startswith(b"\xff\xd8\xff") or data.count(b"\xff\xda") > MAX_DEVICE_SCANS:
        return False
    with _pillow_errors(data), Image.open(io.BytesIO(data)) as im:
        if im.format != "JPEG" or im.mode not in ("RGB", "L"):
            return False
        need = im.width * im.height * (3 + limits.later_bytes_per_pixel)
        pixels_ok = limits.max_pixels is None or im.width * im.height <= limits.max_pixels
        return pixels_ok and (limits.max_memory is None or need <= limits.max_memory)


def load_image(uri: str | bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """`read_bytes` then `decode_image` (a key of an output: `decode_image(sources.read(key))`)."""
    return decode_image(read_bytes(uri), limits)
