"""Training-set storage: the K versions of each pristine photo and their FSIM matrix.

docs/method.md, "Training the LL encoder": every unlabelled pristine photo gives K
versions, the reference plus synthetic distortions [4 types x 2 levels +
reference = 9], and A, the K x K FSIM matrix between them. `make_record`
builds one photo's record; `grepq make-training-set` runs it over a
collection and writes, under a PREFIX (local path or any fsspec/Beam URL)::

    PREFIX/records/<stem>-<hash>.npz  one per photo: versions uint8 [K, S, S, 3],
                                      fsim float64 [K, K], names str [K], source, format
    PREFIX/index-*.jsonl              one line per record: source, record, names, size
    PREFIX/skipped-*.jsonl            one line per photo that could not be used

The reference code ships its training set as folders of ready-made images
and computes FSIM on every read; choices made here instead:

- each photo is resized (shorter side to `size`, antialiased bicubic) and
  centre-cropped to a square `size` x `size` (`views.clip_view`) before it
  is distorted, so all records share one shape and batches stack;
- a photo's distortion types are drawn without replacement from the bank by
  a generator seeded with (seed, source path); each type is applied at
  every level in `levels` with one seed, so its levels are graded versions
  of the same corruption (distortions.py);
- the .npz is zlib-compressed and holds no pickled objects
  (``allow_pickle=False`` reads it).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass

import fsspec
import numpy as np
import torch

from grepq_core.errors import GrepqError
from grepq_core.model import views as V
from grepq_core.model.npz import read_tagged_npz
from grepq_core.training.configs import TrainingSetSpec
from grepq_core.training.distortions import apply_distortion
from grepq_core.training.fsim import fsim_matrix

__all__ = [
    "FORMAT",
    "INDEX",
    "RECORDS_DIR",
    "SKIPPED",
    "TrainingRecord",
    "decode_record",
    "derived_seed",
    "encode_record",
    "index_row",
    "list_images",
    "load_record",
    "make_record",
    "plan_versions",
    "read_index",
    "record_filename",
]

FORMAT = "grepq-training/1"
RECORDS_DIR = "records"
INDEX = "index"
SKIPPED = "skipped"


def derived_seed(*parts) -> int:
    """A 63-bit seed from any values (seed, path, step, ...): stable across runs and machines."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class TrainingRecord:
    """One photo's versions ``[K, S, S, 3]`` uint8 (reference first), FSIM ``[K, K]`` and version names."""

    source: str
    versions: np.ndarray
    fsim: np.ndarray
    names: list[str]


def plan_versions(source: str, spec: TrainingSetSpec) -> list[tuple[str, int]]:
    """(distortion, level) of each distorted version of `source`, grouped by type."""
    rng = np.random.default_rng(derived_seed(spec.seed, source))
    kinds = rng.choice(len(spec.distortions), size=spec.per_image, replace=False)
    return [(spec.distortions[k], level) for k in kinds for level in spec.levels]


def make_record(img: np.ndarray, source: str, spec: TrainingSetSpec,
                device: str | torch.device = "cpu") -> TrainingRecord:
    """The reference (square crop of `img`, HxWx3 uint8), its distorted versions and their FSIM matrix
    (computed on the torch `device`)."""
    square = V.clip_view(V.to_tensor(img), spec.size)
    reference = np.ascontiguousarray(square.permute(1, 2, 0).numpy())
    versions, names = [reference], ["reference"]
    ladders = dict(spec.ladders)
    for name, level in plan_versions(source, spec):
        versions.append(apply_distortion(reference, name, level, seed=derived_seed(spec.seed, source, name),
                                         ladder=ladders.get(name)))
        names.append(f"{name}:{level}")
    stack = np.stack(versions)
    return TrainingRecord(source, stack, fsim_matrix(stack, device=device), names)


def record_filename(source: str) -> str:
    """A readable, collision-free file name for `source`'s record: ``<stem>-<12 hex>.npz``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0])[:40]
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{stem}-{digest}.npz"


def encode_record(record: TrainingRecord) -> bytes:
    """The record as compressed .npz bytes without pickled objects."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, format=np.array(FORMAT), source=np.array(record.source),
                        versions=record.versions, fsim=record.fsim, names=np.array(record.names))
    return buffer.getvalue()


def decode_record(data: bytes, uri: str = "<bytes>") -> TrainingRecord:
    """Read what `encode_record` wrote; anything else is a `GrepqError` naming `uri`."""
    fields = read_tagged_npz(data, uri, FORMAT, ("source", "versions", "fsim", "names"), "grepq training record")
    versions, fsim = fields["versions"], fields["fsim"]
    k = len(versions)
    if versions.ndim != 4 or versions.dtype != np.uint8 or fsim.shape != (k, k) or len(fields["names"]) != k:
        raise GrepqError(f"{uri}: versions {versions.shape} {versions.dtype}, fsim {fsim.shape} "
                         f"and {len(fields['names'])} names do not agree")
    return TrainingRecord(str(fields["source"]), versions, fsim, [str(n) for n in fields["names"]])


def index_row(record: TrainingRecord, filename: str) -> dict:
    """The index line of a record stored as RECORDS_DIR/`filename`."""
    return {"source": record.source, "record": f"{RECORDS_DIR}/{filename}", "names": record.names,
            "size": list(record.versions.shape[1:3])}


def read_index(prefix: str) -> list[dict]:
    """Every index row of a training set, sorted by source (Beam writes them in any order)."""
    fs, root = fsspec.core.url_to_fs(prefix.rstrip("/"))
    rows = []
    for path in sorted(fs.glob(f"{root}/{INDEX}-*.jsonl")):
        with fs.open(path, "rt", encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    if not rows:
        raise GrepqError(f"no training records under {prefix} (expected {INDEX}-*.jsonl from "
                         "`grepq make-training-set --output PREFIX`)")
    return sorted(rows, key=lambda row: row["source"])


def load_record(prefix: str, row: dict) -> TrainingRecord:
    """The record an index row points to."""
    uri = f"{prefix.rstrip('/')}/{row['record']}"
    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read()
    except OSError as e:
        raise GrepqError(f"cannot read training record {uri}: {e}") from e
    return decode_record(data, uri)


def list_images(patterns: list[str]) -> list[str]:
    """Sorted, distinct files matching any of the globs (local paths or fsspec URLs); none is an error."""
    found = set()
    for pattern in patterns:
        fs, path = fsspec.core.url_to_fs(pattern)
        protocol = pattern.split("://", 1)[0] + "://" if "://" in pattern else ""
        found.update(protocol + p for p in fs.glob(path) if fs.isfile(p))
    if not found:
        raise GrepqError(f"no files match `input` {' '.join(patterns)}")
    return sorted(found)
