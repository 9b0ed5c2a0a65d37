"""Feature rows -> quality scores, and the keep / reject split.

With a fitted regressor the score is its prediction; without one it is the
zero-shot score (combined when both pathways ran, else the one that did).
"""
from __future__ import annotations

import math

import apache_beam as beam
import numpy as np

from grepq_core import pathways
from grepq_core.features import row_vector
from grepq_core.regressor import load_ridge

__all__ = ["ScoreRows", "zero_shot_score", "KeepThreshold"]


def zero_shot_score(row: dict) -> tuple[float | None, str]:
    """The combined zero-shot score when every combined pathway ran, else the first pathway's that did."""
    for column in ("zs_combined", *pathways.columns()["zero_shot"]):
        value = row.get(column)
        if value is not None and math.isfinite(value):
            return value, f"zero-shot:{column[3:]}"
    return None, "zero-shot:none"


class ScoreRows(beam.DoFn):
    """Feature row -> score row (keep is decided later, against the threshold)."""

    def __init__(self, model_uri: str | None, scale: tuple[float, float] | None = None):
        self._uri = model_uri
        self._scale = scale
        self._model = None
        self._checked: set[tuple] = set()  # encoder identities already matched against the model

    def setup(self):
        if self._uri:
            self._model = load_ridge(self._uri)

    def process(self, row):
        calibrated = None
        if self._model is None:
            score, scorer = zero_shot_score(row)
        else:
            identities = tuple((b, row[pathways.get(b).identity_column]) for b, _ in self._model.layout)
            if identities not in self._checked:
                self._model.check_features(identities=dict(identities))
                self._checked.add(identities)
            score = float(self._model.predict(row_vector(row, self._model.layout)[None])[0])
            scorer = f"ridge:{self._uri}"
            if self._scale:
                calibrated = float(self._model.calibrate(np.array([score]), *self._scale)[0])
        zero_shot = {c: row.get(c) for c in (*pathways.columns()["zero_shot"], "zs_combined")}
        yield {"path": row["path"], "sha256": row["sha256"], "score": score, "calibrated": calibrated,
               "scorer": scorer, "keep": None, **zero_shot}


class KeepThreshold(beam.PTransform):
    """The score above which an image is kept: fixed, or the (1 - F) quantile."""

    def __init__(self, keep_above: float | None, keep_top_fraction: float | None, resolution: int = 10_000):
        super().__init__()
        self._above, self._fraction, self._resolution = keep_above, keep_top_fraction, resolution

    def expand(self, scores):
        if self._fraction is None:
            above = -math.inf if self._above is None else self._above
            return scores.pipeline | beam.Create([above])
        index = round((1.0 - self._fraction) * self._resolution)
        return (scores
                | beam.Map(lambda r: r["score"]) | beam.Filter(lambda s: s is not None)
                | beam.ApproximateQuantiles.Globally(self._resolution + 1)
                | beam.Map(lambda q: q[min(index, len(q) - 1)] if q else math.inf))
