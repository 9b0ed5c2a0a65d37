"""Feature rows -> quality scores, and the keep / reject split, in a Beam pipeline.

How one row is scored is grepq_core/fitting/scoring.py's `RowScorer`: a fitted
regressor's prediction, or the zero-shot score without one.
"""
from __future__ import annotations

import math

import apache_beam as beam

from grepq_core.fitting.scoring import RowScorer, decision_value
from transforms import store

__all__ = ["ScoreRows", "MarkDuplicates", "KeepThreshold"]


class ScoreRows(beam.DoFn):
    """Feature row -> score row (keep is decided later, against the threshold); the rule is grepq_core.scoring."""

    def __init__(self, model_uri: str | None, scale: tuple[float, float] | None = None):
        self._uri = model_uri
        self._scale = scale
        self._scorer = None
        self._zero_shot: list[str] = []

    def setup(self):
        self._scorer = RowScorer(self._uri, self._scale)
        self._zero_shot = store.zero_shot_columns()

    def process(self, row):
        zero_shot = {c: row.get(c) for c in self._zero_shot}
        yield {"path": row["path"], "sha256": row["sha256"], **self._scorer(row), "keep": None, "duplicate_of": None,
               **zero_shot}


class MarkDuplicates(beam.PTransform):
    """Score rows -> the same rows, each image whose bytes another holds too marked `duplicate_of` the first
    of them (in key order), so that exact copies can be dropped."""

    def expand(self, scores):
        return (scores | "BySha" >> beam.Map(lambda r: (r["sha256"], r)) | "SameBytes" >> beam.GroupByKey()
                | "Mark" >> beam.FlatMap(_marked))


def _marked(group: tuple):
    _, rows = group
    rows = sorted(rows, key=lambda r: r["path"])
    yield rows[0]
    yield from ({**r, "duplicate_of": rows[0]["path"]} for r in rows[1:])


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
                | beam.Map(decision_value) | beam.Filter(lambda s: s is not None)
                | beam.ApproximateQuantiles.Globally(self._resolution + 1)
                | beam.Map(lambda q: q[min(index, len(q) - 1)] if q else math.inf))
