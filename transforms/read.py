"""Find images, read their bytes, hash them, and decode them or leave them for the model's device.

Every matched file leaves this stage exactly once: as ``(path, ImageRecord)``
on the main output, keyed by its path as Beam's `KeyedModelHandler` expects,
or as a dead-letter row on the `dead_letters.TAG` output. Nothing here
raises for a bad image.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio

from grepq_core.images.paths import to_text
from grepq_core.images.read import read_and_hash
from grepq_core.model import registry
from grepq_core.model.cut import Views, prepare
from grepq_core.model.devices import decodes_on_device
from grepq_core.model.settings import EncoderSpec
from transforms import counters, dead_letters

__all__ = ["ImageRecord", "MatchImages", "ReadAndPrepare", "glob_local", "is_local_pattern"]


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


def _beam_safe(path: str) -> str | bytes:
    """A local path Beam can encode: file names that are not UTF-8 travel as bytes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def is_local_pattern(pattern: str) -> bool:
    return "://" not in pattern or pattern.startswith("file://")


def glob_local(pattern: str) -> list[str | bytes]:
    """Local files matching `pattern` (** recursive) as absolute paths, broken and looping links included.

    Absolute, so that one file has one path whichever way the glob was
    typed. Beam's local listing silently drops entries it cannot stat, which
    would lose them; here they are kept so that reading them gives a dead
    letter. Directories are not inputs.
    """
    pattern = os.path.abspath(pattern[len("file://"):] if pattern.startswith("file://") else pattern)
    return [_beam_safe(p) for p in sorted(glob.glob(pattern, recursive=True)) if not os.path.isdir(p)]


class MatchImages(beam.PTransform):
    """Paths of the files matching one or more globs (local, gs://, any Beam filesystem)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = patterns

    def expand(self, pbegin):
        local = [p for p in self._patterns if is_local_pattern(p)]
        remote = [p for p in self._patterns if not is_local_pattern(p)]
        found = [pbegin | "Local" >> beam.Create(local) | "Glob" >> beam.FlatMap(glob_local)]
        found += [pbegin | f"Match {i}" >> fileio.MatchFiles(p) | f"Path {i}" >> beam.Map(lambda m: m.path)
                  for i, p in enumerate(remote)]
        return found | "Flatten" >> beam.Flatten() | "Distinct" >> beam.Distinct() | "Spread" >> beam.Reshuffle()


class ReadAndPrepare(beam.DoFn):
    """path -> (path, ImageRecord), or a dead letter naming the stage that failed.

    With side inputs from earlier runs (incremental), an image is skipped
    when its path and content already have a feature row from the same
    models (`known`), or already have a dead letter (`dead`: path ->
    (sha256, stage, reason)), so no rerun repeats a row or a dead letter.
    """

    def __init__(self, spec: EncoderSpec):
        self._spec = spec
        self._device_decode = False

    def setup(self):
        registry.ensure(self._spec)  # a pathway registered in the launcher cuts its views here too
        self._device_decode = decodes_on_device(self._spec.decode)

    def process(self, path: str | bytes, known: dict | None = None, dead: dict | None = None):
        key, stage, digest = to_text(path), "read", None
        try:
            data, digest = read_and_hash(path)
            counters.read()
            if (known or {}).get(key) == digest or (dead or {}).get(key, (None,))[0] == digest:
                counters.ended(counters.SKIPPED)
                return
            stage = "prepare"
            yield key, ImageRecord(digest, prepare(data, self._spec, self._device_decode))
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            row = dead_letters.from_error(path, e, stage, digest)
            if digest is None and (dead or {}).get(key) == (None, row["stage"], row["reason"]):
                counters.ended(counters.SKIPPED)  # unreadable as before, for the same reason: its dead letter stands
                return
            counters.ended(counters.DEAD)
            yield beam.pvalue.TaggedOutput(dead_letters.TAG, row)
