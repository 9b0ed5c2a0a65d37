"""`grepq score`: feature rows -> scores, keep and reject lists.

    Read features -> score (ridge or zero-shot) -> threshold -> keep flag
      -> Write scores Parquet, keep.txt, reject.txt
"""
from __future__ import annotations

import apache_beam as beam

from grepq_core.errors import GrepqError
from pipelines.options import GrepqOptions, help_parser, require
from transforms.schema import FEATURES, FEATURES_DIR, IDENTITY_COLUMNS, SCORES, SCORES_DIR
from transforms.scoring import KeepThreshold, ScoreRows
from transforms.write import WriteRows, read_table, shard_glob

__all__ = ["run", "arg_parser", "build"]


def _decide(row: dict, threshold: float) -> dict:
    """Kept when the score reaches the threshold (ties kept); unscorable rows are rejected."""
    return {**row, "keep": row["score"] is not None and row["score"] >= threshold}


def _scale(text: str | None, model: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    if not model:
        raise GrepqError("--scale needs --model: a zero-shot score has no label scale")
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise GrepqError(f"--scale takes LOW,HIGH, e.g. 1,5; got {text!r}") from None
    return low, high


def _require_one_zero_shot_rule(features: str) -> None:
    """Zero-shot scores rank rows against each other, so every row must come from the same models.

    (A ridge model checks its own encoders row by row.)
    """
    columns = list(IDENTITY_COLUMNS)
    made_by = read_table(features, FEATURES_DIR, columns=columns, schema=FEATURES).group_by(columns).aggregate([])
    if made_by.num_rows > 1:
        kinds = "; ".join(" ".join(f"{k}={v}" for k, v in row.items()) for row in made_by.to_pylist())
        raise GrepqError(f"{features} holds rows made by {made_by.num_rows} different model sets ({kinds}): their "
                         "zero-shot scores are not comparable; extract the images again into one new --output")


def build(p: beam.Pipeline, opts: GrepqOptions, features: str, model: str | None, output: str):
    if opts.keep_above is not None and opts.keep_top_fraction is not None:
        raise GrepqError("give --keep-above or --keep-top-fraction, not both")
    if opts.keep_top_fraction is not None and not 0 < opts.keep_top_fraction <= 1:
        raise GrepqError("--keep-top-fraction must be in (0, 1]")
    scale = _scale(opts.scale, model)
    if model is None:
        _require_one_zero_shot_rule(features)
    scores = (p
              | "Read" >> beam.io.ReadFromParquet(shard_glob(features, FEATURES_DIR))
              | "Score" >> beam.ParDo(ScoreRows(model, scale)))
    threshold = scores | "Threshold" >> KeepThreshold(opts.keep_above, opts.keep_top_fraction)
    decided = scores | "Decide" >> beam.Map(_decide, beam.pvalue.AsSingleton(threshold))
    decided | "WriteScores" >> WriteRows(output, SCORES_DIR, SCORES)
    for name, keep in (("keep", True), ("reject", False)):
        (decided
         | f"Select {name}" >> beam.Filter(lambda r, k: r["keep"] == k, keep)
         | f"Path {name}" >> beam.Map(lambda r: r["path"])
         | f"Write {name}" >> beam.io.WriteToText(f"{output.rstrip('/')}/{name}", file_name_suffix=".txt",
                                                  shard_name_template=""))


def run(argv=None, test_pipeline=None):
    options = GrepqOptions(argv)
    require(options, "features", "output")
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        build(p, options, options.features, options.model, options.output)


def arg_parser():
    return help_parser("score", __doc__.strip().splitlines()[0], ("io", "score"))
