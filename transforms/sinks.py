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

from typing import Protocol

import apache_beam as beam
import fsspec
import pyarrow as pa

from grepq_core.errors import GrepqError
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
            return _ReadShards(uris, columns)
        with_path = None if columns is None else list(dict.fromkeys([*columns, "path"]))
        return _ReadCurrent(self.output, _ReadShards(uris, with_path, with_shard=True))

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        read = current.read_table if self.kind in current.KINDS else store.read_table
        return read(self.output, self.kind, columns=columns, schema=self.schema)

    def write_rows(self, rows: list[dict], run: str) -> None:
        if rows:
            store.write_shard(self.output, self.kind, rows, self.schema, run)


class _ReadShards(beam.PTransform):
    """PBegin -> the rows of the Parquet shards `uris` as dicts (`columns`, or all); with `with_shard`,
    (shard URI, row) pairs.

    Beam's reader takes a shard that is gone by the time it comes to it for
    one with no rows, so once every row is read, each shard must still be
    there: a compaction that replaced one after the job listed it fails the
    job (a replaced shard is never written again under its name).
    """

    def __init__(self, uris: list[str], columns: list[str] | None = None, with_shard: bool = False):
        super().__init__()
        self._uris, self._columns, self._with_shard = uris, columns, with_shard

    def expand(self, pbegin):
        rows = (pbegin | "Shards" >> beam.Create(self._uris)
                | "ReadShards" >> beam.io.ReadAllFromParquet(columns=self._columns, with_filename=self._with_shard))
        read = beam.pvalue.AsSingleton(rows | "CountRead" >> beam.combiners.Count.Globally())
        _ = pbegin | "ShardsAgain" >> beam.Create(self._uris) | "StillThere" >> beam.Map(_still_there, read)
        return rows


def _still_there(uri: str, _read: int) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise GrepqError(f"{uri} was replaced while this job read it (a compaction ran meanwhile): run it again")


class _ReadCurrent(beam.PTransform):
    """PBegin -> the current rows (transforms/current.py) of what `shards` reads."""

    def __init__(self, output: str, shards: _ReadShards):
        super().__init__()
        self._output, self._shards = output, shards  # `shards` reads (shard, row) pairs with the path

    def expand(self, pbegin):
        gone = beam.pvalue.AsSingleton(pbegin | "Retired" >> _Retired(self._output))
        return (pbegin | "Read" >> self._shards
                | "Current" >> beam.Filter(lambda item, g: current.is_current(item[1]["path"], item[0], g), gone)
                | "Rows" >> beam.Map(lambda item: item[1]))


class _Retired(beam.PTransform):
    """PBegin -> one element: the retired (key id, run rank) pairs of the output's committed shards, found
    on the workers (`current.retired` finds them in this process)."""

    def __init__(self, output: str):
        super().__init__()
        self._shards = [uri for kind in current.KINDS for uri in store.shard_uris(output, kind)]

    def expand(self, pbegin):
        return (pbegin | "KeyShards" >> beam.Create(self._shards) | "SpreadKeyShards" >> beam.Reshuffle()
                | "Keys" >> beam.FlatMap(_key_batches) | "Gather" >> beam.CombineGlobally(_Gather()))


def _key_batches(uri: str):
    fs, path = fsspec.core.url_to_fs(uri)
    yield from current.key_batches(fs, path)


class _Gather(beam.CombineFn):
    """(key ids, ranks) batches -> the retired pairs; holds 16 bytes per stored row while it gathers."""

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, batch):
        accumulator.append(batch)
        return accumulator

    def merge_accumulators(self, accumulators):
        return [batch for accumulator in accumulators for batch in accumulator]

    def extract_output(self, accumulator):
        return current.retired_of(accumulator)
