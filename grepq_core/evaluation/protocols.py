"""The field's two evaluation protocols, as pure functions on scores and features.

docs/method.md, "Evaluation conventions of the field" and "Data-efficient
prediction":

- zero-shot: one blind score per image, correlated (SRCC, PLCC after a
  4-parameter logistic, KRCC) with the MOS over the whole dataset;
- few-shot, as the field runs it: for each of several seeded splits, the
  contents (reference photos; each image is its own content in authentic
  sets) are split into train and test first, `n_train` labelled images are
  then drawn at random from the training contents, and every image of the
  test contents is scored. Ridge regression (alpha by cross-validation on
  the training rows only) is fitted on the labelled images; the median over
  splits is reported, with the interquartile range as the spread.

PLCC is measured after the 4-parameter logistic by default, or after the
reference's cubic (``mapping="cubic"``) for tables beside the paper's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from grepq_core.errors import GrepqError
from grepq_core.fitting.ridge_fit import DEFAULT_ALPHAS, fit_ridge
from grepq_core.metrics import correlations

__all__ = ["METRICS", "Result", "content_split", "content_splits", "zero_shot", "few_shot", "few_shot_choice",
           "zero_shot_on_splits", "not_run",
           "markdown_table", "paper_table"]

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


def content_split(df: pd.DataFrame, n_train: int, seed: int,
                  test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (train, test) of one seeded split; no content (``group``) on both sides.

    The contents are shuffled and the last `test_fraction` of them (at least
    one) are the test contents: every one of their images is tested. The
    `n_train` labelled images are drawn at random from the images of the
    other contents. Both arrays are sorted.
    """
    groups = df["group"].astype(str).to_numpy()
    unique = np.unique(groups)
    if len(unique) < 2:
        raise GrepqError(f"a content split needs at least 2 contents (groups), got {len(unique)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(unique)
    n_test = min(max(1, round(test_fraction * len(unique))), len(unique) - 1)
    test_contents = order[len(unique) - n_test:]
    is_test = np.isin(groups, test_contents)
    pool = np.flatnonzero(~is_test)
    if not 0 < n_train <= len(pool):
        raise GrepqError(f"n_train must be between 1 and the {len(pool)} images of the training contents "
                         f"({len(unique) - n_test} of {len(unique)} contents), got {n_train}")
    return np.sort(rng.choice(pool, n_train, replace=False)), np.flatnonzero(is_test)


def content_splits(df: pd.DataFrame, n_train: int, splits: int, seed: int,
                   test_fraction: float = 0.2) -> list[tuple[np.ndarray, np.ndarray]]:
    """`content_split` for seeds seed .. seed + splits - 1."""
    return [content_split(df, n_train, seed + k, test_fraction) for k in range(splits)]


def zero_shot(method: str, scores, mos, note: str = "", mapping: str = "logistic") -> Result:
    """Correlations of one blind score with the MOS; images without a finite score are left out."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = int(np.isfinite(scores).sum())
    if finite < _MIN_PAIRS:
        return not_run("zero-shot", method, f"only {finite} images have a finite score")
    values = correlations(scores, mos, mapping)
    return Result("zero-shot", method, {m: values[m] for m in METRICS}, finite, note)


def few_shot(method: str, X: np.ndarray, mos, splits: list[tuple[np.ndarray, np.ndarray]], layout,
             identities: dict, alphas=DEFAULT_ALPHAS, folds: int = 5, note: str = "",
             mapping: str = "logistic") -> Result:
    """Ridge on each split's training rows, correlations on its test rows; median and IQR over splits.

    Rows whose features are not all finite are left out of training (their
    label is masked) and of testing (their prediction is NaN).
    """
    X = np.asarray(X, dtype=np.float64)
    mos = np.asarray(mos, dtype=np.float64)
    usable = np.isfinite(X).all(axis=1)
    trainable = np.where(usable, mos, np.nan)
    safe_X = np.where(usable[:, None], X, 0.0)

    def predict(train, test):
        model = fit_ridge(safe_X[train], trainable[train], layout, identities, alphas=alphas, folds=folds)
        return np.where(usable[test], model.predict(safe_X[test]), np.nan), model.alpha

    return _over_splits(method, predict, mos, splits, note, mapping)


def _over_splits(method: str, predict, mos: np.ndarray, splits, note: str, mapping: str) -> Result:
    """Median and IQR over splits of the correlations of `predict(train, test)` on each test set."""
    per_split = {m: [] for m in METRICS}
    sizes, alphas = [], []
    for train, test in splits:
        pred, alpha = predict(train, test)
        values = correlations(pred, mos[test], mapping)
        for m in METRICS:
            per_split[m].append(values[m])
        sizes.append(int(np.isfinite(pred).sum()))
        alphas.append(alpha)
    return Result("few-shot", method, values={m: float(np.median(v)) for m, v in per_split.items()},
                  n_test=int(np.median(sizes)), note=note,
                  iqr={m: [float(q) for q in np.percentile(v, [25, 75])] for m, v in per_split.items()},
                  per_split=per_split, alphas=[a for a in alphas if a is not None])


def few_shot_choice(method: str, rows: list[dict], mos, splits, mapping: str = "logistic", groups=None) -> Result:
    """`grepq fit`'s rule on each split: the best of zero-shot, features and both by CV on the labels.

    With `groups` (each row's content) the CV folds hold whole contents, as
    the split's test does.
    """
    from grepq_core.fitting.choice import fit_with_choice
    from grepq_core.fitting.features import feature_matrix

    mos = np.asarray(mos, dtype=np.float64)
    groups = None if groups is None else np.asarray(groups)
    kept = []

    def predict(train, test):
        model = fit_with_choice([rows[i] for i in train], mos[train],
                                groups=None if groups is None else groups[train])
        kept.append(model.choice["chosen"])
        return model.predict(feature_matrix([rows[i] for i in test], model.layout)), model.alpha

    result = _over_splits(method, predict, mos, splits, "", mapping)
    result.note = "kept per split: " + ", ".join(f"{n} x{kept.count(n)}" for n in dict.fromkeys(kept))
    return result


def zero_shot_on_splits(method: str, scores, mos, splits, mapping: str = "logistic") -> Result:
    """A blind score on exactly the few-shot splits' test images, to set beside the fitted ones."""
    scores, mos = np.asarray(scores, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    return _over_splits(method, lambda train, test: (scores[test], None), mos, splits,
                        "zero-shot, no labels, on the same test contents", mapping)


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


def paper_table(results: list[Result], dataset: str) -> str:
    """SRCC and PLCC per method in the paper's layout: one column pair per dataset (here one)."""
    lines = [f"| method | {dataset} SRCC | {dataset} PLCC |", "| --- | --- | --- |"]
    for r in results:
        if r.ran:
            lines.append(f"| {r.method} ({r.protocol}) | {r.values['srcc']:.3f} | {r.values['plcc']:.3f} |")
    return "\n".join(lines)
