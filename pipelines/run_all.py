"""`grepq run`: extract, then fit when labels are given, then score, then the report.

Three pipelines one after the other, all writing under --output:
features/, dead_letters/, model.json (when labelled), scores/, keep.txt,
reject.txt, and report.html.
"""
from __future__ import annotations

import apache_beam as beam

from pipelines import extract, fit, report, score
from pipelines.options import GrepqOptions, help_parser, require

__all__ = ["run", "arg_parser"]


def run(argv=None):
    options = GrepqOptions(argv)
    require(options, "input", "output")
    out = options.output.rstrip("/")
    extract.run(argv)
    model = options.model
    if options.label_csv:
        model = options.model_output or f"{out}/model.json"
        with beam.Pipeline(options=options) as p:
            fit.build(p, options, out, model)
    with beam.Pipeline(options=options) as p:
        score.build(p, options, out, model, out)
    print(f"scores: {out}/scores/  keep list: {out}/keep.txt  reject list: {out}/reject.txt")
    threshold = [] if options.keep_above is None else ["--threshold", str(options.keep_above)]
    report.run(["--scores", out, "--output", f"{out}/report.html", *threshold])


def arg_parser():
    return help_parser("run", __doc__.strip().splitlines()[0], ("io", "encoders", "views", "fit", "score"))
