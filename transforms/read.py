"""Read every image the inputs hold, hash it, and decode it or leave it for the model's device.

Every image leaves this stage exactly once: as ``(key, ImageRecord)`` on the
main output, keyed as Beam's `KeyedModelHandler` expects (grepq_core/images/
keys.py), or as a dead-letter row on the `dead_letters.TAG` output. A loose
file or a tar shard is read by one worker, a shard member by member
(grepq_core/images/shards.py); a Parquet file is first split into its row
groups, which are spread over the workers. Nothing here raises for a bad
image or a bad container.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import apache_beam as beam

from grepq_core.errors import ImageError
from grepq_core.images import parquet, sources
from grepq_core.images.keys import input_kind
from grepq_core.images.paths import to_text
from grepq_core.model import registry
from grepq_core.model.cut import Views, prepare
from grepq_core.model.devices import decodes_on_device
from grepq_core.model.settings import EncoderSpec
from transforms import counters, dead_letters

__all__ = ["ImageRecord", "ReadInputs"]


@dataclass
class ImageRecord:
    """What travels from the read stage to the model stage for one image.

    `payload` is the image's views when it was decoded here, or its JPEG
    bytes when the model's device decodes it with its batch.
    """

    sha256: str
    payload: Views | bytes

    def num_bytes(self) -> int:
        if isinstance(self.payload, bytes):
            return len(self.payload)
        return sum(getattr(v, "nbytes", 0) for v in self.payload.tensors.values())


class _Prepare(beam.DoFn):
    """Shared by the readers: one image's bytes (or why there are none) -> its record, or a dead letter.

    With side inputs from earlier runs (incremental), an image is skipped
    when its key and content already have a feature row from the same
    models (`known`), or already have a dead letter (`dead`: key ->
    (sha256, stage, reason)), so no rerun repeats a row or a dead letter.
    """

    def __init__(self, spec: EncoderSpec):
        self._spec = spec
        self._device_decode = False

    def setup(self):
        registry.ensure(self._spec)  # a pathway registered in the launcher cuts its views here too
        self._device_decode = decodes_on_device(self._spec.decode)

    def _outcome(self, key: str, item: bytes | Exception, known: dict | None, dead: dict | None):
        if isinstance(item, Exception):
            yield from self._dead(key, item, "read", None, dead)
            return
        digest = hashlib.sha256(item).hexdigest()
        counters.read()
        if (known or {}).get(key) == digest or (dead or {}).get(key, (None,))[0] == digest:
            counters.ended(counters.SKIPPED)
            return
        try:
            yield key, ImageRecord(digest, prepare(item, self._spec, self._device_decode))
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            yield from self._dead(key, e, "prepare", digest, dead)

    @staticmethod
    def _dead(key: str, error: Exception, stage: str, digest: str | None, dead: dict | None):
        row = dead_letters.from_error(key, error, stage, digest)
        if digest is None and (dead or {}).get(key) == (None, row["stage"], row["reason"]):
            counters.ended(counters.SKIPPED)  # unreadable as before, for the same reason: its dead letter stands
            return
        counters.ended(counters.DEAD)
        yield beam.pvalue.TaggedOutput(dead_letters.TAG, row)


class _ReadImages(_Prepare):
    """A loose image or a tar shard -> (key, ImageRecord) of each image it holds, or dead letters."""

    def process(self, uri: str | bytes, known: dict | None = None, dead: dict | None = None):
        try:
            for key, item in sources.images(uri):
                yield from self._outcome(key, item, known, dead)
        except Exception as e:  # noqa: BLE001 - a container that breaks in an unforeseen way loses only itself
            yield from self._dead(to_text(uri), e, "read", None, dead)


class _SplitParquet(beam.DoFn):
    """A Parquet file -> (file, image column, row group, its first row) for each row group, from the footer."""

    def __init__(self, image_column: str | None):
        self._column = image_column

    def process(self, uri: str | bytes):
        try:
            column, sizes = parquet.row_groups(uri, self._column)
        except ImageError as e:
            counters.ended(counters.DEAD)
            yield beam.pvalue.TaggedOutput(dead_letters.TAG, dead_letters.from_error(uri, e, "read"))
            return
        first = 0
        for group, rows in enumerate(sizes):
            yield uri, column, group, first
            first += rows


class _ReadRowGroup(_Prepare):
    """One row group of a Parquet file -> (key, ImageRecord) of each row, or dead letters."""

    def process(self, part: tuple, known: dict | None = None, dead: dict | None = None):
        uri, column, group, first = part
        for key, item in parquet.images(uri, column, group, first):
            yield from self._outcome(key, item, known, dead)


class ReadInputs(beam.PTransform):
    """Input URIs -> (records, dead letters): every image of every loose file, tar shard and Parquet file.

    `side` are the incremental run's side inputs (`_Prepare`).
    """

    def __init__(self, spec: EncoderSpec, image_column: str | None = None, side: tuple = ()):
        super().__init__()
        self._spec, self._column, self._side = spec, image_column, side

    def expand(self, inputs):
        files, tables = inputs | "ByKind" >> beam.Partition(lambda uri, n: int(input_kind(uri) == "parquet"), 2)
        read = files | "Images" >> beam.ParDo(_ReadImages(self._spec), *self._side).with_outputs(
            dead_letters.TAG, main="records")
        parts = tables | "RowGroups" >> beam.ParDo(_SplitParquet(self._column)).with_outputs(
            dead_letters.TAG, main="parts")
        rows = (parts.parts | "SpreadRowGroups" >> beam.Reshuffle()
                | "Rows" >> beam.ParDo(_ReadRowGroup(self._spec), *self._side).with_outputs(
                    dead_letters.TAG, main="records"))
        records = (read.records, rows.records) | "Records" >> beam.Flatten()
        dead = (read[dead_letters.TAG], parts[dead_letters.TAG], rows[dead_letters.TAG]) | "Dead" >> beam.Flatten()
        return records, dead
