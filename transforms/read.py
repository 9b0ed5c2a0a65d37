"""Find images, read their bytes, decode them and cut the model views.

Every matched file leaves this stage exactly once: as a `PreparedImage` on
the main output, or as a dead-letter row (path, stage, reason, detail) on
the `DEAD` output. Nothing here raises for a bad image.
"""
from __future__ import annotations

import glob
import hashlib
import os

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from grepq_core.errors import ImageError
from grepq_core.extractor import EncoderSpec, PreparedImage, prepare_image
from grepq_core.imageio import decode_image, is_plain_jpeg
from transforms import counters

__all__ = ["DEAD", "MatchImages", "ReadAndPrepare", "dead_letter", "open_input", "text_path"]

DEAD = "dead_letters"


def text_path(path: str | bytes) -> str:
    """A path as valid UTF-8 text: undecodable bytes in file names become \\xNN escapes."""
    raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def _beam_safe(path: str) -> str | bytes:
    """A local path Beam can encode: file names that are not UTF-8 travel as bytes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def open_input(path: str | bytes):
    """Open a matched input for reading: a Beam filesystem path, or a local path given as bytes."""
    return open(path, "rb") if isinstance(path, bytes) else FileSystems.open(path, compression_type="uncompressed")


def dead_letter(path: str, stage: str, reason: str, detail: str = "") -> dict:
    """One row of the dead-letter schema."""
    return {"path": text_path(path), "stage": stage, "reason": reason, "detail": detail[:500]}


def _is_local(pattern: str) -> bool:
    return "://" not in pattern or pattern.startswith("file://")


def _glob_local(pattern: str) -> list[str]:
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
    """path -> PreparedImage, or a dead letter naming the stage that failed.

    With device decoding, a plain JPEG leaves here as bytes and is decoded
    with its batch where the model runs; everything else is decoded here.
    """

    def __init__(self, spec: EncoderSpec):
        self._spec = spec
        self._device_decode = False

    def setup(self):
        import torch

        self._device_decode = self._spec.decode == "gpu" or (
            self._spec.decode == "auto" and torch.cuda.is_available())

    def process(self, path: str | bytes, known: dict | None = None):
        """`known` maps path -> sha256 of rows already extracted by the same encoders."""
        stage = "read"
        try:
            with open_input(path) as f:
                data = f.read()
            if not data:
                raise ImageError("empty_file", "0 bytes")
            counters.READ.inc()
            digest = hashlib.sha256(data).hexdigest()
            if known is not None and known.get(text_path(path)) == digest:
                counters.SKIPPED.inc()
                return
            stage = "decode"
            if self._device_decode and is_plain_jpeg(data):
                yield PreparedImage(path=text_path(path), sha256=digest, width=0, height=0,
                                    decoder="pending", data=data)
                return
            pixels = decode_image(data)
            stage = "prepare"
            yield prepare_image(pixels, self._spec, text_path(path), digest)
        except ImageError as e:
            counters.DEAD.inc()
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, stage, e.reason, e.detail))
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            counters.DEAD.inc()
            reason = "unreadable" if stage == "read" else "error"
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, stage, reason, f"{type(e).__name__}: {e}"))
