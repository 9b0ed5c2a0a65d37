"""Zero-shot scores (grepq_core/model/zero_shot.py): the MVG distance and the LL/HL/combined scores."""
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from scipy import ndimage

from grepq_core.errors import GrepqError
from grepq_core.model import views as V
from grepq_core.model.ll_encoder import LLEncoder
from grepq_core.model.pristine import fit_pristine
from grepq_core.model.zero_shot import (
    combined_score,
    hl_score,
    ll_distance,
    ll_score_of_distance,
    mvg_distance,
    patch_statistics,
)
from grepq_core.training.pristine_patches import select_pristine_patches


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, 2 * d))
    return a @ a.T / (2 * d)


def _decoded(tmp_path, name: str, blur: float = 0.0) -> np.ndarray:
    """A scikit-image photo, optionally blurred per channel, saved as PNG and decoded with Pillow."""
    img = getattr(skimage.data, name)()
    if blur:
        img = np.clip(ndimage.gaussian_filter(img.astype(np.float64), (blur, blur, 0)), 0, 255).round().astype(np.uint8)
    path = tmp_path / f"{name}-{blur}.png"
    Image.fromarray(img).save(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("seed,d", [(0, 3), (1, 16), (2, 64)])
def test_mvg_distance_matches_the_formula(seed, d):
    rng = np.random.default_rng(seed)
    mu_r, mu_t = rng.normal(size=d), rng.normal(size=d)
    cov_r, cov_t = _random_spd(rng, d), _random_spd(rng, d)
    diff = mu_r - mu_t
    expected = np.sqrt(diff @ np.linalg.inv((cov_r + cov_t) / 2 + 1e-3 * np.eye(d)) @ diff)
    assert mvg_distance(mu_r, cov_r, mu_t, cov_t) == pytest.approx(expected, rel=1e-9)
    assert mvg_distance(mu_t, cov_t, mu_r, cov_r) == pytest.approx(expected, rel=1e-9)
    assert mvg_distance(mu_r, cov_r, mu_r, cov_t) == 0.0


@pytest.mark.parametrize("shrinkage", [0.1, 0.5, 1.0])
def test_mvg_distance_shrinks_the_pooled_covariance(shrinkage):
    rng = np.random.default_rng(7)
    d = 12
    mu_r, mu_t = rng.normal(size=d), rng.normal(size=d)
    cov_r, cov_t = _random_spd(rng, d), _random_spd(rng, d)
    pooled = (cov_r + cov_t) / 2
    shrunk = (1 - shrinkage) * pooled + shrinkage * np.trace(pooled) / d * np.eye(d) + 1e-3 * np.eye(d)
    diff = mu_r - mu_t
    expected = np.sqrt(diff @ np.linalg.inv(shrunk) @ diff)
    assert mvg_distance(mu_r, cov_r, mu_t, cov_t, shrinkage=shrinkage) == pytest.approx(expected, rel=1e-9)


def test_isotropic_term_adds_the_plain_distance_in_units_of_the_mean_variance():
    rng = np.random.default_rng(9)
    d = 10
    mu_r, mu_t = rng.normal(size=d), rng.normal(size=d)
    cov_r, cov_t = _random_spd(rng, d), _random_spd(rng, d)
    diff, mean_variance = mu_r - mu_t, np.trace((cov_r + cov_t) / 2) / d
    base = mvg_distance(mu_r, cov_r, mu_t, cov_t, shrinkage=0.1)
    expected = np.sqrt(base ** 2 + 0.03 * diff @ diff / (mean_variance + 1e-3))
    assert mvg_distance(mu_r, cov_r, mu_t, cov_t, shrinkage=0.1, isotropic=0.03) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="isotropic"):
        mvg_distance(mu_r, cov_r, mu_t, cov_t, isotropic=-1.0)


def test_isotropic_term_weighs_the_direction_the_pristine_patches_spread_along():
    """A shift along the pristine model's widest direction, which the Mahalanobis form all but ignores,
    moves d once the isotropic term is on; a shift along its narrowest direction moves it either way."""
    cov = np.diag([400.0] + [1.0] * 127)  # one direction 400 times as wide, as in trained LL features
    wide, narrow = np.eye(128)[0] * 10, np.eye(128)[1] * 0.7
    zero = np.zeros(128)
    plain = [mvg_distance(zero, cov, shift, cov, shrinkage=0.1) for shift in (wide, narrow)]
    with_term = [mvg_distance(zero, cov, shift, cov, shrinkage=0.1, isotropic=0.03) for shift in (wide, narrow)]
    assert plain[0] < plain[1]  # ten times the shift, counted for less
    assert with_term[0] > with_term[1]
    assert with_term[1] == pytest.approx(plain[1], rel=0.02)


def test_shrinkage_makes_the_distance_independent_of_feature_scale():
    """Features of rank 3 in 8-d (as collapsed encoder features are): with shrinkage and no ridge,
    scaling every feature by c leaves d unchanged; the fixed ridge alone does not."""
    rng = np.random.default_rng(8)
    basis = rng.normal(size=(3, 8))
    pristine, test = rng.normal(size=(40, 3)) @ basis, (rng.normal(size=(10, 3)) + 1) @ basis
    for kwargs, invariant in (({"eps": 0.0, "shrinkage": 0.1}, True), ({"eps": 1e-3}, False)):
        d = [mvg_distance(*patch_statistics(c * pristine), *patch_statistics(c * test), **kwargs)
             for c in (1e-2, 1, 1e2)]
        assert np.allclose(d, d[1], rtol=1e-6) == invariant, (kwargs, d)
    with pytest.raises(ValueError, match="shrinkage"):
        mvg_distance(pristine[0], np.eye(8), test[0], np.eye(8), shrinkage=1.5)


def test_mvg_distance_with_singular_covariance_and_no_ridge():
    rng = np.random.default_rng(3)
    mu_r, mu_t = rng.normal(size=4), rng.normal(size=4)
    singular = np.diag([1.0, 1.0, 0.0, 0.0])
    diff = mu_r - mu_t
    d = mvg_distance(mu_r, singular, mu_t, singular, eps=0.0)
    assert d == pytest.approx(np.sqrt(diff[:2] @ diff[:2]))


def test_patch_statistics():
    features = np.random.default_rng(4).normal(size=(12, 5))
    mu, cov = patch_statistics(features)
    np.testing.assert_allclose(mu, features.mean(axis=0))
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False))
    mu1, cov1 = patch_statistics(features[:1])
    np.testing.assert_array_equal(mu1, features[0])
    np.testing.assert_array_equal(cov1, np.zeros((5, 5)))
    assert patch_statistics(features[:, :1])[1].shape == (1, 1)
    with pytest.raises(ValueError):
        patch_statistics(np.empty((0, 5)))


def test_ll_score_range_and_identity():
    rng = np.random.default_rng(5)
    pristine_features = rng.normal(size=(50, 8))
    pristine = fit_pristine(pristine_features, "ll:test")
    assert ll_score_of_distance(ll_distance(pristine, pristine_features)) == pytest.approx(0.5, abs=1e-12)
    scores = [ll_score_of_distance(ll_distance(pristine, pristine_features + shift))
              for shift in (0.5, 2.0, 8.0, 64.0)]
    assert all(0 < s < 0.5 for s in scores)
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert 0 < ll_score_of_distance(ll_distance(pristine, rng.normal(size=(1, 8)) + 3)) < 0.5
    with pytest.raises(GrepqError, match="8-d"):
        ll_distance(pristine, rng.normal(size=(10, 4)))


def test_hl_score_properties():
    rng = np.random.default_rng(6)
    good, bad = rng.uniform(-1, 1, size=20), rng.uniform(-1, 1, size=20)
    forward, backward = hl_score(good, bad), hl_score(bad, good)
    assert forward.shape == (20,)
    np.testing.assert_allclose(forward + backward, 1.0)
    np.testing.assert_allclose(hl_score(good, good), 0.5)
    np.testing.assert_array_equal(forward > 0.5, good > bad)
    steps = hl_score(np.linspace(-1, 1, 9), 0.2)
    assert np.all(np.diff(steps) > 0)
    assert hl_score(0.3, 0.2) == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_combined_score_needs_both_pathways():
    assert combined_score(0.4, 0.7) == pytest.approx(1.1)
    assert np.isnan(combined_score(np.nan, 0.7))
    assert np.isnan(combined_score(0.4, float("nan")))
    both = combined_score(np.array([0.1, np.nan, 0.3]), np.array([0.5, 0.5, np.nan]))
    np.testing.assert_allclose(both, [0.6, np.nan, np.nan])


def test_zero_shot_ll_score_falls_as_gaussian_blur_grows(tmp_path):
    """A random-init LL encoder is blur-sensitive enough to order the blur levels."""
    torch.manual_seed(0)
    encoder = LLEncoder(width=8).eval()

    def features(patches_hwc: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(patches_hwc.transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            return encoder(V.normalize(x, V.IMAGENET_MEAN, V.IMAGENET_STD)).double().numpy()

    pristine_patches = np.concatenate(
        [select_pristine_patches(_decoded(tmp_path, name)) for name in ("astronaut", "coffee", "rocket")])
    pristine = fit_pristine(features(pristine_patches), "ll:random-w8")
    scores = []
    for sigma in (0, 1, 2, 4):
        image = V.to_tensor(_decoded(tmp_path, "chelsea", blur=sigma))
        test_patches = V.patches(image, size=96, stride=48, max_patches=None).permute(0, 2, 3, 1).numpy()
        scores.append(ll_score_of_distance(ll_distance(pristine, features(test_patches))))
    assert all(0 < s <= 0.5 for s in scores)
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
