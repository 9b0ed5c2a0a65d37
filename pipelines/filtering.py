"""`grepq filter`: a scored collection -> a smaller one, the kept samples in the form they came in.

    Read scores + dead letters -> decide per sample (tar) or row (Parquet)
      -> Write kept shards / files (and --rejected ones) -> _grepq_filter.json last

WebDataset shards give WebDataset shards of `--shard-size` samples, every
member of each sample unchanged plus ``KEY.grepq.json``; Parquet files give
Parquet files with their columns plus the grepq columns
(transforms/filtered.py). Loose files are listed in keep.txt and
reject.txt by `grepq score`; this command writes nothing for them.
"""
from __future__ import annotations

from grepq_core.errors import GrepqError
from pipelines.options import command_parser, parse

__all__ = ["run", "arg_parser", "build", "prepare_outputs"]


def prepare_outputs(outputs: list[str], replace: bool) -> None:
    """Filtered outputs never mix: one that holds files is refused, or emptied first with `replace`."""
    import fsspec

    from transforms.filtered import MANIFEST

    for output in outputs:
        fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
        old = fs.glob(f"{root}/*.tar") + fs.glob(f"{root}/*.parquet") + fs.glob(f"{root}/{MANIFEST}")
        if old and not replace:
            raise GrepqError(f"{output} already holds a filtered collection: pass `replace` to replace it, or "
                             "choose another folder")
        for path in old:
            fs.rm(path)


def build(p, scores: str, features: str, output: str, rejected: str | None, shard_size: int, meta: dict):
    """Add the filter steps to `p`."""
    import apache_beam as beam

    from transforms import filtered, store
    from transforms.sinks import ParquetSink

    if shard_size < 1:
        raise GrepqError(f"`shard_size` must be at least 1, got {shard_size}")
    score_rows = ParquetSink(scores, store.SCORES_DIR, store.scores_schema())
    if not score_rows.exists():
        raise GrepqError(f"no scores under {scores}: run `grepq score` or `grepq run` first, or pass the folder "
                         "it wrote as `scores`")
    dead_sink = ParquetSink(features, store.DEAD_LETTERS_DIR, store.DEAD_LETTERS)
    scored = p | "ReadScores" >> score_rows.read(columns=["path", "keep", "score", "calibrated", "scorer"])
    dead = (p | "ReadDead" >> dead_sink.read(columns=["path", "reason", "detail"]) if dead_sink.exists()
            else p | "NoDead" >> beam.Create([]))
    records = (scored, dead) | "Rows" >> beam.Flatten() | "Decide" >> filtered.Decide()
    # what the filtered folders do not hold: loose files (in keep.txt / reject.txt), dead letters of no sample
    loose = {name: beam.pvalue.AsSingleton(rows | f"{name}Loose" >> beam.Filter(filtered.is_loose)
                                           | f"Count{name}Loose" >> beam.combiners.Count.Globally())
             for name, rows in (("Scored", scored), ("Dead", dead))}
    for name, folder, kept in (("Kept", output, True), ("Rejected", rejected, False)):
        if folder:
            (records
             | f"Write{name}" >> filtered.WriteFiltered(folder, kept, shard_size)
             | f"{name}Entries" >> beam.combiners.ToList()
             | f"{name}Manifest" >> beam.Map(lambda entries, n, d, f, k: filtered.write_manifest(
                 f, entries, {**meta, "kept": k, "loose_files": n, "unplaced_dead_letters": d}),
                 loose["Scored"], loose["Dead"], folder, kept))


def filter_collection(pipeline, scores: str, features: str, output: str | None, rejected: str | None,
                      shard_size: int, replace: bool, break_lock: bool = False) -> None:
    """Write the kept (and rejected) samples with `pipeline` (run here), then print what each folder holds.

    Each folder's lock (transforms/runs.py, RESULTS_LOCK) is held from before its old files go until the
    new manifest is written: two runs never write one collection at once.
    """
    import contextlib

    from grepq_core.images.paths import absolute
    from transforms import filtered, runs

    outputs = [o for o in (output, rejected) if o]
    if output and rejected and absolute(output.rstrip("/")) == absolute(rejected.rstrip("/")):
        raise GrepqError("the kept and the rejected samples need two different folders")
    meta = {"scores": scores, "features": features, "shard_size": shard_size, "grepq_version": runs.grepq_version()}
    with contextlib.ExitStack() as held:
        for folder in outputs:
            held.enter_context(runs.results_lock(folder, break_lock))
        prepare_outputs(outputs, replace)
        with pipeline as p:
            build(p, scores, features, output, rejected, shard_size, meta)
    for folder in outputs:
        print(f"filter: {filtered.summary(folder)}")


def run(argv=None, test_pipeline=None):
    import apache_beam as beam

    args, options = parse(arg_parser(), argv)
    filter_collection(test_pipeline or beam.Pipeline(options=options), args.scores, args.features or args.scores,
                      args.output, args.rejected, args.shard_size, args.replace, args.break_lock)


def arg_parser():
    return command_parser("filter", __doc__.strip().splitlines()[0])
