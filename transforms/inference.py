"""Beam RunInference plumbing: one `Extractor` per worker process.

`GrepqModelHandler` is the whole contract Beam needs (`load_model`,
`run_inference`); grepq_core.extractor does the work. Beam's model manager
shares the loaded model across the threads of a process, so a worker holds
one copy of each encoder, not one per thread.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from grepq_core.extractor import EncoderSpec, Extractor, PreparedImage
from transforms import counters
from transforms.read import dead_letter

__all__ = ["GrepqModelHandler", "ExtractFeatures"]


class GrepqModelHandler(ModelHandler[PreparedImage, dict, Extractor]):
    """Batches of prepared images in, feature rows (dicts) out."""

    def __init__(self, spec: EncoderSpec, large_model: bool = False):
        # Full batches: the model pads short ones to this size anyway (see Extractor._forward).
        super().__init__(min_batch_size=spec.batch_size, max_batch_size=spec.batch_size, large_model=large_model)
        self._spec = spec

    def load_model(self) -> Extractor:
        return Extractor.load(self._spec)

    def run_inference(self, batch: Sequence[PreparedImage], model: Extractor,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        rows = model.extract(list(batch))
        return [PredictionResult(item.path, row) for item, row in zip(batch, rows)]

    def get_num_bytes(self, batch: Sequence[PreparedImage]) -> int:
        return sum(len(it.data or b"") + sum(getattr(v, "nbytes", 0) for v in (it.ll, it.hl, it.patches))
                   for it in batch)

    def get_metrics_namespace(self) -> str:
        return "grepq"


def _split_dead(row: dict):
    """Rows go on; an image the model stage could not decode becomes a dead letter."""
    if "dead_letter" in row:
        counters.DEAD.inc()
        yield beam.pvalue.TaggedOutput("dead", dead_letter(row["path"], *row["dead_letter"]))
    else:
        counters.SCORED.inc()
        yield row


def _failed_batch_rows(failure) -> list[dict]:
    batch, error = failure
    counters.DEAD.inc(len(batch))
    return [dead_letter(item.path, "inference", "inference_error", repr(error)) for item in batch]


class ExtractFeatures(beam.PTransform):
    """PreparedImage -> feature row; a failing batch becomes dead letters, not a failed job.

    Returns (rows, dead_letters).
    """

    def __init__(self, handler: GrepqModelHandler):
        super().__init__()
        self._handler = handler

    def expand(self, prepared):
        results, failed = prepared | "RunInference" >> RunInference(self._handler).with_exception_handling()
        split = (results | "Row" >> beam.Map(lambda r: r.inference)
                 | "SplitDead" >> beam.FlatMap(_split_dead).with_outputs("dead", main="rows"))
        failed_batches = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch_rows)
        dead = (split.dead, failed_batches) | "Dead" >> beam.Flatten()
        return split.rows, dead
