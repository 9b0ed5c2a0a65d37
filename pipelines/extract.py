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
from pipelines.options import command_parser, encoder_spec, parse, writing_under

__all__ = ["run", "execute", "build", "check_weights", "arg_parser", "ThresholdExceeded"]

log = logging.getLogger(__name__)


COPIES, SEEN = "copies", "seen"  # a run's extra feature shards: RUN-copies-*, RUN-seen-*


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


def build(p, args, identities: dict, run: str, meta: dict):
    """Add the extract steps to `p`; shards carry `meta` in their Parquet key-value metadata."""
    import apache_beam as beam

    from transforms import dead_letters, incremental, store
    from transforms.inference import ExtractFeatures, ExtractFew, GrepqModelHandler
    from transforms.inputs import MatchInputs
    from transforms.read import PrepareSeen, ReadInputs, Task
    from transforms.sinks import ParquetSink

    spec = encoder_spec(args)
    tag = {b"grepq": json.dumps(meta, sort_keys=True).encode()}
    features = ParquetSink(args.output, store.FEATURES_DIR, store.features_schema().with_metadata(tag))
    dead = ParquetSink(args.output, store.DEAD_LETTERS_DIR, store.DEAD_LETTERS.with_metadata(tag))
    stored = _stored(features, dead, identities, args.incremental)
    inputs = p | "Match" >> MatchInputs(args.input or [], args.input_list or [], _outputs_of(args))
    if not stored:
        tasks, seen = inputs | "Tasks" >> beam.MapTuple(lambda uri, stamp: Task(uri, stamp)), None
    else:
        rows = sum(count for _, _, count in stored)
        tasks, hashes = inputs | "Plan" >> incremental.Plan(
            [(kind, uri) for kind, uri, _ in stored], rows, identities, args.verify, args.retry_dead_letters)
        seen = beam.pvalue.AsSingleton(hashes | "ContentFilter" >> beam.CombineGlobally(
            incremental.ContentFilterOf(rows)))
    records, unread, seen_before = tasks | "Read" >> ReadInputs(spec, args.image_column, seen)
    handler = GrepqModelHandler(spec, large_model=args.large_model)
    rows, failed = records | "Extract" >> ExtractFeatures(handler)
    rows | "WriteFeatures" >> features.write(run)
    dead_rows = [unread, failed]
    if stored:  # copies and the rare images seen before after all go to shards of their own (transforms/read.py)
        copies, unseen = seen_before | "CopySeen" >> incremental.CopySeen(
            [uri for kind, uri, _ in stored if kind == "features"], identities)
        copies | "WriteCopies" >> features.write(f"{run}-{COPIES}")
        more = unseen | "PrepareSeen" >> beam.ParDo(PrepareSeen(spec)).with_outputs(dead_letters.TAG, main="records")
        seen_rows, seen_failed = more.records | "ExtractSeen" >> ExtractFew(handler)
        seen_rows | "WriteSeen" >> features.write(f"{run}-{SEEN}")
        dead_rows += [more[dead_letters.TAG], seen_failed]
    dead_rows | "AllDead" >> beam.Flatten() | "WriteDead" >> dead.write(run)


def _outputs_of(args) -> list[str]:
    """The folders this command writes, which are never read as its inputs (`grepq run` writes filtered
    collections too)."""
    return [o for o in (args.output, getattr(args, "filter_output", None), getattr(args, "rejected_output", None))
            if o]


def _stored(features, dead, identities: dict, incremental: bool) -> list[tuple[str, str, int]]:
    """("features" | "dead", shard URI, rows) of what earlier runs committed; refused without `incremental`."""
    if not features.exists():
        return []
    if not incremental:
        raise GrepqError(f"{features.output} already holds features: pass `incremental` to add new images "
                         "to them, or choose another `output`")
    shards = features.footers()
    for shard, names, _ in shards:
        missing = [c for c in identities if c not in names]
        if missing:
            raise GrepqError(f"{shard} was written by an older grepq (no {', '.join(missing)} column), so "
                             "`incremental` cannot tell how its rows were made: extract into a new `output`")
    return [("features", uri, rows) for uri, _, rows in shards] + [("dead", uri, rows) for uri, _, rows in
                                                                   dead.footers()]


def _runs_here(options) -> bool:
    """Whether the pipeline runs in this process (so its progress can be counted here)."""
    from apache_beam.options.pipeline_options import StandardOptions

    return (options.view_as(StandardOptions).runner or "") in ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")


def execute(args, options, test_pipeline=None, argv=None) -> dict:
    """Run extract with parsed flags and Beam options; returns the run's manifest."""
    import apache_beam as beam

    from transforms import counters, progress, runs, store
    from transforms.inputs import check_inputs

    matched = check_inputs(args.input or [], args.input_list or [], args.image_column, _outputs_of(args))
    identities = check_weights(encoder_spec(args), hand_over=_runs_here(options))
    run = runs.new_run_id()
    meta = {"run": run, "grepq_version": runs.grepq_version(), "started": runs.now(), "identities": identities,
            "argv": list(sys.argv[1:] if argv is None else argv)}
    with runs.OutputLock(args.output, run, force=args.break_lock):
        for path in runs.clean_uncommitted(args.output, (store.FEATURES_DIR, store.DEAD_LETTERS_DIR)):
            log.warning("removed %s, left by a run that did not finish", path)
        p = test_pipeline or beam.Pipeline(options=options)
        build(p, args, identities, run, meta)
        start = time.perf_counter()
        if _runs_here(options):
            progress.start(matched, args.progress_every)
        try:
            with writing_under(args.output):
                result = p.run()
                result.wait_until_finish()
        finally:
            progress.finish()
        totals = counters.totals(result)
        for kind in (store.FEATURES_DIR, store.DEAD_LETTERS_DIR):
            store.remove_empty(args.output, kind, f"{run}-")
        manifest = {**meta, "finished": runs.now(), "counts": totals}
        runs.commit(args.output, run, manifest)
    print(f"extract: {counters.summary(totals, time.perf_counter() - start)}")
    _check_threshold(totals, args.max_dead_letter_fraction)
    return manifest


def compaction_due(output: str, limit: int) -> int | None:
    """How many shards `output` holds when more than `limit`, else None."""
    from transforms.compaction import shard_count

    count = shard_count(output)
    return count if count > limit else None


def _check_threshold(totals: dict, limit: float | None) -> None:
    seen = totals["images_scored"] + totals["images_dead_lettered"]
    if limit is None or seen == 0:
        return
    share = totals["images_dead_lettered"] / seen
    if share > limit:
        raise ThresholdExceeded(f"{totals['images_dead_lettered']} of {seen} images ({share:.1%}) were dead-lettered, "
                                f"more than `max_dead_letter_fraction` {limit:g}; the run's outputs are kept")


def run(argv=None, test_pipeline=None):
    args, options = parse(arg_parser(), argv)
    manifest = execute(args, options, test_pipeline=test_pipeline, argv=argv)
    due = compaction_due(args.output, args.compact_above)
    if due:
        print(f"extract: {args.output} holds {due} shards, which every reader opens one by one: "
              f"run `grepq compact --output {args.output}`")
    return manifest


def arg_parser():
    return command_parser("extract", __doc__.strip().splitlines()[0])
