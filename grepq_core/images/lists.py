"""Lists of inputs, for a nightly job handed the new objects instead of a glob.

A list is a text file of URIs, one per line, or a CSV or Parquet file with
a `path` or `url` column, or with `bucket` and `name` columns as a Cloud
Storage inventory report has them (each entry ``gs://BUCKET/NAME``). Blank
lines and lines starting with ``#`` are skipped; a relative local path is
taken from the current folder, as a glob is. Entries are streamed, never
held whole, so a list of millions of URIs costs no memory; an entry that
names nothing becomes a dead letter when it is read, not a failed job.
"""
from __future__ import annotations

import csv
import io
from typing import Iterator

import fsspec
import pyarrow.parquet as pq

from grepq_core.errors import GrepqError
from grepq_core.images.paths import absolute

__all__ = ["COLUMNS", "check", "entries"]

COLUMNS = ("path", "url")  # the columns that name an input, in order of preference; or bucket + name


def _form(uri: str) -> str:
    lower = uri.lower()
    return "csv" if lower.endswith(".csv") else "parquet" if lower.endswith(".parquet") else "text"


def _columns(names: list[str], uri: str) -> tuple[str, ...]:
    """The column(s) of a CSV or Parquet list that name the inputs."""
    lowered = {n.strip().lower(): n for n in names}
    for wanted in COLUMNS:
        if wanted in lowered:
            return (lowered[wanted],)
    if "bucket" in lowered and "name" in lowered:
        return lowered["bucket"], lowered["name"]
    raise GrepqError(f"input list {uri} has no column {' or '.join(COLUMNS)} (nor bucket and name); "
                     f"its columns are {', '.join(names) or 'none'}")


def check(uri: str) -> str:
    """How the list `uri` names its inputs ('lines', or its column); a `GrepqError` if it cannot be read."""
    try:
        with fsspec.open(uri, "rb") as f:
            form = _form(uri)
            if form == "text":
                return "lines"
            names = (pq.ParquetFile(f).schema_arrow.names if form == "parquet"
                     else next(csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline="")), []))
    except FileNotFoundError:
        raise GrepqError(f"input list {uri} does not exist") from None
    except (OSError, ValueError, csv.Error) as e:
        raise GrepqError(f"input list {uri} cannot be read: {e}") from None
    return "/".join(_columns(names, uri))


def entries(uri: str) -> Iterator[str]:
    """The inputs the list `uri` names, one at a time."""
    with fsspec.open(uri, "rb") as f:
        form = _form(uri)
        if form == "parquet":
            source = pq.ParquetFile(f)
            columns = _columns(source.schema_arrow.names, uri)
            for batch in source.iter_batches(columns=list(columns)):
                yield from _joined(zip(*(batch.column(c).to_pylist() for c in columns)))
        elif form == "csv":
            reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
            columns = _columns(reader.fieldnames or [], uri)
            yield from _joined(tuple(row.get(c) for c in columns) for row in reader)
        else:
            for line in io.TextIOWrapper(f, encoding="utf-8-sig"):
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    yield absolute(entry)


def _joined(rows) -> Iterator[str]:
    """One entry per row: its path or URL, or gs://BUCKET/NAME; rows without one are skipped."""
    for row in rows:
        if any(v is None or not str(v).strip() for v in row):
            continue
        values = [str(v).strip() for v in row]
        entry = values[0] if len(values) == 1 else f"gs://{values[0]}/{values[1]}"
        if not entry.startswith("#"):
            yield absolute(entry)

