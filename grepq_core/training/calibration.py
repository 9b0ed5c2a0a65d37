"""Measuring the anchors of the 0-100 scale when a pristine model is built (docs/method.md, "Calibrated scale").

The anchors (grepq_core/model/anchors.py) come from the pristine photos:

- good: the median distance of the pristine photos themselves, each scored
  by a pristine model fitted without the fold that holds it (so the anchor
  is that of unseen pristine photos, not of the model's own patches);
- bad: the median distance of the same photos heavily distorted (level 4 of
  `TYPES`), scored the same way.

The patches are cut exactly as extract cuts them under each setting
measured, so the anchors hold for the scores extract gives.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from grepq_core.errors import GrepqError
from grepq_core.model.anchors import Anchors
from grepq_core.model.cut import image_views
from grepq_core.model.pristine import fit_pristine
from grepq_core.model.settings import EncoderSpec
from grepq_core.model.zero_shot import ll_distance
from grepq_core.training.distortions import apply_distortion

__all__ = ["TYPES", "LEVEL", "FOLDS", "view_patches", "fit_anchors"]

TYPES = ("gaussian_blur", "motion_blur", "white_noise", "jpeg", "jpeg2000", "pixelate")
LEVEL = 4
FOLDS = 5


def view_patches(img: np.ndarray, spec: EncoderSpec) -> np.ndarray:
    """The zero-shot patches [P, S, S, 3] uint8 that extract cuts under `spec` from an HxWx3 uint8 image."""
    cut = image_views(img, dataclasses.replace(spec, pathways=("ll",))).tensors["ll_patches"]
    return np.ascontiguousarray(cut.transpose(0, 2, 3, 1))


def fit_anchors(photos: list, pristine_features: list[np.ndarray], features_of, settings: dict,
                encoder_identity: str, load=np.asarray, progress: bool = False) -> dict[str, Anchors]:
    """{key: anchors} for each of `settings` ({setting_key(spec): spec}), cross-fitted over `FOLDS` folds.

    `load(photos[i])` gives photo i as HxWx3 uint8 (photos are read one at
    a time, so a large pristine set need not fit in memory);
    `pristine_features[i]` holds the LL features of its selected pristine
    patches; `features_of(patches)` gives LL features of [P, S, S, 3] uint8
    patches. Each photo is distorted once for all settings. Needs at least
    two photos; a setting whose distorted photos lie no further than the
    photos themselves is an error.
    """
    from tqdm.auto import tqdm

    if len(photos) < 2:
        raise GrepqError(f"calibration needs at least 2 pristine photos, got {len(photos)}")
    folds = np.arange(len(photos)) % min(FOLDS, len(photos))
    good, bad = {key: [] for key in settings}, {key: [] for key in settings}
    bar = tqdm(total=len(photos), desc="calibrate", unit="photo", disable=not progress)
    for fold in np.unique(folds):
        others = [f for f, k in zip(pristine_features, folds) if k != fold]
        model = fit_pristine(np.concatenate(others), encoder_identity)
        for i in np.flatnonzero(folds == fold):
            photo = load(photos[i])
            versions = [photo, *(apply_distortion(photo, kind, LEVEL, seed=0) for kind in TYPES)]
            for key, spec in settings.items():
                distances = [ll_distance(model, features_of(view_patches(v, spec)),
                                         shrinkage=spec.setting("ll_shrinkage"),
                                         isotropic=spec.setting("ll_isotropic"))
                             for v in versions]
                good[key].append(distances[0])
                bad[key].extend(distances[1:])
            bar.update()
    bar.close()
    return {key: Anchors(float(np.median(good[key])), float(np.median(bad[key]))) for key in settings}
