"""`grepq build-pristine`: real photos and a tiny LL encoder -> a pristine model the zero-shot score uses."""
import numpy as np
import pytest
import torch

from grepq_core.errors import GrepqError
from grepq_core.images.decode import load_image
from grepq_core.model import views as V
from grepq_core.model.ll_encoder import load_ll_encoder
from grepq_core.model.pristine import PristineModel
from grepq_core.model.zero_shot import ll_distance, ll_score_of_distance
from grepq_core.training.pristine_patches import select_pristine_patches
from pipelines import build_pristine
from tests.tiny_models import tiny_ll_checkpoint


def test_pristine_model_loads_and_scores(photos_dir, tmp_path):
    ll = tiny_ll_checkpoint(tmp_path / "ll.pt", width=8)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "pristine.npz"
    build_pristine.run(["--input", str(photos_dir / "*.jpg"), "--input", str(broken), "--output", str(out),
                        "--ll-weights", ll, "--sharpness", "0.6", "--colourfulness", "0.7", "--device", "cpu",
                        "--no-progress"])

    model = PristineModel.load(str(out))
    encoder, identity = load_ll_encoder(ll)
    assert model.encoder_identity == identity
    photos = sorted(photos_dir.glob("*.jpg"))
    assert model.n_patches == sum(len(select_pristine_patches(load_image(str(p)), 96, 0.6, 0.7)) for p in photos)
    assert model.mean.shape == (128,) and model.cov.shape == (128, 128)
    np.testing.assert_allclose(model.cov, model.cov.T)

    scores = []
    for path in photos[:2]:
        img = V.ensure_min_size(V.to_tensor(load_image(str(path))), 96)
        with torch.no_grad():
            features = encoder(V.normalize(V.patches(img), V.IMAGENET_MEAN, V.IMAGENET_STD)).numpy()
        scores.append(ll_score_of_distance(ll_distance(model, features)))
    assert all(np.isfinite(s) and 0 < s <= 0.5 for s in scores)


def test_no_photos_is_an_error(tmp_path):
    with pytest.raises(GrepqError, match="no files match"):
        build_pristine.run(["--input", str(tmp_path / "*.jpg"), "--output", str(tmp_path / "p.npz"),
                            "--ll-weights", "shipped"])
