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
and ranks the labels better than the zero-shot score in enough of
`RESAMPLES` paired resamples of the labelled images (of whole contents,
where `groups` says which images show the same content); candidates are
weighed in order of their CV figure. A fixed margin cannot do this: how
noisy the difference is depends on the labels, the features and how alike
the two rankings are, and a resample of both on the same images measures
exactly that.

- The features alone must win `SURE` (95%) of the resamples: they can lose
  everything zero-shot knows, and with a lower bar they were kept on
  splits whose unseen contents they then ranked worse.
- Zero-shot plus a correction is kept with the correction scaled by how
  surely it wins: of its alphas whose CV figure beats zero-shot's, the one
  that wins the most resamples, share p, enters at weight 2p - 1
  (`correction_weight`): nothing at p = 1/2, where the labels cannot tell
  it from zero-shot, all of it only where it always wins. The bar is one
  sided, as the promise is (labels must not make the ranking worse), so
  both the alpha and the weight go by the chance of beating zero-shot
  rather than by the size of a CV figure: the best of several CV figures
  is the luckiest, and a correction kept whole on an 87% win still ranked
  unseen contents 0.06 worse (benchmarks/notes.md, "Labels that help").

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

__all__ = ["SURE", "POOR_CV", "CANDIDATES", "correction_weight", "fit_with_choice", "share_better"]

SURE = 0.95  # share of resamples the features alone must win against zero-shot
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
    best, sure, weighed = ranked[0][1], None, None
    if cv.get("zero-shot") is not None:
        best = "zero-shot"
        names = [name for _, name in ranked]
        resamples = _Resamples(zero_shot, labels, groups)
        for name in names[:names.index("zero-shot")]:  # those with a better CV figure than zero-shot, best first
            X = feature_matrix(rows, fits[name].layout)
            if name == "features+zero-shot":
                weighed, sure = _weighed_correction(X, labels, fits[name], cv["zero-shot"], resamples, folds, groups)
                if weighed is not None:
                    best = name
                    break
            else:
                sure = resamples.share_better(out_of_fold(X, labels, fits[name].alpha, folds, groups=groups))
                if sure >= SURE:
                    best = name
                    break
    ordered = {n: cv[n] for n in CANDIDATES if n in cv}  # share_better: of the last candidate weighed
    choice = {"chosen": best, "cv_srcc": ordered, "share_better": sure}
    if weighed is not None:
        return dataclasses.replace(weighed, choice={**choice, "weight": correction_weight(sure)})
    return dataclasses.replace(fits[best], choice=choice)


def correction_weight(share: float) -> float:
    """How much of a correction to zero-shot to keep when it wins `share` of the resamples: 2 share - 1,
    clipped to [0, 1] (none at a coin toss, all of it when it always wins)."""
    return float(min(1.0, max(0.0, 2.0 * share - 1.0)))


def _weighed_correction(X, labels, fit: RidgeModel, zero_shot_cv: float, resamples: "_Resamples", folds: int,
                        groups):
    """(zero-shot plus its correction at `correction_weight`, the share it won), or (None, best share) when
    no alpha's correction wins more than half of the resamples.

    Among the alphas `fit` cross-validated, those whose CV SRCC beats zero-shot's are weighed; the one that
    wins the most resamples is refitted with its correction scaled by its weight.
    """
    best_alpha, best_share = None, None
    for alpha, srcc, _ in fit.cv["by_alpha"]:
        if not srcc > zero_shot_cv:
            continue
        share = resamples.share_better(out_of_fold(X, labels, alpha, folds, groups=groups, free=1))
        if best_share is None or share > best_share:
            best_alpha, best_share = alpha, share
    weight = None if best_share is None else correction_weight(best_share)
    if not weight:
        return None, best_share
    return fit_ridge(X, labels, fit.layout, fit.identities, alphas=(best_alpha,), folds=folds, groups=groups,
                     free=1, weight=weight), best_share


def share_better(predictions, zero_shot, labels, groups=None, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The share of paired resamples (of rows, or of whole `groups`) in which `predictions` rank `labels`
    better (by SRCC) than `zero_shot` does."""
    return _Resamples(zero_shot, labels, groups, resamples, seed).share_better(predictions)


class _Resamples:
    """The paired resamples of one set of labels, and zero-shot's SRCC on each: drawn once per fit, however
    many candidates (and alphas) are weighed against zero-shot on them."""

    def __init__(self, zero_shot, labels, groups=None, resamples: int = RESAMPLES, seed: int = 0):
        zero_shot, self.labels = (np.asarray(a, dtype=np.float64) for a in (zero_shot, labels))
        units = np.arange(len(self.labels)) if groups is None else np.asarray(groups)
        names, index = np.unique(units, return_inverse=True)
        members = [np.flatnonzero(index == k) for k in range(len(names))]
        rng = np.random.default_rng(seed)
        self.rows = [np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
                     for _ in range(resamples)]
        self.zero_shot = [np.nan_to_num(metrics.srcc(zero_shot[r], self.labels[r]), nan=-2.0) for r in self.rows]

    def share_better(self, predictions) -> float:
        predictions = np.asarray(predictions, dtype=np.float64)
        wins = sum(bool(np.nan_to_num(metrics.srcc(predictions[r], self.labels[r]), nan=-2.0) > theirs)
                   for r, theirs in zip(self.rows, self.zero_shot))
        return wins / len(self.rows)
