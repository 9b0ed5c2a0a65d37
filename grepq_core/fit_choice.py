"""Labels that never make the score worse: keep the fit that cross-validates best, zero-shot included.

With a few dozen labels, a ridge on 128 or 1,152 feature values can rank
unseen images worse than the zero-shot score alone. So three candidates
are fitted on the labelled rows, each with its alpha chosen by the same
K-fold cross-validation (grepq_core/regressor.py):

- ``zero-shot``: ridge on the zero-shot score alone (a monotone map of it
  onto the labels' scale, so it ranks as zero-shot does; its figure is the
  zero-shot score's own SRCC with the labels, which involves no fitting,
  rather than pooled out-of-fold predictions of five different maps);
- ``features``: ridge on the encoders' features, as the paper does;
- ``features+zero-shot``: both.

The zero-shot candidate is kept unless another beats its CV SRCC by more
than half the CV figure's own noise, 0.5 / sqrt(n) for n labels (at least
`MARGIN`): with 16 labels a ridge must win by 0.125, with 200 by 0.035. A CV
SRCC under `POOR_CV` is worth a warning: the labels are too few or too
noisy to trust.
"""
from __future__ import annotations

import dataclasses
import math

from grepq_core import metrics
from grepq_core.errors import GrepqError
from grepq_core.features import ZERO_SHOT_BLOCK, feature_layout, feature_matrix, zero_shot_identity, zero_shot_score
from grepq_core.regressor import DEFAULT_ALPHAS, RidgeModel, fit_ridge

__all__ = ["MARGIN", "POOR_CV", "CANDIDATES", "margin", "fit_with_choice"]

MARGIN = 0.02
POOR_CV = 0.5
CANDIDATES = ("zero-shot", "features", "features+zero-shot")


def margin(n_labels: int) -> float:
    """How much better than zero-shot a fit's CV SRCC must be to be kept: the SRCC's noise on n labels."""
    return max(MARGIN, 0.5 / math.sqrt(max(n_labels, 1)))


def _candidates(rows: list[dict]) -> dict[str, tuple[list, dict]]:
    """candidate -> (layout, identities); the zero-shot ones only when every row has one rule's score."""
    layout, identities = feature_layout(rows)
    out = {"features": (layout, identities)}
    rules = {zero_shot_identity(r) for r in rows}
    if len(rules) == 1 and all(zero_shot_score(r)[0] is not None for r in rows):
        block = {ZERO_SHOT_BLOCK: rules.pop()}
        out["zero-shot"] = ([[ZERO_SHOT_BLOCK, 1]], block)
        out["features+zero-shot"] = (layout + [[ZERO_SHOT_BLOCK, 1]], {**identities, **block})
    return out


def fit_with_choice(rows: list[dict], labels, alphas=DEFAULT_ALPHAS, folds: int = 5) -> RidgeModel:
    """The best of the candidate fits on labelled feature rows; its `choice` says which and why."""
    fits = {}
    for name, (layout, identities) in _candidates(rows).items():
        fits[name] = fit_ridge(feature_matrix(rows, layout), labels, layout, identities, alphas=alphas, folds=folds)
    cv = {name: (None if not math.isfinite(m.cv["srcc"]) else float(m.cv["srcc"])) for name, m in fits.items()}
    if "zero-shot" in fits and fits["zero-shot"].coef[0] > 0:  # a monotone map: it ranks exactly as zero-shot
        cv["zero-shot"] = float(metrics.srcc([zero_shot_score(r)[0] for r in rows], labels))
    ranked = sorted((s, n) for n, s in cv.items() if s is not None)
    if not ranked:
        raise GrepqError("no candidate fit has a finite cross-validated SRCC: the labels carry no ranking")
    best = ranked[-1][1]
    if cv.get("zero-shot") is not None and cv[best] <= cv["zero-shot"] + margin(fits[best].n_train):
        best = "zero-shot"
    ordered = {n: cv[n] for n in CANDIDATES if n in cv}
    return dataclasses.replace(fits[best], choice={"chosen": best, "cv_srcc": ordered})
