"""Parquet output through Beam's file sinks.

Beam writes each shard to a temporary directory and renames it into place
only when the whole write succeeds, so a run killed part-way leaves no
partial Parquet where a later stage would read it.
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.dataset as ds

__all__ = ["WriteRows", "output_path", "shard_glob", "read_table"]


def output_path(output: str, kind: str) -> str:
    """Where rows of one kind (features, dead_letters, scores) go under a run's output."""
    return f"{output.rstrip('/')}/{kind}"


def shard_glob(output: str, kind: str) -> str:
    return f"{output_path(output, kind)}/*.parquet"


class WriteRows(beam.PTransform):
    """Dicts in `schema` -> Parquet shards under OUTPUT/KIND/."""

    def __init__(self, output: str, kind: str, schema: pa.Schema):
        super().__init__()
        self._prefix = f"{output_path(output, kind)}/part"
        self._schema = schema

    def expand(self, rows):
        return rows | beam.io.WriteToParquet(self._prefix, self._schema, file_name_suffix=".parquet")


def read_table(output: str, kind: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """All shards of one kind, read outside Beam (small outputs, tests, reports)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(output_path(output, kind))
    files = sorted(p for p in fs.glob(f"{root}/*.parquet"))
    return ds.dataset(files, format="parquet", filesystem=fs, schema=schema).to_table(columns=columns)
