"""Completely blind quality scores (docs/method.md, "Zero-shot").

- LL: the NIQE-style distance d between a test image's patch-feature Gaussian
  and the pristine model's, squashed to score_LL = 1 - sigmoid(d / 100).
- HL: score_HL = sigmoid(10 (cos(e, t_good) - cos(e, t_bad))).
- Combined: score_LL + score_HL. Higher is better for all three.

Deviations from the reference code: the distance solves a linear system
instead of forming the inverse, and a test image with a single patch gets a
zero covariance (the reference's unbiased estimate divides by zero there).
The LL score also shrinks the pooled covariance towards a multiple of the
identity (`LL_SHRINKAGE`) before adding docs/method.md's 0.001 ridge: a fixed
ridge assumes a feature scale, and the shipped encoder's pristine covariance
has eigenvalues down to 1e-6, so directions the pristine patches barely
use dominated d. Shrinkage scales with the features. It then adds a small
isotropic term (`LL_ISOTROPIC`): the Mahalanobis form weighs a direction by
how little the pristine patches vary along it, so the directions they vary
most along (fine detail and texture, which JPEG removes) counted for almost
nothing, and JPEG levels came out of order on busy photos. Their effect on
held-out photos is in benchmarks/notes.md. `shrinkage=0, isotropic=0` gives the
method's formula.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from grepq_core.errors import GrepqError
from grepq_core.model.anchors import isotropic_suffix

if TYPE_CHECKING:
    from grepq_core.model.pristine import PristineModel

__all__ = ["LL_SHRINKAGE", "LL_ISOTROPIC", "mvg_distance", "patch_statistics", "ll_distance", "ll_score_of_distance",
           "ll_score_identity", "hl_score", "combined_score"]

LL_EPS, LL_SHRINKAGE, LL_ISOTROPIC, LL_SCALE = 1e-3, 0.1, 0.03, 100.0


def mvg_distance(mu_r: np.ndarray, cov_r: np.ndarray, mu_t: np.ndarray, cov_t: np.ndarray,
                 eps: float = LL_EPS, shrinkage: float = 0.0, isotropic: float = 0.0) -> float:
    """d = sqrt(x (S' + eps I)^-1 x^T + b |x|^2 / (trace(S) / D + eps)), x = mu_r - mu_t, S = (S_r + S_t) / 2.

    S' = (1 - a) S + a (trace(S) / D) I with a = `shrinkage` in [0, 1]: the
    pooled covariance pulled towards the identity scaled to its mean
    variance (a = 0 leaves S as it is). b = `isotropic` >= 0 adds the plain
    squared distance in units of that mean variance, a floor under the
    weight of the directions S spreads most along (b = 0: none). With
    eps > 0 or a > 0 the matrix is positive definite, so a plain solve is
    exact; otherwise a singular matrix falls back to the pseudo-inverse.
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    if not isotropic >= 0.0:
        raise ValueError(f"isotropic must be >= 0, got {isotropic}")
    diff = np.asarray(mu_r, dtype=np.float64) - np.asarray(mu_t, dtype=np.float64)
    pooled = (np.asarray(cov_r, dtype=np.float64) + np.asarray(cov_t, dtype=np.float64)) / 2
    mean_variance = np.trace(pooled) / diff.size
    pooled = (1 - shrinkage) * pooled + (shrinkage * mean_variance + eps) * np.eye(diff.size)
    try:
        weighted = np.linalg.solve(pooled, diff)
    except np.linalg.LinAlgError:
        weighted = np.linalg.pinv(pooled, hermitian=True) @ diff
    plain = isotropic * float(diff @ diff) / (mean_variance + eps) if isotropic else 0.0
    return float(np.sqrt(max(float(diff @ weighted) + plain, 0.0)))


def patch_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of [P, D] patch features.

    One patch has no spread: its covariance is zero.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"expected [P, D] features with P >= 1, got shape {features.shape}")
    mean = features.mean(axis=0)
    if len(features) == 1:
        return mean, np.zeros((features.shape[1], features.shape[1]))
    return mean, np.atleast_2d(np.cov(features, rowvar=False))


def ll_distance(pristine: PristineModel, patch_features: np.ndarray, eps: float = LL_EPS,
                shrinkage: float = LL_SHRINKAGE, isotropic: float = LL_ISOTROPIC) -> float:
    """The distance d between one image's [P, D] patch features and the pristine model."""
    mu_t, cov_t = patch_statistics(patch_features)
    if mu_t.size != pristine.mean.size:
        raise GrepqError(
            f"the pristine model has {pristine.mean.size}-d features ({pristine.encoder_identity}), "
            f"these patch features are {mu_t.size}-d: build the pristine model with this LL encoder")
    return mvg_distance(pristine.mean, pristine.cov, mu_t, cov_t, eps=eps, shrinkage=shrinkage, isotropic=isotropic)


def ll_score_of_distance(d: float, scale: float = LL_SCALE) -> float:
    """1 - sigmoid(d / scale); in (0, 0.5] for d >= 0."""
    from scipy.special import expit  # here, not at the top: the LL pathway's settings import this module

    return float(expit(-d / scale))


def ll_score_identity(pristine: PristineModel, shrinkage: float = LL_SHRINKAGE, anchors=None,
                      isotropic: float = LL_ISOTROPIC) -> str:
    """Names what a default `ll_score` depends on besides the LL encoder: the pristine model and the settings.

    Feature rows carry it, so incremental runs and caches recompute zs_ll
    (and the calibrated zs_ll_100, whose `anchors` it names too) when either
    changes instead of mixing scores of two rules.
    """
    digest = hashlib.sha256(np.ascontiguousarray(pristine.mean).tobytes()
                            + np.ascontiguousarray(pristine.cov).tobytes()).hexdigest()[:12]
    calibration = f",anchors={anchors.good:.6g}/{anchors.bad:.6g}" if anchors else ""
    return (f"pristine@{digest}:eps={LL_EPS:g},shrinkage={shrinkage:g}"
            f"{isotropic_suffix(isotropic)},scale={LL_SCALE:g}{calibration}")


def hl_score(cos_good, cos_bad, gain: float = 10.0):
    """sigmoid(gain (cos_good - cos_bad)); scalars or arrays, elementwise."""
    from scipy.special import expit

    return expit(gain * (np.asarray(cos_good, dtype=np.float64) - np.asarray(cos_bad, dtype=np.float64)))


def combined_score(*scores):
    """score_LL + score_HL (the sum of the combined pathways' scores); scalars or arrays, elementwise.

    The combined score needs every term: where any is NaN (a pathway was not
    run) the result is NaN, never the sum of the others.
    """
    total = np.asarray(scores[0], dtype=np.float64)
    for score in scores[1:]:
        total = total + np.asarray(score, dtype=np.float64)
    return total
