"""One feature row -> one quality score: a fitted ridge's prediction, or the zero-shot rule.

Shared by `grepq score` (transforms/scoring.py) and the Python API
(grepq_core/api.py), so both give the same number for the same row.
Without a model the score is the zero-shot score: the combined one when
every combined pathway ran, else the first pathway's that did; its
``calibrated`` value is the zero-shot score on the fixed 0-100 scale
(grepq_core/training/calibration.py) where the row has one.

Keep / reject and the report go by `decision_value`: the calibrated value
where there is one (a scale means the same in every run), else the score.
"""
from __future__ import annotations

import hashlib
import math

import fsspec
import numpy as np

from grepq_core.fitting.features import block_identity, row_vector, zero_shot_score
from grepq_core.fitting.ridge_file import load_ridge
from grepq_core.model import registry

__all__ = ["zero_shot_score", "calibrated_zero_shot", "decision_value", "RowScorer"]


def _digest(uri: str) -> str:
    with fsspec.open(uri, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def calibrated_zero_shot(row: dict) -> float | None:
    """The first calibrated 0-100 zero-shot score a feature row has, else None."""
    for column in registry.columns()["calibrated"]:
        value = row.get(column)
        if value is not None and math.isfinite(value):
            return value
    return None


def decision_value(row: dict) -> float | None:
    """What a score row is kept or rejected by: `calibrated` where present, else `score`."""
    return row["calibrated"] if row.get("calibrated") is not None else row["score"]


class RowScorer:
    """Scores feature rows with the ridge model at `model_uri`, or by the zero-shot rule without one.

    The scorer name a score row records is ``ridge:URI@DIGEST`` (the model
    file's content digest) or ``zero-shot:COLUMN``. `scale` (LOW, HIGH) adds
    a ``calibrated`` value: the ridge prediction mapped from the training
    labels' range onto that scale. Zero-shot rows carry their calibrated
    0-100 score there.
    """

    def __init__(self, model_uri: str | None = None, scale: tuple[float, float] | None = None):
        self.model = load_ridge(model_uri) if model_uri else None
        self.name = f"ridge:{model_uri}@{_digest(model_uri)}" if model_uri else None
        self.scale = scale
        self._checked: set[tuple] = set()  # encoder identities already matched against the model

    def __call__(self, row: dict) -> dict:
        """{"score", "calibrated", "scorer"} for one feature row."""
        if self.model is None:
            score, scorer = zero_shot_score(row)
            return {"score": score, "calibrated": calibrated_zero_shot(row), "scorer": scorer}
        identities = tuple((b, block_identity(row, b)) for b, _ in self.model.layout)
        if identities not in self._checked:
            self.model.check_features(identities=dict(identities))
            self._checked.add(identities)
        score = float(self.model.predict(row_vector(row, self.model.layout)[None])[0])
        calibrated = float(self.model.calibrate(np.array([score]), *self.scale)[0]) if self.scale else None
        return {"score": score, "calibrated": calibrated, "scorer": self.name}
