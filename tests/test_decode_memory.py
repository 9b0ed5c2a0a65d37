"""The memory budget: `memory_needed` prices each format at least at what decoding it really takes, and an image
over the budget is refused before its pixels are allocated. Each decode runs in a fresh process, whose peak
resident memory is the measure."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from grepq_core.model.cut import VIEW_BYTES_PER_PIXEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDE = 3000  # 9 MP: the per-pixel costs stand well above the interpreter's noise

_MEASURE = textwrap.dedent("""
    import io, json, sys
    from PIL import Image
    from grepq_core.errors import ImageError
    from grepq_core.images.decode import decode_rgb, memory_needed
    from grepq_core.images.limits import DecodeLimits

    def status(field):  # kB; VmHWM is this process's peak (ru_maxrss would carry the parent's over exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

    data = open(sys.argv[1], "rb").read()
    later = int(sys.argv[3])
    limits = DecodeLimits(max_memory=int(sys.argv[2]) if sys.argv[2] != "none" else None, later_bytes_per_pixel=later)
    with Image.open(io.BytesIO(data)) as im:
        estimate = memory_needed(im, later)
    resident = status("VmRSS")
    try:
        decode_rgb(data, limits)
        outcome = "ok"
    except ImageError as e:
        outcome = e.reason
    print(json.dumps({"outcome": outcome, "estimate": estimate, "grown": status("VmHWM") - resident}))
""")


def _measure(path, max_memory="none", later_bytes_per_pixel=0) -> dict:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(max_memory), str(later_bytes_per_pixel)],
                          cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def _ramp16() -> np.ndarray:
    return np.tile((np.arange(SIDE, dtype=np.uint32) * 65535 // SIDE).astype(np.uint16), (SIDE, 1))


def _save(path, image: Image.Image, **options) -> None:
    image.save(path, **options)


def _rgba() -> Image.Image:
    rgba = np.zeros((SIDE, SIDE, 4), np.uint8)
    rgba[..., 0] = _ramp16() >> 8
    rgba[..., 3] = 200
    return Image.fromarray(rgba)


def _rotated_jpeg(path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    _rgba().convert("RGB").save(path, quality=90, exif=exif)


FORMATS = {
    "grey16.png": lambda p: _save(p, Image.fromarray(_ramp16())),
    "grey16.jp2": lambda p: _save(p, Image.fromarray(_ramp16())),
    "float32.tif": lambda p: _save(p, Image.fromarray(_ramp16().astype(np.float32) / 65535),
                                   compression="tiff_adobe_deflate"),
    "rgba_lossless.webp": lambda p: _save(p, _rgba(), lossless=True),
    "rgba.png": lambda p: _save(p, _rgba()),
    "progressive444.jpg": lambda p: _save(p, _rgba().convert("RGB"), progressive=True, subsampling=0),
    "cmyk_progressive.jpg": lambda p: _save(p, _rgba().convert("CMYK"), progressive=True),
    "rotated.jpg": _rotated_jpeg,
}


@pytest.mark.parametrize("name", FORMATS)
def test_the_estimate_covers_the_real_peak(tmp_path, name):
    """16-bit and float images used to be scaled through whole-image float64 copies (30 bytes a pixel)."""
    FORMATS[name](tmp_path / name)
    measured = _measure(tmp_path / name)
    assert measured["outcome"] == "ok"
    assert 0 < measured["grown"] <= measured["estimate"], measured


@pytest.mark.timeout(300)
def test_an_image_over_the_budget_is_refused_before_its_pixels_are_allocated(tmp_path):
    """The issue's 174 KB 16-bit PNG just under Pillow's pixel limit took 4 GB to decode."""
    side = 9450  # 89.3 MP
    ramp = np.tile((np.arange(side, dtype=np.uint32) * 65535 // side).astype(np.uint16), (side, 1))
    path = tmp_path / "near_limit_16bit.png"
    Image.fromarray(ramp).save(path)
    del ramp
    assert path.stat().st_size < 400_000
    measured = _measure(path, 2**30, VIEW_BYTES_PER_PIXEL)  # what extract asks: the default budget, views included
    assert measured["outcome"] == "too_large" and measured["estimate"] > 2**30
    assert measured["grown"] < 32 * 2**20
