"""`grepq fit`: a few labelled images -> a ridge regressor (JSON).

    Read features -> keep labelled rows -> gather -> fit on the features, on the
      zero-shot score and on both (alpha by CV each) -> keep the best -> write JSON

The zero-shot fit is kept unless another cross-validates clearly better
(grepq_core/fitting/choice.py), so labels never make the score worse than none.

The label file is streamed here, with a byte cap, against the feature rows'
paths (grepq_core/fitting/labels.py); only the matched labels' scores go
into the pipeline, and only the labelled rows leave the workers, so this
stays cheap on a corpus of millions and with a label file of millions of rows.
"""
from __future__ import annotations

import logging

from grepq_core.errors import GrepqError
from pipelines.options import command_parser, parse

__all__ = ["run", "arg_parser", "build", "fit_rows", "matched_labels"]

log = logging.getLogger(__name__)


def fit_rows(rows: list[dict], scores: dict[str, float], alphas, folds: int, output: str, candidates=None):
    """Fit on the labelled rows (`scores`: feature path -> label), choose, save; returns the model (runs on
    one worker)."""
    from grepq_core.fitting.choice import CANDIDATES, POOR_CV, SURE, fit_with_choice
    from grepq_core.fitting.ridge_file import save_ridge

    chosen = list({r["path"]: r for r in rows}.values())
    model = fit_with_choice(chosen, [scores[r["path"]] for r in chosen], alphas=alphas, folds=folds,
                            candidates=candidates or CANDIDATES)
    save_ridge(model, output)
    others = ", ".join(f"{n} {s:.3f}" if s is not None else f"{n} -" for n, s in model.choice["cv_srcc"].items())
    sure, weight = model.choice.get("share_better"), model.choice.get("weight")
    weighed = "" if sure is None else (f"; the last fit weighed beat zero-shot in {sure:.0%} of resamples "
                                       f"(features alone need {SURE:.0%}; a correction enters at 2 x share - 1)")
    if weight is not None:
        weighed += f"; correction at weight {weight:.2f}"
    print(f"fitted ridge on {model.n_train} labelled images ({', '.join(f'{b}:{w}' for b, w in model.layout)}), "
          f"alpha={model.alpha:g}: kept {model.choice['chosen']} by {model.cv['folds']}-fold CV SRCC "
          f"({others}{weighed}); PLCC={model.cv['plcc']:.3f} -> {output}")
    kept = model.choice["cv_srcc"][model.choice["chosen"]]
    if not kept >= POOR_CV:
        log.warning("the kept fit's cross-validated SRCC is only %.3f on %d labels: its scores are not reliable; "
                    "label more images (grepq suggest-labels picks useful ones) or check the labels",
                    kept, model.n_train)
    return model


def matched_labels(labels, features: str) -> dict[str, float]:
    """{feature path: label score}: the label file streamed against the feature rows' paths."""
    from transforms import current, store

    matched, warnings = labels.match(current.column_values(features, store.FEATURES_DIR, "path"))
    for w in warnings:
        log.warning("%s", w)
    if not matched:
        raise GrepqError(f"none of the labels in `labels` {labels.uri} matches a feature row")
    return matched


def build(p, args, features: str, output: str):
    import apache_beam as beam

    from grepq_core.fitting.labels import LabelFile
    from grepq_core.model import registry
    from pipelines.score import require_features
    from transforms import store
    from transforms.sinks import ParquetSink

    labels = LabelFile(args.labels, lower_is_better=args.lower_is_better)  # its columns are checked first
    source = ParquetSink(features, store.FEATURES_DIR, store.features_schema())
    require_features(source)
    scores = matched_labels(labels, features)
    alphas = [float(a) for a in args.alphas.split(",")]
    cols = registry.columns()
    columns = ["path", *cols["features"], *cols["zero_shot"], registry.COMBINED, *store.identity_columns()]
    (p
     | "Read" >> source.read(columns=columns)
     | "Labelled" >> beam.Filter(lambda row, labelled: row["path"] in labelled, scores)
     | "Gather" >> beam.combiners.ToList()
     | "Fit" >> beam.Map(fit_rows, scores, alphas, args.folds, output, tuple(args.candidates.split(","))))


def run(argv=None, test_pipeline=None):
    import apache_beam as beam

    args, options = parse(arg_parser(), argv)
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        build(p, args, args.features, args.output)


def arg_parser():
    return command_parser("fit", __doc__.strip().splitlines()[0])
