"""grepq_core.imageio on the bad-input corpus and through fsspec."""

import io
import os
import time
import warnings

import fsspec
import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.bad_corpus import KIND_NAMES, ONE_PIXEL_RGB, TRANSPARENT_BOX, make_bad_corpus
from grepq_core.errors import ImageError
from grepq_core.imageio import decode_image, load_image, read_bytes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad_corpus")
    return directory, make_bad_corpus(directory)


def _load(corpus, name: str) -> np.ndarray:
    directory, _ = corpus
    return load_image(str(directory / name))


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def _encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("name", KIND_NAMES)
def test_each_corpus_file_meets_its_expectation(corpus, name):
    directory, expected = corpus
    path = str(directory / name)
    if path not in expected:
        pytest.skip(f"{name!r}: this filesystem cannot hold it")
    if expected[path] == "ok":
        image = load_image(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert min(image.shape[:2]) >= 1
    else:
        with pytest.raises(ImageError) as caught:
            load_image(path)
        assert caught.value.reason == expected[path]


def test_exif_orientation_is_applied(corpus):
    image = _load(corpus, "exif_rotated.jpg")
    cat = skimage.data.chelsea()
    assert image.shape == (cat.shape[1], cat.shape[0], 3)
    clockwise = np.rot90(cat, k=-1)
    assert _mean_abs_diff(image, clockwise) < 4
    assert _mean_abs_diff(image, np.rot90(cat, k=1)) > 20


def test_rgba_is_composited_over_white(corpus):
    image = _load(corpus, "rgba.png")
    box = TRANSPARENT_BOX
    assert (image[:box, :box] == 255).all()  # black pixels under alpha 0 become white
    expected = skimage.data.astronaut()
    assert (image[box:] == expected[box:]).all() and (image[:, box:] == expected[:, box:]).all()


def test_palette_transparency_becomes_white(corpus):
    image = _load(corpus, "palette_transparent.png")
    box = TRANSPARENT_BOX
    assert (image[:box, :box] == 255).all()
    assert _mean_abs_diff(image[box:], skimage.data.chelsea()[box:]) < 6


def test_16bit_is_scaled_not_clipped(corpus):
    camera = _load(corpus, "grey16.png")
    for channel in range(3):
        assert (camera[:, :, channel] == skimage.data.camera()).all()
    ramp = _load(corpus, "gradient16.png")[0, :, 0].astype(int)
    assert ramp.min() == 0 and ramp.max() == 255
    assert (np.diff(ramp) >= 0).all() and len(np.unique(ramp)) > 200


def test_greyscale_fills_all_channels(corpus):
    image = _load(corpus, "greyscale.png")
    assert all((image[:, :, c] == skimage.data.camera()).all() for c in range(3))


def test_cmyk_gives_plausible_rgb(corpus):
    image = _load(corpus, "cmyk.jpg")
    assert _mean_abs_diff(image, skimage.data.coffee()) < 8


def test_animated_gif_gives_first_frame(corpus):
    image = _load(corpus, "animated.gif")
    cat = skimage.data.chelsea()
    assert _mean_abs_diff(image, cat) < 8
    assert _mean_abs_diff(image, cat[::-1]) > 3 * _mean_abs_diff(image, cat)


def test_tiny_and_huge_images_keep_their_size(corpus):
    assert (_load(corpus, "one_pixel.png") == np.array(ONE_PIXEL_RGB, np.uint8)).all()
    assert _load(corpus, "tiny_20x20.png").shape == (20, 20, 3)
    assert _load(corpus, "panorama_8000x200.jpg").shape == (200, 8000, 3)
    assert _load(corpus, "large_6000x4000.jpg").shape == (4000, 6000, 3)


def test_duplicates_decode_identically(corpus):
    directory, _ = corpus
    assert (directory / "duplicate_a.jpg").read_bytes() == (directory / "duplicate_b.jpg").read_bytes()
    assert (_load(corpus, "duplicate_a.jpg") == _load(corpus, "duplicate_b.jpg")).all()


def test_bomb_fails_fast_without_touching_warning_filters(corpus):
    directory, _ = corpus
    filters_before = list(warnings.filters)
    for name in ("bomb.png", "bomb_warning.png"):
        assert (directory / name).stat().st_size < 1024
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ImageError) as error:
                _load(corpus, name)
        assert error.value.reason == "decompression_bomb"
        assert time.perf_counter() - started < 0.5
        assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert list(warnings.filters) == filters_before


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # float in 0..1: scaled by 255
        (skimage.data.camera().astype(np.float32) / 255, skimage.data.camera()),
        # signed 32-bit outside 0..65535: stretched from its own min..max
        (skimage.data.camera().astype(np.int32) * 1000 - 70000, skimage.data.camera()),
    ],
    ids=["F", "I-signed"],
)
def test_float_and_32bit_modes(values, expected):
    image = decode_image(_encode(values, "TIFF"))
    assert np.abs(image[:, :, 0].astype(int) - expected).max() <= 1


def test_read_bytes_through_fsspec_memory():
    memory = fsspec.filesystem("memory")
    root = "memory://grepq-test-imageio"
    data = _encode(skimage.data.astronaut(), "PNG")
    try:
        with fsspec.open(f"{root}/photo.png", "wb") as f:
            f.write(data)
        memory.touch(f"{root}/empty.png")
        assert read_bytes(f"{root}/photo.png") == data
        assert (load_image(f"{root}/photo.png") == skimage.data.astronaut()).all()
        for name, reason in (("missing.png", "unreadable"), ("empty.png", "empty_file")):
            with pytest.raises(ImageError) as caught:
                read_bytes(f"{root}/{name}")
            assert caught.value.reason == reason
    finally:
        memory.rm(root, recursive=True)


def test_local_path_and_file_url_agree(tmp_path):
    path = tmp_path / "coffee.jpg"
    path.write_bytes(_encode(skimage.data.coffee(), "JPEG"))
    assert read_bytes(str(path)) == read_bytes(path.as_uri()) == path.read_bytes()


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ImageError) as caught:
        read_bytes(str(tmp_path / "missing.jpg"))
    assert caught.value.reason == "unreadable"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_forbidden_file_is_unreadable(tmp_path):
    forbidden = tmp_path / "forbidden.jpg"
    forbidden.write_bytes(_encode(skimage.data.coffee(), "JPEG"))
    forbidden.chmod(0)
    with pytest.raises(ImageError) as caught:
        read_bytes(str(forbidden))
    assert caught.value.reason == "unreadable"


def test_empty_bytes_are_an_empty_file():
    with pytest.raises(ImageError) as caught:
        decode_image(b"")
    assert caught.value.reason == "empty_file"
