"""`grepq fit`: a few labelled images -> a ridge regressor (JSON).

    Read features -> keep labelled rows -> gather -> fit (alpha by CV) -> write JSON

Only the labelled rows leave the workers, so this stays cheap on a corpus of
millions.
"""
from __future__ import annotations

import logging

import apache_beam as beam

from grepq_core.errors import GrepqError
from grepq_core.features import feature_layout, feature_matrix
from grepq_core.labels import LabelSet, join_labels, read_labels
from grepq_core.regressor import fit_ridge
from pipelines.options import GrepqOptions, help_parser, require
from transforms.schema import FEATURES_DIR
from transforms.write import shard_glob

__all__ = ["run", "arg_parser", "fit_rows"]

log = logging.getLogger(__name__)
_COLUMNS = ["path", "ll_features", "hl_features", "ll_identity", "hl_identity"]


def _label_keys(labels: LabelSet) -> tuple[set, set]:
    keys = set(labels.scores)
    return keys, {k.replace("\\", "/").rsplit("/", 1)[-1] for k in keys}


def _may_be_labelled(row, keys) -> bool:
    paths, names = keys
    return row["path"] in paths or row["path"].rsplit("/", 1)[-1] in names


def fit_rows(rows: list[dict], labels: LabelSet, alphas, folds: int, output: str):
    """Join, validate, fit and save; returns the model (runs on one worker)."""
    by_path = {r["path"]: r for r in rows}
    matched, warnings = join_labels(labels, list(by_path))
    for w in warnings:
        log.warning("%s", w)
    if not matched:
        raise GrepqError(f"none of the {len(labels.scores)} labels in {labels.source} matches a feature row")
    chosen = [by_path[p] for p in matched]
    layout, identities = feature_layout(chosen)
    model = fit_ridge(feature_matrix(chosen, layout), [matched[r["path"]] for r in chosen],
                      layout, identities, alphas=alphas, folds=folds)
    model.save(output)
    print(f"fitted ridge on {model.n_train} labelled images ({', '.join(f'{b}:{w}' for b, w in layout)}), "
          f"alpha={model.alpha:g}; {model.cv['folds']}-fold CV SRCC={model.cv['srcc']:.3f} "
          f"PLCC={model.cv['plcc']:.3f} -> {output}")
    return model


def build(p: beam.Pipeline, opts: GrepqOptions, features: str, output: str):
    labels = read_labels(opts.label_csv, lower_is_better=opts.lower_is_better)
    keys = _label_keys(labels)
    alphas = [float(a) for a in opts.alphas.split(",")]
    (p
     | "Read" >> beam.io.ReadFromParquet(shard_glob(features, FEATURES_DIR), columns=_COLUMNS)
     | "Labelled" >> beam.Filter(_may_be_labelled, keys)
     | "Gather" >> beam.combiners.ToList()
     | "Fit" >> beam.Map(fit_rows, labels, alphas, opts.folds, output))


def run(argv=None, test_pipeline=None):
    options = GrepqOptions(argv)
    require(options, "features", "label_csv", "output")
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        build(p, options, options.features, options.output)


def arg_parser():
    return help_parser("fit", __doc__.strip().splitlines()[0], ("io", "fit"))
