"""Where a run's rows live and what they look like: layout, schemas, identities, atomic shards.

Beam-free, so the pipelines, the evaluation cache, the report and the tests
all read and write outputs the same way:

    OUTPUT/features/RUN-*.parquet      one row per scored image
    OUTPUT/dead_letters/RUN-*.parquet  one row per image that could not be scored
    OUTPUT/scores/RUN-*.parquet        `grepq score`
    OUTPUT/baselines/*.parquet         `grepq evaluate`'s cache of classical metrics

The feature schema follows the pathway registry (grepq_core/model/registry.py);
the identity columns in each row say which encoders, and which pristine
model and distance settings, produced it, and rows are only ever compared or
mixed when those agree (`same_models`).
"""
from __future__ import annotations

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from grepq_core.errors import Failure
from grepq_core.files import is_local_path
from grepq_core.model import registry
from transforms import runs

__all__ = ["FEATURES_DIR", "DEAD_LETTERS_DIR", "SCORES_DIR", "BASELINES_DIR", "PROVENANCE", "DEAD_LETTERS",
           "BASELINES", "features_schema", "scores_schema", "identity_columns", "same_models", "model_sets", "output_path",
           "shards", "shard_uris", "footers", "has_shards", "remove_empty", "read_table",
           "write_shard"]

FEATURES_DIR = "features"
DEAD_LETTERS_DIR = "dead_letters"
SCORES_DIR = "scores"
BASELINES_DIR = "baselines"

# Where a row's image came from: the input (a file, a shard, a Parquet file) and its stamp when read
# (grepq_core/images/stamps.py); an incremental run compares them with the listing's.
PROVENANCE = ("source", "source_stamp")

DEAD_LETTERS = pa.schema([(name, pa.string()) for name in (*Failure.FIELDS, *PROVENANCE)])  # sha256 null: not read

BASELINES = pa.schema([
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("niqe", pa.float64()),
    ("brisque", pa.float64()),
    ("nss", pa.list_(pa.float64())),
])


def features_schema() -> pa.Schema:
    """The feature rows' schema for the registered pathways (built-in: ll, hl)."""
    cols = registry.columns()
    return pa.schema(
        [("path", pa.string()), ("sha256", pa.string()), *((c, pa.string()) for c in PROVENANCE),
         ("width", pa.int32()), ("height", pa.int32()), ("decoder", pa.string()), ("profile", pa.string())]
        + [(c, pa.list_(pa.float32())) for c in cols["features"]]
        + [(c, pa.float64()) for c in zero_shot_columns()]
        + [(c, pa.string()) for c in cols["identity"]])


def scores_schema() -> pa.Schema:
    """`grepq score`'s rows: the score, how it was made, the keep flag, and the zero-shot scores beside it."""
    return pa.schema(
        [("path", pa.string()), ("sha256", pa.string()), ("score", pa.float64()), ("calibrated", pa.float64()),
         ("scorer", pa.string()), ("keep", pa.bool_()),
         ("duplicate_of", pa.string())]  # the first (in path order) image of the same content, for the others
        + [(c, pa.float64()) for c in zero_shot_columns()])


def zero_shot_columns() -> list[str]:
    """Every zero-shot score column: each pathway's, the combined one, and the calibrated 0-100 ones."""
    cols = registry.columns()
    return [*cols["zero_shot"], registry.COMBINED, *cols["calibrated"]]


def identity_columns() -> list[str]:
    """The columns that say how a row was made; rows equal in all of them are comparable."""
    return ["profile", *registry.columns()["identity"]]


def same_models(row: dict, identities: dict) -> bool:
    """Whether `row` was made by exactly the models `identities` names."""
    return all(row.get(k) == v for k, v in identities.items())


def model_sets(table: pa.Table) -> list[dict]:
    """The distinct sets of identities among a feature table's rows."""
    columns = [c for c in identity_columns() if c in table.column_names]
    return table.select(columns).group_by(columns).aggregate([]).to_pylist()


def output_path(output: str, kind: str) -> str:
    """Where rows of one kind (features, dead_letters, scores, baselines) go under an output."""
    return f"{output.rstrip('/')}/{kind}"


def shards(output: str, kind: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The committed shards of one kind: those of runs with a manifest (transforms/runs.py), and older ones,
    less those a committed compaction replaced."""
    fs, root = fsspec.core.url_to_fs(output_path(output, kind))
    found = sorted(fs.glob(f"{root}/*.parquet"))
    if not any(runs.run_of(f) for f in found):
        return fs, found
    committed = runs.committed_runs(output)
    hidden = runs.replaced(output, committed).get(kind, set())
    return fs, [f for f in found if runs.run_of(f) in (None, *committed) and f.rsplit("/", 1)[-1] not in hidden]


def shard_uris(output: str, kind: str) -> list[str]:
    """The committed shards of one kind as Beam's file systems name them (a local one by its path)."""
    fs, files = shards(output, kind)
    return files if is_local_path(output) else [fs.unstrip_protocol(f) for f in files]


def footers(output: str, kind: str) -> list[tuple[str, list[str], int]]:
    """(shard URI, its column names, its rows) for every committed shard of one kind; reads only footers."""
    fs, files = shards(output, kind)
    out = []
    for f in files:
        with fs.open(f, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
            out.append((fs.unstrip_protocol(f), meta.schema.to_arrow_schema().names, meta.num_rows))
    return out


def remove_empty(output: str, kind: str, prefix: str) -> None:
    """Delete the shards named PREFIX* that hold no rows: a Beam file sink writes one even for no rows, and
    every shard costs each later reader an open. Where the kind has no committed shard yet, the first stays,
    so that the output still says which columns its rows have."""
    fs, root = fsspec.core.url_to_fs(output_path(output, kind))
    fs.invalidate_cache(root)  # the pipeline wrote these shards behind fsspec's listing cache
    keep_one = not shards(output, kind)[1]
    for f in sorted(fs.glob(f"{root}/{prefix}*.parquet")):
        with fs.open(f, "rb") as handle:
            empty = pq.ParquetFile(handle).metadata.num_rows == 0
        if empty and not keep_one:
            fs.rm(f)
        keep_one = False


def has_shards(output: str, kind: str) -> bool:
    """Whether a completed run already wrote rows of this kind under `output`."""
    return bool(shards(output, kind)[1])


def read_table(output: str, kind: str, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """All shards of one kind as one table (small outputs, reports, caches, tests)."""
    fs, files = shards(output, kind)
    return ds.dataset(files, format="parquet", filesystem=fs, schema=schema).to_table(columns=columns)


def write_shard(output: str, kind: str, rows: list[dict], schema: pa.Schema, name: str) -> str:
    """Write `rows` as OUTPUT/KIND/NAME.parquet, renamed into place once complete; returns its path."""
    fs, folder = fsspec.core.url_to_fs(output_path(output, kind))
    fs.makedirs(folder, exist_ok=True)
    final = f"{folder}/{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), final + ".tmp", filesystem=fs)
    fs.mv(final + ".tmp", final)
    return final
