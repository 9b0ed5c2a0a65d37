"""Beam RunInference plumbing: one `Extractor` per worker process, images keyed by path.

`GrepqModelHandler` is the whole contract Beam needs (`load_model`,
`run_inference`); grepq_core.extractor does the work. It is wrapped in
Beam's `KeyedModelHandler`, so each prediction comes back with its image's
path. Beam's model manager shares the loaded model across the threads of a
process, so a worker holds one copy of each encoder, not one per thread.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from grepq_core.errors import ImageError
from grepq_core.model.extractor import Extractor
from grepq_core.model.settings import EncoderSpec
from transforms import counters, dead_letters
from transforms.read import ImageRecord

__all__ = ["BatchSlots", "GrepqModelHandler", "ExtractFeatures", "ExtractFew"]


class BatchSlots:
    """How many of a batch's `batch_size` slots one (path, ImageRecord) takes: one per `max_batch_bytes /
    batch_size` bytes it holds, at least one, at most all.

    Beam's batching counts these instead of elements, so a batch holds at
    most `batch_size` images and at most `max_batch_bytes` of them (or one
    image alone): on the device-decode path, where whole files wait for
    their batch, worker memory does not grow with file sizes.
    """

    def __init__(self, spec: EncoderSpec):
        self._size = spec.batch_size
        self._slot = max(1, spec.max_batch_bytes // spec.batch_size)

    def __call__(self, keyed: tuple[str, ImageRecord]) -> int:
        return min(self._size, max(1, -(-keyed[1].num_bytes() // self._slot)))


class GrepqModelHandler(ModelHandler[ImageRecord, "dict | ImageError", Extractor]):
    """Batches of image records in; per image a feature row (without its path) or the `ImageError`."""

    def __init__(self, spec: EncoderSpec, large_model: bool = False):
        # Full batches where the bytes allow: the model pads short ones to this size anyway (Extractor._forward).
        super().__init__(min_batch_size=spec.batch_size, max_batch_size=spec.batch_size,
                         element_size_fn=BatchSlots(spec), large_model=large_model)
        self._spec = spec

    def load_model(self) -> Extractor:
        return Extractor.load(self._spec)

    def run_inference(self, batch: Sequence[ImageRecord], model: Extractor,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        results = model.run([r.payload for r in batch])
        return [PredictionResult(record, result if isinstance(result, ImageError) else
                                 {"sha256": record.sha256, "source": record.source, "source_stamp": record.stamp,
                                  **result})
                for record, result in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[ImageRecord]) -> int:
        return sum(r.num_bytes() for r in batch)

    def get_metrics_namespace(self) -> str:
        return counters.NAMESPACE


def _split(keyed):
    """A row goes on with its path; an image the model stage could not decode becomes a dead letter."""
    path, result = keyed
    if isinstance(result.inference, ImageError):
        counters.ended(counters.DEAD)
        record = result.example
        yield beam.pvalue.TaggedOutput(dead_letters.TAG, dead_letters.from_error(
            path, result.inference, "decode", record.sha256, record.source, record.stamp))
    else:
        counters.ended(counters.SCORED)
        yield {"path": path, **result.inference}


def _failed_batch(failure) -> list[dict]:
    batch, error = failure
    counters.ended(counters.DEAD, len(batch))
    return [dead_letters.dead_letter(path, "inference", "inference_error", repr(error), record.sha256, record.source,
                                     record.stamp)
            for path, record in batch]


class ExtractFeatures(beam.PTransform):
    """(path, ImageRecord) -> feature row; a failing batch becomes dead letters, not a failed job.

    Returns (rows, dead_letters).
    """

    def __init__(self, handler: GrepqModelHandler):
        super().__init__()
        self._handler = KeyedModelHandler(handler)

    def expand(self, records):
        results, failed = records | "RunInference" >> RunInference(self._handler).with_exception_handling()
        split = results | "Split" >> beam.FlatMap(_split).with_outputs(dead_letters.TAG, main="rows")
        failed_batches = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch)
        dead = (split[dead_letters.TAG], failed_batches) | "Dead" >> beam.Flatten()
        return split.rows, dead


class _ExtractEach(beam.DoFn):
    """One record at a time through the handler, whose model loads when the first record arrives."""

    def __init__(self, handler: GrepqModelHandler):
        self._handler, self._model = handler, None

    def process(self, keyed):
        key, record = keyed
        try:
            self._model = self._model or self._handler.load_model()
            results = self._handler.run_inference([record], self._model)
        except Exception as e:  # noqa: BLE001 - as RunInference's exception handling: dead letters, not a failed job
            for row in _failed_batch(([keyed], e)):
                yield beam.pvalue.TaggedOutput(dead_letters.TAG, row)
            return
        yield from _split((key, results[0]))


class ExtractFew(beam.PTransform):
    """`ExtractFeatures` for a stream that is nearly always empty: a worker loads the models only if a record
    reaches it, where RunInference loads them on every worker as it starts. Returns (rows, dead_letters)."""

    def __init__(self, handler: GrepqModelHandler):
        super().__init__()
        self._handler = handler

    def expand(self, records):
        result = records | "ExtractEach" >> beam.ParDo(_ExtractEach(self._handler)).with_outputs(
            dead_letters.TAG, main="rows")
        return result.rows, result[dead_letters.TAG]
