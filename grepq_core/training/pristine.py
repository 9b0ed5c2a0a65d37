"""A pristine model built from photos (docs/method.md, "Zero-shot"): `grepq build-pristine`'s work.

    per photo: decode -> sharpest, then most colourful 96x96 patches -> LL features
    all features -> mean and covariance
    per profile: the photos and their heavy distortions -> anchors of the 0-100 scale

The model records the identity of the LL encoder whose features it holds;
use it with that encoder only.
"""
from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from grepq_core.errors import GrepqError, ImageError
from grepq_core.images.decode import load_image
from grepq_core.model.anchors import setting_key
from grepq_core.model.devices import resolve_device
from grepq_core.model.ll_encoder import load_ll_encoder
from grepq_core.model.pristine import HDF5_SUFFIXES, PristineModel, fit_pristine, patch_features, read_patches
from grepq_core.model.profiles import spec_for
from grepq_core.training.calibration import fit_anchors
from grepq_core.training.pristine_patches import select_pristine_patches

__all__ = ["pristine_patches", "build_pristine", "fit_on_patches"]

log = logging.getLogger(__name__)


def pristine_patches(images: list[str], patch: int = 96, sharpness_frac: float = 0.75, colour_frac: float = 0.8,
                     rule: str = "grepq", progress: bool = False) -> dict[str, np.ndarray]:
    """{input: its selected [N, patch, patch, 3] uint8 patches} for every photo (and HDF5 patch file) of `images`.

    Photos that cannot be decoded are logged and skipped.
    """
    chosen, skipped = {}, 0
    for path in tqdm(images, desc="build-pristine", unit="photo", disable=not progress):
        if path.lower().endswith(HDF5_SUFFIXES):
            chosen[path] = read_patches(path)[0]
            continue
        try:
            img = load_image(path)
        except ImageError as e:
            log.warning("skipped %s: %s", path, e)
            skipped += 1
            continue
        chosen[path] = select_pristine_patches(img, patch, sharpness_frac, colour_frac, rule)
    if skipped:
        log.warning("skipped %d of %d photos that could not be decoded", skipped, len(images))
    if not sum(len(p) for p in chosen.values()):
        raise GrepqError(f"no {patch}x{patch} patch could be cut from the `input` photos")
    return chosen


def build_pristine(
    images: list[str],
    ll_weights: str = "shipped",
    patch: int = 96,
    sharpness_frac: float = 0.75,
    colour_frac: float = 0.8,
    device: str = "auto",
    batch: int = 256,
    progress: bool = False,
    rule: str = "grepq",
    calibrate: tuple[str, ...] = ("fast",),
) -> PristineModel:
    """Fit the pristine Gaussian to the LL features of the selected patches of `images`, with the
    0-100 scale's anchors for each profile of `calibrate`."""
    return fit_on_patches(pristine_patches(images, patch, sharpness_frac, colour_frac, rule, progress),
                          ll_weights, device, batch, calibrate, progress)


def fit_on_patches(chosen: dict[str, np.ndarray], ll_weights: str, device: str = "auto", batch: int = 256,
                   calibrate: tuple[str, ...] = ("fast",), progress: bool = False) -> PristineModel:
    """The pristine Gaussian of the LL features of the patches `chosen` from each input.

    The anchors of the calibrated scale need the photos themselves, so
    they are measured only when no input is an HDF5 file of patches.
    """
    encoder, identity = load_ll_encoder(ll_weights)
    device = resolve_device(device)
    features = {path: patch_features(encoder, patches, device, batch) for path, patches in chosen.items()
                if len(patches)}
    model = fit_pristine(np.concatenate(list(features.values())), identity)
    if calibrate and any(p.lower().endswith(HDF5_SUFFIXES) for p in features):
        log.warning("the inputs include HDF5 patch files: the model has no calibrated 0-100 scale "
                    "(its anchors are measured on whole photos)")
        return model
    photos = list(features)
    settings = {}
    for profile in calibrate:
        spec = spec_for(profile)
        settings[setting_key(spec)] = spec
    if not settings:
        return model
    try:
        model.calibration.update(fit_anchors(
            photos, [features[p] for p in photos], lambda x: patch_features(encoder, x, device, batch), settings,
            identity, load=load_image, progress=progress))
    except GrepqError as e:
        log.warning("the model has no calibrated 0-100 scale: %s", e)
    for key, anchors in model.calibration.items():
        log.info("0-100 scale anchors: good=%.4g bad=%.4g (%s)", anchors.good, anchors.bad, key)
    return model
