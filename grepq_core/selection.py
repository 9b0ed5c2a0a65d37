"""Which images to label first, for a ridge fit on a few labels.

METHOD.md, "Data-efficient prediction": the ridge regressor is fitted on tens
of labelled images, and the paper draws those at random. With so few labels,
which images get them matters: labels on near-duplicates teach the ridge one
thing twice, and a random draw can miss a whole region of the collection.
This module picks a spread-out set instead (not part of the paper):

1. standardise the feature columns and project onto the top principal
   components (~32), so that distances reflect the directions the
   collection actually varies in;
2. split the rows into equal-count bins of the zero-shot score, so the
   picks span the collection's quality range from worst to best;
3. greedy farthest-point selection (the k-center / "greedy sampling" rule
   for regression): each pick goes to the bin furthest behind its
   proportional share, and within that bin to the row farthest from every
   row already picked or already labelled.

The first pick is drawn at random from the seed; everything after it is
deterministic. The order of the result is the order of picking, so the
first k of a suggestion are themselves a spread-out set.
"""
from __future__ import annotations

import numpy as np

__all__ = ["suggest_labels", "project_features"]


def project_features(features: np.ndarray, dims: int = 32) -> np.ndarray:
    """Standardised features projected onto their top `dims` principal components.

    Constant columns carry no information and are dropped before scaling.
    """
    X = np.asarray(features, dtype=np.float64)
    X = X[:, X.std(axis=0) > 0]
    if X.shape[1] == 0:
        return np.zeros((len(X), 1))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    if X.shape[1] <= dims:
        return X
    _, vectors = np.linalg.eigh(X.T @ X)  # ascending eigenvalues: the last columns are the top components
    return X @ vectors[:, -dims:]


def _quantile_bins(zero_shot: np.ndarray | None, n_rows: int, bins: int) -> np.ndarray:
    """A bin number per row: equal-count bins of the zero-shot score; rows without one get their own bin."""
    if zero_shot is None:
        return np.zeros(n_rows, dtype=int)
    z = np.asarray(zero_shot, dtype=np.float64).ravel()
    if z.size != n_rows:
        raise ValueError(f"{z.size} zero-shot scores for {n_rows} feature rows")
    finite = np.isfinite(z)
    out = np.full(n_rows, bins, dtype=int)
    if finite.any():
        ranks = np.argsort(np.argsort(z[finite], kind="stable"), kind="stable")
        out[finite] = ranks * bins // finite.sum()
    return out


def suggest_labels(features: np.ndarray, zero_shot: np.ndarray | None, n: int, seed: int = 0,
                   labelled=(), bins: int = 5, dims: int = 32) -> np.ndarray:
    """Indices of the `n` rows of `features` ([N, F]) whose labels should help a ridge fit most.

    `zero_shot` ([N], NaN where missing, or None) spreads the picks across the
    quality range; `labelled` are indices that already have labels: they are
    never suggested, and new picks keep away from them. Returns at most
    `n` distinct indices (fewer when fewer rows are left), in picking order.
    """
    X = project_features(features, dims)
    n_rows = len(X)
    group = _quantile_bins(zero_shot, n_rows, bins)
    labelled = np.unique(np.asarray(labelled, dtype=int))
    available = np.ones(n_rows, dtype=bool)
    available[labelled] = False
    n = min(int(n), int(available.sum()))
    share = np.bincount(group, minlength=bins + 1) / n_rows
    taken = np.bincount(group[labelled], minlength=bins + 1).astype(float)
    total = len(labelled) + n
    nearest = np.full(n_rows, np.inf)  # squared distance to the closest picked or labelled row
    for i in labelled:
        nearest = np.minimum(nearest, ((X - X[i]) ** 2).sum(axis=1))
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    while len(picks) < n:
        deficit = np.where(np.bincount(group[available], minlength=bins + 1) > 0, share * total - taken, -np.inf)
        candidates = np.flatnonzero(available & (deficit[group] > deficit.max() - 1))
        if np.isinf(nearest[candidates]).all():
            pick = int(rng.choice(candidates))
        else:
            pick = int(candidates[np.argmax(nearest[candidates])])
        picks.append(pick)
        available[pick] = False
        taken[group[pick]] += 1
        nearest = np.minimum(nearest, ((X - X[pick]) ** 2).sum(axis=1))
    return np.asarray(picks, dtype=int)
