"""Read every image the inputs hold, hash it, and decode it or leave it for the model's device.

Every image leaves this stage exactly once: as ``(key, ImageRecord)`` on the
main output, keyed as Beam's `KeyedModelHandler` expects (grepq_core/images/
keys.py), as a dead-letter row on the `dead_letters.TAG` output, or (in an
incremental run, when its content may already have a row) as a
`SeenBefore` on the `SEEN` output. A loose file or a tar shard is read by
one worker, a shard member by member (grepq_core/images/shards.py); a
Parquet file is first split into its row groups, which are spread over the
workers. Nothing here raises for a bad image or a bad container.

One step reads every kind of input and hands its records straight to the
model: a runner then fuses reading and inference, so a worker holds a
bundle's images, not the whole run's (a second reader whose records were
flattened into the first's would make the in-process runner buffer all of
them between the steps).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import apache_beam as beam

from grepq_core.errors import ImageError
from grepq_core.images import parquet, sources
from grepq_core.images.keys import input_kind, key_id
from grepq_core.images.paths import to_text
from grepq_core.model import registry
from grepq_core.model.cut import Views, prepare
from grepq_core.model.devices import decodes_on_device
from grepq_core.model.settings import EncoderSpec
from transforms import counters, dead_letters

__all__ = ["SEEN", "content_id", "Task", "ImageRecord", "SeenBefore", "ReadInputs", "Prepare", "PrepareSeen"]

SEEN = "seen_before"  # the tagged output of images whose content a stored row may already describe


def content_id(sha256: str) -> bytes:
    """An image's content as the join carries it: the first 16 bytes of its sha256."""
    return bytes.fromhex(sha256[:32])


@dataclass(frozen=True)
class Task:
    """One input to read, with its stamp, and what earlier runs know of its images (incremental runs).

    `known`: key -> content of rows made by the same models; `dead`: key ->
    (content, stage, reason) of dead letters, keys and contents as
    `key_id` and `content_id` give them. An image whose key and content
    are known, or were dead-lettered, is not extracted again. `source` is
    the input's key in outputs (escaped text). `part` is, for one row group
    of a Parquet file, (image column, row group, its first row's number).
    """

    uri: str | bytes | None
    stamp: str | None = None
    known: dict = field(default_factory=dict)
    dead: dict = field(default_factory=dict)
    source: str = ""
    part: tuple | None = None

    def __post_init__(self):
        if not self.source:
            object.__setattr__(self, "source", to_text(self.uri))


@dataclass
class ImageRecord:
    """What travels from the read stage to the model stage for one image.

    `payload` is the image's views when it was decoded here, or its JPEG
    bytes when the model's device decodes it with its batch. `source` and
    `stamp` say which input it came from, and that input's stamp.
    """

    sha256: str
    payload: Views | bytes
    source: str | None = None
    stamp: str | None = None

    def num_bytes(self) -> int:
        if isinstance(self.payload, bytes):
            return len(self.payload)
        return sum(getattr(v, "nbytes", 0) for v in self.payload.tensors.values())


@dataclass(frozen=True)
class SeenBefore:
    """An image whose content hash a stored row made by the same models may have: its row is copied.

    Its bytes are not carried: the stored row is nearly always there, and
    the rare image without one is read again by its key (`PrepareSeen`).
    """

    key: str
    sha256: str
    source: str
    stamp: str | None


class Prepare(beam.DoFn):
    """Shared by the readers: one image's bytes (or why there are none) -> its record, or a dead letter.

    An image is skipped when its key and content already have a feature row
    from the same models or a dead letter (`Task`). With `seen` (a
    `ContentFilter` of the stored rows' hashes, incremental runs), an image
    whose content may already have a row goes to the `SEEN` output instead,
    where the stored row is looked up and copied (transforms/incremental.py).
    """

    def __init__(self, spec: EncoderSpec):
        self._spec = spec
        self._device_decode = False

    def setup(self):
        registry.ensure(self._spec)  # a pathway registered in the launcher cuts its views here too
        self._device_decode = decodes_on_device(self._spec.decode)

    def outcome(self, task: Task, key: str, item: bytes | Exception, seen=None):
        if isinstance(item, Exception):
            yield from self.dead(key, item, "read", None, task)
            return
        digest = hashlib.sha256(item).hexdigest()
        counters.read()
        if task.known or task.dead:
            known, content = key_id(key), content_id(digest)
            if task.known.get(known) == content or task.dead.get(known, (None,))[0] == content:
                counters.ended(counters.SKIPPED)
                return
        if seen is not None and digest in seen:
            yield beam.pvalue.TaggedOutput(SEEN, SeenBefore(key, digest, task.source, task.stamp))
            return
        yield from self.record(key, digest, item, task)

    def record(self, key: str, digest: str, data: bytes, task: Task):
        """The image's record (its views cut, or its bytes for the device), or its dead letter."""
        try:
            yield key, ImageRecord(digest, prepare(data, self._spec, self._device_decode), task.source, task.stamp)
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            yield from self.dead(key, e, "prepare", digest, task)

    @staticmethod
    def dead(key: str, error: Exception, stage: str, digest: str | None, task: Task):
        row = dead_letters.from_error(key, error, stage, digest, task.source, task.stamp)
        if digest is None and task.dead and task.dead.get(key_id(key)) == (None, row["stage"], row["reason"]):
            counters.ended(counters.SKIPPED)  # unreadable as before, for the same reason: its dead letter stands
            return
        counters.ended(counters.DEAD)
        yield beam.pvalue.TaggedOutput(dead_letters.TAG, row)


class _Read(Prepare):
    """A loose image, a tar shard or a Parquet row group -> (key, ImageRecord) of each image, or dead letters."""

    def process(self, task: Task, seen=None):
        try:
            images = sources.images(task.uri) if task.part is None else parquet.images(task.uri, *task.part)
            for key, item in images:
                yield from self.outcome(task, key, item, seen)
        except Exception as e:  # noqa: BLE001 - a container that breaks in an unforeseen way loses only itself
            yield from self.dead(task.source, e, "read", None, task)


def _row_groups(task: Task, image_column: str | None):
    """A Parquet file's task -> one task per row group, from its footer; any other task as it is."""
    if input_kind(task.uri) != "parquet":
        yield task
        return
    try:
        column, sizes = parquet.row_groups(task.uri, image_column)
    except ImageError as e:
        yield from Prepare.dead(task.source, e, "read", None, task)
        return
    first = 0
    for group, rows in enumerate(sizes):
        yield replace(task, part=(column, group, first))
        first += rows


class PrepareSeen(Prepare):
    """An image seen before whose stored row was not found after all -> read by its key again, its record
    or a dead letter."""

    def process(self, item: SeenBefore):
        task = Task(None, item.stamp, source=item.source)
        try:
            data = sources.read(item.key)
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            yield from self.dead(item.key, e, "read", None, task)
            return
        yield from self.record(item.key, hashlib.sha256(data).hexdigest(), data, task)


class ReadInputs(beam.PTransform):
    """Tasks -> (records, dead letters, images seen before): every image of every file, shard and Parquet file.

    `seen`: a side input of the stored rows' content hashes (incremental runs), or None.
    """

    def __init__(self, spec: EncoderSpec, image_column: str | None = None, seen=None):
        super().__init__()
        self._spec, self._column, self._seen = spec, image_column, seen

    def expand(self, tasks):
        side = () if self._seen is None else (self._seen,)
        parts = tasks | "RowGroups" >> beam.FlatMap(_row_groups, self._column).with_outputs(
            dead_letters.TAG, main="parts")
        read = (parts.parts | "SpreadRowGroups" >> beam.Reshuffle()
                | "Images" >> beam.ParDo(_Read(self._spec), *side).with_outputs(dead_letters.TAG, SEEN, main="records"))
        dead = (parts[dead_letters.TAG], read[dead_letters.TAG]) | "Dead" >> beam.Flatten()
        return read.records, dead, read[SEEN]
