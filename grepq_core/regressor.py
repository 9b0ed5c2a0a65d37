"""The data-efficient predictor (METHOD.md, "Data-efficient prediction").

Ridge regression on standardised feature rows (LL 128 + HL 1024 by default),
with alpha chosen from {0.1, 1, 10, 100} by K-fold cross-validation on the
labelled rows only: the highest SRCC of the out-of-fold predictions wins,
ties go to the lower MSE. The paper tunes alpha per dataset by hand; this
automates that choice. SRCC over all out-of-fold predictions, rather than
the mean of per-fold SRCCs, because folds of a few rows give rank
correlations too coarse to compare (a 2-row fold has none).

A fitted model is JSON (format tag ``grepq-ridge/1``), never a pickle. It
records which columns it was fitted on (`layout`) and which encoder produced
each block (`identities`), so it refuses features from any other encoder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import fsspec
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from grepq_core import metrics
from grepq_core.errors import GrepqError

__all__ = ["MIN_TRAIN_ROWS", "DEFAULT_ALPHAS", "RidgeModel", "fit_ridge", "load_ridge"]

MIN_TRAIN_ROWS = 10
DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0)
_FORMAT = "grepq-ridge/1"


def _layout(layout) -> list[list]:
    """[(name, width), ...] in column order, as JSON-comparable [[str, int], ...]."""
    return [[str(name), int(width)] for name, width in layout]


def _describe(layout: list[list]) -> str:
    return ", ".join(f"{name}:{width}" for name, width in layout)


@dataclass
class RidgeModel:
    """A fitted ridge predictor; `predict` maps feature rows to quality scores.

    `cv` holds the out-of-fold SRCC and PLCC at the chosen alpha, the number
    of folds, and per candidate alpha [alpha, SRCC, MSE] in `cv["by_alpha"]`.
    """

    coef: np.ndarray
    intercept: float
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    alpha: float
    layout: list
    identities: dict
    n_train: int
    cv: dict = field(default_factory=dict)
    direction: str = "higher is better"
    label_range: list = field(default_factory=list)  # [lowest, highest] training label

    @property
    def n_features(self) -> int:
        return sum(width for _, width in self.layout)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores for [N, F] feature rows, in the label's scale and direction."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise GrepqError(f"model expects [N, {self.n_features}] rows ({_describe(self.layout)}), got {X.shape}")
        return (X - self.scaler_mean) / self.scaler_scale @ self.coef + self.intercept

    def calibrate(self, scores: np.ndarray, low: float, high: float) -> np.ndarray:
        """Predictions mapped linearly from the training labels' range onto [low, high], clipped.

        The lowest training label maps to `low` and the highest to `high`, so
        a user can read scores on a familiar scale (1-5, 0-100).
        """
        if len(self.label_range) != 2 or self.label_range[1] <= self.label_range[0]:
            raise GrepqError("this model records no label range to calibrate with; refit it")
        lo, hi = self.label_range
        return np.clip(low + (np.asarray(scores, dtype=np.float64) - lo) * (high - low) / (hi - lo),
                       min(low, high), max(low, high))

    def check_features(self, layout=None, identities=None) -> None:
        """Raise `GrepqError` unless the given layout and identities are the fitted ones."""
        if layout is not None and _layout(layout) != self.layout:
            raise GrepqError(f"model was fitted on columns {_describe(self.layout)}, "
                             f"these features have {_describe(_layout(layout))}")
        if identities is not None:
            for name in sorted(set(self.identities) | set(identities)):
                fitted, given = self.identities.get(name), identities.get(name)
                if fitted != given:
                    raise GrepqError(f"model was fitted on {fitted or f'no {name} features'}, these features "
                                     f"come from {given or f'no {name} encoder'}; extract features with the "
                                     "same encoders, or refit the model")

    def save(self, uri: str) -> None:
        """Write the model as JSON to a path or fsspec URL."""
        record = asdict(self)
        for key in ("coef", "scaler_mean", "scaler_scale"):
            record[key] = record[key].tolist()
        with fsspec.open(uri, "w") as f:
            json.dump({"format": _FORMAT, **record}, f, indent=1)


def load_ridge(uri: str, layout=None, identities=None) -> RidgeModel:
    """Read a model written by `RidgeModel.save`, checking it fits these features."""
    try:
        with fsspec.open(uri, "r") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise GrepqError(f"cannot read ridge model {uri}: {e}") from e
    if not isinstance(record, dict) or record.pop("format", None) != _FORMAT:
        raise GrepqError(f"{uri} is not a {_FORMAT} model")
    try:
        for key in ("coef", "scaler_mean", "scaler_scale"):
            record[key] = np.asarray(record[key], dtype=np.float64)
        model = RidgeModel(**record)
    except (KeyError, TypeError, ValueError) as e:
        raise GrepqError(f"{uri}: malformed {_FORMAT} model: {e}") from e
    model.check_features(layout, identities)
    return model


def fit_ridge(X: np.ndarray, y: np.ndarray, layout, identities: dict, alphas=DEFAULT_ALPHAS,
              folds: int = 5, seed: int = 0) -> RidgeModel:
    """Fit ridge on the labelled rows (finite `y`), alpha by K-fold CV.

    `layout` is [(name, width), ...] in column order; `identities` maps each
    name to the identity of the encoder that produced that block.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    layout = _layout(layout)
    if X.ndim != 2 or X.shape[0] != y.size:
        raise GrepqError(f"features {X.shape} and labels ({y.size}) do not line up")
    if X.shape[1] != sum(width for _, width in layout):
        raise GrepqError(f"features have {X.shape[1]} columns, layout {_describe(layout)} says "
                         f"{sum(width for _, width in layout)}")
    if set(identities) != {name for name, _ in layout}:
        raise GrepqError(f"identities name {sorted(identities)}, layout names {[n for n, _ in layout]}")
    labelled = np.isfinite(y)
    X, y = X[labelled], y[labelled]
    if len(y) < MIN_TRAIN_ROWS:
        raise GrepqError(f"ridge needs at least {MIN_TRAIN_ROWS} labelled rows, got {len(y)} "
                         f"(of {labelled.size} rows); add labels")
    if not np.isfinite(X).all():
        raise GrepqError("labelled feature rows contain NaN or infinity")

    splitter = KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed)
    trials = []
    for alpha in alphas:
        pipe = make_pipeline(StandardScaler(), Ridge(alpha=float(alpha)))  # the scaler is refitted per fold
        pred = cross_val_predict(pipe, X, y, cv=splitter)
        trials.append((float(alpha), metrics.srcc(pred, y), float(np.mean((pred - y) ** 2)), pred))
    best_alpha, _, _, best_pred = min(
        trials, key=lambda t: (-t[1] if np.isfinite(t[1]) else np.inf, t[2]))

    scaler = StandardScaler().fit(X)
    ridge = Ridge(alpha=best_alpha).fit(scaler.transform(X), y)
    cv = {"srcc": metrics.srcc(best_pred, y), "plcc": metrics.plcc(best_pred, y), "folds": splitter.n_splits,
          "by_alpha": [[a, s, m] for a, s, m, _ in trials]}
    return RidgeModel(coef=ridge.coef_.astype(np.float64), intercept=float(ridge.intercept_),
                      scaler_mean=scaler.mean_.astype(np.float64), scaler_scale=scaler.scale_.astype(np.float64),
                      alpha=best_alpha, layout=layout, identities=dict(identities), n_train=len(y), cv=cv,
                      label_range=[float(y.min()), float(y.max())])
