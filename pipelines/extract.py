"""`grepq extract`: images -> one Parquet feature row each, or a dead letter.

    Match -> Read, hash, decode, cut views -> RunInference (every pathway) -> Write features
                    \\-> dead letters ------------------/-> Write dead letters
    then: commit the run (OUTPUT/runs/RUN.json)

Before anything runs, every --input glob must match a file and every model
must load. The run holds OUTPUT/runs/LOCK while it writes and commits with
one manifest written last, so readers see all of a run or none of it
(transforms/runs.py). With --incremental, images whose path and content
hash already have a row from the same models, or a dead letter, are skipped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time

from grepq_core.errors import GrepqError
from pipelines.options import command_parser, encoder_spec, parse

__all__ = ["run", "execute", "build", "check_weights", "arg_parser", "ThresholdExceeded"]

log = logging.getLogger(__name__)


class ThresholdExceeded(GrepqError):
    """The run finished and committed, but dead-lettered more than --max-dead-letter-fraction."""

    exit_code = 3


def check_weights(spec, hand_over: bool = False) -> dict:
    """Load every selected model once before any image is read; the identities rows will carry.

    Missing or unreachable weights stop the command here with a message that
    names the setting to change, instead of failing on every worker later.
    The load cannot be skipped: an identity is a digest of the loaded
    parameters (the HL one includes the prompt embeddings its text tower
    computes), and `incremental` needs the identities before the pipeline
    is built, to tell which earlier rows the same models made. With
    `hand_over` (a runner in this process) the models load on the workers'
    device and the workers take them instead of loading them again; else
    they load on the CPU.
    """
    from grepq_core.model.extractor import Extractor

    model = Extractor.load(spec if hand_over else dataclasses.replace(spec, device="cpu"), hand_over=hand_over)
    log.info("feature rows will carry %s", model.identities)
    return model.identities


def _side_inputs(p, features, dead, identities: dict, retry_dead: bool) -> tuple:
    """(path -> sha256 of rows made by these models, path -> (sha256, stage, reason) of dead letters)."""
    import apache_beam as beam

    from transforms.store import same_models

    known = beam.pvalue.AsDict(
        p
        | "ReadExisting" >> features.read(columns=["path", "sha256", *identities])
        | "SameModels" >> beam.Filter(same_models, identities)
        | "PathHash" >> beam.Map(lambda r: (r["path"], r["sha256"])))
    if retry_dead or not dead.exists():
        return (known,)
    return known, beam.pvalue.AsDict(
        p
        | "ReadDead" >> dead.read(columns=["path", "sha256", "stage", "reason"])
        | "DeadKey" >> beam.Map(lambda r: (r["path"], (r["sha256"], r["stage"], r["reason"]))))


def build(p, args, identities: dict, run: str, meta: dict):
    """Add the extract steps to `p`; shards carry `meta` in their Parquet key-value metadata."""
    import apache_beam as beam

    from transforms import store
    from transforms.inference import ExtractFeatures, GrepqModelHandler
    from transforms.inputs import MatchInputs
    from transforms.read import ReadInputs
    from transforms.sinks import ParquetSink

    spec = encoder_spec(args)
    tag = {b"grepq": json.dumps(meta, sort_keys=True).encode()}
    features = ParquetSink(args.output, store.FEATURES_DIR, store.features_schema().with_metadata(tag))
    dead = ParquetSink(args.output, store.DEAD_LETTERS_DIR, store.DEAD_LETTERS.with_metadata(tag))
    existing = features.exists()
    if existing:
        if not args.incremental:
            raise GrepqError(f"{args.output} already holds features: pass `incremental` to add new images "
                             "to them, or choose another `output`")
        for shard, names in features.shard_columns():
            missing = [c for c in identities if c not in names]
            if missing:
                raise GrepqError(f"{shard} was written by an older grepq (no {', '.join(missing)} column), so "
                                 "`incremental` cannot tell how its rows were made: extract into a new `output`")
    side = _side_inputs(p, features, dead, identities, args.retry_dead_letters) if existing else ()
    records, unread = (p
                       | "Match" >> MatchInputs(args.input or [], args.input_list or [])
                       | "Read" >> ReadInputs(spec, args.image_column, side))
    rows, failed = records | "Extract" >> ExtractFeatures(GrepqModelHandler(spec, large_model=args.large_model))
    rows | "WriteFeatures" >> features.write(run)
    (unread, failed) | "AllDead" >> beam.Flatten() | "WriteDead" >> dead.write(run)


def _runs_here(options) -> bool:
    """Whether the pipeline runs in this process (so its progress can be counted here)."""
    from apache_beam.options.pipeline_options import StandardOptions

    return (options.view_as(StandardOptions).runner or "") in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def execute(args, options, test_pipeline=None, argv=None) -> dict:
    """Run extract with parsed flags and Beam options; returns the run's manifest."""
    import apache_beam as beam

    from transforms import counters, progress, runs, store
    from transforms.inputs import check_inputs

    matched = check_inputs(args.input or [], args.input_list or [], args.image_column)
    identities = check_weights(encoder_spec(args), hand_over=_runs_here(options))
    run = runs.new_run_id()
    meta = {"run": run, "grepq_version": runs.grepq_version(), "started": _now(), "identities": identities,
            "argv": list(sys.argv[1:] if argv is None else argv)}
    with runs.OutputLock(args.output, run, force=args.break_lock) as lock:
        if lock.broke:
            log.warning("took over %s from run %s, which died holding it", args.output, lock.broke.get("run"))
        for path in runs.clean_uncommitted(args.output, (store.FEATURES_DIR, store.DEAD_LETTERS_DIR)):
            log.warning("removed %s, left by a run that did not finish", path)
        p = test_pipeline or beam.Pipeline(options=options)
        build(p, args, identities, run, meta)
        start = time.perf_counter()
        if _runs_here(options):
            progress.start(matched, args.progress_every)
        try:
            result = p.run()
            result.wait_until_finish()
        finally:
            progress.finish()
        totals = counters.totals(result)
        manifest = {**meta, "finished": _now(), "counts": totals}
        runs.commit(args.output, run, manifest)
    print(f"extract: {counters.summary(totals, time.perf_counter() - start)}")
    _check_threshold(totals, args.max_dead_letter_fraction)
    return manifest


def _check_threshold(totals: dict, limit: float | None) -> None:
    seen = totals["images_scored"] + totals["images_dead_lettered"]
    if limit is None or seen == 0:
        return
    share = totals["images_dead_lettered"] / seen
    if share > limit:
        raise ThresholdExceeded(f"{totals['images_dead_lettered']} of {seen} images ({share:.1%}) were dead-lettered, "
                                f"more than `max_dead_letter_fraction` {limit:g}; the run's outputs are kept")


def run(argv=None, test_pipeline=None):
    return execute(*parse(arg_parser(), argv), test_pipeline=test_pipeline, argv=argv)


def arg_parser():
    return command_parser("extract", __doc__.strip().splitlines()[0])
