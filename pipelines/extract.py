"""`grepq extract`: images -> one Parquet feature row each, or a dead letter.

    Match -> Read and prepare views -> RunInference (both encoders) -> Write
                    \\-> dead letters ------------------/-> Write dead letters

With --incremental, images whose path and content hash already have a row
from the same encoders under --output are skipped, and the new rows are
added beside the old ones.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import uuid

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from grepq_core.errors import GrepqError
from grepq_core.extractor import Extractor
from pipelines.options import GrepqOptions, encoder_spec, help_parser, require
from transforms import counters
from transforms.inference import ExtractFeatures, GrepqModelHandler
from transforms.read import DEAD, MatchImages, ReadAndPrepare
from transforms.schema import DEAD_LETTERS, DEAD_LETTERS_DIR, FEATURES, FEATURES_DIR
from transforms.write import WriteRows, has_shards, shard_glob

__all__ = ["run", "build", "check_weights", "arg_parser"]

log = logging.getLogger(__name__)


def check_weights(spec) -> dict:
    """Load every selected model once, on the CPU, before any image is read.

    Missing or unreachable weights stop the command here with a message that
    names the flag to change, instead of failing on every worker later.
    Returns the identities feature rows will carry (encoders, zero-shot LL rule).
    """
    model = Extractor.load(dataclasses.replace(spec, device="cpu"))
    log.info("feature rows will carry %s", model.identities)
    return model.identities


def _require_columns(output: str, columns) -> None:
    """Shards of an older grepq may lack a column the incremental match reads: say so before the run."""
    for shard in FileSystems.match([shard_glob(output, FEATURES_DIR)])[0].metadata_list:
        with FileSystems.open(shard.path) as f:
            missing = [c for c in columns if c not in pq.read_schema(f).names]
        if missing:
            raise GrepqError(f"{shard.path} was written by an older grepq (no {', '.join(missing)} column), so "
                             "--incremental cannot tell how its rows were made: extract into a new --output")


def _already_extracted(p: beam.Pipeline, output: str, identities: dict):
    """path -> sha256 of the rows under `output` made by these encoders, as a side input."""
    def same_encoders(row):
        return all(row[k] == v for k, v in identities.items())

    return beam.pvalue.AsDict(
        p
        | "ReadExisting" >> beam.io.ReadFromParquet(shard_glob(output, FEATURES_DIR), columns=[
            "path", "sha256", *identities])
        | "SameEncoders" >> beam.Filter(same_encoders)
        | "PathHash" >> beam.Map(lambda r: (r["path"], r["sha256"])))


def build(p: beam.Pipeline, opts: GrepqOptions, identities: dict, run_id: str):
    """Add the extract steps to `p`."""
    spec = encoder_spec(opts)
    existing = has_shards(opts.output, FEATURES_DIR)
    if existing:
        if not opts.incremental:
            raise GrepqError(f"{opts.output} already holds features: pass --incremental to add new images "
                             "to them, or choose another --output")
        _require_columns(opts.output, identities)
    known = (_already_extracted(p, opts.output, identities),) if existing else ()
    handler = GrepqModelHandler(spec, large_model=opts.large_model)
    prepared = (p
                | "Match" >> MatchImages(opts.input)
                | "Read" >> beam.ParDo(ReadAndPrepare(spec), *known).with_outputs(DEAD, main="prepared"))
    rows, failed = prepared.prepared | "Extract" >> ExtractFeatures(handler)
    rows | "WriteFeatures" >> WriteRows(opts.output, FEATURES_DIR, FEATURES, run_id)
    ((prepared[DEAD], failed) | "AllDead" >> beam.Flatten()
     | "WriteDead" >> WriteRows(opts.output, DEAD_LETTERS_DIR, DEAD_LETTERS, run_id))


def run_id() -> str:
    """Names this run's shards: UTC time first, so later runs sort after earlier ones."""
    return time.strftime("run-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


def run(argv=None, test_pipeline=None):
    options = GrepqOptions(argv)
    require(options, "input", "output")
    identities = check_weights(encoder_spec(options))
    p = test_pipeline or beam.Pipeline(options=options)
    build(p, options, identities, run_id())
    start = time.perf_counter()
    result = p.run()
    result.wait_until_finish()
    print(f"extract: {counters.summary(result, time.perf_counter() - start)}")


def arg_parser():
    return help_parser("extract", __doc__.strip().splitlines()[0], ("io", "encoders", "views"))
