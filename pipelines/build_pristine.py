"""`grepq build-pristine`: pristine photos -> the pristine model of the zero-shot LL score.

    per photo: decode -> sharpest, then most colourful 96x96 patches -> LL features
    all features -> mean and covariance -> PRISTINE.npz

docs/method.md, "Zero-shot". The model records the identity of the LL encoder
whose features it holds; use it with that encoder only. Plain Python: the
input is a few hundred photos.
"""
from __future__ import annotations

import argparse
import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from grepq_core.errors import GrepqError, ImageError
from grepq_core.imageio import load_image
from grepq_core.ll_encoder import load_ll_encoder
from grepq_core.pristine import PristineModel, fit_pristine, select_pristine_patches
from grepq_core.training.data import list_images
from grepq_core.devices import resolve_device

__all__ = ["run", "arg_parser", "build_pristine"]

log = logging.getLogger(__name__)


def build_pristine(
    images: list[str],
    ll_weights: str = "shipped",
    patch: int = 96,
    sharpness_frac: float = 0.75,
    colour_frac: float = 0.8,
    device: str = "auto",
    batch: int = 256,
    progress: bool = False,
) -> PristineModel:
    """Fit the pristine Gaussian to the LL features of the selected patches of `images`.

    Images that cannot be decoded are logged and skipped.
    """
    encoder, identity = load_ll_encoder(ll_weights)
    target = resolve_device(device)
    encoder.to(target)
    features, skipped = [], 0
    for path in tqdm(images, desc="build-pristine", unit="photo", disable=not progress):
        try:
            img = load_image(path)
        except ImageError as e:
            log.warning("skipped %s: %s", path, e)
            skipped += 1
            continue
        patches = torch.from_numpy(select_pristine_patches(img, patch, sharpness_frac, colour_frac))
        with torch.inference_mode():
            for chunk in patches.permute(0, 3, 1, 2).split(batch):
                x = encoder.normalization(chunk.to(target))
                features.append(encoder(x).float().cpu().numpy())
    if skipped:
        log.warning("skipped %d of %d photos that could not be decoded", skipped, len(images))
    if not features:
        raise GrepqError(f"no {patch}x{patch} patch could be cut from the --input photos")
    return fit_pristine(np.concatenate(features), identity)


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq build-pristine", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--input", action="append", required=True,
                        help="glob of pristine photos (local or fsspec URL); repeatable")
    parser.add_argument("--output", required=True, help="pristine model .npz (path or URL)")
    parser.add_argument("--ll-weights", default="shipped", help="LL encoder: 'shipped' (default), a path or URL")
    parser.add_argument("--patch", type=int, default=96, help="patch side (default 96)")
    parser.add_argument("--sharpness", type=float, default=0.75,
                        help="keep patches sharper than this fraction of the sharpest (default 0.75)")
    parser.add_argument("--colourfulness", type=float, default=0.8,
                        help="then those more colourful than this fraction of the most colourful (default 0.8)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(argv=None):
    args = arg_parser().parse_args(argv)
    images = list_images(args.input)
    model = build_pristine(images, args.ll_weights, args.patch, args.sharpness, args.colourfulness,
                           device=args.device, progress=not args.no_progress)
    model.save(args.output)
    print(f"pristine model from {model.n_patches} patches of {len(images)} photos ({model.encoder_identity}) "
          f"-> {args.output}")
