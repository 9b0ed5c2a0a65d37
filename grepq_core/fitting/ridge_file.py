"""A fitted ridge model on disk: strict JSON (format tag ``grepq-ridge/1``), never a pickle.

A model file comes from outside (a bucket, a colleague), and every number
in it reaches every score; so `load_ridge` checks each field against the
layout (types, lengths, finite numbers, positive scales) before any of it
can reach a score, and `save_ridge` refuses to write a model that
`load_ridge` would refuse.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict

import fsspec
import numpy as np

from grepq_core.errors import GrepqError
from grepq_core.files import write_file
from grepq_core.fitting.ridge import RidgeModel, describe_layout

__all__ = ["MAX_MODEL_BYTES", "InvalidModel", "check_model", "save_ridge", "load_ridge"]

_FORMAT = "grepq-ridge/1"
MAX_MODEL_BYTES = 16 * 2**20  # a real model is about 70 kB per 1,000 features
_VECTORS = ("coef", "scaler_mean", "scaler_scale")
_OPTIONAL = {"label_range": [], "choice": {}}  # models fitted before calibration / the choice existed lack them
_REQUIRED = ("layout", "identities", *_VECTORS, "intercept", "alpha", "n_train", "cv", "direction")
_DIRECTION = "higher is better"
_SMALLEST_SCALE = float(np.finfo(np.float64).tiny)  # below it 1 / scale overflows


class InvalidModel(GrepqError):
    """One field of a model record is missing, mistyped or out of range."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field} {problem}")


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _number(value, field: str) -> float:
    """A finite JSON number (not a boolean, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidModel(field, f"must be a number, not {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if not np.isfinite(number):
        raise InvalidModel(field, f"must be finite, not {number}")
    return number


def _integer(value, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidModel(field, f"must be an integer, not {_kind(value)}")
    if value < minimum:
        raise InvalidModel(field, f"must be at least {minimum}, not {value}")
    return value


def _vector(value, field: str, length: int, layout: list) -> np.ndarray:
    """A flat list of `length` finite numbers, as float64."""
    if not isinstance(value, list):
        raise InvalidModel(field, f"must be a list of numbers, not {_kind(value)}")
    if len(value) != length:
        raise InvalidModel(field, f"has {len(value)} values; layout {describe_layout(layout)} needs {length}")
    return np.array([_number(v, f"{field}[{i}]") for i, v in enumerate(value)], dtype=np.float64)


def _checked_layout(value) -> list[list]:
    """[[name, width], ...]: non-empty, distinct names, positive integer widths."""
    if not isinstance(value, list) or not value:
        raise InvalidModel("layout", "must be a non-empty list of [name, width] pairs")
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and re.fullmatch(r"[A-Za-z0-9_.-]+", pair[0])):
            raise InvalidModel(f"layout[{i}]", "must be a [name, width] pair, the name of letters, digits, '_.-'")
        _integer(pair[1], f"layout[{i}] width", 1)
    names = [name for name, _ in value]
    if len(set(names)) != len(names):
        raise InvalidModel("layout", f"names a block twice: {names}")
    return [list(pair) for pair in value]


def _checked_identities(value, layout: list) -> dict:
    """{block: encoder identity} for exactly the layout's blocks, identities non-empty strings."""
    if not isinstance(value, dict):
        raise InvalidModel("identities", f"must be an object, not {_kind(value)}")
    for name, identity in value.items():
        if not isinstance(identity, str) or not identity or not identity.isprintable():
            raise InvalidModel(f"identities[{name!r}]", "must be a non-empty string without control characters")
    if set(value) != {name for name, _ in layout}:
        raise InvalidModel("identities", f"names {sorted(value)}, the layout names {[n for n, _ in layout]}")
    return dict(value)


def _checked_cv(value) -> dict:
    """The CV summary: finite SRCC and PLCC, >= 2 folds, finite [alpha, SRCC, error] per alpha."""
    if not isinstance(value, dict):
        raise InvalidModel("cv", f"must be an object, not {_kind(value)}")
    for key in ("srcc", "plcc", "folds", "by_alpha"):
        if key not in value:
            raise InvalidModel(f"cv.{key}", "is missing")
    _number(value["srcc"], "cv.srcc")
    _number(value["plcc"], "cv.plcc")
    _integer(value["folds"], "cv.folds", 2)
    trials = value["by_alpha"]
    if not isinstance(trials, list) or not trials:
        raise InvalidModel("cv.by_alpha", "must be a non-empty list of [alpha, SRCC, error] triples")
    for i, trial in enumerate(trials):
        if not isinstance(trial, list) or len(trial) != 3:
            raise InvalidModel(f"cv.by_alpha[{i}]", "must be an [alpha, SRCC, error] triple")
        for j, v in enumerate(trial):
            _number(v, f"cv.by_alpha[{i}][{j}]")
    return dict(value)


def _checked_label_range(value) -> list:
    """[] (an old model) or [lowest, highest] finite training labels."""
    if value == []:
        return []
    if not isinstance(value, list) or len(value) != 2:
        raise InvalidModel("label_range", "must be [lowest, highest] training label")
    low, high = (_number(v, f"label_range[{i}]") for i, v in enumerate(value))
    if low > high:
        raise InvalidModel("label_range", f"has its lowest label {low} above its highest {high}")
    return [low, high]


def _checked_vectors(record: dict, layout: list) -> dict[str, np.ndarray]:
    """coef, scaler_mean and scaler_scale: one finite number per layout column, scales positive."""
    width = sum(w for _, w in layout)
    vectors = {key: _vector(record[key], key, width, layout) for key in _VECTORS}
    too_small = np.flatnonzero(vectors["scaler_scale"] < _SMALLEST_SCALE)
    if too_small.size:
        i = too_small[0]
        raise InvalidModel(f"scaler_scale[{i}]", f"must be positive (at least {_SMALLEST_SCALE:.3g}), "
                       f"not {vectors['scaler_scale'][i]}")
    return vectors


def _checked_alpha(value) -> float:
    alpha = _number(value, "alpha")
    if alpha < 0:
        raise InvalidModel("alpha", f"must not be negative, not {alpha}")
    return alpha


def _checked_fields(record: dict) -> dict:
    """RidgeModel keyword arguments from a model record, every field checked; else `InvalidModel`."""
    unknown = sorted(set(record) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise InvalidModel(repr(unknown[0]), "is not part of the format")
    for key in _REQUIRED:
        if key not in record:
            raise InvalidModel(repr(key), "is missing")
    layout = _checked_layout(record["layout"])
    if record["direction"] != _DIRECTION:
        raise InvalidModel("direction", f"must be {_DIRECTION!r}")
    return {**_checked_vectors(record, layout), "layout": layout,
            "identities": _checked_identities(record["identities"], layout),
            "intercept": _number(record["intercept"], "intercept"), "alpha": _checked_alpha(record["alpha"]),
            "n_train": _integer(record["n_train"], "n_train", 1), "cv": _checked_cv(record["cv"]),
            "direction": _DIRECTION,
            "label_range": _checked_label_range(record.get("label_range", _OPTIONAL["label_range"])),
            "choice": _checked_choice(record.get("choice", _OPTIONAL["choice"]))}


def _checked_choice(value) -> dict:
    """Which candidate fit was kept, each candidate's CV SRCC (None where it had none) and, where a fit
    was weighed against zero-shot, the share of resamples in which it ranked better, and the weight of a
    kept correction."""
    if value == {}:
        return {}
    if not isinstance(value, dict) or not {"chosen", "cv_srcc"} <= set(value) <= {"chosen", "cv_srcc",
                                                                                    "share_better", "weight"}:
        raise InvalidModel("choice", "must be an object with chosen, cv_srcc and optionally share_better "
                           "and weight")
    if value.get("share_better") is not None:
        _number(value["share_better"], "choice.share_better")
    if "weight" in value and not 0 <= _number(value["weight"], "choice.weight") <= 1:
        raise InvalidModel("choice.weight", "must be between 0 and 1")
    if not isinstance(value["chosen"], str) or not isinstance(value["cv_srcc"], dict):
        raise InvalidModel("choice", "must name the chosen candidate and map candidates to SRCC")
    if value["chosen"] not in value["cv_srcc"]:
        raise InvalidModel("choice.chosen", "must be one of the candidates")
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
    except InvalidModel as e:
        raise GrepqError(f"ridge model {uri}: {e}") from None
    model.check_features(layout, identities)
    return model


def _record(model: RidgeModel) -> dict:
    """The model's fields as JSON values (arrays as lists)."""
    record = asdict(model)
    for key in _VECTORS:
        record[key] = np.asarray(record[key]).tolist()
    if not record["choice"]:
        del record["choice"]  # a plain ridge: the file stays what earlier versions wrote
    return record


def save_ridge(model: RidgeModel, uri: str) -> None:
    """Write `model` as strict JSON to a path or fsspec URL.

    The record is checked and serialised before the file is opened, so a
    model that `load_ridge` would refuse is never written, not even in part.
    """
    record = _record(model)
    try:
        _checked_fields(record)
    except InvalidModel as e:
        raise GrepqError(f"refusing to save an unusable ridge model to {uri}: {e}") from None
    write_file(uri, json.dumps({"format": _FORMAT, **record}, indent=1, allow_nan=False))


def check_model(model: RidgeModel) -> None:
    """Raise `InvalidModel` naming the first field of `model` that a file could not hold."""
    _checked_fields(_record(model))
