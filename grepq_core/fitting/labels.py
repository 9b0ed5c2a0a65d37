"""Label files: read, validate and join to feature rows.

A label file is a CSV with a `path` column (full path/URL as extracted, or
just the file name) and a `score` column (MOS, higher is better; pass
`lower_is_better` for DMOS). Labels only select feature rows that already
exist: a label path is never opened, so a label file cannot make grepq read
or write anywhere.

Problems are reported with counts. Rows that cannot be used (empty or
non-numeric scores, exact duplicates, paths not in the features) are dropped
with a warning; conflicting duplicates, a file name matching several
images, or missing columns are errors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import fsspec
import numpy as np
import pandas as pd

from grepq_core.errors import GrepqError
from grepq_core.images.keys import file_name

__all__ = ["LabelSet", "read_labels", "join_labels"]


@dataclass
class LabelSet:
    """Label scores by label key (path or file name), higher is better."""

    scores: dict[str, float]
    source: str
    warnings: list[str] = field(default_factory=list)


def _read_frame(uri: str) -> pd.DataFrame:
    """Every cell as the exact string written: no type guessing, no newline translation.

    `newline=""` lets the CSV parser see a quoted \\r or \\n inside a path
    instead of the text layer rewriting it; `utf-8-sig` drops a spreadsheet's
    byte-order mark so the first column name still matches.
    """
    try:
        with fsspec.open(uri, "r", encoding="utf-8-sig", newline="") as f:
            return pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise GrepqError(f"label file {uri} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise GrepqError(f"label file {uri} is not a readable CSV: {e}") from None


def _match_columns(frame: pd.DataFrame, uri: str) -> pd.DataFrame:
    """Column names compared loosely (case, surrounding spaces); the values are left alone."""
    names = [str(c).strip().lower() for c in frame.columns]
    for wanted in ("path", "score"):
        if names.count(wanted) > 1:
            raise GrepqError(f"label file {uri} has {names.count(wanted)} columns named {wanted!r}; keep one")
    frame.columns = names
    missing = {"path", "score"} - set(names)
    if missing:
        raise GrepqError(f"label file {uri} lacks column(s) {sorted(missing)}; it has {names} "
                         "(expected: path, score)")
    return frame


def read_labels(uri: str, lower_is_better: bool = False) -> LabelSet:
    """Scores by path exactly as written in the CSV (a path's spaces, \\r or \\n are part of it)."""
    frame = _match_columns(_read_frame(uri), uri)
    warnings = []
    frame["path"] = frame["path"].fillna("")
    no_path = frame["path"].str.strip() == ""
    numeric = pd.to_numeric(frame["score"], errors="coerce")
    unusable = no_path | ~np.isfinite(numeric.to_numpy(dtype=float))
    if unusable.any():
        examples = ", ".join(f"line {i + 2}" for i in np.flatnonzero(unusable.to_numpy())[:5])
        warnings.append(f"{int(unusable.sum())} of {len(frame)} label rows have no path or a missing/"
                        f"non-numeric score and are skipped ({examples})")
    frame = frame.assign(score=numeric)[~unusable]
    if lower_is_better:
        frame["score"] = -frame["score"]
    scores: dict[str, float] = {}
    conflicts, repeats = [], 0
    for key, score in zip(frame["path"], frame["score"]):
        if key in scores:
            if scores[key] != score:
                conflicts.append(key)
            repeats += 1
        scores[key] = float(score)
    if conflicts:
        raise GrepqError(f"{len(conflicts)} path(s) appear in {uri} with different scores, "
                         f"e.g. {conflicts[0]!r}: keep one score per image")
    if repeats:
        warnings.append(f"{repeats} duplicate label row(s) with equal scores were merged")
    return LabelSet(scores, uri, warnings)


def join_labels(labels: LabelSet, feature_paths: list[str]) -> tuple[dict[str, float], list[str]]:
    """{feature path: score} for every label that names exactly one feature row.

    A label key matches a feature path exactly, or else by file name (a
    file's or a shard member's base name, `keys.file_name`) when exactly one
    feature row has that file name.
    """
    warnings = list(labels.warnings)
    exact = set(feature_paths)
    by_name: dict[str, list[str]] = {}
    for p in feature_paths:
        by_name.setdefault(file_name(p), []).append(p)
    matched, unmatched, ambiguous = {}, [], []
    for key, score in labels.scores.items():
        if key in exact:
            target = key
        else:
            candidates = by_name.get(file_name(key), [])
            if len(candidates) > 1:
                ambiguous.append(key)
                continue
            if not candidates:
                unmatched.append(key)
                continue
            target = candidates[0]
        if target in matched and matched[target] != score:
            raise GrepqError(f"labels {key!r} and another name the same image {target} with different scores")
        matched[target] = score
    if ambiguous:
        raise GrepqError(f"{len(ambiguous)} label file name(s) match several images, e.g. {ambiguous[0]!r}: "
                         "use full paths in the label file")
    if unmatched:
        warnings.append(f"{len(unmatched)} of {len(labels.scores)} labels match no feature row and are "
                        f"ignored, e.g. {unmatched[0]!r}")
    return matched, warnings
