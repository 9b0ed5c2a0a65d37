"""The FSIM annotator matrix (grepq_core/training/fsim.py) on versions of a real photo."""
import numpy as np
import piq
import pytest
import skimage.data
import torch
from PIL import Image

from grepq_core.training.distortions import NUM_LEVELS, apply_distortion
from grepq_core.training.fsim import fsim_matrix
from tests.conftest import DEVICES


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> np.ndarray:
    """A 128x128 crop of scikit-image's chelsea, saved as PNG and decoded with Pillow."""
    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()[60:188, 150:278]).save(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _graded(photo: np.ndarray, name: str) -> np.ndarray:
    """The reference followed by its five levels of `name`: [6, H, W, 3]."""
    return np.stack([photo] + [apply_distortion(photo, name, level) for level in range(1, NUM_LEVELS + 1)])


def _piq_fsim(a: np.ndarray, b: np.ndarray) -> float:
    x, y = (torch.from_numpy(v).permute(2, 0, 1)[None].float() for v in (a, b))
    return piq.fsim(x, y, data_range=255, chromatic=True).item()


def test_copies_of_one_photo_are_fully_similar(photo):
    A = fsim_matrix(np.stack([photo] * 3))
    assert A.shape == (3, 3) and A.dtype == np.float64
    np.testing.assert_allclose(A, 1.0, atol=1e-6)


@pytest.mark.parametrize("name", ["gaussian_blur", "jpeg"])
def test_matrix_is_symmetric_with_unit_diagonal_and_falls_with_level(photo, name):
    versions = _graded(photo, name)
    A = fsim_matrix(versions)
    np.testing.assert_array_equal(A, A.T)
    np.testing.assert_array_equal(np.diag(A), 1.0)
    # Each entry is piq's FSIMc of that pair, whichever way round.
    assert A[2, 5] == pytest.approx(_piq_fsim(versions[5], versions[2]), abs=1e-5)
    assert A[5, 2] == pytest.approx(_piq_fsim(versions[2], versions[5]), abs=1e-5)
    against_reference = A[0, 1:]
    assert np.all(np.diff(against_reference) <= 0), against_reference
    assert against_reference[0] > against_reference[-1]
    assert np.all(against_reference > 0) and np.all(A <= 1.0 + 1e-6)


def test_every_entry_equals_piq_fsim_of_the_pair(photo):
    """Maps computed once per version give piq's pairwise FSIMc, for every pair of mixed distortions."""
    versions = np.stack([photo] + [apply_distortion(photo, name, level) for name, level in
                                   [("white_noise", 2), ("jpeg", 4), ("contrast_change", 3), ("pixelate", 5)]])
    A = fsim_matrix(versions)
    for i in range(len(versions)):
        for j in range(i + 1, len(versions)):
            assert A[i, j] == pytest.approx(_piq_fsim(versions[i], versions[j]), abs=1e-5), (i, j)


def test_batching_does_not_change_the_result(photo):
    versions = np.stack([photo, apply_distortion(photo, "white_noise", 3),
                         apply_distortion(photo, "pixelate", 4)])
    np.testing.assert_allclose(fsim_matrix(versions, batch_size=1), fsim_matrix(versions), atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_any_device_gives_the_cpu_result(photo, device):
    versions = np.stack([photo, apply_distortion(photo, "jpeg", 3), apply_distortion(photo, "gaussian_blur", 2)])
    np.testing.assert_allclose(fsim_matrix(versions, device=device), fsim_matrix(versions), atol=1e-5)


def test_rejects_anything_but_uint8_rgb_stacks(photo):
    with pytest.raises(ValueError, match="uint8"):
        fsim_matrix(photo)
    with pytest.raises(ValueError, match="uint8"):
        fsim_matrix(np.stack([photo, photo]).astype(np.float32))
