"""Completely blind quality scores (METHOD.md, "Zero-shot").

- LL: the NIQE-style distance d between a test image's patch-feature Gaussian
  and the pristine model's, squashed to score_LL = 1 - sigmoid(d / 100).
- HL: score_HL = sigmoid(10 (cos(e, t_good) - cos(e, t_bad))).
- Combined: score_LL + score_HL. Higher is better for all three.

Deviations from the reference code: the distance solves a linear system
instead of forming the inverse, and a test image with a single patch gets a
zero covariance (the reference's unbiased estimate divides by zero there).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from grepq_core.errors import GrepqError

if TYPE_CHECKING:
    from grepq_core.pristine import PristineModel

__all__ = ["mvg_distance", "patch_statistics", "ll_score", "hl_score", "combined_score"]


def mvg_distance(mu_r: np.ndarray, cov_r: np.ndarray, mu_t: np.ndarray, cov_t: np.ndarray,
                 eps: float = 1e-3) -> float:
    """d = sqrt((mu_r - mu_t) ((S_r + S_t) / 2 + eps I)^-1 (mu_r - mu_t)^T).

    With eps > 0 the pooled matrix is positive definite, so a plain solve is
    exact; with eps = 0 a singular matrix falls back to the pseudo-inverse.
    """
    diff = np.asarray(mu_r, dtype=np.float64) - np.asarray(mu_t, dtype=np.float64)
    pooled = (np.asarray(cov_r, dtype=np.float64) + np.asarray(cov_t, dtype=np.float64)) / 2
    pooled = pooled + eps * np.eye(diff.size)
    try:
        weighted = np.linalg.solve(pooled, diff)
    except np.linalg.LinAlgError:
        weighted = np.linalg.pinv(pooled, hermitian=True) @ diff
    return float(np.sqrt(max(float(diff @ weighted), 0.0)))


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


def ll_score(pristine: PristineModel, patch_features: np.ndarray, eps: float = 1e-3,
             scale: float = 100.0) -> float:
    """1 - sigmoid(d / scale) for one image's [P, D] patch features; in (0, 0.5]."""
    mu_t, cov_t = patch_statistics(patch_features)
    if mu_t.size != pristine.mean.size:
        raise GrepqError(
            f"the pristine model has {pristine.mean.size}-d features ({pristine.encoder_identity}), "
            f"these patch features are {mu_t.size}-d: build the pristine model with this LL encoder")
    d = mvg_distance(pristine.mean, pristine.cov, mu_t, cov_t, eps=eps)
    return float(expit(-d / scale))


def hl_score(cos_good, cos_bad, gain: float = 10.0):
    """sigmoid(gain (cos_good - cos_bad)); scalars or arrays, elementwise."""
    return expit(gain * (np.asarray(cos_good, dtype=np.float64) - np.asarray(cos_bad, dtype=np.float64)))


def combined_score(ll, hl):
    """score_LL + score_HL; scalars or arrays, elementwise.

    The combined score needs both pathways: where either is NaN (a pathway
    was not run) the result is NaN, never the other score alone.
    """
    return np.asarray(ll, dtype=np.float64) + np.asarray(hl, dtype=np.float64)
