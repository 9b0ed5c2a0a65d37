"""`grepq run`: extract, fit when labels are given, score, the report, and the filtered collection.

Pipelines one after the other, writing under --output: features/,
dead_letters/, model.json (when labelled), scores/, keep.txt, reject.txt,
and report.html; with --filter-output, the kept samples of shard and
Parquet inputs there (pipelines/filtering.py), and with --rejected-output the
others.
"""
from __future__ import annotations

from pipelines.options import command_parser, parse, writing_under

__all__ = ["run", "arg_parser"]


def run(argv=None):
    import apache_beam as beam

    from pipelines import compact, extract, filtering, fit, report, score
    from transforms import runs

    args, options = parse(arg_parser(), argv)
    out = args.output.rstrip("/")
    collections = [o for o in (args.filter_output, args.rejected_output) if o]
    if not args.incremental:
        filtering.prepare_outputs(collections, replace=False)  # an output in the way is refused before any work
    extract.execute(args, options, argv=argv)
    if args.incremental and extract.compaction_due(out, args.compact_above):
        print(f"compact: {compact.compact(out, break_lock=args.break_lock)}")
    model = args.model
    if args.labels:
        model = args.model_output or f"{out}/model.json"
        with beam.Pipeline(options=options) as p:
            fit.build(p, args, out, model)
    with writing_under(out), runs.results_lock(out, args.break_lock), beam.Pipeline(options=options) as p:
        score.build(p, args, out, model, out, replace=args.incremental)  # a nightly rerun scores everything again
    print(f"scores: {out}/scores/  keep list: {out}/keep.txt  reject list: {out}/reject.txt")
    if collections:  # a nightly rerun writes the collection again
        filtering.filter_collection(beam.Pipeline(options=options), out, out, args.filter_output,
                                    args.rejected_output, args.shard_size, replace=True, break_lock=args.break_lock)
    threshold = [] if args.keep_above is None else ["--threshold", str(args.keep_above)]
    report.run(["--scores", out, "--output", f"{out}/report.html", *threshold])


def arg_parser():
    return command_parser("run", __doc__.strip().splitlines()[0])
