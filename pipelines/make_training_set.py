"""`grepq make-training-set`: pristine photos -> K graded versions and their FSIM matrix each.

    Match -> Read -> Make versions -> Write record (.npz) -> Write index (JSON lines)
               \\------------\\-------------\\-> Write skipped (JSON lines)

Storage and version choice are described in grepq_core/training/data.py.
A photo that cannot be read, decoded, distorted or written is logged,
counted (Beam counter ``grepq:training_photos_skipped``) and listed in
PREFIX/skipped-*.jsonl; it never fails the job.

Its own flags are parsed first; every other flag must be one of Beam's and goes to
Beam (--runner, --project, ...).
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
from typing import TYPE_CHECKING

from grepq_core.errors import GrepqError
from grepq_core.training.configs import MIN_SIZE, TrainingSetSpec
from pipelines.options import HelpFormatter, parse

if TYPE_CHECKING:  # Beam and torch are imported where they are used, so --help stays fast
    import apache_beam as beam

__all__ = ["run", "arg_parser", "build", "spec_from_args"]

log = logging.getLogger(__name__)
_NAMESPACE = "grepq"


def _skip(counter, path: str, stage: str, error: Exception):
    """Log and count one unusable photo; its row for PREFIX/skipped-*.jsonl."""
    import apache_beam as beam

    from grepq_core.training.data import SKIPPED
    from transforms import dead_letters

    row = dead_letters.from_error(path, error, stage)
    log.warning("skipped %s at %s: %s %s", row["path"], row["stage"], row["reason"], row["detail"])
    counter.inc()
    return beam.pvalue.TaggedOutput(SKIPPED, row)


@functools.cache
def _steps():
    """The DoFns (_Read, _MakeVersions, _WriteRecord), defined on first use so that importing
    this module (for --help) imports neither Beam nor torch. Beam pickles them by value."""
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics

    from grepq_core.images.decode import decode_image
    from grepq_core.images.paths import to_text
    from grepq_core.images.read import read_bytes
    from grepq_core.model.devices import resolve_device
    from grepq_core.training.data import RECORDS_DIR, encode_record, index_row, make_record, record_filename

    class _Read(beam.DoFn):
        """path -> (path, HxWx3 uint8 pixels)."""

        def __init__(self):
            self._skipped = Metrics.counter(_NAMESPACE, "training_photos_skipped")

        def process(self, path: str):
            stage = "read"
            try:
                data = read_bytes(path)
                stage = "decode"
                yield to_text(path), decode_image(data)
            except Exception as e:  # noqa: BLE001 - one photo must never fail the job
                yield _skip(self._skipped, path, stage, e)

    class _MakeVersions(beam.DoFn):
        """(path, pixels) -> TrainingRecord (versions + FSIM matrix, on the worker's `device`)."""

        def __init__(self, spec: TrainingSetSpec, device: str):
            self._spec = spec
            self._device = device
            self._skipped = Metrics.counter(_NAMESPACE, "training_photos_skipped")

        def setup(self):
            self._torch_device = resolve_device(self._device)

        def process(self, item):
            path, pixels = item
            try:
                yield make_record(pixels, path, self._spec, device=self._torch_device)
            except Exception as e:  # noqa: BLE001
                yield _skip(self._skipped, path, "versions", e)

    class _WriteRecord(beam.DoFn):
        """TrainingRecord -> PREFIX/records/NAME.npz, and its index row."""

        def __init__(self, prefix: str):
            self._prefix = prefix
            self._written = Metrics.counter(_NAMESPACE, "training_records_written")
            self._skipped = Metrics.counter(_NAMESPACE, "training_photos_skipped")

        def process(self, record):
            try:
                name = record_filename(record.source)
                path = FileSystems.join(self._prefix, RECORDS_DIR, name)
                with FileSystems.create(path, mime_type="application/octet-stream",
                                        compression_type=CompressionTypes.UNCOMPRESSED) as f:
                    f.write(encode_record(record))
                self._written.inc()
                yield index_row(record, name)
            except Exception as e:  # noqa: BLE001
                yield _skip(self._skipped, record.source, "write", e)

    return _Read, _MakeVersions, _WriteRecord


def build(p: beam.Pipeline, inputs: list[str], prefix: str, spec: TrainingSetSpec, device: str = "auto"):
    """Add the make-training-set steps to `p`; FSIM runs on `device` (auto: CUDA when the worker has it)."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from grepq_core.training.data import INDEX, SKIPPED
    from transforms.inputs import MatchInputs

    _Read, _MakeVersions, _WriteRecord = _steps()
    read = (p
            | "Match" >> MatchInputs(inputs, outputs=[prefix])
            | "Paths" >> beam.Map(lambda stamped: stamped[0])
            | "Read" >> beam.ParDo(_Read()).with_outputs(SKIPPED, main="photos"))
    made = (read.photos
            | "MakeVersions" >> beam.ParDo(_MakeVersions(spec, device)).with_outputs(SKIPPED, main="records"))
    written = made.records | "Write" >> beam.ParDo(_WriteRecord(prefix)).with_outputs(SKIPPED, main="rows")
    (written.rows
     | "IndexLines" >> beam.Map(json.dumps)
     | "WriteIndex" >> beam.io.WriteToText(FileSystems.join(prefix, INDEX), file_name_suffix=".jsonl"))
    ((read[SKIPPED], made[SKIPPED], written[SKIPPED]) | "AllSkipped" >> beam.Flatten()
     | "SkippedLines" >> beam.Map(json.dumps)
     | "WriteSkipped" >> beam.io.WriteToText(FileSystems.join(prefix, SKIPPED), file_name_suffix=".jsonl"))


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise GrepqError(f"expected comma-separated integers, got {text!r}") from e


def spec_from_args(args: argparse.Namespace) -> TrainingSetSpec:
    """The version plan the flags select."""
    names = tuple(n.strip() for n in args.distortions.split(",") if n.strip())
    ladders = []
    for text in args.ladder:
        name, _, values = text.partition("=")
        try:
            ladders.append((name.strip(), tuple(float(v) for v in values.split(","))))
        except ValueError as e:
            raise GrepqError(f"`--ladder` takes NAME=P1,P2,P3,P4,P5, got {text!r}") from e
    return TrainingSetSpec(distortions=names, levels=_ints(args.levels), per_image=args.per_image,
                           size=args.size, seed=args.seed, ladders=tuple(ladders))


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grepq make-training-set", description=__doc__.strip().splitlines()[0], allow_abbrev=False,
        formatter_class=HelpFormatter,
        epilog="Any other flag goes to Beam, e.g. --runner DataflowRunner --project P --region R "
               "--temp_location gs://... (docs/dataflow.md).")
    parser.add_argument("--input", action="append", required=True,
                        help="glob of pristine photos (local or gs://); repeatable")
    parser.add_argument("--output", required=True, help="training-set prefix (directory, local or gs://)")
    defaults = TrainingSetSpec
    parser.add_argument("--distortions", default=",".join(defaults.distortions),
                        help="comma-separated distortion names to draw from, or 'all'")
    parser.add_argument("--levels", default=",".join(map(str, defaults.levels)),
                        help="levels (1-5) each drawn type is applied at")
    parser.add_argument("--per-image", type=int, default=defaults.per_image,
                        help="distortion types per photo (4 with 2 levels: 4 x 2 + the reference = 9 versions)")
    parser.add_argument("--size", type=int, default=defaults.size,
                        help=f"shorter side resized to this, then a centre square crop (at least {MIN_SIZE})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the distortion choice (with each path)")
    parser.add_argument("--ladder", action="append", default=[], metavar="NAME=P1,...,P5",
                        help="other parameters for one type's five levels, mildest first, e.g. "
                             "jpeg=90,60,35,15,5 (JPEG qualities; the registered ones are 43,36,24,7,4); "
                             "repeatable")
    parser.add_argument("--device", default="auto",
                        help="where FSIM is computed: auto (CUDA when the worker has it), cpu or cuda")
    return parser


def run(argv=None, test_pipeline=None):
    import apache_beam as beam

    args, options = parse(arg_parser(), argv)
    spec = spec_from_args(args)
    log.info("%d versions per photo (%d of %d distortion types x levels %s), %dx%d", spec.num_versions,
             spec.per_image, len(spec.distortions), list(spec.levels), spec.size, spec.size)
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        build(p, args.input, args.output, spec, args.device)
