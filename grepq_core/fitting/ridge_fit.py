"""Fitting the ridge regressor on a few labelled rows (docs/method.md, "Data-efficient prediction").

Ridge regression on standardised feature rows, with alpha chosen from
{0.1, 1, 10, 100} by K-fold cross-validation on the labelled rows only: the
highest SRCC of the out-of-fold predictions wins, ties go to the lower
error. The paper tunes alpha per dataset by hand; this automates that
choice. SRCC over all out-of-fold predictions, rather than the mean of
per-fold SRCCs, because folds of a few rows give rank correlations too
coarse to compare (a 2-row fold has none).

`free` last columns can be left out of the penalty (`FreeColumnsRidge`):
with the zero-shot score as that column, the fit is zero-shot plus a
correction from the features that alpha shrinks towards nothing, rather
than a choice between the two; `weight` scales that correction down
further, by how surely it beats zero-shot (grepq_core/fitting/choice.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, KFold
from sklearn.preprocessing import StandardScaler

from grepq_core import metrics
from grepq_core.errors import GrepqError
from grepq_core.fitting.ridge import RidgeModel, describe_layout, layout_pairs
from grepq_core.fitting.ridge_file import InvalidModel, check_model

__all__ = ["MIN_TRAIN_ROWS", "DEFAULT_ALPHAS", "CORRECTION_ALPHAS", "FreeColumnsRidge", "fit_ridge", "out_of_fold"]

MIN_TRAIN_ROWS = 10
DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0)
# A correction to free columns may need to shrink to almost nothing: with 128 standardised columns and 50
# rows, alpha 100 still lets it outweigh the zero-shot score.
CORRECTION_ALPHAS = (1e3, 1e4, 1e5)


class FreeColumnsRidge(BaseEstimator, RegressorMixin):
    """Ridge whose last `free` columns (and the intercept) are not penalised.

    Fitted in two steps (Frisch-Waugh): the penalised columns and the target
    are first stripped of what the free columns explain linearly; ridge on
    what is left gives the penalised coefficients, least squares of the rest
    the free ones. As alpha grows the fit tends to least squares on the free
    columns alone. `weight` (0 to 1) scales the penalised coefficients
    before the free ones are fitted to what they leave: 0 is least squares
    on the free columns alone, 1 the ridge as it is.
    """

    def __init__(self, alpha: float = 1.0, free: int = 1, weight: float = 1.0):
        self.alpha, self.free, self.weight = alpha, free, weight

    def fit(self, X, y):
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
        penalised, base = X[:, :-self.free], np.column_stack([np.ones(len(y)), X[:, -self.free:]])

        def residual(target):
            return target - base @ np.linalg.lstsq(base, target, rcond=None)[0]

        coef = self.weight * Ridge(alpha=self.alpha, fit_intercept=False).fit(residual(penalised), residual(y)).coef_
        rest = np.linalg.lstsq(base, y - penalised @ coef, rcond=None)[0]
        self.coef_ = np.concatenate([coef, rest[1:]])
        self.intercept_ = float(rest[0])
        return self

    def predict(self, X):
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_


@dataclass(frozen=True)
class _TargetScale:
    """Labels as y = offset + unit * z with z standardised; ridge is fitted on z.

    Ridge is linear in its targets, so this changes no prediction, but labels
    of any finite magnitude (1e300, 1e-315) then fit as well as MOS on 1-5:
    their squares and sums would overflow or vanish in the solver. `big`
    (the largest |label|) is divided out first so no step can overflow.
    """

    big: float
    centre: float  # mean of y / big
    spread: float  # standard deviation of y / big

    @classmethod
    def of(cls, y: np.ndarray) -> "_TargetScale":
        if y.min() == y.max():
            raise GrepqError(f"all {y.size} labels are {y[0]:g}: ridge needs labels that differ")
        big = float(np.max(np.abs(y)))
        u = y / big
        scale = cls(big, float(u.mean()), float(u.std()))
        if not scale.unit > 0:
            raise GrepqError(f"the labels differ by less than the smallest float "
                             f"({y.min():g} to {y.max():g}); rescale them")
        return scale

    @property
    def unit(self) -> float:
        return self.spread * self.big

    @property
    def offset(self) -> float:
        return self.centre * self.big

    def standardise(self, y: np.ndarray) -> np.ndarray:
        return (y / self.big - self.centre) / self.spread


_LARGEST_FEATURE = 1e150  # squared and summed over rows by the scaler, so far below float's 1.8e308


def _training_rows(X, y, layout: list, identities: dict) -> tuple[np.ndarray, np.ndarray]:
    """The labelled rows (NaN label = unlabelled), after checking shapes and values."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.size:
        raise GrepqError(f"features {X.shape} and labels ({y.size}) do not line up")
    if X.shape[1] != sum(width for _, width in layout):
        raise GrepqError(f"features have {X.shape[1]} columns, layout {describe_layout(layout)} says "
                         f"{sum(width for _, width in layout)}")
    if set(identities) != {name for name, _ in layout}:
        raise GrepqError(f"identities name {sorted(identities)}, layout names {[n for n, _ in layout]}")
    if np.isinf(y).any():
        raise GrepqError(f"{int(np.isinf(y).sum())} label(s) are infinite; labels must be finite numbers")
    labelled = ~np.isnan(y)
    X, y = X[labelled], y[labelled]
    if len(y) < MIN_TRAIN_ROWS:
        raise GrepqError(f"ridge needs at least {MIN_TRAIN_ROWS} labelled rows, got {len(y)} "
                         f"(of {labelled.size} rows); add labels")
    if not np.isfinite(X).all():
        raise GrepqError("labelled feature rows contain NaN or infinity")
    if np.abs(X).max() > _LARGEST_FEATURE:
        raise GrepqError(f"labelled feature rows hold values up to {np.abs(X).max():.3g}; above "
                         f"{_LARGEST_FEATURE:g} their squares overflow the scaler: these are not encoder features")
    return X, y


def _checked_alphas(alphas) -> list[float]:
    values = [float(a) for a in alphas]
    if not values or not all(np.isfinite(a) and a >= 0 for a in values):
        raise GrepqError(f"ridge alphas must be finite and >= 0, got {list(alphas)}")
    return values


def _splitter(n: int, folds: int, seed: int, groups):
    """(CV splitter, groups it needs): whole contents per fold with two or more groups, else random rows."""
    if groups is not None and len(np.unique(groups)) >= 2:
        return GroupKFold(n_splits=min(folds, len(np.unique(groups)))), groups
    return KFold(n_splits=min(folds, n), shuffle=True, random_state=seed), None


def _regressor(alpha: float, free: int, weight: float = 1.0):
    return FreeColumnsRidge(alpha, free, weight) if free else Ridge(alpha=alpha)


def out_of_fold(X: np.ndarray, y: np.ndarray, alpha: float, folds: int = 5, seed: int = 0, groups=None,
                free: int = 0) -> np.ndarray:
    """Each labelled row's prediction by a ridge (alpha `alpha`) fitted without its fold, as `fit_ridge`
    cross-validates (same folds for the same arguments); rows must all be labelled."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    splitter, groups = _splitter(len(y), folds, seed, None if groups is None else np.asarray(groups))
    return _cv_trial(alpha, X, _TargetScale.of(y).standardise(y), splitter, groups, free)[3]


def _cv_trial(alpha: float, X: np.ndarray, z: np.ndarray, splitter, groups=None, free: int = 0,
              weight: float = 1.0) -> tuple:
    """(alpha, SRCC, RMSE in standardised units, out-of-fold predictions) for one alpha.

    The scaler is refitted per fold. With one free column, whose coefficient
    came out positive in every fold, the predictions SRCC ranks are each fold's
    put back on that column's scale (the column plus the correction in its
    units): pooled as they are, the folds' different intercepts and weights
    would scramble the ranking across folds that the column itself keeps,
    and the candidate would lose to the bare column for that alone.
    """
    pred, ranked, same_scale = np.empty_like(z), np.empty_like(z), free == 1
    for train, test in splitter.split(X, z, groups):
        scaler = StandardScaler().fit(X[train])
        model = _regressor(alpha, free, weight).fit(scaler.transform(X[train]), z[train])
        pred[test] = model.predict(scaler.transform(X[test]))
        if same_scale:
            slope = model.coef_[-1]
            same_scale = slope > 0
            ranked[test] = scaler.mean_[-1] + scaler.scale_[-1] * (pred[test] - model.intercept_) / slope
    ranked = ranked if same_scale else pred
    return alpha, metrics.srcc(ranked, z), float(np.sqrt(np.mean((pred - z) ** 2))), ranked


def _check_fitted(model: RidgeModel, X: np.ndarray) -> None:
    """Refuse a fit whose numbers are not finite, or whose scores overflow on its own rows."""
    try:
        check_model(model)
    except InvalidModel as e:
        raise GrepqError(f"the ridge fit is unusable ({e}); the labels or features are too extreme: "
                         "rescale them") from None
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(model.predict(X)).all()
    if not finite:
        raise GrepqError("the ridge fit gives infinite scores on its own training rows; the labels "
                         "or features are too extreme: rescale them")


def fit_ridge(X: np.ndarray, y: np.ndarray, layout, identities: dict, alphas=DEFAULT_ALPHAS,
              folds: int = 5, seed: int = 0, groups=None, free: int = 0, weight: float = 1.0) -> RidgeModel:
    """Fit ridge on the labelled rows (NaN `y` = unlabelled), alpha by K-fold CV.

    `layout` is [(name, width), ...] in column order; `identities` maps each
    name to the identity of the encoder that produced that block. Labels
    must be finite and not all equal; a fit that is not finite is refused.
    `groups` (one per row: the content each image shows) makes the folds
    whole contents, so that the CV figure is one on unseen contents, as the
    test it stands for; without it the folds are random images. The last
    `free` columns are not penalised, and `weight` scales the rest
    (`FreeColumnsRidge`).
    """
    layout = layout_pairs(layout)
    labelled = ~np.isnan(np.asarray(y, dtype=np.float64).ravel())
    X, y = _training_rows(X, y, layout, identities)
    alphas = _checked_alphas(alphas)
    if not 0 <= weight <= 1:
        raise GrepqError(f"the correction's weight is between 0 and 1, got {weight}")
    target = _TargetScale.of(y)
    z = target.standardise(y)

    splitter, groups = _splitter(len(y), folds, seed, None if groups is None else np.asarray(groups)[labelled])
    trials = [_cv_trial(alpha, X, z, splitter, groups, free, weight) for alpha in alphas]
    best_alpha, _, _, best_pred = min(
        trials, key=lambda t: (-t[1] if np.isfinite(t[1]) else np.inf, t[2]))

    scaler = StandardScaler().fit(X)
    ridge = _regressor(best_alpha, free, weight).fit(scaler.transform(X), z)
    cv = {"srcc": metrics.srcc(best_pred, z), "plcc": metrics.plcc(best_pred, z), "folds": splitter.n_splits,
          "grouped": groups is not None, "by_alpha": [[a, s, rmse * target.unit] for a, s, rmse, _ in trials]}
    model = RidgeModel(coef=ridge.coef_.astype(np.float64) * target.unit,
                       intercept=float(ridge.intercept_) * target.unit + target.offset,
                       scaler_mean=scaler.mean_.astype(np.float64), scaler_scale=scaler.scale_.astype(np.float64),
                       alpha=best_alpha, layout=layout, identities=dict(identities), n_train=len(y), cv=cv,
                       label_range=[float(y.min()), float(y.max())])
    _check_fitted(model, X)
    return model
