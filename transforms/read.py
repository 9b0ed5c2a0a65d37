"""Find images, read their bytes, decode them and cut the model views.

Every matched file leaves this stage exactly once: as a `PreparedImage` on
the main output, or as a dead-letter row (path, stage, reason, detail) on
the `DEAD` output. Nothing here raises for a bad image.
"""
from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from grepq_core import views as V
from grepq_core.errors import ImageError
from grepq_core.extractor import EncoderSpec, PreparedImage, prepare_views
from grepq_core.imageio import decode_image

__all__ = ["DEAD", "MatchImages", "ReadAndPrepare", "dead_letter", "text_path"]

DEAD = "dead_letters"
_NAMESPACE = "grepq"


def text_path(path: str) -> str:
    """A path as valid UTF-8 text: undecodable bytes in file names become \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def dead_letter(path: str, stage: str, reason: str, detail: str = "") -> dict:
    """One row of the dead-letter schema."""
    return {"path": text_path(path), "stage": stage, "reason": reason, "detail": detail[:500]}


class MatchImages(beam.PTransform):
    """Paths of the files matching one or more globs (local, gs://, any Beam filesystem)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = patterns

    def expand(self, pbegin):
        matches = [pbegin | f"Match {i}" >> fileio.MatchFiles(p) for i, p in enumerate(self._patterns)]
        return (matches | "Flatten" >> beam.Flatten()
                | "Path" >> beam.Map(lambda m: m.path)
                | "Distinct" >> beam.Distinct()
                | "Spread" >> beam.Reshuffle())


class ReadAndPrepare(beam.DoFn):
    """path -> PreparedImage, or a dead letter naming the stage that failed."""

    def __init__(self, spec: EncoderSpec):
        self._spec = spec
        self._read = Metrics.counter(_NAMESPACE, "images_read")
        self._dead = Metrics.counter(_NAMESPACE, "images_dead_lettered")

    def process(self, path: str):
        stage = "read"
        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                data = f.read()
            if not data:
                raise ImageError("empty_file", "0 bytes")
            self._read.inc()
            stage = "decode"
            pixels = decode_image(data)
            stage = "prepare"
            item = PreparedImage(path=text_path(path), sha256=hashlib.sha256(data).hexdigest(),
                                 width=pixels.shape[1], height=pixels.shape[0], decoder="cpu")
            image_views = prepare_views(V.to_tensor(pixels), self._spec.views, self._spec.pathways)
            for name, view in image_views.items():
                setattr(item, name, view.numpy())
            yield item
        except ImageError as e:
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, stage, e.reason, e.detail))
        except Exception as e:  # noqa: BLE001 - one image must never fail the job
            self._dead.inc()
            reason = "unreadable" if stage == "read" else "error"
            yield beam.pvalue.TaggedOutput(DEAD, dead_letter(path, stage, reason, f"{type(e).__name__}: {e}"))
