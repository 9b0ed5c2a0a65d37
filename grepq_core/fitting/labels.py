"""Label files: read, validate and join to feature rows.

A label file is a CSV with a `path` column (full path/URL as extracted, or
just the file name) and a `score` column (MOS, higher is better; pass
`lower_is_better` for DMOS). Labels only select feature rows that already
exist: a label path is never opened, so a label file cannot make grepq read
or write anywhere.

A label file is read as a stream with a byte cap (`MAX_LABEL_BYTES`), so a
pipe (``--labels <(cat labels.csv)``) works and /dev/zero or a huge file is
refused without filling memory; `join_labels` then streams the feature
paths past the labels, so only the matched labels' scores travel on.

Problems are reported with counts. Rows that cannot be used (empty or
non-numeric scores, exact duplicates, paths not in the features) are dropped
with a warning; conflicting duplicates, a file name matching several
images, or missing columns are errors. Errors name the setting (`labels`).
"""
from __future__ import annotations

import csv
import io
import math
import posixpath
from dataclasses import dataclass, field
from typing import Iterable

from grepq_core.errors import GrepqError
from grepq_core.files import open_capped

__all__ = ["MAX_LABEL_BYTES", "LabelSet", "read_labels", "join_labels"]

# A label file of 3 million images is about 200 MB; this is far beyond any labelling effort.
MAX_LABEL_BYTES = 256 * 2**20
_EXAMPLES = 5  # line numbers a warning cites


@dataclass
class LabelSet:
    """Label scores by label key (path or file name), higher is better."""

    scores: dict[str, float]
    source: str
    warnings: list[str] = field(default_factory=list)


def _rows(uri: str):
    """(line number, cells) of every non-blank CSV row, each cell the exact string written.

    `newline=""` lets the CSV parser see a quoted \\r or \\n inside a path
    instead of the text layer rewriting it; `utf-8-sig` drops a spreadsheet's
    byte-order mark so the first column name still matches.
    """
    with open_capped(uri, MAX_LABEL_BYTES, f"`labels` {uri}") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), strict=True)
        try:
            for cells in reader:
                if cells:
                    yield reader.line_num, cells
        except (csv.Error, UnicodeDecodeError) as e:
            raise GrepqError(f"`labels` {uri} is not a readable CSV (line {reader.line_num}): {e}") from None


def _columns(header: list[str], uri: str) -> tuple[int, int]:
    """Where `path` and `score` are; column names are compared loosely (case, surrounding spaces)."""
    names = [c.strip().lower() for c in header]
    for wanted in ("path", "score"):
        if names.count(wanted) > 1:
            raise GrepqError(f"`labels` {uri} has {names.count(wanted)} columns named {wanted!r}; keep one")
    missing = sorted({"path", "score"} - set(names))
    if missing:
        raise GrepqError(f"`labels` {uri} lacks column(s) {missing}; it has {names} (expected: path, score)")
    return names.index("path"), names.index("score")


def _score(text: str) -> float | None:
    """A finite number, or None (empty, non-numeric, NaN, infinite)."""
    try:
        value = float(text) if "_" not in text else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_labels(uri: str, lower_is_better: bool = False) -> LabelSet:
    """Scores by path exactly as written in the CSV (a path's spaces, \\r or \\n are part of it)."""
    rows = _rows(uri)
    header = next(rows, (0, []))[1]
    path_at, score_at = _columns(header, uri)
    sign = -1.0 if lower_is_better else 1.0
    scores: dict[str, float] = {}
    unusable, examples, total, repeats, conflicts = 0, [], 0, 0, []
    for line, cells in rows:
        total += 1
        if len(cells) > len(header):
            raise GrepqError(f"`labels` {uri} is not a readable CSV: line {line} has {len(cells)} fields, "
                             f"the header {len(header)}")
        key = cells[path_at] if path_at < len(cells) else ""
        score = _score(cells[score_at]) if score_at < len(cells) else None
        if not key.strip() or score is None:
            unusable += 1
            examples += [f"line {line}"] if len(examples) < _EXAMPLES else []
            continue
        score *= sign
        if key in scores:
            repeats += 1
            if scores[key] != score:
                conflicts.append(key)
        scores[key] = score
    if conflicts:
        raise GrepqError(f"{len(conflicts)} path(s) appear in `labels` {uri} with different scores, "
                         f"e.g. {conflicts[0]!r}: keep one score per image")
    warnings = []
    if unusable:
        warnings.append(f"{unusable} of {total} label rows have no path or a missing/non-numeric score and are "
                        f"skipped ({', '.join(examples)})")
    if repeats:
        warnings.append(f"{repeats} duplicate label row(s) with equal scores were merged")
    return LabelSet(scores, uri, warnings)


def _name(path: str) -> str:
    return posixpath.basename(path.replace("\\", "/"))


def join_labels(labels: LabelSet, feature_paths: Iterable[str]) -> tuple[dict[str, float], list[str]]:
    """{feature path: score} for every label that names exactly one feature row.

    A label key matches a feature path exactly, or else by file name when
    exactly one feature row has that file name. `feature_paths` is read
    once, as a stream: what is kept grows with the labels, not the features.
    """
    warnings = list(labels.warnings)
    exact: set[str] = set()
    by_name: dict[str, list[str]] = {_name(key): [] for key in labels.scores}  # up to two feature paths each
    for path in feature_paths:
        if path in labels.scores:
            exact.add(path)
        found = by_name.get(_name(path))
        if found is not None and len(found) < 2 and path not in found:
            found.append(path)
    matched, unmatched, ambiguous = {}, [], []
    for key, score in labels.scores.items():
        if key in exact:
            target = key
        else:
            candidates = by_name[_name(key)]
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
