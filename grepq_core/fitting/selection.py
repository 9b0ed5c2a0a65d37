"""Which images to label first, for a ridge fit on a few labels.

docs/method.md, "Data-efficient prediction": the ridge regressor is fitted on tens
of labelled images, and the paper draws those at random. With so few labels,
which images get them matters: labels on near-duplicates teach the ridge one
thing twice, and a random draw can miss a whole region of the collection.
This module picks a spread-out, representative set instead (not part of the
paper):

1. standardise the feature columns and project onto the top principal
   components (~32), so that distances follow the directions the
   collection actually varies in;
2. split the rows into equal-count bins of the zero-shot score and give
   each bin its share of the picks, so they span the quality range;
3. within a bin, seed centres by greedy farthest-point selection (the
   k-center rule: no cluster of images is left without a centre, however
   small), refine them with a few k-means steps (so a centre stands for
   many images rather than an outlier), and label the image nearest each
   centre. Already-labelled images are centres that do not move.

The first farthest-point seed of a bin is drawn from `seed`; all else is
deterministic. The picks are returned in farthest-point order, so the first
k of a suggestion are themselves spread out.
"""
from __future__ import annotations

import numpy as np

__all__ = ["suggest_labels", "project_features"]

_KMEANS_STEPS = 20


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
    """A bin number per row: equal-count bins of the zero-shot score; rows without one get bin `bins`."""
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


def _quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """`n` split in proportion to `counts` (largest remainder); never more than a count."""
    exact = counts * n / counts.sum()
    quotas = np.floor(exact).astype(int)
    quotas[np.argsort(-(exact - quotas), kind="stable")[: n - quotas.sum()]] += 1
    return quotas


def _squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[len(X), len(centres)] squared Euclidean distances."""
    return (X ** 2).sum(axis=1)[:, None] - 2 * X @ centres.T + (centres ** 2).sum(axis=1)[None, :]


def _farthest_first(X: np.ndarray, candidates: np.ndarray, fixed: np.ndarray, k: int, rng) -> list[int]:
    """k rows of `candidates`, each the farthest from `fixed` and the rows picked before it."""
    nearest = np.full(len(X), np.inf)
    for i in fixed:
        nearest = np.minimum(nearest, ((X - X[i]) ** 2).sum(axis=1))
    open_ = candidates.copy()
    picks = []
    while len(picks) < k:
        if np.isinf(nearest[open_]).all():
            pick = int(rng.choice(open_))
        else:
            pick = int(open_[np.argmax(nearest[open_])])
        picks.append(pick)
        open_ = open_[open_ != pick]
        nearest = np.minimum(nearest, ((X - X[pick]) ** 2).sum(axis=1))
    return picks


def _medoids(X: np.ndarray, candidates: np.ndarray, fixed: np.ndarray, k: int, rng) -> list[int]:
    """k rows of `candidates` nearest the centres of a k-means fit with `fixed` rows as immovable centres."""
    members = np.concatenate([candidates, fixed])
    seeds = _farthest_first(X, candidates, fixed, k, rng)
    centres = np.concatenate([X[seeds], X[fixed]])
    for _ in range(_KMEANS_STEPS):
        owner = _squared_distances(X[members], centres).argmin(axis=1)
        moved = np.array([X[members[owner == c]].mean(axis=0) if (owner == c).any() else centres[c]
                          for c in range(k)])
        if np.allclose(moved, centres[:k]):
            break
        centres[:k] = moved
    picks: list[int] = []
    distances = _squared_distances(X[candidates], centres[:k])
    for c in range(k):
        order = candidates[np.argsort(distances[:, c], kind="stable")]
        picks.append(int(next(i for i in order if i not in picks)))
    return picks


def suggest_labels(features: np.ndarray, zero_shot: np.ndarray | None, n: int, seed: int = 0,
                   labelled=(), bins: int = 5, dims: int = 32) -> np.ndarray:
    """Indices of the `n` rows of `features` ([N, F]) whose labels should help a ridge fit most.

    `zero_shot` ([N], NaN where missing, or None) spreads the picks across the
    quality range; `labelled` are indices that already have labels: they are
    never suggested, and new picks cover what they do not. Returns
    min(n, unlabelled rows) distinct indices, spread-out first.
    """
    X = project_features(features, dims)
    group = _quantile_bins(zero_shot, len(X), bins)
    labelled = np.unique(np.asarray(labelled, dtype=int))
    available = np.ones(len(X), dtype=bool)
    available[labelled] = False
    n = min(int(n), int(available.sum()))
    if n == 0:
        return np.empty(0, dtype=int)
    rng = np.random.default_rng(seed)
    counts = np.bincount(group[available], minlength=bins + 1)
    picks: list[int] = []
    for b, k in enumerate(_quotas(counts, n)):
        if k:
            picks += _medoids(X, np.flatnonzero(available & (group == b)), labelled[group[labelled] == b], k, rng)
    return np.asarray(_farthest_first(X, np.asarray(picks), labelled, n, rng), dtype=int)
