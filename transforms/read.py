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

from grepq_core.devices import decodes_on_device
from grepq_core.extractor import EncoderSpec, Views
from grepq_core.inputs import prepare, read_and_hash
from transforms import counters, dead_letters
from transforms.dead_letters import text_path

__all__ = ["ImageRecord", "MatchImages", "ReadAndPrepare"]


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


def _is_local(pattern: str) -> bool:
    return "://" not in pattern or pattern.startswith("file://")


def _glob_local(pattern: str) -> list[str | bytes]:
    """Local files matching `pattern` (** recursive), broken and looping links included.

    Beam's local listing silently drops entries it cannot stat, which would
    lose them; here they are kept so that reading them gives a dead letter.
    Directories are not inputs.
    """
    pattern = pattern[len("file://"):] if pattern.startswith("file://") else pattern
    return [_beam_safe(p) for p in sorted(glob.glob(pattern, recursive=True)) if not os.path.isdir(p)]


class MatchImages(beam.PTransform):
    """Paths of the files matching one or more globs (local, gs://, any Beam filesystem)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = patterns

    def expand(self, pbegin):
        local = [p for p in self._patterns if _is_local(p)]
        remote = [p for p in self._patterns if not _is_local(p)]
        found = [pbegin | "Local" >> beam.Create(local) | "Glob" >> beam.FlatMap(_glob_local)]
        found += [pbegin | f"Match {i}" >> fileio.MatchFiles(p) | f"Path {i}" >> beam.Map(lambda m: m.path)
                  for i, p in enumerate(remote)]
        return found | "Flatten" >> beam.Flatten() | "Distinct" >> beam.Distinct() | "Spread" >> beam.Reshuffle()


class ReadAndPrepare(beam.DoFn):
    """path -> (path, ImageRecord), or a dead letter naming the stage that failed."""

    def __init__(self, spec: EncoderSpec):
        self._spec = spec
        self._device_decode = False

    def setup(self):
        self._device_decode = decodes_on_device(self._spec.decode)

    def process(self, path: str | bytes, known: dict | None = None):
        """`known` maps path -> sha256 of rows already extracted by the same models."""
        stage = "read"
        try:
            data, digest = read_and_hash(path)
            counters.READ.inc()
            key = text_path(path)
            if known is not None and known.get(key) == digest:
                counters.SKIPPED.inc()
                return
            stage = "prepare"
            yield key, ImageRecord(digest, prepare(data, self._spec, self._device_decode))
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            counters.DEAD.inc()
            yield beam.pvalue.TaggedOutput(dead_letters.TAG, dead_letters.from_error(path, e, stage))
