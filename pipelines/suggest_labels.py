"""`grepq suggest-labels`: feature rows -> the images to label first, as a CSV to fill in.

    read features -> standardise, project, pick spread-out rows across the
      zero-shot range (grepq_core/fitting/selection.py) -> write path, score (empty), zero_shot

The CSV lists the picks in picking order (the first k of them are a good
set of k on their own) with an empty score column; once filled in, it is a
label file for `grepq fit` / `grepq run --labels`. Plain Python over the
Parquet: a collection larger than --max-candidates is subsampled first.
"""
from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from grepq_core.errors import GrepqError

if TYPE_CHECKING:  # numpy, pandas, torch and the rest are imported where they are used: --help stays fast
    import numpy as np
    import pandas as pd

from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser"]

log = logging.getLogger(__name__)


def _zero_shot(frame: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """The zero-shot score the scorer would use (combined, else each pathway's in turn) and its column."""
    import numpy as np

    from grepq_core.model import registry

    for column in (registry.COMBINED, *registry.columns()["zero_shot"]):
        values = frame[column].to_numpy(dtype=np.float64)
        if np.isfinite(values).any():
            return values, column
    return None, None


def _excluded(uri: str | None, paths: list[str]) -> set[str]:
    """Feature paths that the label file `uri` already labels."""
    from grepq_core.fitting.labels import LabelFile

    if not uri:
        return set()
    matched, warnings = LabelFile(uri).match(paths)
    for w in warnings:
        log.warning("%s", w)
    return set(matched)


def _candidates(n_rows: int, keep: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Row numbers to consider: all, or the rows in `keep` plus a seeded sample of the others up to `cap`."""
    import numpy as np

    if n_rows <= cap:
        return np.arange(n_rows)
    others = np.setdiff1d(np.arange(n_rows), keep)
    sample = np.random.default_rng(seed).choice(others, size=max(cap - len(keep), 0), replace=False)
    return np.sort(np.concatenate([keep, sample]))


def run(argv=None):
    args = arg_parser().parse_args(argv)  # first, so that a flag error needs no heavy import
    import numpy as np
    import pandas as pd

    from grepq_core.files import write_file
    from grepq_core.fitting.features import feature_layout, feature_matrix
    from grepq_core.fitting.selection import suggest_labels
    from grepq_core.model import registry
    from transforms import current, store

    cols = registry.columns()
    columns = ["path", *cols["features"], *cols["identity"], registry.COMBINED, *cols["zero_shot"]]
    table = current.read_table(args.features, store.FEATURES_DIR, columns=columns, schema=store.features_schema())
    if table.num_rows == 0:
        raise GrepqError(f"no feature rows under {args.features}/{store.FEATURES_DIR}: run `grepq extract` "
                         "first, or pass the directory it wrote as `features`")
    paths = table.column("path").to_pylist()
    excluded = _excluded(args.labels, paths)
    labelled_rows = np.flatnonzero([p in excluded for p in paths])
    rows = _candidates(table.num_rows, labelled_rows, args.max_candidates, args.seed)
    frame = table.take(rows).to_pandas()
    records = frame.to_dict("records")
    features = feature_matrix(records, feature_layout(records)[0])
    zero_shot, column = _zero_shot(frame)
    labelled = np.flatnonzero(frame["path"].isin(excluded).to_numpy())
    picks = suggest_labels(features, zero_shot, args.n, seed=args.seed, labelled=labelled)
    out = pd.DataFrame({"path": frame["path"].to_numpy()[picks], "score": "",
                        "zero_shot": np.full(len(picks), np.nan) if zero_shot is None else zero_shot[picks]})
    write_file(args.output, out.to_csv(index=False, lineterminator="\n"))
    note = f"zero-shot column {column}" if column else "no zero-shot scores, features only"
    print(f"suggested {len(picks)} of {len(frame) - len(labelled)} unlabelled images ({note}; "
          f"{len(labelled)} already labelled) -> {args.output}: fill in the score column")


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq suggest-labels", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--features", required=True, help="an extract run's output directory")
    parser.add_argument("-n", type=int, default=50, help="how many images to suggest")
    parser.add_argument("--output", required=True, help="CSV to write (path or fsspec URL)")
    parser.add_argument("--labels", help="label CSV (path, score) of images already labelled: never "
                        "suggested, and new picks keep away from them")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first pick")
    parser.add_argument("--max-candidates", type=int, default=20_000,
                        help="consider a seeded sample of at most this many images")
    return parser
