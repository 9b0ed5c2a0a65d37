"""grepq_core.imageio on the bad-input corpus and through fsspec."""

import io
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import warnings
import zlib

import fsspec
import numpy as np
import pytest
import skimage.data
from PIL import Image, features

from grepq_core.errors import ImageError
from grepq_core.files import is_local_path
from grepq_core.images.deadline import decode_in_time
from grepq_core.images.decode import decode_image, device_decodable, load_image
from grepq_core.images.limits import DecodeLimits
from grepq_core.images.read import DEFAULT_MAX_BYTES, read_bytes
from grepq_core.model.views import ensure_min_size, to_tensor
from tests.bad_corpus import (
    KIND_NAMES,
    LIMITS,
    MIN_SIDE,
    ODD_NAMES,
    ONE_PIXEL_RGB,
    OVERSIZED_BYTES,
    TRANSPARENT_BOX,
    _png_chunk,
    expected_stage,
    make_bad_corpus,
)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A memory address as an object's default repr shows it; never in a detail.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


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


def _load_and_prepare(path: str) -> np.ndarray:
    """What the pipeline does to one file up to its views: read, decode under LIMITS, upscale to MIN_SIDE."""
    image, _ = decode_in_time(read_bytes(path), LIMITS)
    ensure_min_size(to_tensor(image), MIN_SIDE)
    return image


@pytest.mark.timeout(60)  # fifo.jpg and dev_zero.jpg hang or never end if read blindly
@pytest.mark.parametrize("name", KIND_NAMES)
def test_each_corpus_file_meets_its_expectation(corpus, name):
    directory, expected = corpus
    path = str(directory / name)
    if path not in expected:
        pytest.skip(f"{name!r}: this filesystem cannot hold it")
    if expected[path] == "ok":
        image = _load_and_prepare(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert min(image.shape[:2]) >= 1
    else:
        with pytest.raises(ImageError) as caught:
            _load_and_prepare(path)
        assert (caught.value.reason, caught.value.stage) == (expected[path], expected_stage(expected[path], name))
        assert not _ADDRESS.search(caught.value.detail), caught.value.detail


@pytest.mark.timeout(60)
def test_details_are_the_same_in_another_process(corpus):
    """Dead-letter rows of identical runs are identical: no memory address or other per-process text."""
    directory, expected = corpus
    bad = sorted(p for p, outcome in expected.items() if outcome != "ok")
    script = textwrap.dedent("""
        import json, sys
        from grepq_core.errors import ImageError
        from grepq_core.images.deadline import decode_in_time
        from grepq_core.images.read import read_bytes
        from grepq_core.model.views import ensure_min_size, to_tensor
        from tests.bad_corpus import LIMITS
        out = {}
        for path in json.loads(sys.argv[1]):
            try:
                ensure_min_size(to_tensor(decode_in_time(read_bytes(path), LIMITS)[0]), int(sys.argv[2]))
            except ImageError as e:
                out[path] = [e.reason, e.detail]
        print(json.dumps(out))
    """)

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", script, json.dumps(bad), str(MIN_SIDE)], cwd=_ROOT,
                              capture_output=True, text=True, check=True, timeout=50)
        return json.loads(done.stdout)

    first = run()
    assert sorted(first) == bad
    assert run() == first


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


def test_empty_file_is_found_by_read_bytes(tmp_path):
    (tmp_path / "empty.jpg").touch()
    with pytest.raises(ImageError) as caught:
        read_bytes(str(tmp_path / "empty.jpg"))
    assert (caught.value.reason, caught.value.stage) == ("empty_file", "read")


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    started = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        read_bytes(str(fifo))
    assert caught.value.reason == "not_a_regular_file" and "FIFO" in caught.value.detail
    assert time.perf_counter() - started < 1


@pytest.mark.timeout(60)
def test_devices_and_sockets_are_refused(tmp_path):
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "sock.jpg"))
        for name, kind in (("zero.jpg", "character device"), ("sock.jpg", "socket")):
            with pytest.raises(ImageError) as caught:
                read_bytes(str(tmp_path / name))
            assert caught.value.reason == "not_a_regular_file" and kind in caught.value.detail
    finally:
        server.close()


def test_broken_symlink_is_unreadable(tmp_path):
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageError) as caught:
        read_bytes(str(tmp_path / "dangling.jpg"))
    assert caught.value.reason == "unreadable" and caught.value.stage == "read"


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "real.jpg").write_bytes(b"real bytes")
    (tmp_path / "link.jpg").symlink_to("real.jpg")
    assert read_bytes(str(tmp_path / "link.jpg")) == b"real bytes"


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    assert OVERSIZED_BYTES > DEFAULT_MAX_BYTES == 256 * 2**20
    sparse = tmp_path / "sparse.jpg"
    with open(sparse, "wb") as f:
        f.truncate(OVERSIZED_BYTES)
    opened = []
    monkeypatch.setattr("grepq_core.images.read.open", lambda *a, **k: opened.append(a), raising=False)
    with pytest.raises(ImageError) as caught:
        read_bytes(str(sparse))
    assert caught.value.reason == "too_large" and str(OVERSIZED_BYTES) in caught.value.detail
    assert not opened


def test_max_bytes_is_configurable_and_inclusive(tmp_path):
    path = tmp_path / "ten.jpg"
    path.write_bytes(b"0123456789")
    assert read_bytes(str(path), max_bytes=10) == b"0123456789"
    with pytest.raises(ImageError) as caught:
        read_bytes(str(path), max_bytes=9)
    assert caught.value.reason == "too_large"


class _GrowingFile(io.BytesIO):
    """A file whose stat size (`size`) lags behind what it holds, as one still being written."""

    def __init__(self, data: bytes, size: int):
        super().__init__(data)
        self.size = size


def test_a_file_that_grows_past_the_cap_is_refused_after_at_most_cap_plus_one_bytes():
    from grepq_core.images.read import _read_capped

    growing = _GrowingFile(b"x" * 100, size=4)
    with pytest.raises(ImageError) as caught:
        _read_capped(growing, "growing.jpg", 50, growing.size)
    assert caught.value.reason == "too_large"
    assert growing.tell() == 51
    still_small = _GrowingFile(b"x" * 30, size=4)
    assert _read_capped(still_small, "growing.jpg", 50, still_small.size) == b"x" * 30


def test_remote_files_over_the_cap_are_refused():
    memory = fsspec.filesystem("memory")
    root = "memory://grepq-test-imageio-cap"
    try:
        memory.pipe(f"{root}/big.jpg", b"x" * 100)
        with pytest.raises(ImageError) as caught:
            read_bytes(f"{root}/big.jpg", max_bytes=99)
        assert caught.value.reason == "too_large"
        assert read_bytes(f"{root}/big.jpg", max_bytes=100) == b"x" * 100
    finally:
        memory.rm(root, recursive=True)


@pytest.mark.parametrize("name", ["a::b.jpg", "x#y.jpg", "q?.jpg", "[br].jpg", "st*r.jpg", "file:x.jpg"])
def test_local_names_are_not_parsed_as_urls(tmp_path, name):
    # Decoys: what a URL parser would read instead (a::b chains to "a"; # and ? cut the name; [] and * glob).
    for decoy in ("a", "b.jpg", "x", "q", "b", "br.jpg", "str.jpg", "x.jpg"):
        (tmp_path / decoy).write_bytes(b"decoy " + decoy.encode())
    path = tmp_path / name
    path.write_bytes(b"own bytes of " + name.encode())
    assert read_bytes(str(path)) == path.read_bytes()
    assert read_bytes(os.fsencode(path)) == path.read_bytes()


def test_a_file_named_like_a_url_chain_gives_its_own_image(corpus):
    directory, _ = corpus
    for name, photo in ODD_NAMES.items():
        image = _load(corpus, name)
        expected = decode_image((directory / name).read_bytes())
        assert (image == expected).all()
        reference = getattr(skimage.data, photo)()
        reference = reference if reference.ndim == 3 else np.dstack([reference] * 3)
        assert image.shape == reference.shape and _mean_abs_diff(image, reference) < 4, name


def test_non_utf8_names_are_read_as_bytes_and_reported_as_text(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    try:
        with open(raw, "wb"):
            pass
    except OSError:
        pytest.skip("this filesystem refuses non-UTF-8 names")
    with pytest.raises(ImageError) as caught:
        read_bytes(raw)
    assert caught.value.reason == "empty_file"
    assert caught.value.detail.encode("utf-8").endswith(b"caf\\xe9.jpg: 0 bytes")


def test_what_counts_as_local():
    assert is_local_path("/data/a::b.jpg") and is_local_path("photos/x#y.jpg") and is_local_path(b"/d/\xff.jpg")
    assert is_local_path("file:///data/a.jpg") and is_local_path(b"file:///data/a.jpg")
    assert not is_local_path("gs://bucket/a.jpg") and not is_local_path("simplecache::gs://bucket/a.jpg")


def _jpeg_with_precision(bits: int, sof: int = 0xC0) -> bytes:
    data = bytearray(_encode(skimage.data.coffee(), "JPEG", quality=90))
    start = data.index(b"\xff\xc0")
    data[start + 1], data[start + 4] = sof, bits
    return bytes(data)


@pytest.mark.parametrize(("bits", "sof"), [(12, 0xC0), (12, 0xC1), (12, 0xC3), (16, 0xC3)])
def test_12_and_16_bit_jpegs_are_an_unsupported_format(bits, sof):
    with pytest.raises(ImageError) as caught:
        decode_image(_jpeg_with_precision(bits, sof))
    assert caught.value.reason == "unsupported_format" and f"{bits}-bit JPEG" in caught.value.detail
    with pytest.raises(ImageError) as caught:
        device_decodable(_jpeg_with_precision(bits, sof))
    assert caught.value.reason == "unsupported_format"


def _ftyp(brand: bytes) -> bytes:
    return b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1" + brand + bytes(200)


@pytest.mark.parametrize(
    ("data", "name"),
    [(_ftyp(b"heic"), "HEIF"), (_ftyp(b"hevc"), "HEIF"), (b"\xff\x0a" + bytes(200), "JPEG XL"),
     (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(200), "JPEG XL")],
    ids=["heic", "hevc", "jxl-codestream", "jxl-container"],
)
def test_signatures_of_formats_pillow_lacks_are_unsupported(data, name):
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.reason == "unsupported_format" and caught.value.detail.startswith(name)


def test_avif_is_unsupported_only_without_its_codec(monkeypatch):
    data = _ftyp(b"avif")
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.reason == ("not_an_image" if features.check("avif") else "unsupported_format")
    monkeypatch.setattr("PIL.features.check", lambda feature: False)
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.reason == "unsupported_format" and caught.value.detail.startswith("AVIF")


def test_a_missing_decoder_is_an_unsupported_format(monkeypatch):
    data = _encode(skimage.data.coffee(), "PNG")

    def no_decoder(mode, decoder_name, args, extra=()):
        raise OSError(f"decoder {decoder_name} not available")

    monkeypatch.setattr(Image, "_getdecoder", no_decoder)
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert (caught.value.reason, caught.value.detail) == ("unsupported_format", "decoder zip not available")


def test_a_jpeg_signature_alone_is_not_an_unsupported_format():
    with pytest.raises(ImageError) as caught:
        decode_image(b"\xff\xd8\xff" + np.random.default_rng(2).bytes(300))
    assert caught.value.reason != "unsupported_format"


def test_not_an_image_detail_has_no_memory_address():
    details = set()
    for _ in range(2):
        with pytest.raises(ImageError) as caught:
            decode_image(b"not an image at all")
        details.add(caught.value.detail)
    assert details == {"cannot identify image file"}


def test_max_pixels_refuses_before_decoding():
    data = _encode(skimage.data.coffee(), "PNG")  # 400x600
    assert decode_image(data, DecodeLimits(max_pixels=400 * 600)).shape == (400, 600, 3)
    with pytest.raises(ImageError) as caught:
        decode_image(data, DecodeLimits(max_pixels=400 * 600 - 1))
    assert caught.value.reason == "decompression_bomb" and "600x400" in caught.value.detail


_STRIP_MEMORY = textwrap.dedent("""
    import resource, sys
    from grepq_core.errors import ImageError
    from grepq_core.images.decode import load_image
    from grepq_core.model.views import ensure_min_size, to_tensor
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image = to_tensor(load_image(sys.argv[1]))
    try:
        ensure_min_size(image, 224)
        reason = "ok"
    except ImageError as e:
        reason = e.reason
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(reason, grown_mb)
""")


@pytest.mark.timeout(120)
def test_extreme_aspect_strip_is_refused_in_bounded_memory(corpus):
    """10000x1 used to be upscaled to 224x2,240,000 and reach 8.5 GB resident."""
    directory, _ = corpus
    path = directory / "extreme_aspect_10000x1.png"
    assert path.stat().st_size < 100_000
    done = subprocess.run([sys.executable, "-c", _STRIP_MEMORY, str(path)],
                          capture_output=True, text=True, check=True, timeout=100)
    reason, grown_mb = done.stdout.split()
    assert reason == "extreme_aspect_ratio"
    assert float(grown_mb) < 600  # peak resident growth past the imports (torch alone is ~600 MB)


def _deep_folder(root, length: int) -> str:
    """A folder under `root` whose path is longer than `length` bytes, made a component at a time."""
    path, folder = str(root), os.open(root, os.O_RDONLY)
    try:
        while len(path) <= length:
            os.mkdir("d" * 200, dir_fd=folder)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=folder)
            os.close(folder)
            folder, path = inner, f"{path}/{'d' * 200}"
        with open(os.open("photo.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder), "wb") as f:
            f.write(_encode(skimage.data.coffee(), "JPEG"))
    finally:
        os.close(folder)
    return path


def test_a_path_longer_than_path_max_is_read_and_a_folder_there_is_named_one(tmp_path):
    """Such a path used to be unreadable ("File name too long"), and a folder there looked like a file."""
    folder = _deep_folder(tmp_path, os.pathconf("/", "PC_PATH_MAX"))
    with pytest.raises(OSError):
        os.stat(folder)
    data = read_bytes(f"{folder}/photo.jpg")
    assert data == _encode(skimage.data.coffee(), "JPEG")
    with pytest.raises(ImageError) as caught:
        read_bytes(folder)
    assert caught.value.reason == "unreadable" and caught.value.detail.endswith(": is a directory")


def _png_with(kind: bytes, payload: bytes, before: bytes = b"IDAT") -> tuple[bytes, bytes]:
    """Chelsea as PNG, without and with one more chunk placed before chunk `before`."""
    plain = _encode(skimage.data.chelsea(), "PNG")
    at = plain.index(before) - 4
    return plain, plain[:at] + _png_chunk(kind, payload) + plain[at:]


@pytest.mark.parametrize("damage", ["eXIf header", "ICC segment", "zTXt bomb", "text after the pixels"])
def test_damaged_metadata_costs_no_pixels(damage):
    """Each used to be dead-lettered as corrupt or not_an_image although its pixels decode."""
    if damage == "ICC segment":
        plain = _encode(skimage.data.coffee(), "JPEG")
        damaged = plain[:2] + b"\xff\xe2\x00\x0eICC_PROFILE\x00" + plain[2:]
        ignored = "damaged metadata"
    elif damage == "eXIf header":
        plain, damaged = _png_with(b"eXIf", b"Exif\x00\x17MM\x00*\x00\x00\x00\x08")
        ignored = "damaged EXIF"
    else:
        plain, damaged = _png_with(b"zTXt", b"comment\x00\x00" + zlib.compress(bytes(50 * 2**20)),
                                   b"IDAT" if damage == "zTXt bomb" else b"IEND")
        ignored = "damaged metadata"
    pixels, why = decode_in_time(damaged, DecodeLimits(max_seconds=30))
    assert (pixels == decode_image(plain)).all() and why == ignored


@pytest.mark.parametrize(("dtype", "channels", "bits"), [(np.float32, 3, 32), (np.float16, 1, 16), (np.float64, 1, 64)])
def test_float_tiffs_pillow_has_no_mode_for_are_an_unsupported_format(dtype, channels, bits):
    import tifffile

    buffer = io.BytesIO()
    values = skimage.data.astronaut()[:32, :32, :channels].astype(dtype) / 255
    tifffile.imwrite(buffer, values[..., 0] if channels == 1 else values)
    with pytest.raises(ImageError) as caught:
        decode_image(buffer.getvalue())
    assert (caught.value.reason, caught.value.detail) == (
        "unsupported_format", f"TIFF of {bits}-bit floating-point samples: Pillow cannot decode it")
