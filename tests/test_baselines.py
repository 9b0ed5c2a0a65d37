"""Classical blind baselines: NIQE, BRISQUE, NSS features (grepq_core/evaluation/baselines.py).

The test photo is scikit-image's motorcycle, which is not one of the photos
behind the shipped NIQE pristine model.
"""
import io

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter

import grepq_core.evaluation.baselines as baselines
from grepq_core.errors import ImageError
from grepq_core.evaluation.baselines import NIQE_PRISTINE_PHOTOS, brisque, fit_niqe_pristine, niqe, nss_features


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _encode(img: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_png() -> bytes:
    return _encode(skimage.data.stereo_motorcycle()[0], "PNG")


@pytest.fixture(scope="module")
def blurred(photo_png) -> list[np.ndarray]:
    """The photo decoded from PNG and Gaussian-blurred with sigma 0, 1, 2, 3."""
    pil = Image.open(io.BytesIO(photo_png)).convert("RGB")
    return [np.asarray(pil.filter(ImageFilter.GaussianBlur(s)) if s else pil) for s in range(4)]


@pytest.mark.parametrize("metric", [niqe, brisque], ids=["niqe", "brisque"])
def test_scores_get_worse_with_blur(blurred, metric):
    scores = [metric(img) for img in blurred]
    assert all(np.isfinite(scores))
    assert np.all(np.diff(scores) > 0), scores


@pytest.mark.parametrize("metric", [niqe, brisque], ids=["niqe", "brisque"])
@pytest.mark.parametrize("name", ["stereo_motorcycle", "coffee"])
def test_scores_get_worse_with_strong_jpeg(metric, name):
    img = getattr(skimage.data, name)()
    img = img[0] if isinstance(img, tuple) else img
    original = _decode(_encode(img, "PNG"))
    compressed = _decode(_encode(img, "JPEG", quality=5))
    assert metric(compressed) > metric(original) + 5


def test_nss_features_shape_finite_and_deterministic(photo_png, blurred):
    first = nss_features(_decode(photo_png))
    again = nss_features(_decode(photo_png))
    assert first.shape == (36,) and first.dtype == np.float64
    assert np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, nss_features(blurred[3]))


def test_shipped_niqe_pristine_model_is_reproducible():
    images = [getattr(skimage.data, name)() for name in NIQE_PRISTINE_PHOTOS]
    mu, cov = fit_niqe_pristine(images)
    shipped_mu, shipped_cov = baselines._niqe_pristine()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_allclose(mu, shipped_mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cov, shipped_cov, rtol=1e-4, atol=1e-6)


def test_niqe_of_the_pristine_photos_is_low(blurred):
    pristine = [niqe(getattr(skimage.data, n)()) for n in ("astronaut", "coffee")]
    assert max(pristine) < niqe(blurred[3])


def test_too_small_and_flat_images_are_image_errors():
    small = skimage.data.astronaut()[:96, :150]
    with pytest.raises(ImageError) as err:
        niqe(small)
    assert err.value.reason == "too_small"
    flat = np.full((200, 300, 3), 128, np.uint8)
    for metric in (nss_features, brisque):
        with pytest.raises(ImageError) as err:
            metric(flat)
        assert err.value.reason == "no_texture"


def test_grey_input_matches_its_rgb_copy():
    grey = skimage.data.camera()
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_allclose(nss_features(grey), nss_features(rgb))
    assert niqe(grey) == pytest.approx(niqe(rgb))
