"""Shared fixtures: real photos on disk and tiny, deterministic trained-shape models."""
import os

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine
# spinning threads make torch many times slower. Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from grepq_core.model import views as V
from grepq_core.model.hl_encoder import save_hl_checkpoint
from grepq_core.model.ll_encoder import load_ll_encoder
from grepq_core.model.pristine import PristineModel, fit_pristine
from grepq_core.training.pristine_patches import select_pristine_patches
from tests.tiny_models import tiny_clip_config_path, tiny_hl_encoder, tiny_ll_checkpoint

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# parametrize("device", DEVICES): every check on the CPU, and on CUDA where there is a GPU
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def photo(name: str, width: int | None = None) -> np.ndarray:
    """One of scikit-image's bundled photographs as HxWx3 uint8, optionally resized."""
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    if width:
        img = img.resize((width, round(img.height * width / img.width)), Image.BICUBIC)
    return np.asarray(img)


def hold_elsewhere(lock_path) -> None:
    """A lock as a run on another machine holds it: never taken over without --break-lock."""
    import json

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path.write_text(json.dumps({"run": "run-elsewhere", "host": "elsewhere", "pid": 1,
                                     "started": "2026-01-01T00:00:00Z"}))


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory):
    """Six real photos as JPEG (and one PNG) at a few sizes."""
    root = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(PHOTOS):
        ext = "png" if i == 5 else "jpg"
        Image.fromarray(photo(name, width=(256, 320, 400)[i % 3])).save(root / f"{name}.{ext}", quality=92)
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of a tiny LL checkpoint, its pristine model, a tiny HL config and checkpoint."""
    root = tmp_path_factory.mktemp("models")
    ll_path = tiny_ll_checkpoint(root / "ll.pt", width=8)
    hl_config = tiny_clip_config_path(root, "RN")
    hl, _ = tiny_hl_encoder(root, "RN", seed=0)
    hl_path = str(root / "hl.pt")
    save_hl_checkpoint(hl, hl_path, hl_config)
    ll, ll_id = load_ll_encoder(ll_path)
    patches = np.concatenate([select_pristine_patches(photo(n)) for n in PHOTOS[:3]])
    with torch.inference_mode():
        x = V.normalize(torch.from_numpy(patches).permute(0, 3, 1, 2), V.IMAGENET_MEAN, V.IMAGENET_STD)
        feats = ll(x).numpy()
    pristine_path = str(root / "pristine.npz")
    fit_pristine(feats, ll_id).save(pristine_path)
    return {"ll": ll_path, "pristine": pristine_path, "hl_model": hl_config, "hl": hl_path}


@pytest.fixture(scope="session")
def model_flags(tiny_models):
    """grepq flags selecting the tiny models."""
    return ["--ll-weights", tiny_models["ll"], "--pristine", tiny_models["pristine"],
            "--hl-model", tiny_models["hl_model"], "--hl-weights", tiny_models["hl"]]


@pytest.fixture
def other_pristine_flags(model_flags, tmp_path):
    """model_flags with another pristine model for the same LL encoder (its mean moved by 1)."""
    pristine = model_flags[model_flags.index("--pristine") + 1]
    other = PristineModel.load(pristine)
    other.mean = other.mean + 1.0
    other.save(str(tmp_path / "other_pristine.npz"))
    return [str(tmp_path / "other_pristine.npz") if f == pristine else f for f in model_flags]
