"""The data-efficient predictor (docs/method.md, "Data-efficient prediction").

Ridge regression on standardised feature rows (LL 128 + HL 1024 by default),
with alpha chosen from {0.1, 1, 10, 100} by K-fold cross-validation on the
labelled rows only: the highest SRCC of the out-of-fold predictions wins,
ties go to the lower error. The paper tunes alpha per dataset by hand; this
automates that choice. SRCC over all out-of-fold predictions, rather than
the mean of per-fold SRCCs, because folds of a few rows give rank
correlations too coarse to compare (a 2-row fold has none).

A fitted model is JSON (format tag ``grepq-ridge/1``), never a pickle. It
records which columns it was fitted on (`layout`) and which encoder produced
each block (`identities`), so it refuses features from any other encoder.
`load_ridge` checks every field of the file against that layout (types,
lengths, finite numbers, positive scales) before any of it can reach a score.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import fsspec
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from grepq_core import metrics
from grepq_core.errors import GrepqError

__all__ = ["MIN_TRAIN_ROWS", "DEFAULT_ALPHAS", "RidgeModel", "fit_ridge", "out_of_fold", "load_ridge"]

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
        """Write the model as strict JSON to a path or fsspec URL.

        The record is checked and serialised before the file is opened, so a
        model that `load_ridge` would refuse is never written, not even in part.
        """
        record = _record(self)
        try:
            _checked_fields(record)
        except _Invalid as e:
            raise GrepqError(f"refusing to save an unusable ridge model to {uri}: {e}") from None
        text = json.dumps({"format": _FORMAT, **record}, indent=1, allow_nan=False)
        with fsspec.open(uri, "w") as f:
            f.write(text)


def _record(model: RidgeModel) -> dict:
    """The model's fields as JSON values (arrays as lists)."""
    record = asdict(model)
    for key in _VECTORS:
        record[key] = np.asarray(record[key]).tolist()
    if not record["choice"]:
        del record["choice"]  # a plain ridge: the file stays what earlier versions wrote
    return record


# --- Reading and checking a model file ------------------------------------------------------------
# A model file comes from outside (a bucket, a colleague), and every number in it reaches every
# score; so each field is checked against the layout before any of it is used.

MAX_MODEL_BYTES = 16 * 2**20  # a real model is about 70 kB per 1,000 features
_VECTORS = ("coef", "scaler_mean", "scaler_scale")
_OPTIONAL = {"label_range": [], "choice": {}}  # models fitted before calibration / the choice existed lack them
_REQUIRED = ("layout", "identities", *_VECTORS, "intercept", "alpha", "n_train", "cv", "direction")
_DIRECTION = "higher is better"
_SMALLEST_SCALE = float(np.finfo(np.float64).tiny)  # below it 1 / scale overflows


class _Invalid(Exception):
    """One field of a model record is missing, mistyped or out of range."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field} {problem}")


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _number(value, field: str) -> float:
    """A finite JSON number (not a boolean, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(field, f"must be a number, not {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if not np.isfinite(number):
        raise _Invalid(field, f"must be finite, not {number}")
    return number


def _integer(value, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(field, f"must be an integer, not {_kind(value)}")
    if value < minimum:
        raise _Invalid(field, f"must be at least {minimum}, not {value}")
    return value


def _vector(value, field: str, length: int, layout: list) -> np.ndarray:
    """A flat list of `length` finite numbers, as float64."""
    if not isinstance(value, list):
        raise _Invalid(field, f"must be a list of numbers, not {_kind(value)}")
    if len(value) != length:
        raise _Invalid(field, f"has {len(value)} values; layout {_describe(layout)} needs {length}")
    return np.array([_number(v, f"{field}[{i}]") for i, v in enumerate(value)], dtype=np.float64)


def _checked_layout(value) -> list[list]:
    """[[name, width], ...]: non-empty, distinct names, positive integer widths."""
    if not isinstance(value, list) or not value:
        raise _Invalid("layout", "must be a non-empty list of [name, width] pairs")
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and re.fullmatch(r"[A-Za-z0-9_.-]+", pair[0])):
            raise _Invalid(f"layout[{i}]", "must be a [name, width] pair, the name of letters, digits, '_.-'")
        _integer(pair[1], f"layout[{i}] width", 1)
    names = [name for name, _ in value]
    if len(set(names)) != len(names):
        raise _Invalid("layout", f"names a block twice: {names}")
    return [list(pair) for pair in value]


def _checked_identities(value, layout: list) -> dict:
    """{block: encoder identity} for exactly the layout's blocks, identities non-empty strings."""
    if not isinstance(value, dict):
        raise _Invalid("identities", f"must be an object, not {_kind(value)}")
    for name, identity in value.items():
        if not isinstance(identity, str) or not identity or not identity.isprintable():
            raise _Invalid(f"identities[{name!r}]", "must be a non-empty string without control characters")
    if set(value) != {name for name, _ in layout}:
        raise _Invalid("identities", f"names {sorted(value)}, the layout names {[n for n, _ in layout]}")
    return dict(value)


def _checked_cv(value) -> dict:
    """The CV summary: finite SRCC and PLCC, >= 2 folds, finite [alpha, SRCC, error] per alpha."""
    if not isinstance(value, dict):
        raise _Invalid("cv", f"must be an object, not {_kind(value)}")
    for key in ("srcc", "plcc", "folds", "by_alpha"):
        if key not in value:
            raise _Invalid(f"cv.{key}", "is missing")
    _number(value["srcc"], "cv.srcc")
    _number(value["plcc"], "cv.plcc")
    _integer(value["folds"], "cv.folds", 2)
    trials = value["by_alpha"]
    if not isinstance(trials, list) or not trials:
        raise _Invalid("cv.by_alpha", "must be a non-empty list of [alpha, SRCC, error] triples")
    for i, trial in enumerate(trials):
        if not isinstance(trial, list) or len(trial) != 3:
            raise _Invalid(f"cv.by_alpha[{i}]", "must be an [alpha, SRCC, error] triple")
        for j, v in enumerate(trial):
            _number(v, f"cv.by_alpha[{i}][{j}]")
    return dict(value)


def _checked_label_range(value) -> list:
    """[] (an old model) or [lowest, highest] finite training labels."""
    if value == []:
        return []
    if not isinstance(value, list) or len(value) != 2:
        raise _Invalid("label_range", "must be [lowest, highest] training label")
    low, high = (_number(v, f"label_range[{i}]") for i, v in enumerate(value))
    if low > high:
        raise _Invalid("label_range", f"has its lowest label {low} above its highest {high}")
    return [low, high]


def _checked_vectors(record: dict, layout: list) -> dict[str, np.ndarray]:
    """coef, scaler_mean and scaler_scale: one finite number per layout column, scales positive."""
    width = sum(w for _, w in layout)
    vectors = {key: _vector(record[key], key, width, layout) for key in _VECTORS}
    too_small = np.flatnonzero(vectors["scaler_scale"] < _SMALLEST_SCALE)
    if too_small.size:
        i = too_small[0]
        raise _Invalid(f"scaler_scale[{i}]", f"must be positive (at least {_SMALLEST_SCALE:.3g}), "
                       f"not {vectors['scaler_scale'][i]}")
    return vectors


def _checked_alpha(value) -> float:
    alpha = _number(value, "alpha")
    if alpha < 0:
        raise _Invalid("alpha", f"must not be negative, not {alpha}")
    return alpha


def _checked_fields(record: dict) -> dict:
    """RidgeModel keyword arguments from a model record, every field checked; else `_Invalid`."""
    unknown = sorted(set(record) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _Invalid(repr(unknown[0]), "is not part of the format")
    for key in _REQUIRED:
        if key not in record:
            raise _Invalid(repr(key), "is missing")
    layout = _checked_layout(record["layout"])
    if record["direction"] != _DIRECTION:
        raise _Invalid("direction", f"must be {_DIRECTION!r}")
    return {**_checked_vectors(record, layout), "layout": layout,
            "identities": _checked_identities(record["identities"], layout),
            "intercept": _number(record["intercept"], "intercept"), "alpha": _checked_alpha(record["alpha"]),
            "n_train": _integer(record["n_train"], "n_train", 1), "cv": _checked_cv(record["cv"]),
            "direction": _DIRECTION,
            "label_range": _checked_label_range(record.get("label_range", _OPTIONAL["label_range"])),
            "choice": _checked_choice(record.get("choice", _OPTIONAL["choice"]))}


def _checked_choice(value) -> dict:
    """Which candidate fit was kept, each candidate's CV SRCC (None where it had none) and, where a fit
    was weighed against zero-shot, the share of resamples in which it ranked better."""
    if value == {}:
        return {}
    if not isinstance(value, dict) or not {"chosen", "cv_srcc"} <= set(value) <= {"chosen", "cv_srcc",
                                                                                    "share_better"}:
        raise _Invalid("choice", "must be an object with chosen, cv_srcc and optionally share_better")
    if value.get("share_better") is not None:
        _number(value["share_better"], "choice.share_better")
    if not isinstance(value["chosen"], str) or not isinstance(value["cv_srcc"], dict):
        raise _Invalid("choice", "must name the chosen candidate and map candidates to SRCC")
    if value["chosen"] not in value["cv_srcc"]:
        raise _Invalid("choice.chosen", "must be one of the candidates")
    for name, srcc in value["cv_srcc"].items():
        if srcc is not None:
            _number(srcc, f"choice.cv_srcc.{name}")
    return value


def _read_json(uri: str):
    """The parsed file, refused unread past MAX_MODEL_BYTES (a huge file is not a model)."""
    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read(MAX_MODEL_BYTES + 1)
    except OSError as e:
        raise GrepqError(f"cannot read ridge model {uri}: {e}") from None
    if len(data) > MAX_MODEL_BYTES:
        raise GrepqError(f"ridge model {uri} is larger than {MAX_MODEL_BYTES // 2**20} MB; "
                         "a ridge model is well under 1 MB: is this the right file?")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise GrepqError(f"ridge model {uri} is not JSON: {e}") from None


def load_ridge(uri: str, layout=None, identities=None) -> RidgeModel:
    """Read a model written by `RidgeModel.save`, checking every field and that it fits these features."""
    record = _read_json(uri)
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise GrepqError(f"{uri} is not a {_FORMAT} model")
    try:
        model = RidgeModel(**_checked_fields({k: v for k, v in record.items() if k != "format"}))
    except _Invalid as e:
        raise GrepqError(f"ridge model {uri}: {e}") from None
    model.check_features(layout, identities)
    return model


# --- Fitting --------------------------------------------------------------------------------------

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
        raise GrepqError(f"features have {X.shape[1]} columns, layout {_describe(layout)} says "
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


def out_of_fold(X: np.ndarray, y: np.ndarray, alpha: float, folds: int = 5, seed: int = 0, groups=None) -> np.ndarray:
    """Each labelled row's prediction by a ridge (alpha `alpha`) fitted without its fold, as `fit_ridge`
    cross-validates (same folds for the same arguments); rows must all be labelled."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    splitter, groups = _splitter(len(y), folds, seed, None if groups is None else np.asarray(groups))
    return _cv_trial(alpha, X, _TargetScale.of(y).standardise(y), splitter, groups)[3]


def _cv_trial(alpha: float, X: np.ndarray, z: np.ndarray, splitter, groups=None) -> tuple:
    """(alpha, SRCC, RMSE in standardised units, out-of-fold predictions) for one alpha."""
    pipe = make_pipeline(StandardScaler(), Ridge(alpha=alpha))  # the scaler is refitted per fold
    pred = cross_val_predict(pipe, X, z, cv=splitter, groups=groups)
    return alpha, metrics.srcc(pred, z), float(np.sqrt(np.mean((pred - z) ** 2))), pred


def _check_fitted(model: RidgeModel, X: np.ndarray) -> None:
    """Refuse a fit whose numbers are not finite, or whose scores overflow on its own rows."""
    try:
        _checked_fields(_record(model))
    except _Invalid as e:
        raise GrepqError(f"the ridge fit is unusable ({e}); the labels or features are too extreme: "
                         "rescale them") from None
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(model.predict(X)).all()
    if not finite:
        raise GrepqError("the ridge fit gives infinite scores on its own training rows; the labels "
                         "or features are too extreme: rescale them")


def fit_ridge(X: np.ndarray, y: np.ndarray, layout, identities: dict, alphas=DEFAULT_ALPHAS,
              folds: int = 5, seed: int = 0, groups=None) -> RidgeModel:
    """Fit ridge on the labelled rows (NaN `y` = unlabelled), alpha by K-fold CV.

    `layout` is [(name, width), ...] in column order; `identities` maps each
    name to the identity of the encoder that produced that block. Labels
    must be finite and not all equal; a fit that is not finite is refused.
    `groups` (one per row: the content each image shows) makes the folds
    whole contents, so that the CV figure is one on unseen contents, as the
    test it stands for; without it the folds are random images.
    """
    layout = _layout(layout)
    labelled = ~np.isnan(np.asarray(y, dtype=np.float64).ravel())
    X, y = _training_rows(X, y, layout, identities)
    alphas = _checked_alphas(alphas)
    target = _TargetScale.of(y)
    z = target.standardise(y)

    splitter, groups = _splitter(len(y), folds, seed, None if groups is None else np.asarray(groups)[labelled])
    trials = [_cv_trial(alpha, X, z, splitter, groups) for alpha in alphas]
    best_alpha, _, _, best_pred = min(
        trials, key=lambda t: (-t[1] if np.isfinite(t[1]) else np.inf, t[2]))

    scaler = StandardScaler().fit(X)
    ridge = Ridge(alpha=best_alpha).fit(scaler.transform(X), z)
    cv = {"srcc": metrics.srcc(best_pred, z), "plcc": metrics.plcc(best_pred, z), "folds": splitter.n_splits,
          "grouped": groups is not None, "by_alpha": [[a, s, rmse * target.unit] for a, s, rmse, _ in trials]}
    model = RidgeModel(coef=ridge.coef_.astype(np.float64) * target.unit,
                       intercept=float(ridge.intercept_) * target.unit + target.offset,
                       scaler_mean=scaler.mean_.astype(np.float64), scaler_scale=scaler.scale_.astype(np.float64),
                       alpha=best_alpha, layout=layout, identities=dict(identities), n_train=len(y), cv=cv,
                       label_range=[float(y.min()), float(y.max())])
    _check_fitted(model, X)
    return model
