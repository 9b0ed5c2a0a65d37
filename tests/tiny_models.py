"""Tiny, deterministic encoders for tests (real architectures, seconds to build) and real photos to feed them.

Shared by many test files; keep the signatures stable.
"""

import json
import os

import numpy as np
import torch
from PIL import Image
from skimage import data

from grepq_core.model import views
from grepq_core.model.hl_encoder import HLEncoder, build_hl_encoder
from grepq_core.model.ll_encoder import create_ll_encoder, save_ll_checkpoint

__all__ = ["photo_batch", "tiny_clip_config_path", "tiny_hl_encoder", "tiny_ll_checkpoint"]

_PHOTOS = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee}

_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
_VISION_CFGS = {
    # ModifiedResNet (RN50 family): pooled width 8 * 32 = 256, 256 // 64 = 4 attention heads
    "RN": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    # VisionTransformer: 7x7 patch grid at 224, 32 // 16 = 2 heads
    "ViT": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
}


def tiny_clip_config_path(tmp_dir, kind: str = "RN") -> str:
    """Write a tiny open_clip model config (``kind`` "RN" or "ViT") into `tmp_dir`; return its path.

    The model's open_clip name is the file stem, ``grepq-tiny-rn`` or ``grepq-tiny-vit``.
    """
    config = {"embed_dim": 32, "vision_cfg": _VISION_CFGS[kind], "text_cfg": _TEXT_CFG}
    path = os.path.join(str(tmp_dir), f"grepq-tiny-{kind.lower()}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def tiny_hl_encoder(tmp_dir, kind: str = "RN", seed: int = 0) -> tuple[HLEncoder, str]:
    """A randomly initialised tiny HL encoder (eval mode) and its identity, reproducible by `seed`."""
    torch.manual_seed(seed)
    return build_hl_encoder(tiny_clip_config_path(tmp_dir, kind), weights=None)


def tiny_ll_checkpoint(path, width: int = 8, seed: int = 0) -> str:
    """Save a randomly initialised narrow LL encoder (registered ``resnet18-w{width}``) to `path`."""
    torch.manual_seed(seed)
    arch = "resnet18" if width == 64 else f"resnet18-w{width}"
    save_ll_checkpoint(create_ll_encoder(arch), str(path), arch, meta={"purpose": "tests"})
    return str(path)


def photo_batch(tmp_dir, height: int, width: int, mean: tuple, std: tuple) -> torch.Tensor:
    """scikit-image's astronaut, chelsea and coffee as JPEG files, decoded, resized and normalised: ``[3, 3, H, W]``."""
    batch = []
    for name, load in _PHOTOS.items():
        path = os.path.join(str(tmp_dir), f"{name}.jpg")
        if not os.path.exists(path):
            Image.fromarray(load()).save(path, quality=90)
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB").resize((width, height), Image.BICUBIC))
        batch.append(views.to_tensor(pixels))
    return views.normalize(torch.stack(batch), mean, std)
