"""Pristine-patch selection and the pristine model's storage (grepq_core/model/pristine.py)."""
import numpy as np
import pytest
import skimage.data
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage

from grepq_core.errors import GrepqError
from grepq_core.model.pristine import PristineModel, fit_pristine
from grepq_core.training.pristine_patches import colourfulness, select_pristine_patches, sharpness


def _decoded(tmp_path, name: str) -> np.ndarray:
    """A bundled scikit-image photo written as PNG and decoded back with Pillow."""
    path = tmp_path / f"{name}.png"
    Image.fromarray(getattr(skimage.data, name)()).save(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _tile_grid(img: np.ndarray, size: int) -> dict[bytes, tuple[int, int]]:
    """Every non-overlapping tile's bytes -> its grid position."""
    return {img[r:r + size, c:c + size].tobytes(): (r // size, c // size)
            for r in range(0, img.shape[0] - size + 1, size)
            for c in range(0, img.shape[1] - size + 1, size)}


def test_sharpness_is_the_sum_of_windowed_local_std(tmp_path):
    patch = _grey(_decoded(tmp_path, "astronaut")[100:196, 200:296])
    coords = np.arange(7) - 3
    window = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * (7 / 6) ** 2))
    window /= window.sum()
    windows = sliding_window_view(np.pad(patch, 3, mode="edge"), (7, 7))
    mu = (windows * window).sum(axis=(-2, -1))
    second = (windows ** 2 * window).sum(axis=(-2, -1))
    assert sharpness(patch) == pytest.approx(np.sqrt(np.abs(second - mu ** 2)).sum(), rel=1e-9)


def test_sharpness_falls_with_blur_and_is_zero_on_flat(tmp_path):
    patch = _grey(_decoded(tmp_path, "coffee")[150:246, 250:346])
    values = [sharpness(ndimage.gaussian_filter(patch, s)) if s else sharpness(patch) for s in (0, 1, 2, 4)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert sharpness(np.full((96, 96), 200.0)) == pytest.approx(0.0, abs=1e-6)


def test_colourfulness_formula_and_ordering(tmp_path):
    patch = _decoded(tmp_path, "coffee")[100:196, 100:196].astype(np.float64)
    r, g, b = patch[..., 0], patch[..., 1], patch[..., 2]
    rg, yb = np.abs(r - g), np.abs((r + g) / 2 - b)
    expected = np.hypot(rg.std(ddof=1), yb.std(ddof=1)) + np.hypot(rg.mean(), yb.mean())
    assert colourfulness(patch) == pytest.approx(expected, rel=1e-12)
    grey = np.repeat(_grey(patch)[..., None], 3, axis=2)
    assert colourfulness(grey) == pytest.approx(0.0, abs=1e-9)
    faded = 0.5 * patch + 0.5 * grey
    assert 0 < colourfulness(faded) < colourfulness(patch)


def test_selected_patches_are_grid_tiles_passing_both_thresholds(tmp_path):
    img = _decoded(tmp_path, "astronaut")
    kept = select_pristine_patches(img)
    grid = _tile_grid(img, 96)
    assert kept.dtype == np.uint8 and kept.shape[1:] == (96, 96, 3)
    assert 1 <= len(kept) < len(grid)
    assert all(p.tobytes() in grid for p in kept)
    tiles = [np.frombuffer(t, np.uint8).reshape(96, 96, 3) for t in grid]
    sharp_all = np.array([sharpness(_grey(t)) for t in tiles])
    sharp_kept = np.array([sharpness(_grey(p)) for p in kept])
    assert (sharp_kept > 0.75 * sharp_all.max()).all()
    passing = [t for t, s in zip(tiles, sharp_all) if s > 0.75 * sharp_all.max()]
    colour_max = max(colourfulness(t) for t in passing)
    assert all(colourfulness(p) > 0.8 * colour_max for p in kept)
    assert len(kept) == sum(colourfulness(t) > 0.8 * colour_max for t in passing)


def test_blurred_half_of_a_photo_gives_no_pristine_patches(tmp_path):
    img = _decoded(tmp_path, "chelsea")[:288, :384].copy()
    img[:, :192] = ndimage.gaussian_filter(img[:, :192], sigma=(3, 3, 0))
    kept = select_pristine_patches(img)
    grid = _tile_grid(img, 96)
    assert len(kept) >= 1
    assert all(grid[p.tobytes()][1] >= 2 for p in kept)


def test_flat_image_keeps_one_patch_and_tiny_image_none():
    flat = np.full((200, 300, 3), 128, np.uint8)
    assert select_pristine_patches(flat).shape == (1, 96, 96, 3)
    assert select_pristine_patches(np.zeros((50, 400, 3), np.uint8)).shape == (0, 96, 96, 3)
    with pytest.raises(ValueError):
        select_pristine_patches(np.zeros((200, 200), np.uint8))


def test_fit_pristine_is_mean_and_covariance():
    features = np.random.default_rng(0).normal(size=(40, 6))
    model = fit_pristine(features, "ll:test")
    np.testing.assert_allclose(model.mean, features.mean(axis=0))
    np.testing.assert_allclose(model.cov, np.cov(features, rowvar=False))
    assert model.n_patches == 40 and model.encoder_identity == "ll:test"
    with pytest.raises(GrepqError):
        fit_pristine(features[:1], "ll:test")
    with pytest.raises(GrepqError):
        fit_pristine(np.full((5, 6), np.nan), "ll:test")


@pytest.mark.parametrize("where", ["file", "memory"])
def test_save_load_round_trip(tmp_path, where):
    model = fit_pristine(np.random.default_rng(1).normal(size=(30, 5)), "ll:resnet18-w8@abc123")
    uri = str(tmp_path / "pristine.npz") if where == "file" else "memory://grepq-test/pristine.npz"
    model.save(uri)
    back = PristineModel.load(uri)
    np.testing.assert_array_equal(back.mean, model.mean)
    np.testing.assert_array_equal(back.cov, model.cov)
    assert (back.encoder_identity, back.n_patches) == (model.encoder_identity, model.n_patches)
    assert isinstance(back.encoder_identity, str)


def test_pickled_or_foreign_files_are_refused(tmp_path):
    model = fit_pristine(np.random.default_rng(2).normal(size=(10, 3)), "ll:test")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("grepq-pristine/1"), mean=model.mean, cov=model.cov,
             encoder_identity=np.array(["ll:test"], dtype=object), n_patches=np.array(10))
    with pytest.raises(GrepqError, match="allow_pickle"):
        PristineModel.load(str(pickled))
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.ones(3))
    with pytest.raises(GrepqError):
        PristineModel.load(str(other))
    text = tmp_path / "notes.npz"
    text.write_text("not numpy")
    with pytest.raises(GrepqError):
        PristineModel.load(str(text))
    with pytest.raises(GrepqError):
        PristineModel.load(str(tmp_path / "missing.npz"))
