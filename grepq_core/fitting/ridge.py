"""The data-efficient predictor as a fitted value (docs/method.md, "Data-efficient prediction").

A `RidgeModel` maps feature rows (LL 128 + HL 1024 by default, and the
zero-shot score where the fit chose it) to quality scores: standardise,
then a linear map. It records which columns it was fitted on (`layout`)
and which encoder produced each block (`identities`), so it refuses
features from any other encoder. How it is fitted is ridge_fit.py; how it
is stored and checked on reading is ridge_file.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grepq_core.errors import GrepqError

__all__ = ["RidgeModel", "describe_layout", "layout_pairs"]


def layout_pairs(layout) -> list[list]:
    """[(name, width), ...] in column order, as JSON-comparable [[str, int], ...]."""
    return [[str(name), int(width)] for name, width in layout]


def describe_layout(layout: list[list]) -> str:
    return ", ".join(f"{name}:{width}" for name, width in layout)


@dataclass
class RidgeModel:
    """A fitted ridge predictor; `predict` maps feature rows to quality scores.

    `cv` holds the out-of-fold SRCC and PLCC at the chosen alpha, the number
    of folds, and per candidate alpha [alpha, SRCC, RMSE] in `cv["by_alpha"]`
    (RMSE in label units, not MSE: the square of 1e300-scale labels overflows;
    models written before hold MSE there).
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
    choice: dict = field(default_factory=dict)  # {"chosen", "cv_srcc": {candidate: SRCC}, "share_better"} (fit_choice)

    @property
    def n_features(self) -> int:
        return sum(width for _, width in self.layout)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores for [N, F] feature rows, in the label's scale and direction."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise GrepqError(f"model expects [N, {self.n_features}] rows ({describe_layout(self.layout)}), "
                             f"got {X.shape}")
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
        if layout is not None and layout_pairs(layout) != self.layout:
            raise GrepqError(f"model was fitted on columns {describe_layout(self.layout)}, "
                             f"these features have {describe_layout(layout_pairs(layout))}")
        if identities is not None:
            for name in sorted(set(self.identities) | set(identities)):
                fitted, given = self.identities.get(name), identities.get(name)
                if fitted != given:
                    raise GrepqError(f"model was fitted on {fitted or f'no {name} features'}, these features "
                                     f"come from {given or f'no {name} encoder'}; extract features with the "
                                     "same encoders, or refit the model")
