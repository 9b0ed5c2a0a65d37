"""The zero-shot LL score on a fixed 0-100 scale (docs/method.md, "Calibrated scale").

The paper's score 1 - sigmoid(d / 100) squashes distances d of a few units
into 0.49-0.50, where no threshold can be read. The calibrated score places
d between two anchors measured when the pristine model is built, from the
same photos:

- good: the median distance of the pristine photos themselves, each scored
  by a pristine model fitted without the fold that holds it (so the anchor
  is that of unseen pristine photos, not of the model's own patches);
- bad: the median distance of the same photos heavily distorted (level 4 of
  `TYPES`), scored the same way.

    q = 100 sigmoid(ln(81) (good + bad - 2 d) / (2 (bad - good)))

so a photo as far as a typical pristine one scores 90, one as far as a
typical heavily distorted one 10, midway 50. q is strictly decreasing in d:
it ranks exactly as the paper's score does, and means the same in every run
and collection scored with the same model.

Distances depend on how the patches are cut and on the distance rule
(shrinkage, isotropic weight), so anchors are stored per `setting_key`; a
setting the pristine model has no anchors for gets no calibrated score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grepq_core.distortions import apply_distortion
from grepq_core.errors import GrepqError
from grepq_core.zero_shot import isotropic_suffix, ll_distance

__all__ = ["TYPES", "LEVEL", "GOOD", "BAD", "Anchors", "setting_key", "view_patches", "fit_anchors"]

TYPES = ("gaussian_blur", "motion_blur", "white_noise", "jpeg", "jpeg2000", "pixelate")
LEVEL = 4
GOOD, BAD = 90.0, 10.0  # where the two anchors land on the scale
FOLDS = 5


@dataclass(frozen=True)
class Anchors:
    """Distances that map to `GOOD` (typical pristine photo) and `BAD` (typical heavy distortion)."""

    good: float
    bad: float

    def __post_init__(self):
        if not (math.isfinite(self.good) and math.isfinite(self.bad) and self.bad > self.good):
            raise GrepqError(f"calibration anchors must have bad > good, got good={self.good} bad={self.bad}: "
                             "the heavily distorted photos lie no further from the pristine model than the photos")

    def score(self, d: float) -> float:
        """d on the 0-100 scale."""
        gain = math.log(GOOD / (100 - GOOD)) * 2 / (self.bad - self.good)
        return float(100 / (1 + math.exp(-gain * ((self.good + self.bad) / 2 - d))))


def setting_key(spec) -> str:
    """What a distance depends on besides the models: how an EncoderSpec cuts patches, and its distance rule."""
    views = spec.views
    cap = "all" if views.max_patches is None else views.max_patches
    return (f"patch={views.patch_size},stride={views.patch_stride},max={cap},min_side={views.min_side},"
            f"shrinkage={spec.ll_shrinkage:g}{isotropic_suffix(spec.ll_isotropic)}")


def view_patches(img: np.ndarray, views) -> np.ndarray:
    """The zero-shot patches [P, S, S, 3] uint8 that extract cuts from an HxWx3 uint8 image."""
    from grepq_core.extractor import EncoderSpec, image_views

    cut = image_views(img, EncoderSpec(pathways=("ll",), views=views)).tensors["ll_patches"]
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

    from grepq_core.pristine import fit_pristine

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
                distances = [ll_distance(model, features_of(view_patches(v, spec.views)),
                                         shrinkage=spec.ll_shrinkage, isotropic=spec.ll_isotropic)
                             for v in versions]
                good[key].append(distances[0])
                bad[key].extend(distances[1:])
            bar.update()
    bar.close()
    return {key: Anchors(float(np.median(good[key])), float(np.median(bad[key]))) for key in settings}
