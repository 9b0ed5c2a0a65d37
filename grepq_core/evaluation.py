"""The field's two evaluation protocols, as pure functions on scores and features.

docs/method.md, "Evaluation conventions of the field" and "Data-efficient
prediction":

- zero-shot: one blind score per image, correlated (SRCC, PLCC after a
  4-parameter logistic, KRCC) with the MOS over the whole dataset;
- few-shot: for each of several seeded splits, ridge regression (alpha by
  cross-validation on the training rows only) fitted on `n_train` labelled
  images and scored on the rest; the median over splits is reported, with
  the interquartile range as the spread.

Deviation from the paper: its data-efficient tables train on a fraction of
each dataset with random image splits; here the training set is a number of
images, and `split_by_group` keeps every reference content on one side of a
split, so a synthetic dataset's distorted versions of one photo never appear
in both training and test.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from grepq_core.datasets import split_by_group
from grepq_core.metrics import correlations
from grepq_core.regressor import DEFAULT_ALPHAS, fit_ridge

__all__ = ["METRICS", "Result", "group_splits", "zero_shot", "few_shot", "not_run", "markdown_table"]

METRICS = ("srcc", "plcc", "krcc")
_MIN_PAIRS = 3


@dataclass
class Result:
    """One row of an evaluation table.

    `values` holds each metric (the median over splits for few-shot);
    `iqr` the [25th, 75th] percentiles over splits, `per_split` every
    split's value and `alphas` the ridge alpha each split chose (few-shot
    only). `n_test` is the number of images scored (few-shot: the median
    test-set size). A row that could not be computed has empty `values`
    and says why in `note`.
    """

    protocol: str
    method: str
    values: dict[str, float] = field(default_factory=dict)
    n_test: int = 0
    note: str = ""
    iqr: dict[str, list[float]] = field(default_factory=dict)
    per_split: dict[str, list[float]] = field(default_factory=dict)
    alphas: list[float] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return bool(self.values)


def not_run(protocol: str, method: str, reason: str) -> Result:
    """A row that is reported as missing, with the reason."""
    return Result(protocol, method, note=f"not run: {reason}")


def group_splits(df: pd.DataFrame, n_train: int, splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row positions for seeds seed .. seed + splits - 1, no group on both sides."""
    return [split_by_group(df, n_train, seed + k) for k in range(splits)]


def zero_shot(method: str, scores, mos, note: str = "") -> Result:
    """Correlations of one blind score with the MOS; images without a finite score are left out."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = int(np.isfinite(scores).sum())
    if finite < _MIN_PAIRS:
        return not_run("zero-shot", method, f"only {finite} images have a finite score")
    values = correlations(scores, mos)
    return Result("zero-shot", method, {m: values[m] for m in METRICS}, finite, note)


def few_shot(method: str, X: np.ndarray, mos, splits: list[tuple[np.ndarray, np.ndarray]], layout,
             identities: dict, alphas=DEFAULT_ALPHAS, folds: int = 5, note: str = "") -> Result:
    """Ridge on each split's training rows, correlations on its test rows; median and IQR over splits.

    Rows whose features are not all finite are left out of training (their
    label is masked) and of testing (their prediction is NaN).
    """
    X = np.asarray(X, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    usable = np.isfinite(X).all(axis=1)
    trainable = np.where(usable, mos, np.nan)
    safe_X = np.where(usable[:, None], X, 0.0)
    per_split = {m: [] for m in METRICS}
    chosen, sizes = [], []
    for train, test in splits:
        model = fit_ridge(safe_X[train], trainable[train], layout, identities, alphas=alphas, folds=folds)
        pred = np.where(usable[test], model.predict(safe_X[test]), np.nan)
        values = correlations(pred, mos[test])
        for m in METRICS:
            per_split[m].append(values[m])
        chosen.append(model.alpha)
        sizes.append(int(usable[test].sum()))
    return Result(
        "few-shot", method,
        values={m: float(np.median(v)) for m, v in per_split.items()},
        n_test=int(np.median(sizes)), note=note,
        iqr={m: [float(q) for q in np.percentile(v, [25, 75])] for m, v in per_split.items()},
        per_split=per_split, alphas=chosen,
    )


def _cell(result: Result, metric: str) -> str:
    if not result.ran:
        return "-"
    value = f"{result.values[metric]:.3f}"
    if result.iqr:
        low, high = result.iqr[metric]
        value += f" [{low:.3f}, {high:.3f}]"
    return value


def markdown_table(results: list[Result]) -> str:
    """The rows as a Markdown table: few-shot cells read "median [25th, 75th percentile]"."""
    lines = ["| protocol | method | SRCC | PLCC | KRCC | images scored | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        cells = [r.protocol, r.method, *(_cell(r, m) for m in METRICS), str(r.n_test) if r.ran else "-", r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
