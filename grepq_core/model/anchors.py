"""The zero-shot LL score on a fixed 0-100 scale, as scoring uses it (docs/method.md, "Calibrated scale").

The paper's score 1 - sigmoid(d / 100) squashes distances d of a few units
into 0.49-0.50, where no threshold can be read. The calibrated score places
d between two anchors measured when the pristine model is built
(grepq_core/training/calibration.py), from the same photos: `good`, the
median distance of unseen pristine photos, and `bad`, that of the same
photos heavily distorted:

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

from grepq_core.errors import GrepqError
from grepq_core.model.settings import EncoderSpec

__all__ = ["GOOD", "BAD", "Anchors", "setting_key", "isotropic_suffix"]

GOOD, BAD = 90.0, 10.0  # where the two anchors land on the scale


def isotropic_suffix(isotropic: float) -> str:
    """How identities and calibration keys name the isotropic weight: not at all when 0, so that rows and
    anchors made before the term existed (which had none) still match."""
    return f",isotropic={isotropic:g}" if isotropic else ""


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


def setting_key(spec: EncoderSpec) -> str:
    """What a distance depends on besides the models: how an EncoderSpec cuts patches, and its distance rule."""
    views = spec.views
    cap = "all" if views.max_patches is None else views.max_patches
    return (f"patch={views.patch_size},stride={views.patch_stride},max={cap},min_side={views.min_side},"
            f"shrinkage={spec.setting('ll_shrinkage'):g}{isotropic_suffix(spec.setting('ll_isotropic'))}")
