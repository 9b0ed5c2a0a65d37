"""Parquet output through Beam's file sinks.

Beam writes each shard to a temporary directory and renames it into place
only when the whole write succeeds, so a run killed part-way leaves no
partial Parquet where a later stage would read it.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
import pyarrow as pa
import pyarrow.dataset as ds

__all__ = ["WriteRows", "output_path", "shard_glob", "has_shards", "read_table"]


def output_path(output: str, kind: str) -> str:
    """Where rows of one kind (features, dead_letters, scores) go under a run's output."""
    return f"{output.rstrip('/')}/{kind}"


def shard_glob(output: str, kind: str) -> str:
    return f"{output_path(output, kind)}/*.parquet"


def has_shards(output: str, kind: str) -> bool:
    """Whether a completed run already wrote rows of this kind under `output`."""
    return any(m.metadata_list for m in FileSystems.match([shard_glob(output, kind)]))


class WriteRows(beam.PTransform):
    """Dicts in `schema` -> Parquet shards OUTPUT/KIND/RUN-*.parquet.

    Each run names its shards after `run`, so an incremental run adds files
    beside the earlier ones instead of replacing them.
    """

    def __init__(self, output: str, kind: str, schema: pa.Schema, run: str = "part"):
        super().__init__()
        self._prefix = f"{output_path(output, kind)}/{run}"
        self._schema = schema

    def expand(self, rows):
        return rows | beam.io.WriteToParquet(self._prefix, self._schema, file_name_suffix=".parquet")


def read_table(output: str, kind: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """All shards of one kind, read outside Beam (small outputs, tests, reports)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output_path(output, kind))
    files = sorted(p for p in fs.glob(f"{root}/*.parquet"))
    return ds.dataset(files, format="parquet", filesystem=fs, schema=schema).to_table(columns=columns)
