"""Sinks: where a kind of rows goes, behind one small protocol.

A sink writes a PCollection of row dicts from a pipeline, reads them back
for the next stage (in a pipeline or in-process), and writes a few rows
in-process (the evaluation cache). Parquet is the one implementation; a
BigQuery or WebDataset sink would be one more class with these methods.

Parquet shards go through Beam's file sinks, which write each shard to a
temporary directory and rename it into place only when the whole write
succeeds, so a run killed part-way leaves no partial Parquet where a later
stage would read it.
"""
from __future__ import annotations

import contextlib
from typing import Protocol

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from transforms import current, store

__all__ = ["Sink", "ParquetSink"]


class Sink(Protocol):
    def exists(self) -> bool:
        """Whether earlier runs wrote rows here."""

    def write(self, run: str) -> beam.PTransform:
        """Rows (dicts in the sink's schema) -> stored, named after `run`."""

    def read(self, columns: list[str] | None = None) -> beam.PTransform:
        """PBegin -> the stored rows as dicts."""

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        """The stored rows, in-process."""

    def write_rows(self, rows: list[dict], run: str) -> None:
        """A few rows, in-process, all or nothing."""


class ParquetSink:
    """Rows of one kind as Parquet shards OUTPUT/KIND/RUN-*.parquet.

    Each run names its shards after itself, so an incremental run adds files
    beside the earlier ones instead of replacing them.
    """

    def __init__(self, output: str, kind: str, schema: pa.Schema):
        self.output, self.kind, self.schema = output, kind, schema

    def exists(self) -> bool:
        return store.has_shards(self.output, self.kind)

    def footers(self) -> list[tuple[str, list[str], int]]:
        return store.footers(self.output, self.kind)

    def write(self, run: str) -> beam.PTransform:
        # Snappy, as pyarrow writes by default: keys and stamps shrink by about two thirds for every later reader.
        return beam.io.WriteToParquet(f"{store.output_path(self.output, self.kind)}/{run}", self.schema,
                                      codec="snappy", file_name_suffix=".parquet")

    def read(self, columns: list[str] | None = None) -> beam.PTransform:
        """The committed shards only (`store.shards`), not those a running extract or a killed compaction
        left beside them; of feature rows and dead letters, the current ones (transforms/current.py)."""
        uris = store.shard_uris(self.output, self.kind)
        if self.kind not in current.KINDS:
            return ReadShards(uris, columns)
        with_path = None if columns is None else list(dict.fromkeys([*columns, "path"]))
        return _ReadCurrent(self.output, ReadShards(uris, with_path, with_shard=True))

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        read = current.read_table if self.kind in current.KINDS else store.read_table
        return read(self.output, self.kind, columns=columns, schema=self.schema)

    def write_rows(self, rows: list[dict], run: str) -> None:
        if rows:
            store.write_shard(self.output, self.kind, rows, self.schema, run)


class ReadShards(beam.PTransform):
    """PBegin -> the rows of the Parquet shards `uris` as dicts (`columns`, or all), a row group at a time
    spread over the workers; with `with_shard`, (shard URI, row) pairs.

    A shard that is gone when it is read (a compaction replaced it after the
    job listed it) fails the job: it is never read as no rows.
    """

    def __init__(self, uris: list[str], columns: list[str] | None = None, with_shard: bool = False):
        super().__init__()
        self._uris, self._columns, self._with_shard = uris, columns, with_shard

    def expand(self, pbegin):
        return (pbegin | "Shards" >> beam.Create(self._uris) | "RowGroups" >> beam.FlatMap(_row_groups)
                | "Spread" >> beam.Reshuffle() | "ReadRowGroups" >> beam.FlatMap(_rows, self._columns, self._with_shard))


def _row_groups(uri: str):
    with _opened(uri) as shard:
        yield from ((uri, group) for group in range(shard.num_row_groups))


def _rows(row_group: tuple[str, int], columns: list[str] | None, with_shard: bool):
    uri, group = row_group
    with _opened(uri) as shard:
        rows = shard.read_row_group(group, columns=columns).to_pylist()
    yield from (((uri, row) for row in rows) if with_shard else rows)


@contextlib.contextmanager
def _opened(uri: str):
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as f:
        yield pq.ParquetFile(f)


class _ReadCurrent(beam.PTransform):
    """PBegin -> the current rows (transforms/current.py) of what `shards` reads."""

    def __init__(self, output: str, shards: ReadShards):
        super().__init__()
        self._output, self._shards = output, shards  # `shards` reads (shard, row) pairs with the path

    def expand(self, pbegin):
        gone = beam.pvalue.AsSingleton(pbegin | "Retired" >> current.Retired(self._output))
        return (pbegin | "Read" >> self._shards
                | "Current" >> beam.Filter(lambda item, g: current.is_current(item[1]["path"], current.rank(item[0]),
                                                                              g), gone)
                | "Rows" >> beam.Map(lambda item: item[1]))
