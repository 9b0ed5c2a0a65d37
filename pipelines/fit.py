"""`grepq fit`: a few labelled images -> a ridge regressor (JSON).

    Read features -> keep labelled rows -> gather -> fit on the features, on the
      zero-shot score and on both (alpha by CV each) -> keep the best -> write JSON

The zero-shot fit is kept unless another cross-validates clearly better
(grepq_core/fitting/choice.py), so labels never make the score worse than none.

Only the labelled rows leave the workers, so this stays cheap on a corpus of
millions.
"""
from __future__ import annotations

import logging

from grepq_core.errors import GrepqError
from pipelines.options import command_parser, parse

__all__ = ["run", "arg_parser", "build", "fit_rows"]

log = logging.getLogger(__name__)


def _label_keys(labels) -> tuple[set, set]:
    from grepq_core.images.keys import file_name

    keys = set(labels.scores)
    return keys, {file_name(k) for k in keys}


def _may_be_labelled(row, keys) -> bool:
    from grepq_core.images.keys import file_name

    paths, names = keys
    return row["path"] in paths or file_name(row["path"]) in names


def fit_rows(rows: list[dict], labels, alphas, folds: int, output: str, candidates=None):
    """Join, validate, fit and save; returns the model (runs on one worker)."""
    from grepq_core.fitting.choice import CANDIDATES, POOR_CV, SURE, fit_with_choice
    from grepq_core.fitting.labels import join_labels
    from grepq_core.fitting.ridge_file import save_ridge

    by_path = {r["path"]: r for r in rows}
    matched, warnings = join_labels(labels, list(by_path))
    for w in warnings:
        log.warning("%s", w)
    if not matched:
        raise GrepqError(f"none of the {len(labels.scores)} labels in {labels.source} matches a feature row")
    chosen = [by_path[p] for p in matched]
    model = fit_with_choice(chosen, [matched[r["path"]] for r in chosen], alphas=alphas, folds=folds,
                            candidates=candidates or CANDIDATES)
    save_ridge(model, output)
    others = ", ".join(f"{n} {s:.3f}" if s is not None else f"{n} -" for n, s in model.choice["cv_srcc"].items())
    sure = model.choice.get("share_better")
    weighed = "" if sure is None else f"; the best fit beat zero-shot in {sure:.0%} of resamples (needs {SURE:.0%})"
    print(f"fitted ridge on {model.n_train} labelled images ({', '.join(f'{b}:{w}' for b, w in model.layout)}), "
          f"alpha={model.alpha:g}: kept {model.choice['chosen']} by {model.cv['folds']}-fold CV SRCC "
          f"({others}{weighed}); PLCC={model.cv['plcc']:.3f} -> {output}")
    kept = model.choice["cv_srcc"][model.choice["chosen"]]
    if not kept >= POOR_CV:
        log.warning("the kept fit's cross-validated SRCC is only %.3f on %d labels: its scores are not reliable; "
                    "label more images (grepq suggest-labels picks useful ones) or check the labels",
                    kept, model.n_train)
    return model


def build(p, args, features: str, output: str):
    import apache_beam as beam

    from grepq_core.fitting.labels import read_labels
    from grepq_core.model import registry
    from pipelines.score import require_features
    from transforms import store
    from transforms.sinks import ParquetSink

    labels = read_labels(args.labels, lower_is_better=args.lower_is_better)
    source = ParquetSink(features, store.FEATURES_DIR, store.features_schema())
    require_features(source)
    keys = _label_keys(labels)
    alphas = [float(a) for a in args.alphas.split(",")]
    cols = registry.columns()
    columns = ["path", *cols["features"], *cols["zero_shot"], registry.COMBINED, *store.identity_columns()]
    (p
     | "Read" >> source.read(columns=columns)
     | "Labelled" >> beam.Filter(_may_be_labelled, keys)
     | "Gather" >> beam.combiners.ToList()
     | "Fit" >> beam.Map(fit_rows, labels, alphas, args.folds, output, tuple(args.candidates.split(","))))


def run(argv=None, test_pipeline=None):
    import apache_beam as beam

    args, options = parse(arg_parser(), argv)
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        build(p, args, args.features, args.output)


def arg_parser():
    return command_parser("fit", __doc__.strip().splitlines()[0])
