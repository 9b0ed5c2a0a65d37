"""What an incremental run reads: the inputs joined with what earlier runs stored, by a distributed join.

    stored rows (key columns only) -> per stored file: catalog rows cut into buckets by source, and the
                                      content hashes of rows made by the same models
    inputs (URI, stamp) -> bucket by source -+-> CoGroupByKey(bucket) -> per input: skip it, or read it
                                             |     (a Task with what is known of its images)
    images read whose content may have a stored row -> look the rows up -> copy them under the new key

An input is skipped whole, unread, when the stored rows of it carry its
current stamp, none of them was made by other models without a row by
these, and no dead letter of it is to be retried. An input that is new,
changed or stale is read; its images whose key and content already have a
row (or a dead letter) are not extracted again, and an image whose content
has a row made by these models under another key is not extracted either:
that row's features are copied under its key.

Nothing grows with the output in a worker: the stored rows travel as Arrow
batches cut into buckets of about `BUCKET_ROWS` rows (one element per bucket
per batch of a stored file, not one per row), and a worker holds one bucket
(Beam's in-process runner holds the whole grouping: benchmarks/README.md). A stored
row travels as 41 bytes: its input, its stamp and its key as 8-byte ids
(`keys.key_id`), the first 16 bytes of its content hash, and its kind. The one
summary every worker holds is `ContentFilter`, a Bloom filter of the stored
content hashes: 3 bytes per stored row (30 MB at ten million rows).
"""
from __future__ import annotations

import math
from collections import defaultdict

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grepq_core.images.keys import key_id
from grepq_core.images.paths import to_text
from transforms import counters, store
from transforms.read import Task, content_id

__all__ = ["BUCKET_ROWS", "ContentFilter", "ContentFilterOf", "Plan", "CopySeen", "buckets_for", "hash_pairs"]

BUCKET_ROWS = 20_000
_BATCH = 65_536  # stored rows read at a time
FEATURE, OTHER_MODELS, DEAD = 0, 1, 2  # what a catalog row is: a row by these models, by others, a dead letter


def buckets_for(stored_rows: int) -> int:
    return max(1, math.ceil(stored_rows / BUCKET_ROWS))


def _ids(values: pa.Array) -> pa.Array:
    """uint64 `key_id`s of a string column (null stays null)."""
    return pa.array([None if v is None else key_id(v) for v in values.to_pylist()], pa.uint64())


def _contents(values: pa.Array) -> pa.Array:
    return pa.array([None if v is None else content_id(v) for v in values.to_pylist()], pa.binary(16))


class ContentFilter:
    """A Bloom filter of content hashes (sha256, hex): `sha in f` is True for every hash added, and for a
    share `RATE` of the others; the bits come from the hash itself, which is uniform already."""

    RATE = 1e-5  # so that an image read again for want of its stored row (read.PrepareSeen) is rare

    def __init__(self, rows: int):
        self.bits = self.bits_for(rows)
        self.hashes = max(1, round(self.bits / max(rows, 1) * math.log(2)))
        self.array = np.zeros((self.bits + 7) // 8, dtype=np.uint8)

    @classmethod
    def bits_for(cls, rows: int) -> int:
        return max(64, math.ceil(-max(rows, 1) * math.log(cls.RATE) / math.log(2) ** 2))

    def _positions(self, pairs: np.ndarray) -> np.ndarray:
        """[N, hashes] bit positions of [N, 2] uint64 hash pairs (double hashing)."""
        steps = np.arange(self.hashes, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return (pairs[:, :1] + steps[None, :] * pairs[:, 1:2]) % np.uint64(self.bits)

    def add(self, pairs: np.ndarray) -> None:
        positions = self._positions(pairs).ravel()
        np.bitwise_or.at(self.array, (positions // 8).astype(np.int64), (1 << (positions % 8)).astype(np.uint8))

    def __contains__(self, sha256: str) -> bool:
        positions = self._positions(hash_pairs([sha256]))[0]
        return bool(np.all(self.array[(positions // 8).astype(np.int64)] & (1 << (positions % 8)).astype(np.uint8)))


def hash_pairs(shas) -> np.ndarray:
    """[N, 2] uint64: the first 16 bytes of each hex sha256."""
    raw = b"".join(bytes.fromhex(s[:32]) for s in shas)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def _pairs_of(contents: pa.FixedSizeBinaryArray) -> np.ndarray:
    """`hash_pairs` of content ids (`read.content_id`: the same 16 bytes), read from the column's buffer
    rather than parsed from hex again."""
    raw = np.frombuffer(contents.buffers()[1], dtype=">u8")[2 * contents.offset:2 * (contents.offset + len(contents))]
    return raw.astype(np.uint64).reshape(-1, 2)


class ContentFilterOf(beam.CombineFn):
    """Hash pairs of stored rows -> the `ContentFilter` of all of them.

    An accumulator keeps the pairs themselves (16 bytes a row) until they
    outweigh the filter's bits: a bundle of a few stored shards then sends
    its pairs to the merge, not a filter sized for every stored row (30 MB
    at ten million rows, once per bundle).
    """

    def __init__(self, rows: int):
        self._rows = rows

    def create_accumulator(self):
        return []  # hash-pair arrays, or a ContentFilter once they outweigh one

    def add_input(self, accumulator, pairs):
        return self._merged([accumulator, [pairs]])

    def merge_accumulators(self, accumulators):
        return self._merged(accumulators)

    def extract_output(self, accumulator):
        return self._merged([accumulator], whole=True)

    def _merged(self, accumulators, whole: bool = False):
        filters = [a for a in accumulators if isinstance(a, ContentFilter)]
        pairs = [p for a in accumulators if not isinstance(a, ContentFilter) for p in a]
        if not filters and not whole and 8 * sum(p.nbytes for p in pairs) <= ContentFilter.bits_for(self._rows):
            return pairs
        merged = filters[0] if filters else ContentFilter(self._rows)
        for other in filters[1:]:
            merged.array |= other.array
        for p in pairs:
            merged.add(p)
        return merged


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


class _Stored(beam.DoFn):
    """One stored shard (features or dead letters) -> (bucket, catalog batch) elements, and the hash pairs
    of its rows made by these models (tagged ``filter``)."""

    def __init__(self, identities: dict, buckets: int):
        self._identities, self._buckets = identities, buckets

    def process(self, shard: tuple[str, str]):
        kind, path = shard
        fs, inner = fsspec.core.url_to_fs(path)
        with fs.open(inner, "rb") as f:
            source = pq.ParquetFile(f)
            names = set(source.schema_arrow.names)
            wanted = ["path", "sha256", *store.PROVENANCE,
                      *(["stage", "reason"] if kind == "dead" else list(self._identities))]
            for batch in source.iter_batches(batch_size=_BATCH, columns=[c for c in wanted if c in names]):
                table = pa.Table.from_batches([batch])
                catalog = self._catalog(table, kind, names)
                if kind == "features":
                    same = catalog["sha"].filter(pc.equal(catalog["kind"], FEATURE)).combine_chunks()
                    if len(same):
                        yield beam.pvalue.TaggedOutput("filter", _pairs_of(same))
                yield from self._buckets_of(catalog)

    def _column(self, table: pa.Table, name: str, names: set) -> pa.Array:
        return table[name] if name in names else pa.nulls(table.num_rows, pa.string())

    def _catalog(self, table: pa.Table, kind: str, names: set) -> pa.Table:
        """source, stamp, path (ids), sha (content id), kind, and a dead letter's stage and reason: what the
        join needs of each stored row."""
        source = pc.coalesce(self._column(table, "source", names), table["path"])  # rows stored before provenance
        columns = {"source": _ids(source), "stamp": _ids(self._column(table, "source_stamp", names)),
                   "path": _ids(table["path"]), "sha": _contents(table["sha256"])}
        if kind == "dead":
            columns["kind"] = pa.array(np.full(table.num_rows, DEAD, dtype=np.int8))
            columns["stage"] = self._column(table, "stage", names)
            columns["reason"] = self._column(table, "reason", names)
        else:
            same = np.ones(table.num_rows, dtype=bool)
            for column, value in self._identities.items():
                values = self._column(table, column, names)
                same &= np.asarray((pc.is_null(values) if value is None else
                                    pc.fill_null(pc.equal(values, value), False)).to_numpy(zero_copy_only=False))
            columns["kind"] = pa.array(np.where(same, FEATURE, OTHER_MODELS).astype(np.int8))
        return pa.table(columns)

    def _buckets_of(self, catalog: pa.Table):
        buckets = (catalog["source"].to_numpy() % np.uint64(self._buckets)).astype(np.int64)
        for bucket in np.unique(buckets):
            yield int(bucket), _ipc(catalog.take(np.flatnonzero(buckets == bucket)))


class Plan(beam.PTransform):
    """(input URI, stamp) -> the Tasks to read; skipped inputs count as skipped images (module docstring).

    `shards`: the committed stored shards as ("features" | "dead", path); `rows`: how many rows they hold.
    """

    def __init__(self, shards: list[tuple[str, str]], rows: int, identities: dict, verify: bool,
                 retry_dead: bool):
        super().__init__()
        self._shards, self._buckets = shards, buckets_for(rows)
        self._identities, self._verify, self._retry = identities, verify, retry_dead

    def expand(self, inputs):
        buckets = self._buckets
        stored = (inputs.pipeline | "StoredShards" >> beam.Create(self._shards)
                  | "SpreadShards" >> beam.Reshuffle()
                  | "ReadStored" >> beam.ParDo(_Stored(self._identities, buckets)).with_outputs("filter", main="catalog"))
        keyed = inputs | "ByBucket" >> beam.Map(_by_bucket, buckets)
        tasks = ({"inputs": keyed, "stored": stored.catalog} | "Join" >> beam.CoGroupByKey()
                 | "Decide" >> beam.FlatMap(_decide, self._verify, self._retry))
        return tasks, stored.filter


def _by_bucket(item: tuple, buckets: int) -> tuple[int, tuple]:
    """(bucket, (source id, (URI, stamp))) of one input."""
    source = key_id(to_text(item[0]))
    return source % buckets, (source, item)


def _decide(bucket_group: tuple, verify: bool, retry_dead: bool):
    """The Tasks of one bucket's inputs, given the bucket's stored rows."""
    _, group = bucket_group
    inputs = group["inputs"]
    if not inputs:
        return
    wanted = pa.array(sorted({source for source, _ in inputs}), pa.uint64())
    earlier = defaultdict(list)
    for data in group["stored"]:
        table = _table(data)
        for row in table.filter(pc.is_in(table["source"], value_set=wanted)).to_pylist():
            earlier[row["source"]].append(row)
    for source, (uri, stamp) in inputs:
        yield from _task(uri, stamp, earlier.get(source, []), verify, retry_dead)


def _task(uri, stamp: str | None, rows: list[dict], verify: bool, retry_dead: bool):
    """Skip the input (counting its images as skipped), or the Task that reads it."""
    stamp_id = None if stamp is None else key_id(stamp)
    current = [] if stamp is None else [r for r in rows if r["stamp"] == stamp_id]
    done = {r["path"] for r in current if r["kind"] == FEATURE}
    stale = any(r["kind"] == OTHER_MODELS and r["path"] not in done for r in current)
    retried = retry_dead and any(r["kind"] == DEAD for r in current)
    if current and not (verify or stale or retried):
        counters.ended(counters.SKIPPED, len({r["path"] for r in rows if r["kind"] != OTHER_MODELS}))
        return
    known = {r["path"]: r["sha"] for r in rows if r["kind"] == FEATURE}
    dead = {} if retry_dead else {r["path"]: (r["sha"], r["stage"], r["reason"]) for r in rows if r["kind"] == DEAD}
    yield Task(uri, stamp, known, dead)


class CopySeen(beam.PTransform):
    """Images whose content may have a stored row -> (copied rows, images to extract after all).

    The stored feature shards are scanned for the few hashes in question
    (their hash column first, then only the rows that match); a hash with a
    row made by these models gives that row under the new key and input.
    """

    def __init__(self, feature_shards: list[str], identities: dict):
        super().__init__()
        self._shards, self._identities = feature_shards, identities

    def expand(self, seen):
        wanted = beam.pvalue.AsList(seen | "Hashes" >> beam.Map(lambda s: s.sha256))
        found = (seen.pipeline | "FeatureShards" >> beam.Create(self._shards)
                 | "Lookup" >> beam.FlatMap(_rows_with, wanted, self._identities)
                 | "OnePerHash" >> beam.CombinePerKey(lambda rows: next(iter(rows))))
        joined = ({"seen": seen | "BySha" >> beam.Map(lambda s: (s.sha256, s)), "stored": found}
                  | "JoinSeen" >> beam.CoGroupByKey())
        result = joined | "Copy" >> beam.FlatMap(_copies).with_outputs("unseen", main="copies")
        return result.copies, result.unseen


def _rows_with(shard: str, wanted: list[str], identities: dict):
    """(sha256, row) of the rows of one stored feature shard whose content is `wanted`, made by these models."""
    if not wanted:
        return
    fs, inner = fsspec.core.url_to_fs(shard)
    with fs.open(inner, "rb") as f:
        source = pq.ParquetFile(f)
        shas = source.read(columns=["sha256"])["sha256"]
        hits = np.flatnonzero(pc.is_in(shas, value_set=pa.array(sorted(set(wanted)))).to_numpy(zero_copy_only=False))
        if not hits.size:
            return
        rows = _read_rows(source, hits)
    for row in rows:
        if all(row.get(k) == v for k, v in identities.items()):
            yield row["sha256"], row


def _read_rows(source: pq.ParquetFile, rows: np.ndarray) -> list[dict]:
    """Rows `rows` (ascending numbers) of a Parquet file, reading only the row groups that hold them: a
    compacted shard holds millions of rows, of which a copy wants a few."""
    sizes = np.array([source.metadata.row_group(i).num_rows for i in range(source.num_row_groups)])
    ends = np.cumsum(sizes)
    group_of = np.searchsorted(ends, rows, side="right")
    groups = np.unique(group_of)
    first_in_read = dict(zip(groups.tolist(), np.concatenate([[0], np.cumsum(sizes[groups])[:-1]]).tolist()))
    local = [first_in_read[g] + r - (ends[g] - sizes[g]) for g, r in zip(group_of.tolist(), rows.tolist())]
    return source.read_row_groups(groups.tolist()).take(local).to_pylist()


def _copies(joined: tuple):
    sha, group = joined
    stored = group["stored"]
    for item in group["seen"]:
        if stored:
            counters.ended(counters.COPIED)
            yield {**stored[0], "path": item.key, "sha256": sha, "source": item.source, "source_stamp": item.stamp}
        else:
            yield beam.pvalue.TaggedOutput("unseen", item)

