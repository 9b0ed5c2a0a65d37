"""Fewer, larger shards: an output's committed shards merged into new ones, atomically, every row once.

A year of nightly runs leaves hundreds of small shards of each kind, and
every reader (score, fit, report, an incremental run) opens each one.
`compact` rewrites the committed shards of each kind into shards of up to
`ROWS_PER_SHARD` rows, as a run of its own, holding the output's lock:

1. the new shards are written under the compaction's run id (uncommitted,
   so unseen);
2. OUTPUT/runs/replaces-RUN.json names every shard and run it replaces;
3. its manifest commits it: from then on readers see its shards instead of
   the replaced ones (transforms/store.py), deleted or not;
4. the replaced shards, the replaced runs' manifests and the replaces file
   are deleted.

Killed before 3, nothing changed for readers and the next run removes the
new shards; killed during 4, the next run finishes the deleting. Either way
every current row is read exactly once; the rows that a newer run's rows of
their key retired (transforms/current.py), which no reader takes, are left
out. Rows keep their order (runs oldest first) and every column any shard
has (a shard without one gets nulls). The
compaction's manifest keeps the replaced runs' manifests as its `history`.
Beam-free: the rows stream through, a batch at a time.
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from transforms import current, runs, store

__all__ = ["ROWS_PER_SHARD", "KINDS", "compact", "shard_count"]

ROWS_PER_SHARD = 1_000_000
KINDS = current.KINDS  # the kinds of rows an extract run writes
_BATCH = 65_536


def shard_count(output: str) -> int:
    """How many committed shards of every kind the output holds."""
    return sum(len(store.shards(output, kind)[1]) for kind in KINDS)


def compact(output: str, run: str, rows_per_shard: int = ROWS_PER_SHARD) -> dict | None:
    """Merge the committed shards of `output` (whose lock the caller holds) into shards of up to
    `rows_per_shard` rows, as the run `run`; returns its manifest (None: nothing to merge)."""
    started = runs.now()
    shards = {kind: store.shards(output, kind) for kind in KINDS}
    if sum(len(paths) for _, paths in shards.values()) < 2:
        return None
    gone = current.retired(output)
    written = {kind: _rewrite(fs, paths, f"{store.output_path(output, kind)}/{run}-compact", rows_per_shard, run,
                              gone) for kind, (fs, paths) in shards.items() if paths}
    names = {kind: [p.rsplit("/", 1)[-1] for p in paths] for kind, (_, paths) in shards.items()}
    replaced_runs = sorted({runs.run_of(n) for kind_names in names.values() for n in kind_names} - {None})
    history = [h for m in runs.manifests(output) if m.get("run") in replaced_runs for h in m.get("history", [m])]
    runs.write_replaces(output, run, names, replaced_runs)
    manifest = {"compaction": True, "started": started, "finished": runs.now(), "replaced_runs": replaced_runs,
                "counts": written, "history": history}
    runs.commit(output, run, manifest)
    runs.clean_uncommitted(output, KINDS)
    return manifest


def _rewrite(fs, paths: list[str], prefix: str, rows_per_shard: int, run: str, gone: set) -> int:
    """Stream the current rows of `paths` (in order; `gone`: the retired (key id, run rank) pairs) into
    shards PREFIX-00000.parquet, ...; returns the rows written."""
    footers = []
    for path in paths:
        with fs.open(path, "rb") as f:
            footers.append(pq.read_metadata(f))
    schema = pa.unify_schemas([m.schema.to_arrow_schema() for m in footers], promote_options="permissive")
    schema = schema.with_metadata({b"grepq": json.dumps({"run": run, "compaction": True}).encode()})
    out = _Shards(fs, prefix, schema, rows_per_shard)
    with out:
        for path, footer in zip(paths, footers):
            with fs.open(path, "rb") as f:
                for batch in pq.ParquetFile(f, metadata=footer).iter_batches(batch_size=_BATCH):
                    out.write(_aligned(current.without_retired(pa.Table.from_batches([batch]), path, gone),
                                       schema))
    return out.rows


class _Shards:
    """Tables written in order into PREFIX-00000.parquet, PREFIX-00001.parquet, ... of `limit` rows each."""

    def __init__(self, fs, prefix: str, schema: pa.Schema, limit: int):
        self.fs, self.prefix, self.schema, self.limit = fs, prefix, schema, limit
        self.rows, self._index, self._in_shard, self._file, self._writer = 0, 0, 0, None, None

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                self._file = self.fs.open(f"{self.prefix}-{self._index:05d}.parquet", "wb")
                self._writer = pq.ParquetWriter(self._file, self.schema)
            part = table.slice(0, self.limit - self._in_shard)
            self._writer.write_table(part, row_group_size=_BATCH)
            self.rows, self._in_shard, table = self.rows + part.num_rows, self._in_shard + part.num_rows, \
                table.slice(part.num_rows)
            if self._in_shard == self.limit:
                self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer, self._file, self._in_shard, self._index = None, None, 0, self._index + 1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close()


def _aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order: the missing ones null."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)

