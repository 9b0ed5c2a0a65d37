"""`grepq run`: extract, then fit when labels are given, then score, then the report.

Three pipelines one after the other, all writing under --output:
features/, dead_letters/, model.json (when labelled), scores/, keep.txt,
reject.txt, and report.html.
"""
from __future__ import annotations

from pipelines.options import command_parser, parse, writing_under

__all__ = ["run", "arg_parser"]


def run(argv=None):
    import apache_beam as beam

    from pipelines import extract, fit, report, score

    args, options = parse(arg_parser(), argv)
    out = args.output.rstrip("/")
    extract.execute(args, options, argv=argv)
    model = args.model
    if args.labels:
        model = args.model_output or f"{out}/model.json"
        with beam.Pipeline(options=options) as p:
            fit.build(p, args, out, model)
    with writing_under(out), beam.Pipeline(options=options) as p:
        score.build(p, args, out, model, out, replace=args.incremental)  # a nightly rerun scores everything again
    print(f"scores: {out}/scores/  keep list: {out}/keep.txt  reject list: {out}/reject.txt")
    threshold = [] if args.keep_above is None else ["--threshold", str(args.keep_above)]
    report.run(["--scores", out, "--output", f"{out}/report.html", *threshold])


def arg_parser():
    return command_parser("run", __doc__.strip().splitlines()[0])
