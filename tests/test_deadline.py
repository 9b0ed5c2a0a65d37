"""The decode in a worker process: stopped at its time budget, its crash one image's loss, its answer the
in-process decode's."""
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import skimage.data
from PIL import Image

from grepq_core.errors import ImageError
from grepq_core.images.deadline import decode_in_time
from grepq_core.images.decode import decode_rgb
from grepq_core.images.limits import DecodeLimits
from tests.bad_corpus import BOMB_SCANS, scan_bomb_jpeg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jpeg(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _workers() -> set[int]:
    """Process ids of this process's decode workers."""
    out = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            children = [int(pid) for pid in f.read().split()]
        for pid in children:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"grepq_core.images.deadline" in f.read():
                    out.add(pid)
    return out


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """About a minute and a half of libjpeg's time on the development machine, in 1.3 MB."""
    return scan_bomb_jpeg(4000, 4000, BOMB_SCANS)


@pytest.mark.timeout(60)
def test_a_scan_bomb_is_stopped_at_its_time_budget_and_the_next_image_decodes(bomb):
    started = time.monotonic()
    with pytest.raises(ImageError) as caught:
        decode_in_time(bomb, DecodeLimits(max_seconds=2))
    assert time.monotonic() - started < 4
    assert (caught.value.reason, caught.value.stage) == ("too_slow", "decode")
    assert caught.value.detail == "decoding took more than the 2 s allowed per image"
    coffee = skimage.data.coffee()
    pixels, ignored = decode_in_time(_jpeg(coffee), DecodeLimits(max_seconds=10))
    assert pixels.shape == coffee.shape and ignored is None


@pytest.mark.timeout(60)
def test_a_worker_that_dies_costs_only_its_image(bomb):
    outcome = {}

    def decode():
        try:
            decode_in_time(bomb, DecodeLimits(max_seconds=50))
        except ImageError as e:
            outcome["error"] = e

    thread = threading.Thread(target=decode)
    thread.start()
    time.sleep(3)  # the worker is decoding now, even if it had to start first
    for pid in _workers():
        os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    thread.join(30)
    error = outcome["error"]
    assert (error.reason, error.stage, error.detail) == ("decoder_crashed", "decode", "the decoder died (signal SIGKILL)")
    assert decode_in_time(_jpeg(skimage.data.chelsea()), DecodeLimits(max_seconds=10))[0].shape == (300, 451, 3)


def _exif_jpeg(array: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg(array, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_worker_answers_what_the_in_process_decode_does(orientation):
    """Pixels cross the pipe band by band; large rotated images take several bands."""
    photo = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((3000, 2100)))
    data = _exif_jpeg(photo, orientation)
    pixels, ignored = decode_in_time(data, DecodeLimits(max_seconds=30))
    expected, _ = decode_rgb(data)
    assert pixels.shape == expected.shape and (pixels == expected).all() and ignored is None
    assert pixels.shape[:2] == ((3000, 2100) if orientation >= 5 else (2100, 3000))


def test_a_worker_reports_the_decoders_errors_and_stays():
    for data, reason in ((b"not an image", "not_an_image"), (_jpeg(skimage.data.coffee())[:3000], "truncated")):
        with pytest.raises(ImageError) as caught:
            decode_in_time(data, DecodeLimits(max_seconds=10))
        assert caught.value.reason == reason
    before = _workers()
    decode_in_time(_jpeg(skimage.data.coffee()), DecodeLimits(max_seconds=10))
    assert _workers() == before  # the worker that answered the errors decoded this one too


def test_without_a_time_budget_the_decode_runs_in_this_process():
    before = _workers()
    pixels, _ = decode_in_time(_jpeg(skimage.data.coffee()), DecodeLimits(max_seconds=None))
    assert pixels.shape == skimage.data.coffee().shape and _workers() <= before


_CAPPED = textwrap.dedent("""
    import numpy as np
    from grepq_core.images.deadline import _cap_address_space
    _cap_address_space(64 * 2**20)
    np.ones(64 * 2**20, np.uint8)  # within the budget
    try:
        np.ones(2 * 2**30, np.uint8)
    except MemoryError:
        print("refused")
""")


def test_a_worker_cannot_map_much_more_than_its_budget():
    """The backstop behind the estimate: past budget and slack, an allocation fails (a decoder's MemoryError,
    which is `too_large`) instead of growing the worker."""
    done = subprocess.run([sys.executable, "-c", _CAPPED], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "refused", done.stderr
