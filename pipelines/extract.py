"""`grepq extract`: images -> one Parquet feature row each, or a dead letter.

    Match -> Read, hash, decode, cut views -> RunInference (every pathway) -> Write features
                    \\-> dead letters ------------------/-> Write dead letters

With --incremental, images whose path and content hash already have a row
from the same models under --output are skipped, and the new rows are
added beside the old ones.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import uuid

from grepq_core.errors import GrepqError
from pipelines.options import command_parser, encoder_spec, parse

__all__ = ["run", "execute", "build", "check_weights", "arg_parser", "run_id"]

log = logging.getLogger(__name__)


def check_weights(spec) -> dict:
    """Load every selected model once, on the CPU, before any image is read.

    Missing or unreachable weights stop the command here with a message that
    names the setting to change, instead of failing on every worker later.
    Returns the identities feature rows will carry (encoders, zero-shot LL rule).
    """
    from grepq_core.extractor import Extractor

    model = Extractor.load(dataclasses.replace(spec, device="cpu"))
    log.info("feature rows will carry %s", model.identities)
    return model.identities


def _require_columns(sink, columns) -> None:
    """Shards of an older grepq may lack a column the incremental match reads: say so before the run."""
    for shard, names in sink.shard_columns():
        missing = [c for c in columns if c not in names]
        if missing:
            raise GrepqError(f"{shard} was written by an older grepq (no {', '.join(missing)} column), so "
                             "`incremental` cannot tell how its rows were made: extract into a new `output`")


def _already_extracted(p, sink, identities: dict):
    """path -> sha256 of the rows under the output made by these models, as a side input."""
    import apache_beam as beam

    from transforms.store import same_models

    return beam.pvalue.AsDict(
        p
        | "ReadExisting" >> sink.read(columns=["path", "sha256", *identities])
        | "SameModels" >> beam.Filter(same_models, identities)
        | "PathHash" >> beam.Map(lambda r: (r["path"], r["sha256"])))


def build(p, args, identities: dict, run: str):
    """Add the extract steps to `p`."""
    import apache_beam as beam

    from transforms import dead_letters, store
    from transforms.inference import ExtractFeatures, GrepqModelHandler
    from transforms.read import MatchImages, ReadAndPrepare
    from transforms.sinks import ParquetSink

    spec = encoder_spec(args)
    features = ParquetSink(args.output, store.FEATURES_DIR, store.features_schema())
    dead = ParquetSink(args.output, store.DEAD_LETTERS_DIR, store.DEAD_LETTERS)
    existing = features.exists()
    if existing:
        if not args.incremental:
            raise GrepqError(f"{args.output} already holds features: pass `incremental` to add new images "
                             "to them, or choose another `output`")
        _require_columns(features, identities)
    known = (_already_extracted(p, features, identities),) if existing else ()
    read = (p
            | "Match" >> MatchImages(args.input)
            | "Read" >> beam.ParDo(ReadAndPrepare(spec), *known).with_outputs(dead_letters.TAG, main="records"))
    rows, failed = read.records | "Extract" >> ExtractFeatures(GrepqModelHandler(spec, large_model=args.large_model))
    rows | "WriteFeatures" >> features.write(run)
    (read[dead_letters.TAG], failed) | "AllDead" >> beam.Flatten() | "WriteDead" >> dead.write(run)


def run_id() -> str:
    """Names this run's shards: UTC time first, so later runs sort after earlier ones."""
    return time.strftime("run-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


def execute(args, options, test_pipeline=None) -> None:
    """Run extract with parsed flags and Beam options."""
    import apache_beam as beam

    from transforms import counters

    identities = check_weights(encoder_spec(args))
    p = test_pipeline or beam.Pipeline(options=options)
    build(p, args, identities, run_id())
    start = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    print(f"extract: {counters.summary(result, time.perf_counter() - start)}")


def run(argv=None, test_pipeline=None):
    execute(*parse(arg_parser(), argv), test_pipeline=test_pipeline)


def arg_parser():
    return command_parser("extract", __doc__.strip().splitlines()[0])
