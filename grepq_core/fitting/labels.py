"""Label files: read, validate and join to feature rows.

A label file is a CSV with a `path` column (full path/URL as extracted, or
just the file name) and a `score` column (MOS, higher is better; pass
`lower_is_better` for DMOS). Labels only select feature rows that already
exist: a label path is never opened, so a label file cannot make grepq read
or write anywhere.

A label file is read once, as a stream with a byte cap (`MAX_LABEL_BYTES`),
against the feature rows' paths (`LabelFile.match`): what is kept grows
with the features and the labels that match them, not with the file, so a
label file of millions of rows costs seconds and no memory to speak of, a
pipe (``--labels <(cat labels.csv)``) works, and /dev/zero is refused at
the cap. Only the matched labels' scores travel on.

Problems are reported with counts. Rows that cannot be used (empty or
non-numeric scores, exact duplicates, labels that match no feature row) are
dropped with a warning; two different scores for one image, a file name
matching several images, or missing columns are errors. Errors name the
setting (`labels`).
"""
from __future__ import annotations

import csv
import io
import math
from typing import Iterable

from grepq_core.errors import GrepqError
from grepq_core.files import open_capped
from grepq_core.images.keys import file_name

__all__ = ["MAX_LABEL_BYTES", "LabelFile"]

# A label file of 3 million images is about 200 MB; this is far beyond any labelling effort.
MAX_LABEL_BYTES = 256 * 2**20
_EXAMPLES = 5  # line numbers a warning cites
_SEVERAL = object()  # a file name that several feature rows have


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


def _targets(feature_paths: Iterable[str]) -> tuple[set[str], dict[str, object]]:
    """The feature paths, and each file name's one path (`_SEVERAL` when more rows have it)."""
    paths: set[str] = set()
    by_name: dict[str, object] = {}
    for path in feature_paths:
        if path not in paths:
            paths.add(path)
            name = file_name(path)
            by_name[name] = path if name not in by_name else _SEVERAL
    return paths, by_name


class LabelFile:
    """A label file opened for one pass: its columns are checked on opening, its rows streamed by `match`."""

    def __init__(self, uri: str, lower_is_better: bool = False):
        self.uri = uri
        self._sign = -1.0 if lower_is_better else 1.0
        self._rows = _rows(uri)
        self._header = next(self._rows, (0, []))[1]
        self._path_at, self._score_at = _columns(self._header, uri)

    def match(self, feature_paths: Iterable[str]) -> tuple[dict[str, float], list[str]]:
        """{feature path: score} for every label that names exactly one feature row, and the warnings.

        A label's path matches a feature path exactly, or else by file name
        (a file's or a shard member's base name, `keys.file_name`) when
        exactly one feature row has that file name. Scores are kept
        exactly as written, spaces and line breaks in a path included.
        """
        paths, by_name = _targets(feature_paths)
        matched: dict[str, float] = {}
        counts = dict.fromkeys(("rows", "unusable", "repeats", "unmatched", "ambiguous", "conflicts"), 0)
        examples: dict[str, list] = {"unusable": [], "unmatched": [], "ambiguous": [], "conflicts": []}

        def note(kind: str, example) -> None:
            counts[kind] += 1
            if len(examples[kind]) < _EXAMPLES:
                examples[kind].append(example)

        for line, cells in self._rows:
            counts["rows"] += 1
            if len(cells) > len(self._header):
                raise GrepqError(f"`labels` {self.uri} is not a readable CSV: line {line} has {len(cells)} fields, "
                                 f"the header {len(self._header)}")
            key = cells[self._path_at] if self._path_at < len(cells) else ""
            score = _score(cells[self._score_at]) if self._score_at < len(cells) else None
            if not key.strip() or score is None:
                note("unusable", f"line {line}")
                continue
            target = key if key in paths else by_name.get(file_name(key))
            if target is None:
                note("unmatched", key)
            elif target is _SEVERAL:
                note("ambiguous", key)
            elif target in matched:
                counts["repeats"] += 1
                if matched[target] != score * self._sign:
                    note("conflicts", target)
            else:
                matched[target] = score * self._sign
        return matched, self._report(counts, examples)

    def _report(self, counts: dict, examples: dict) -> list[str]:
        """The warnings of one pass; raises for the problems that are errors."""
        if counts["ambiguous"]:
            raise GrepqError(f"{counts['ambiguous']} label file name(s) match several images, e.g. "
                             f"{examples['ambiguous'][0]!r}: use full paths in the label file")
        if counts["conflicts"]:
            raise GrepqError(f"{counts['conflicts']} image(s) have different scores in `labels` {self.uri}, e.g. "
                             f"{examples['conflicts'][0]!r}: keep one score per image")
        warnings = []
        if counts["unusable"]:
            warnings.append(f"{counts['unusable']} of {counts['rows']} label rows have no path or a missing/"
                            f"non-numeric score and are skipped ({', '.join(examples['unusable'])})")
        if counts["repeats"]:
            warnings.append(f"{counts['repeats']} duplicate label row(s) with equal scores were merged")
        if counts["unmatched"]:
            warnings.append(f"{counts['unmatched']} of {counts['rows']} label rows match no feature row and are "
                            f"ignored, e.g. {examples['unmatched'][0]!r}")
        return warnings
