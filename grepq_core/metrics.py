"""Agreement between predicted quality and MOS (docs/method.md, "Evaluation conventions").

SRCC and KRCC are rank correlations. PLCC and RMSE are measured after mapping
the predictions onto the MOS scale with the monotonic 4-parameter logistic
f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2, fitted by least squares.

Deviation from the reference code: the reference maps with a 3rd-order
polynomial, which need not be monotonic; the logistic is the field's usual
choice (VQEG) and the default here. ``mapping="cubic"`` maps as the
reference does, for tables to set beside the paper's. If the logistic fit
fails, the best linear map is used instead (so PLCC is then |Pearson|) and a
warning is logged.

Pairs where either value is NaN or infinite are dropped; fewer than 3 finite
pairs is a ValueError. A constant input has no correlation: NaN.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import optimize, stats

__all__ = ["MAPPINGS", "srcc", "krcc", "plcc", "rmse", "logistic4", "logistic_map", "cubic_map", "correlations"]

MAPPINGS = ("logistic", "cubic")

log = logging.getLogger(__name__)

_MIN_PAIRS = 3


def _finite_pairs(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).ravel()
    mos = np.asarray(mos, dtype=np.float64).ravel()
    if pred.shape != mos.shape:
        raise ValueError(f"{pred.size} predictions but {mos.size} MOS values")
    keep = np.isfinite(pred) & np.isfinite(mos)
    if keep.sum() < _MIN_PAIRS:
        raise ValueError(f"need at least {_MIN_PAIRS} finite (prediction, MOS) pairs, got {int(keep.sum())}")
    return pred[keep], mos[keep]


def _quiet(fn, *args):
    """A scipy correlation with its constant-input warning silenced (the result is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(fn(*args).statistic)


def logistic4(x, b1, b2, b3, b4):
    """Monotonic logistic from b2 (x -> -inf) to b1 (x -> +inf), centre b3, width |b4|."""
    return (b1 - b2) / (1 + np.exp(-(np.asarray(x) - b3) / np.abs(b4))) + b2


def _fit_logistic(pred: np.ndarray, mos: np.ndarray) -> np.ndarray | None:
    """Mapped predictions, or None when the fit fails or is degenerate."""
    if np.ptp(pred) == 0:
        return None
    high, low = mos.max(), mos.min()
    if _quiet(stats.spearmanr, pred, mos) < 0:
        high, low = low, high
    spread = float(pred.std())
    guess = [high, low, float(np.median(pred)), spread]
    # The scale b4 may not shrink below 1/20 of the predictions' spread: with
    # few distinct MOS values an unbounded fit collapses to a step function,
    # which rewards thresholds instead of measuring linearity.
    lower = [-np.inf, -np.inf, -np.inf, spread / 20]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=guess, bounds=(lower, np.inf), maxfev=10_000)
    except (RuntimeError, ValueError):  # no convergence / non-finite residuals
        return None
    with np.errstate(over="ignore"):
        mapped = logistic4(pred, *params)
    if not np.isfinite(mapped).all() or np.ptp(mapped) == 0:
        return None
    return mapped


def logistic_map(pred, mos) -> tuple[np.ndarray, bool]:
    """Predictions mapped onto the MOS scale, and whether the logistic fit held.

    On failure the map is the least-squares line (a constant for constant
    predictions) and a warning is logged.
    """
    pred, mos = _finite_pairs(pred, mos)
    mapped = _fit_logistic(pred, mos)
    if mapped is not None:
        return mapped, True
    log.warning("4-parameter logistic fit failed on %d pairs; PLCC/RMSE use a linear map", pred.size)
    if np.ptp(pred) == 0:
        return np.full_like(mos, mos.mean()), False
    slope, intercept = np.polyfit(pred, mos, 1)
    return slope * pred + intercept, False


def cubic_map(pred, mos) -> np.ndarray:
    """The predictions mapped by the least-squares 3rd-order polynomial onto the MOS (the reference's map)."""
    return np.polyval(np.polyfit(pred, mos, 3), pred)


def _mapped(pred: np.ndarray, mos: np.ndarray, mapping: str) -> np.ndarray:
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    return cubic_map(pred, mos) if mapping == "cubic" else logistic_map(pred, mos)[0]


def srcc(pred, mos) -> float:
    """Spearman rank correlation."""
    return _quiet(stats.spearmanr, *_finite_pairs(pred, mos))


def krcc(pred, mos) -> float:
    """Kendall rank correlation (tau-b)."""
    return _quiet(stats.kendalltau, *_finite_pairs(pred, mos))


def plcc(pred, mos, mapping: str = "logistic") -> float:
    """Pearson correlation between MOS and the mapped (logistic, or cubic) predictions."""
    pred, mos = _finite_pairs(pred, mos)
    return _quiet(stats.pearsonr, _mapped(pred, mos, mapping), mos)


def rmse(pred, mos) -> float:
    """Root mean squared error between MOS and the logistic-mapped predictions."""
    pred, mos = _finite_pairs(pred, mos)
    return float(np.sqrt(np.mean((logistic_map(pred, mos)[0] - mos) ** 2)))


def correlations(pred, mos, mapping: str = "logistic") -> dict[str, float]:
    """srcc, plcc, krcc and rmse in one pass (one fit of the `mapping`)."""
    pred, mos = _finite_pairs(pred, mos)
    mapped = _mapped(pred, mos, mapping)
    return {
        "srcc": _quiet(stats.spearmanr, pred, mos),
        "plcc": _quiet(stats.pearsonr, mapped, mos),
        "krcc": _quiet(stats.kendalltau, pred, mos),
        "rmse": float(np.sqrt(np.mean((mapped - mos) ** 2))),
    }
