"""`grepq score`: feature rows -> scores, keep and reject lists.

    Read features -> score (ridge or zero-shot) -> mark exact duplicates -> threshold -> keep flag
      -> Write scores Parquet, keep.txt, reject.txt
"""
from __future__ import annotations

from grepq_core.errors import GrepqError
from pipelines.options import command_parser, parse, writing_under

__all__ = ["run", "arg_parser", "build", "require_features"]


def _csv_line(row: dict) -> str:
    """One CSV line: the path quoted as CSV needs (paths hold no line breaks: grepq_core/images/paths.py)."""
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([row["path"], _number(row["score"]), _number(row["calibrated"]),
                                                    "true" if row["keep"] else "false"])
    return buffer.getvalue()


def _number(x: float | None) -> str:
    return "" if x is None else repr(x)


def _decide(row: dict, threshold: float) -> dict:
    """Kept when its `decision_value` (the calibrated score, else the score) reaches the threshold (ties
    kept); unscorable rows are rejected."""
    from grepq_core.fitting.scoring import decision_value

    value = decision_value(row)
    return {**row, "keep": value is not None and value >= threshold}


def _scale(text: str | None, model: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    if not model:
        raise GrepqError("`scale` needs `model`: a zero-shot score has no label scale")
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise GrepqError(f"`scale` takes LOW,HIGH, e.g. 1,5; got {text!r}") from None
    return low, high


def _require_one_zero_shot_rule(sink) -> None:
    """Zero-shot scores rank rows against each other, so every row must come from the same models.

    (A ridge model checks its own encoders row by row.)
    """
    from transforms.store import identity_columns, model_sets

    made_by = model_sets(sink.read_table(columns=identity_columns()))
    if len(made_by) > 1:
        kinds = "; ".join(" ".join(f"{k}={v}" for k, v in row.items()) for row in made_by)
        raise GrepqError(f"{sink.output} holds rows made by {len(made_by)} different model sets ({kinds}): their "
                         "zero-shot scores are not comparable; extract the images again into one new `output`")


def _prepare_output(output: str, replace: bool) -> None:
    """Scores of two runs never mix: an output with scores is refused, or emptied first with `replace`."""
    import fsspec

    from transforms import store

    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    old = [p for p in (f"{root}/{store.SCORES_DIR}", f"{root}/keep.txt", f"{root}/reject.txt") if fs.exists(p)]
    if old and not replace:
        raise GrepqError(f"{output} already holds scores: pass `replace` to replace them, or choose another `output`")
    for path in old:
        fs.rm(path, recursive=True)


def require_features(sink) -> None:
    if not sink.exists():
        raise GrepqError(f"no feature rows under {sink.output}: run `grepq extract` first, or pass the "
                         "folder it wrote as `features`")


def build(p, args, features: str, model: str | None, output: str, replace: bool = False):
    import apache_beam as beam

    from grepq_core.files import check_writable
    from grepq_core.fitting.ridge_file import load_ridge
    from transforms import store
    from transforms.scoring import KeepThreshold, MarkDuplicates, ScoreRows
    from transforms.sinks import ParquetSink

    if args.keep_above is not None and args.keep_top_fraction is not None:
        raise GrepqError("give `keep_above` or `keep_top_fraction`, not both")
    if args.keep_top_fraction is not None and not 0 < args.keep_top_fraction <= 1:
        raise GrepqError("`keep_top_fraction` must be in (0, 1]")
    scale = _scale(args.scale, model)
    source = ParquetSink(features, store.FEATURES_DIR, store.features_schema())
    require_features(source)
    if model is None:
        _require_one_zero_shot_rule(source)
    else:
        load_ridge(model)  # a model that cannot be read stops the command before earlier scores are replaced
    if getattr(args, "csv", None):
        check_writable(args.csv)  # Beam renames its file over the target: never over a device
    _prepare_output(output, replace or getattr(args, "replace", False))
    scores = (p
              | "Read" >> source.read()
              | "Score" >> beam.ParDo(ScoreRows(model, scale))
              | "Duplicates" >> MarkDuplicates())
    threshold = scores | "Threshold" >> KeepThreshold(args.keep_above, args.keep_top_fraction)
    decided = scores | "Decide" >> beam.Map(_decide, beam.pvalue.AsSingleton(threshold))
    decided | "WriteScores" >> ParquetSink(output, store.SCORES_DIR, store.scores_schema()).write("part")
    if getattr(args, "csv", None):
        (decided | "CSV lines" >> beam.Map(_csv_line)
         | "Write CSV" >> beam.io.WriteToText(args.csv, shard_name_template="", header="path,score,calibrated,keep"))
    for name, keep in (("keep", True), ("reject", False)):
        (decided
         | f"Select {name}" >> beam.Filter(lambda r, k: r["keep"] == k, keep)
         | f"Path {name}" >> beam.Map(lambda r: r["path"])
         | f"Write {name}" >> beam.io.WriteToText(f"{output.rstrip('/')}/{name}", file_name_suffix=".txt",
                                                  shard_name_template=""))


def run(argv=None, test_pipeline=None):
    import apache_beam as beam

    from transforms.runs import results_lock

    args, options = parse(arg_parser(), argv)
    with (writing_under(args.output), results_lock(args.output, args.break_lock),
          (test_pipeline or beam.Pipeline(options=options)) as p):
        build(p, args, args.features, args.model, args.output)


def arg_parser():
    return command_parser("score", __doc__.strip().splitlines()[0])
