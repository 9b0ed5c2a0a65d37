"""The graded distortion bank (grepq_core/training/distortions.py) on a real photo."""
import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage.metrics import structural_similarity

from grepq_core.errors import GrepqError
from grepq_core.training.distortions import DISTORTIONS, NUM_LEVELS, apply_distortion, list_distortions

KADID_SUBSET = {
    "blur": {"gaussian_blur", "lens_blur", "motion_blur"},
    "colour": {"saturation_down", "saturation_up", "colour_shift", "colour_quantisation"},
    "compression": {"jpeg", "jpeg2000"},
    "noise": {"white_noise", "colour_channel_noise", "impulse_noise", "multiplicative_noise"},
    "brightness": {"brighten", "darken", "mean_shift"},
    "spatial": {"jitter", "pixelate", "non_eccentricity_patches"},
    "sharpness_contrast": {"sharpen", "contrast_change"},
}


def _one_minus_ssim(ref: np.ndarray, img: np.ndarray) -> float:
    return 1.0 - structural_similarity(ref, img, channel_axis=2, data_range=255)


def _mse(ref: np.ndarray, img: np.ndarray) -> float:
    return float(np.mean((img.astype(np.float64) - ref) ** 2))


# Full-reference error that must grow with the level. SSIM for structural
# damage; MSE where SSIM (computed per RGB channel on local statistics) is
# weakly sensitive: chroma and global tone changes, and sparse displacements.
ERROR_BY_FAMILY = {
    "blur": _one_minus_ssim,
    "compression": _one_minus_ssim,
    "noise": _one_minus_ssim,
    "sharpness_contrast": _one_minus_ssim,
    "colour": _mse,
    "brightness": _mse,
    "spatial": _mse,
}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> np.ndarray:
    """A 128x128 crop of scikit-image's astronaut, saved as PNG and decoded with Pillow."""
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()[100:228, 180:308]).save(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_registry_holds_the_kadid_families():
    for family, names in KADID_SUBSET.items():
        assert names <= set(list_distortions(family))
        assert all(DISTORTIONS[n].family == family for n in names)
    assert list_distortions() == sorted(DISTORTIONS)
    assert all(len(d.levels) == NUM_LEVELS for d in DISTORTIONS.values())


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        DISTORTIONS["gaussian_blur"] = DISTORTIONS["jpeg"]


@pytest.mark.parametrize("name", list_distortions())
def test_same_seed_same_output_and_shape(photo, name):
    first = apply_distortion(photo, name, 4, seed=7)
    again = apply_distortion(photo, name, 4, seed=7)
    direct = DISTORTIONS[name].fn(photo, 4, np.random.default_rng(7))
    assert first.shape == photo.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, direct)
    assert not np.array_equal(first, photo)


@pytest.mark.parametrize("name", list_distortions())
def test_error_grows_with_level(photo, name):
    error = ERROR_BY_FAMILY[DISTORTIONS[name].family]
    levels = range(1, NUM_LEVELS + 1)
    errors = [error(photo, apply_distortion(photo, name, level, seed=3)) for level in levels]
    assert all(b >= a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] > errors[0], errors


@pytest.mark.parametrize("name", list_distortions("noise"))
def test_noise_depends_on_seed(photo, name):
    one, other = (apply_distortion(photo, name, 3, seed=seed) for seed in (0, 1))
    assert not np.array_equal(one, other)


def test_input_is_not_modified(photo):
    before = photo.copy()
    for name in list_distortions():
        apply_distortion(photo, name, 5)
    np.testing.assert_array_equal(photo, before)


def test_unknown_name_suggests_and_lists(photo):
    with pytest.raises(GrepqError, match="Did you mean gaussian_blur") as info:
        apply_distortion(photo, "gausian_blur", 1)
    assert all(name in str(info.value) for name in list_distortions())


@pytest.mark.parametrize("level", [0, 6, 2.0, True])
def test_level_outside_range_is_rejected(photo, level):
    with pytest.raises(ValueError, match="level"):
        apply_distortion(photo, "jpeg", level)


def test_non_rgb_uint8_image_is_rejected(photo):
    with pytest.raises(ValueError, match="uint8"):
        apply_distortion(photo.astype(np.float32), "jpeg", 1)
    with pytest.raises(ValueError, match="uint8"):
        apply_distortion(photo[..., 0], "jpeg", 1)


def test_a_ladder_replaces_the_registered_parameters(photo):
    """JPEG at the ladder's quality for each level, where the registered levels give their own qualities."""
    import io

    def pillow_jpeg(quality):
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))

    ladder = (90, 60, 35, 15, 5)
    for level, quality in enumerate(ladder, start=1):
        np.testing.assert_array_equal(apply_distortion(photo, "jpeg", level, ladder=ladder), pillow_jpeg(quality))
    np.testing.assert_array_equal(apply_distortion(photo, "jpeg", 1), pillow_jpeg(43))
    with pytest.raises(GrepqError, match="has 5 parameters, got 3"):
        apply_distortion(photo, "jpeg", 1, ladder=(90, 60, 35))
    with pytest.raises(ValueError, match="level must be an integer"):
        apply_distortion(photo, "jpeg", 6, ladder=ladder)


def test_a_training_set_spec_takes_ladders_only_for_types_it_draws():
    from grepq_core.training.configs import TrainingSetSpec

    spec = TrainingSetSpec(distortions=("jpeg", "gaussian_blur"), per_image=2, ladders=(("jpeg", (90, 60, 35, 15, 5)),))
    assert dict(spec.ladders)["jpeg"] == (90, 60, 35, 15, 5)
    with pytest.raises(GrepqError, match="'jpeg2000' is not one of the distortions"):
        TrainingSetSpec(distortions=("jpeg",), per_image=1, ladders=(("jpeg2000", (1, 2, 3, 4, 5)),))
    with pytest.raises(GrepqError, match="jpeg needs 5 parameters"):
        TrainingSetSpec(distortions=("jpeg",), per_image=1, ladders=(("jpeg", (90, 5)),))
