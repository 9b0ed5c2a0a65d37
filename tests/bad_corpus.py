"""A corpus of awkward and broken image files, with the outcome each must have.

`make_bad_corpus(directory)` writes the files below and returns
``{path: expected}``, where expected is ``"ok"`` (decodes to a usable RGB
image) or the `ImageError` reason the image must be dead-lettered with.
`expected_stage(expected)` names the stage that raises it: ``read``
(`grepq_core.images.read.read_bytes`), ``decode`` (`decode_in_time` under
`LIMITS`, the budgets ``grepq extract --max-image-seconds`` `DECODE_SECONDS`
applies) or ``prepare`` (`grepq_core.model.views.ensure_min_size` at
`MIN_SIDE`, after a successful decode). Content comes from scikit-image's
bundled photos where it matters. Creation takes a few seconds; nothing is
large on disk (oversized.jpg is sparse, the near-limit images are headers
or compress to kilobytes).

Reading fifo.jpg or dev_zero.jpg with anything but `read_bytes` blocks
forever or fills memory, so every test that reads the corpus needs a timeout
(pytest.ini sets one; tests/test_imageio.py uses 60 s).

| file | expected | what it is |
| --- | --- | --- |
| random_bytes.jpg | not_an_image | 4 KiB of seeded random bytes |
| text_file.jpg | not_an_image | a line of text |
| empty.jpg | empty_file | zero bytes |
| truncated.jpg | truncated | astronaut JPEG cut in half |
| truncated.png | truncated | astronaut PNG cut in half |
| corrupt_data.png | corrupt | astronaut PNG with bytes flipped inside the compressed pixel data |
| bomb.png | decompression_bomb | 100-byte PNG declaring 30000x30000 (10x Pillow's limit) |
| bomb_warning.png | decompression_bomb | PNG declaring 10000x10000 (between 1x and 2x the limit, where Pillow only warns) |
| directory.jpg | unreadable | a directory |
| symlink_loop.jpg | unreadable | a symlink to itself (left out where symlinks are refused) |
| broken_symlink.jpg | unreadable | a symlink to a file that does not exist (left out where symlinks are refused) |
| fifo.jpg | not_a_regular_file | a named pipe with no writer (left out where FIFOs are refused) |
| dev_zero.jpg | not_a_regular_file | a symlink to /dev/zero, endless (left out where there is none) |
| oversized.jpg | too_large | a sparse file of `OVERSIZED_BYTES` (300 MiB, above the 256 MiB default cap), no disk used |
| jpeg_12bit.jpg | unsupported_format | a baseline JPEG whose SOF0 declares 12-bit samples, as a 12-bit JPEG looks to Pillow |
| heif.heic | unsupported_format | an ISO BMFF file with major brand ``heic`` (Pillow has no HEIF plugin) |
| extreme_aspect_10000x1.png | extreme_aspect_ratio | a 10000x1 strip: 30 KB, but 224x2,240,000 once upscaled |
| scan_bomb.jpg | too_slow | a 4000x4000 progressive JPEG with `BOMB_SCANS` empty scans (1 MB): over a minute of decoding unstopped |
| near_limit_16bit.png | too_large | a PNG header declaring 9450x9450 16-bit grey, just under Pillow's pixel limit: over 1 GiB to decode and cut |
| near_limit_rgba.png | too_large | a PNG header declaring 9450x9450 RGBA |
| float_rgb.tif | unsupported_format | a TIFF of three 32-bit float samples per pixel, which Pillow has no mode for |
| exif_damaged.png | ok | a photo with an eXIf chunk whose TIFF header is damaged (Pillow fails on reading its orientation) |
| icc_12_bytes.jpg | ok | a photo with a 12-byte ICC segment (no sequence numbers: Pillow refuses to open it) |
| ztxt_50mb.png | ok | a photo with a zTXt chunk that inflates to 50 MB (past Pillow's text limit: it refuses to open it) |
| line_breaks_<U+0085 U+2028 U+2029>.jpg | ok | a photo under a name holding the line breaks `str.splitlines` knows beyond the control characters |
| cmyk.jpg | ok | coffee saved as a CMYK JPEG |
| grey16.png | ok | camera x 257 as a 16-bit greyscale PNG (must decode back to camera) |
| gradient16.png | ok | 16-bit horizontal ramp 0..65535, 64x256 |
| greyscale.png | ok | camera, 8-bit greyscale |
| palette_transparent.png | ok | chelsea as a palette PNG; top-left `TRANSPARENT_BOX` square uses a fully transparent black entry |
| rgba.png | ok | astronaut with alpha 0 (over black pixels) in the top-left `TRANSPARENT_BOX` square, opaque elsewhere |
| animated.gif | ok | 3 frames: chelsea, chelsea upside down, chelsea mirrored |
| exif_rotated.jpg | ok | chelsea (300x451) with EXIF orientation 6: displays as 451x300 |
| one_pixel.png | ok | 1x1, colour `ONE_PIXEL_RGB` |
| tiny_20x20.png | ok | astronaut shrunk to 20x20, smaller than one 32x32 fragment |
| panorama_8000x200.jpg | ok | coffee stretched to 8000 wide, 200 high |
| large_6000x4000.jpg | ok | 6000x4000 colour gradient (24 MP) |
| non_utf8_<0xff>.jpg | ok | chelsea under a file name that is not valid UTF-8 (left out where the filesystem refuses it) |
| duplicate_a.jpg, duplicate_b.jpg | ok | the same coffee JPEG bytes under two names |
| a::b.jpg, x#y.jpg, q?.jpg, [br].jpg, st*r.jpg | ok | names fsspec would parse as URL chaining, fragment, query or glob; each holds its own `ODD_NAMES` photo |
"""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from grepq_core.images.limits import DecodeLimits

__all__ = [
    "BOMB_SCANS",
    "DECODE_SECONDS",
    "KIND_NAMES",
    "LIMITS",
    "MIN_SIDE",
    "ODD_NAMES",
    "ONE_PIXEL_RGB",
    "OVERSIZED_BYTES",
    "TRANSPARENT_BOX",
    "expected_stage",
    "make_bad_corpus",
    "scan_bomb_jpeg",
]

TRANSPARENT_BOX = 64
ONE_PIXEL_RGB = (10, 200, 30)
OVERSIZED_BYTES = 300 * 2**20
MIN_SIDE = 224  # the views' default short side, which prepare-stage reasons assume
DECODE_SECONDS = 5.0  # the time budget the expectations assume: `grepq extract --max-image-seconds 5`
# What extract applies under that budget: the default memory budget, with the views' 7 bytes per pixel
# (grepq_core.model.cut.VIEW_BYTES_PER_PIXEL).
LIMITS = DecodeLimits(max_seconds=DECODE_SECONDS, later_bytes_per_pixel=7)
BOMB_SCANS = 40_000
# File names that are not what a URL parser sees, each with the skimage photo it holds.
ODD_NAMES = {"a::b.jpg": "chelsea", "x#y.jpg": "immunohistochemistry", "q?.jpg": "astronaut", "[br].jpg": "camera",
             "st*r.jpg": "rocket"}

_READ_REASONS = {"unreadable", "not_a_regular_file", "empty_file"}
_PREPARE_REASONS = {"extreme_aspect_ratio"}


class _Unsupported(Exception):
    """This filesystem cannot hold the kind (e.g. no symlinks); it is left out."""


def make_bad_corpus(directory: Path) -> dict[str, str]:
    """Write every kind of file into `directory`; return ``{path: expected outcome}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (outcome, write) in _KINDS.items():
        path = directory / name
        try:
            write(path)
        except _Unsupported:
            continue
        expected[str(path)] = outcome
    return expected


def expected_stage(expected: str, name: str = "") -> str | None:
    """The stage that dead-letters file `name` with this expected outcome (None for "ok").

    ``too_large`` is the read stage's for a file over the byte cap, the
    decode stage's for an image over the memory budget.
    """
    if expected == "ok":
        return None
    if expected == "too_large":
        return "read" if name == "oversized.jpg" else "decode"
    return "read" if expected in _READ_REASONS else "prepare" if expected in _PREPARE_REASONS else "decode"


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A valid PNG signature and IHDR declaring width x height (RGB by default), with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _astronaut_jpeg() -> bytes:
    return _encode(Image.fromarray(skimage.data.astronaut()), "JPEG", quality=90)


def _astronaut_png() -> bytes:
    return _encode(Image.fromarray(skimage.data.astronaut()), "PNG")


def _corrupt_png(path: Path) -> None:
    data = bytearray(_astronaut_png())
    start = data.index(b"IDAT") + 200
    data[start : start + 300] = bytes(b ^ 0x55 for b in data[start : start + 300])
    path.write_bytes(bytes(data))


def _symlink_loop(path: Path) -> None:
    try:
        os.symlink(path.name, path)
    except (OSError, NotImplementedError) as exc:
        raise _Unsupported(str(exc)) from exc


def _symlink_to(target: str):
    """A writer making a symlink to `target` (left out where symlinks or the target are missing)."""

    def write(path: Path) -> None:
        if target.startswith("/") and not os.path.exists(target):
            raise _Unsupported(f"no {target}")
        try:
            os.symlink(target, path)
        except (OSError, NotImplementedError) as exc:
            raise _Unsupported(str(exc)) from exc

    return write


def _fifo(path: Path) -> None:
    try:
        os.mkfifo(path)
    except (OSError, AttributeError) as exc:  # AttributeError: no mkfifo on this platform
        raise _Unsupported(str(exc)) from exc


def _sparse(path: Path) -> None:
    """OVERSIZED_BYTES of zeros that occupy no disk blocks."""
    with open(path, "wb") as f:
        f.truncate(OVERSIZED_BYTES)


def _jpeg_12bit() -> bytes:
    """Pillow's baseline JPEG with the SOF0 precision byte set to 12, as Pillow sees a 12-bit JPEG."""
    data = bytearray(_encode(Image.fromarray(skimage.data.coffee()), "JPEG", quality=90))
    sof = data.index(b"\xff\xc0")
    assert data[sof + 4] == 8, "SOF0 precision byte not where expected"
    data[sof + 4] = 12
    return bytes(data)


def _heif_header() -> bytes:
    """An ftyp box with HEIF's major brand (how an iPhone HEIC photo starts), then filler."""
    brands = b"heic" + b"\x00\x00\x00\x00" + b"mif1heic"
    return struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands + bytes(256)


def scan_bomb_jpeg(width: int, height: int, scans: int) -> bytes:
    """A grey progressive JPEG followed by `scans` empty AC scans: tiny, and slow to decode in proportion.

    Each scan codes nothing but end-of-band runs over every 8x8 block, yet
    libjpeg walks all blocks of the image once per scan. An AC table whose
    one symbol is EOB14 (code "0", then 14 bits of run) skips up to 32767
    blocks per symbol, so a scan costs a few bytes.
    """
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "JPEG", progressive=True, quality=75)
    head = buffer.getvalue()[:-2]  # without its end-of-image marker
    dht = b"\xff\xc4" + struct.pack(">H", 20) + b"\x11" + bytes([1] + [0] * 15) + b"\xe0"  # AC table 1: EOB14
    bits, left = "", -(-width // 8) * -(-height // 8)
    while left > 0:
        run = min(max(left, 16384), 32767)
        bits += "0" + format(run - 16384, "014b")
        left -= run
    bits += "1" * (-len(bits) % 8)
    entropy = b"".join(bytes([b]) + (b"\x00" if b == 0xFF else b"")
                       for b in (int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    sos = b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x11\x01\x01\x00"  # component 1, tables 1/1, band 1..1
    return head + dht + (sos + entropy) * scans + b"\xff\xd9"


def _float_rgb_tiff() -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, skimage.data.astronaut()[:64, :64].astype(np.float32) / 255)
    return buffer.getvalue()


def _png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """Chelsea as PNG with one more chunk before its pixel data."""
    data = _encode(Image.fromarray(skimage.data.chelsea()), "PNG")
    at = data.index(b"IDAT") - 4
    return data[:at] + _png_chunk(kind, payload) + data[at:]


def _jpeg_with_segment(marker: int, payload: bytes) -> bytes:
    """Coffee as JPEG with one more marker segment after its start-of-image marker."""
    data = _encode(Image.fromarray(skimage.data.coffee()), "JPEG", quality=90)
    return data[:2] + bytes([0xFF, marker]) + struct.pack(">H", 2 + len(payload)) + payload + data[2:]


def _strip(path: Path) -> None:
    """A 10000x1 RGB strip of seeded noise (about 30 KB as PNG)."""
    noise = np.random.default_rng(1).integers(0, 256, (1, 10000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)


def _odd_name(path: Path) -> None:
    _save(lambda: Image.fromarray(getattr(skimage.data, ODD_NAMES[path.name])()), quality=90)(path)


def _non_utf8_name(path: Path) -> None:
    try:
        with open(os.fsencode(path), "wb") as f:
            f.write(_encode(Image.fromarray(skimage.data.chelsea()), "JPEG"))
    except (OSError, UnicodeError) as exc:
        raise _Unsupported(str(exc)) from exc


def _grey16(path: Path) -> None:
    values = skimage.data.camera().astype(np.uint16) * 257
    Image.fromarray(values).save(path)


def _gradient16(path: Path) -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    Image.fromarray(np.tile(ramp, (64, 1))).save(path)


def _palette_transparent(path: Path) -> None:
    image = Image.fromarray(skimage.data.chelsea()).quantize(colors=255)
    image.paste(255, (0, 0, TRANSPARENT_BOX, TRANSPARENT_BOX))
    palette = (image.getpalette() + [0] * 768)[: 255 * 3] + [0, 0, 0]
    image.putpalette(palette)
    image.save(path, transparency=255)


def _rgba(path: Path) -> None:
    rgba = np.dstack([skimage.data.astronaut(), np.full((512, 512), 255, np.uint8)])
    rgba[:TRANSPARENT_BOX, :TRANSPARENT_BOX] = 0
    Image.fromarray(rgba).save(path)


def _animated_gif(path: Path) -> None:
    cat = skimage.data.chelsea()
    frames = [Image.fromarray(np.ascontiguousarray(a)) for a in (cat, cat[::-1], cat[:, ::-1])]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(skimage.data.chelsea()).save(path, quality=95, exif=exif)


def _large(path: Path) -> None:
    ramp = Image.linear_gradient("L")
    across = ramp.rotate(90).resize((6000, 4000), Image.Resampling.BILINEAR)
    down = ramp.resize((6000, 4000), Image.Resampling.BILINEAR)
    Image.merge("RGB", (across, down, Image.new("L", (6000, 4000), 128))).save(path, quality=80)


def _bytes(data):
    """A writer for fixed bytes, or for bytes made on demand by a callable."""
    return lambda path: path.write_bytes(data() if callable(data) else data)


def _save(make_image, **options):
    """A writer saving a Pillow image in the format the file name implies."""
    return lambda path: make_image().save(path, **options)


_coffee_jpeg = _save(lambda: Image.fromarray(skimage.data.coffee()), quality=90)


_KINDS = {
    "random_bytes.jpg": ("not_an_image", _bytes(lambda: np.random.default_rng(0).bytes(4096))),
    "text_file.jpg": ("not_an_image", _bytes(b"this is a text file, not a photo\n")),
    "empty.jpg": ("empty_file", _bytes(b"")),
    "truncated.jpg": ("truncated", _bytes(lambda: (d := _astronaut_jpeg())[: len(d) // 2])),
    "truncated.png": ("truncated", _bytes(lambda: (d := _astronaut_png())[: len(d) // 2])),
    "corrupt_data.png": ("corrupt", _corrupt_png),
    "bomb.png": ("decompression_bomb", _bytes(_png_header_only(30000, 30000))),
    "bomb_warning.png": ("decompression_bomb", _bytes(_png_header_only(10000, 10000))),
    "directory.jpg": ("unreadable", lambda path: path.mkdir()),
    "symlink_loop.jpg": ("unreadable", _symlink_loop),
    "broken_symlink.jpg": ("unreadable", _symlink_to("no_such_file.jpg")),
    "fifo.jpg": ("not_a_regular_file", _fifo),
    "dev_zero.jpg": ("not_a_regular_file", _symlink_to("/dev/zero")),
    "oversized.jpg": ("too_large", _sparse),
    "jpeg_12bit.jpg": ("unsupported_format", _bytes(_jpeg_12bit)),
    "heif.heic": ("unsupported_format", _bytes(_heif_header)),
    "extreme_aspect_10000x1.png": ("extreme_aspect_ratio", _strip),
    "scan_bomb.jpg": ("too_slow", _bytes(lambda: scan_bomb_jpeg(4000, 4000, BOMB_SCANS))),
    "near_limit_16bit.png": ("too_large", _bytes(_png_header_only(9450, 9450, bit_depth=16, colour=0))),
    "near_limit_rgba.png": ("too_large", _bytes(_png_header_only(9450, 9450, colour=6))),
    "float_rgb.tif": ("unsupported_format", _bytes(_float_rgb_tiff)),
    "exif_damaged.png": ("ok", _bytes(lambda: _png_with_chunk(b"eXIf", b"Exif\x00\x17MM\x00*\x00\x00\x00\x08"))),
    "icc_12_bytes.jpg": ("ok", _bytes(lambda: _jpeg_with_segment(0xE2, b"ICC_PROFILE\x00"))),
    "ztxt_50mb.png": ("ok", _bytes(lambda: _png_with_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(bytes(50 * 2**20))))),
    "line_breaks_\x85\u2028\u2029.jpg": ("ok", _coffee_jpeg),
    "cmyk.jpg": ("ok", _save(lambda: Image.fromarray(skimage.data.coffee()).convert("CMYK"), quality=95)),
    "grey16.png": ("ok", _grey16),
    "gradient16.png": ("ok", _gradient16),
    "greyscale.png": ("ok", _save(lambda: Image.fromarray(skimage.data.camera()))),
    "palette_transparent.png": ("ok", _palette_transparent),
    "rgba.png": ("ok", _rgba),
    "animated.gif": ("ok", _animated_gif),
    "exif_rotated.jpg": ("ok", _exif_rotated),
    "one_pixel.png": ("ok", _save(lambda: Image.new("RGB", (1, 1), ONE_PIXEL_RGB))),
    "tiny_20x20.png": ("ok", _save(lambda: Image.fromarray(skimage.data.astronaut()).resize((20, 20)))),
    "panorama_8000x200.jpg": ("ok", _save(lambda: Image.fromarray(skimage.data.coffee()).resize((8000, 200)))),
    "large_6000x4000.jpg": ("ok", _large),
    os.fsdecode(b"non_utf8_\xff.jpg"): ("ok", _non_utf8_name),
    "duplicate_a.jpg": ("ok", _coffee_jpeg),
    "duplicate_b.jpg": ("ok", _coffee_jpeg),
    **{name: ("ok", _odd_name) for name in ODD_NAMES},
}

KIND_NAMES = tuple(_KINDS)
