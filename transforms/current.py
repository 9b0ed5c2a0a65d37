"""Of each key, its current rows: those of the newest run that wrote a row of it, feature row or dead letter.

An incremental run adds rows beside the earlier ones, so a key can hold
rows of several runs: an image changed in place gets a second feature row,
a file mended (or retried) a feature row beside its old dead letter, a file
that broke a dead letter beside its old feature row, and every retry of a
dead letter another one. Each reader that decides (score, fit, filter,
report, suggest-labels) takes the current rows only; compaction keeps only
those. Rows of one run never retire each other: a repeated member name of a
shard keeps its first copy's feature row and the repeat's dead letter.

A row's run is its shard's (``RUN-*.parquet``; a compacted shard's is the
compaction's, and its rows are current already). Keys with rows of more
than one run are few, so finding them costs one pass over the keys, 16
bytes a row (`key_id` and the run's rank), and what the readers filter
with is the set of (key, run) pairs retired.
"""
from __future__ import annotations

import calendar
import functools
import time
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from grepq_core.images.keys import key_id
from transforms import runs, store

__all__ = ["KINDS", "rank", "retired_pairs", "retired", "without_retired", "read_table", "column_values", "is_current",
           "key_batches", "retired_of"]

KINDS = (store.FEATURES_DIR, store.DEAD_LETTERS_DIR)  # the kinds of rows an extract run writes
_BATCH = 65_536


@functools.lru_cache(maxsize=65_536)
def rank(shard: str) -> int:
    """A shard's run as a number that sorts as the runs do (their UTC second, then their random suffix);
    0 for a shard older than run ids."""
    run = runs.run_of(shard)
    if run is None:
        return 0
    seconds = calendar.timegm(time.strptime(run[4:20], "%Y%m%dT%H%M%SZ"))
    return seconds << 24 | int(run[21:], 16)


def retired_pairs(ids: np.ndarray, ranks: np.ndarray) -> set[tuple[int, int]]:
    """(key id, run rank) of every row whose key has a row of a newer run."""
    if not len(ids):
        return set()
    order = np.lexsort((ranks, ids))  # by key, then run: each key's newest run last
    ids, ranks = ids[order], ranks[order]
    first = np.r_[True, ids[1:] != ids[:-1]]
    last = np.r_[np.flatnonzero(first)[1:] - 1, len(ids) - 1]
    newest = ranks[last][np.cumsum(first) - 1]
    old = ranks < newest
    return set(zip(ids[old].tolist(), ranks[old].tolist()))


def key_batches(fs, path: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(key ids, run ranks) of one shard's rows, a batch at a time."""
    shard_rank = rank(path)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=_BATCH, columns=["path"]):
            ids = np.fromiter((key_id(p) for p in batch.column(0).to_pylist()), np.uint64, batch.num_rows)
            yield ids, np.full(batch.num_rows, shard_rank, np.int64)


def retired_of(batches) -> set[tuple[int, int]]:
    batches = list(batches)
    if not batches:
        return set()
    return retired_pairs(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


_FOUND: dict[tuple, set] = {}  # committed shards -> their retired pairs: a command's readers find them once


def retired(output: str) -> set[tuple[int, int]]:
    """The (key id, run rank) pairs of `output` that newer rows retired, read here (in this process).

    Remembered by the committed shards' names: a shard is never written again under its name.
    """
    listed = [(fs, path) for kind in KINDS for fs, paths in [store.shards(output, kind)] for path in paths]
    names = tuple(path for _, path in listed)
    if names not in _FOUND:
        _FOUND.clear()
        _FOUND[names] = retired_of(batch for fs, path in listed for batch in key_batches(fs, path))
    return _FOUND[names]


def is_current(path: str, shard: str, gone: set) -> bool:
    """Whether the row of key `path` read from `shard` is current, given the retired pairs `gone`."""
    return not gone or (key_id(path), rank(shard)) not in gone


def without_retired(table: pa.Table, shard: str, gone: set) -> pa.Table:
    """The rows of `table`, read from `shard`, that are current."""
    if not gone:
        return table
    return table.filter(pa.array([is_current(p, shard, gone) for p in table["path"].to_pylist()], pa.bool_()))


def read_table(output: str, kind: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """`store.read_table` less the retired rows."""
    gone = retired(output)
    if not gone:
        return store.read_table(output, kind, columns=columns, schema=schema)
    fs, files = store.shards(output, kind)
    tables = []
    for path in files:
        table = ds.dataset([path], format="parquet", filesystem=fs, schema=schema).to_table(
            columns=None if columns is None else list(dict.fromkeys([*columns, "path"])))
        table = without_retired(table, path, gone)
        tables.append(table if columns is None else table.select(columns))
    return pa.concat_tables(tables, promote_options="permissive")


def column_values(output: str, kind: str, column: str) -> Iterator:
    """Every current row's value of one column, streamed a batch at a time (a large run's paths, say)."""
    gone = retired(output)
    fs, files = store.shards(output, kind)
    for path in files:
        with fs.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=_BATCH, columns=sorted({"path", column})):
                paths, values = batch.column("path").to_pylist(), batch.column(column).to_pylist()
                yield from (v for p, v in zip(paths, values) if is_current(p, path, gone))
