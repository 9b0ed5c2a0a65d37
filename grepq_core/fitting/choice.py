"""Labels that never make the score worse: keep the fit that cross-validates best, zero-shot included.

With a few dozen labels, a ridge on 128 or 1,152 feature values can rank
unseen images worse than the zero-shot score alone. So three candidates
are fitted on the labelled rows, each with its alpha chosen by the same
K-fold cross-validation (grepq_core/fitting/ridge.py):

- ``zero-shot``: ridge on the zero-shot score alone (a monotone map of it
  onto the labels' scale, so it ranks as zero-shot does; its figure is the
  zero-shot score's own SRCC with the labels, which involves no fitting,
  rather than pooled out-of-fold predictions of five different maps);
- ``features``: ridge on the encoders' features, as the paper does;
- ``features+zero-shot``: the zero-shot score, unpenalised, plus a
  correction from the features that the ridge penalty shrinks
  (`FreeColumnsRidge`, alpha up to `CORRECTION_ALPHAS`' 1e5, where it is
  all but zero-shot). Penalising the zero-shot weight with the 128 or 1,152
  feature weights, as a plain ridge on both would, shrinks what zero-shot
  knows as fast as the noise; left free, the labels only have to teach
  what zero-shot misses.

The zero-shot candidate is kept unless another one has a better CV figure
and ranks the labels better than the zero-shot score in at least its
share `SURE` of `RESAMPLES` paired resamples of the labelled images (of
whole contents, where `groups` says which images show the same content);
candidates are weighed in order of their CV figure. A fixed margin cannot
do this: how noisy the difference is depends on the labels, the features
and how alike the two rankings are, and a resample of both on the same
images measures exactly that. The features alone must win 95% of the
resamples: they can lose everything zero-shot knows, and with a lower bar
they were kept on splits whose unseen contents they then ranked worse.
Zero-shot plus a correction must win at least half: it keeps zero-shot's
ranking as its base and CV shrinks the correction to nothing where the
labels do not back it (benchmarks/notes.md, "Labels that help").
A CV SRCC under `POOR_CV` is worth a warning: the labels are too few or
too noisy to trust.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from grepq_core import metrics
from grepq_core.errors import GrepqError
from grepq_core.fitting.features import (
    ZERO_SHOT_BLOCK,
    feature_layout,
    feature_matrix,
    zero_shot_identity,
    zero_shot_score,
)
from grepq_core.fitting.ridge import RidgeModel
from grepq_core.fitting.ridge_fit import CORRECTION_ALPHAS, DEFAULT_ALPHAS, fit_ridge, out_of_fold

__all__ = ["SURE", "POOR_CV", "CANDIDATES", "fit_with_choice", "share_better"]

SURE = {"features": 0.95, "features+zero-shot": 0.5}  # share of resamples to win against zero-shot
RESAMPLES = 1000
POOR_CV = 0.5
CANDIDATES = ("zero-shot", "features", "features+zero-shot")


def _candidates(rows: list[dict]) -> dict[str, tuple[list, dict, int]]:
    """candidate -> (layout, identities, unpenalised last columns); the zero-shot ones only when every row has
    one rule's score."""
    layout, identities = feature_layout(rows)
    out = {"features": (layout, identities, 0)}
    rules = {zero_shot_identity(r) for r in rows}
    if len(rules) == 1 and all(zero_shot_score(r)[0] is not None for r in rows):
        block = {ZERO_SHOT_BLOCK: rules.pop()}
        out["zero-shot"] = ([[ZERO_SHOT_BLOCK, 1]], block, 0)
        out["features+zero-shot"] = (layout + [[ZERO_SHOT_BLOCK, 1]], {**identities, **block}, 1)
    return out


def fit_with_choice(rows: list[dict], labels, alphas=DEFAULT_ALPHAS, folds: int = 5, groups=None,
                    candidates=CANDIDATES) -> RidgeModel:
    """The best of the candidate fits on labelled feature rows; its `choice` says which and why.

    `groups` (the content of each row, where known) keeps each content in
    one CV fold (`fit_ridge`). `candidates` limits the choice (``features``
    alone: the paper's ridge).
    """
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown or not candidates:
        raise GrepqError(f"`candidates` are some of {', '.join(CANDIDATES)}, got {', '.join(unknown) or 'none'}")
    available = _candidates(rows)
    if not set(candidates) & set(available):
        raise GrepqError(f"none of the candidates {', '.join(candidates)} can be fitted: the rows have no "
                         "zero-shot score of one rule")
    fits = {}
    for name, (layout, identities, free) in available.items():
        if name not in candidates:
            continue
        fits[name] = fit_ridge(feature_matrix(rows, layout), labels, layout, identities,
                               alphas=CORRECTION_ALPHAS if free else alphas, folds=folds, groups=groups, free=free)
    cv = {name: (None if not math.isfinite(m.cv["srcc"]) else float(m.cv["srcc"])) for name, m in fits.items()}
    zero_shot = np.array([zero_shot_score(r)[0] for r in rows], dtype=np.float64) if "zero-shot" in fits else None
    if zero_shot is not None and fits["zero-shot"].coef[0] > 0:  # a monotone map: it ranks exactly as zero-shot
        cv["zero-shot"] = float(metrics.srcc(zero_shot, labels))
    ranked = sorted(((s, n) for n, s in cv.items() if s is not None), reverse=True)
    if not ranked:
        raise GrepqError("no candidate fit has a finite cross-validated SRCC: the labels carry no ranking")
    best, sure = ranked[0][1], None
    if cv.get("zero-shot") is not None:
        best = "zero-shot"
        names = [name for _, name in ranked]
        for name in names[:names.index("zero-shot")]:  # those with a better CV figure than zero-shot, best first
            X = feature_matrix(rows, fits[name].layout)
            predictions = out_of_fold(X, labels, fits[name].alpha, folds, groups=groups, free=available[name][2])
            sure = share_better(predictions, zero_shot, labels, groups)
            if sure >= SURE[name]:
                best = name
                break
    ordered = {n: cv[n] for n in CANDIDATES if n in cv}  # share_better: of the last candidate weighed
    return dataclasses.replace(fits[best], choice={"chosen": best, "cv_srcc": ordered, "share_better": sure})


def share_better(predictions, zero_shot, labels, groups=None, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The share of paired resamples (of rows, or of whole `groups`) in which `predictions` rank `labels`
    better (by SRCC) than `zero_shot` does."""
    predictions, zero_shot, labels = (np.asarray(a, dtype=np.float64) for a in (predictions, zero_shot, labels))
    units = np.arange(len(labels)) if groups is None else np.asarray(groups)
    names, index = np.unique(units, return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(names))]
    rng = np.random.default_rng(seed)
    wins = 0
    for _ in range(resamples):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        ours = metrics.srcc(predictions[rows], labels[rows])
        theirs = metrics.srcc(zero_shot[rows], labels[rows])
        wins += bool(np.nan_to_num(ours, nan=-2.0) > np.nan_to_num(theirs, nan=-2.0))
    return wins / resamples
