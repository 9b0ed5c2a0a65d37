"""A filtered collection: the kept (or the rejected) samples of tar shards and rows of Parquet files,
written in the form they came in.

    score rows + dead letters -> decision per image
      tar:     per sample (kept when every image in it is) -> per source shard -> numbered in order
               -> output shards of `shard_size` samples -> each written from its source shards, streamed
      parquet: per row -> per source file -> one output file each
      -> the manifest, written last

An output shard holds every member of each of its samples as the source
had it (member names are ``KEY.EXT``, as webdataset writes and reads them)
and ``KEY.grepq.json``: the sample's decision, its lowest score and each
image's score or dead letter. Output shards are numbered ``00000.tar``,
``00001.tar``, ... across the whole collection, in the order of the source
shards' URIs and their samples' keys (a sample whose key is the one before
it, from another shard, comes after the next sample instead); a Parquet
output keeps its source's columns and adds ``grepq_score``,
``grepq_calibrated``, ``grepq_keep`` and ``grepq_scorer``. Each file is
written whole or not at all, and ``_grepq_filter.json`` is written last: an
output without it is incomplete.
Samples whose names are unsafe (absolute, or with ``..``) are never
written, whatever their decision.
"""
from __future__ import annotations

import itertools
import json

import apache_beam as beam
import pyarrow as pa

from grepq_core.files import strict_json, write_file
from grepq_core.images import parquet, shards
from grepq_core.images.keys import place
from grepq_core.images.paths import to_local

__all__ = ["MANIFEST", "Decide", "WriteFiltered", "is_loose", "write_manifest", "summary"]

MANIFEST = "_grepq_filter.json"  # "_" first: Parquet readers of the folder (pyarrow, pandas, Spark) skip it

# What a Parquet output adds to its source's columns.
GREPQ_COLUMNS = pa.schema([("grepq_score", pa.float64()), ("grepq_calibrated", pa.float64()),
                           ("grepq_keep", pa.bool_()), ("grepq_scorer", pa.string())])


def is_loose(row: dict) -> bool:
    """Whether a score row or dead letter names no sample: a loose file (a score row of one is listed in
    keep.txt / reject.txt), or a whole shard or Parquet file that could not be read."""
    return place(row["path"]) is None


def _image_decision(row: dict) -> tuple[str, dict] | None:
    """(key, what is known of the image) of a score row or a dead letter; None for a loose file."""
    if is_loose(row):
        return None
    if "reason" in row:
        return row["path"], {"keep": False, "dead_letter": row["reason"], "detail": row.get("detail")}
    return row["path"], {k: row.get(k) for k in ("keep", "score", "calibrated", "scorer")}


class Decide(beam.PTransform):
    """Score rows and dead letters -> ("tar", shard, sample, record) and ("parquet", file, row, record)."""

    def expand(self, rows):
        return (rows
                | "Images" >> beam.Map(_image_decision)
                | "InContainers" >> beam.Filter(lambda d: d is not None)
                | "ByItem" >> beam.Map(_item)
                | "Group" >> beam.GroupByKey()
                | "Record" >> beam.MapTuple(_record))


def _item(decision: tuple[str, dict]):
    key, known = decision
    where = place(key)
    if where.kind == "tar":
        return ("tar", where.container, shards.sample_key(where.member)), (where.member, known)
    return ("parquet", where.container, where.row), (where.member, known)


def _record(item: tuple, images) -> tuple:
    """A sample's (or row's) record: kept when every image in it is; its lowest score; each image's.

    A member with a score row and a dead letter too (a repeated member name, whose first copy was scored
    and is the one written; a shard read again after it was mended) is known by its score.
    """
    images = dict(sorted(images, key=lambda image: "dead_letter" not in image[1]))
    scores = [i["score"] for i in images.values() if i.get("score") is not None]
    record = {"key": item[2], "keep": all(i.get("keep") for i in images.values()),
              "score": min(scores) if scores else None,
              "calibrated": min((i["calibrated"] for i in images.values() if i.get("calibrated") is not None),
                                default=None),
              "scorer": next((i["scorer"] for i in images.values() if i.get("scorer")), None),
              "images": images}
    return item[0], item[1], item[2], record


class WriteFiltered(beam.PTransform):
    """Records -> output shards and files under `output` holding the samples whose `keep` is `kept`.

    Returns the manifest's entries, one per file written.
    """

    def __init__(self, output: str, kept: bool, shard_size: int):
        super().__init__()
        self._output, self._kept, self._size = output.rstrip("/"), kept, shard_size

    def expand(self, records):
        chosen = records | "Chosen" >> beam.Filter(lambda r, k: r[3]["keep"] == k, self._kept)
        tar = chosen | "Tar" >> beam.Filter(lambda r: r[0] == "tar")
        by_shard = (tar | "BySource" >> beam.Map(lambda r: (r[1], (r[2], r[3]))) | "PerShard" >> beam.GroupByKey()
                    | "Sorted" >> beam.MapTuple(lambda shard, samples: (shard, sorted(samples, key=_by_key))))
        offsets = beam.pvalue.AsSingleton(
            by_shard | "Counts" >> beam.MapTuple(lambda shard, samples: (shard, len(samples)))
            | "AllCounts" >> beam.combiners.ToList() | "Offsets" >> beam.Map(_offsets))
        written_tar = (by_shard
                       | "ToOutputShards" >> beam.FlatMap(_pieces, offsets, self._size)
                       | "PerOutputShard" >> beam.GroupByKey()
                       | "WriteShards" >> beam.Map(_write_shard, self._output))
        rows = chosen | "Parquet" >> beam.Filter(lambda r: r[0] == "parquet")
        by_file = (rows | "ByFile" >> beam.Map(lambda r: (r[1], (r[2], r[3]))) | "PerFile" >> beam.GroupByKey())
        numbers = beam.pvalue.AsSingleton(
            by_file | "Files" >> beam.Keys() | "AllFiles" >> beam.combiners.ToList()
            | "Numbers" >> beam.Map(lambda files: {f: i for i, f in enumerate(sorted(files))}))
        written_parquet = by_file | "WriteFiles" >> beam.Map(_write_file, numbers, self._output)
        return (written_tar, written_parquet) | "Written" >> beam.Flatten()


def _by_key(sample: tuple) -> str:
    return sample[0]


def _offsets(counts: list[tuple[str, int]]) -> dict[str, int]:
    """Each source shard's first sample's number in the whole output: shards in URI order."""
    out, total = {}, 0
    for shard, count in sorted(counts):
        out[shard], total = total, total + count
    return out


def _pieces(source: tuple[str, list], offsets: dict, size: int):
    """(output shard number, (source shard, its samples there)) for each output shard the source feeds."""
    shard, samples = source
    first = offsets[shard]
    for number, group in itertools.groupby(enumerate(samples), key=lambda item: (first + item[0]) // size):
        yield number, (shard, [sample for _, sample in group])


def _write_shard(output_shard: tuple[int, list], output: str) -> dict:
    """One output shard from its pieces of source shards (each streamed once), in their order."""
    number, pieces = output_shard
    dest = f"{output}/{number:05d}.tar"
    records = {(shard, key): record for shard, samples in pieces for key, record in samples}
    skipped = []

    def samples():
        for shard, wanted in sorted(pieces, key=lambda piece: piece[0]):
            safe = {key for key, _ in wanted if not shards.is_unsafe(key)}
            skipped.extend(f"{shard}: {key}: unsafe name" for key, _ in wanted if key not in safe)
            for key, members in shards.wanted_samples(to_local(shard), safe):
                if isinstance(members, str):
                    skipped.append(f"{shard}: {key}: {members}")
                    continue
                yield shard, key, {**members, "grepq.json": json.dumps(strict_json(records[(shard, key)])).encode()}

    held = []
    count, size = shards.write_tar(dest, _apart(samples(), held))
    skipped.extend(f"{shard}: {key}: same key as every sample left to write beside it" for shard, key, _ in held)
    return {"file": dest, "samples": count, "bytes": size, "sources": sorted({s for s, _ in pieces}),
            "skipped": skipped}


def _apart(items, held: list):
    """(key, members) of (shard, key, members) items, in order except that an item with the key of the one
    before it waits for the next other key: keys are unique only within a shard, and webdataset's readers
    take consecutive members with one key as one sample. What cannot be kept apart is left in `held`."""
    last = None
    for item in items:
        if item[1] == last:
            held.append(item)
            continue
        yield item[1:]
        last = item[1]
        while held and held[0][1] != last:
            last = held[0][1]
            yield held.pop(0)[1:]


def _write_file(source_rows: tuple[str, list], numbers: dict, output: str) -> dict:
    """One Parquet output: the chosen rows of one source file with the grepq columns."""
    source, rows = source_rows
    dest = f"{output}/{numbers[source]:05d}.parquet"
    extra = {row: {"grepq_score": r["score"], "grepq_calibrated": r["calibrated"], "grepq_keep": r["keep"],
                   "grepq_scorer": r["scorer"]} for row, r in rows}
    count = parquet.write_rows(to_local(source), extra, dest, GREPQ_COLUMNS)
    return {"file": dest, "samples": count, "sources": [source], "skipped": []}


def write_manifest(output: str, entries: list[dict], meta: dict) -> str:
    """`output`/_grepq_filter.json, written last: which files the output holds and what they came from."""
    path = f"{output.rstrip('/')}/{MANIFEST}"
    entries = sorted(entries, key=lambda e: e["file"])
    body = {**meta, "files": entries, "samples": sum(e["samples"] for e in entries)}
    return write_file(path, json.dumps(body, indent=1, sort_keys=True))


def summary(output: str) -> str:
    """'N samples in K files -> OUTPUT' from a filtered output's manifest."""
    import fsspec

    with fsspec.open(f"{output.rstrip('/')}/{MANIFEST}", "r") as f:
        body = json.load(f)
    skipped = sum(len(e["skipped"]) for e in body["files"])
    note = f" ({skipped} samples not written: see {MANIFEST})" if skipped else ""
    if body["loose_files"]:
        note += f"; {body['loose_files']} loose files are listed in keep.txt and reject.txt instead"
    if body["unplaced_dead_letters"]:
        note += (f"; {body['unplaced_dead_letters']} dead letters name a loose file or a whole shard, no sample: "
                 "see the features' dead_letters")
    return f"{body['samples']} {'kept' if body['kept'] else 'rejected'} samples in {len(body['files'])} files " \
           f"-> {output}{note}"
