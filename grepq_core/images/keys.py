"""One key per image, naming where it lives: a loose file, a member of a tar shard, or a row of a Parquet file.

Every output (feature rows, dead letters, scores, keep / reject lists,
labels, `--incremental`) names an image by its key:

| where the image lives | key | example |
| --- | --- | --- |
| a loose file | its absolute local path, or its full URI | ``/data/a.jpg``, ``gs://b/a.jpg`` |
| a member of a WebDataset tar shard | ``tar://MEMBER::SHARD``, the member's fsspec URL | ``tar://000012.jpg::gs://b/shards/00003.tar`` |
| a row of a Parquet file | ``parquet://COLUMN/ROW::FILE``, ROW counted from 0 in the file | ``parquet://image/17::gs://b/train-00000.parquet`` |

Paths, members and files are written as escaped text (grepq_core/images/
paths.py), and a member's or column's ``:`` as ``\\x3a``, so a key is one line
and splits back unambiguously. A key stays valid while its container is
unchanged; `place` gives the container and the place in it, and
`grepq_core.images.read.read_bytes` reads any key. `fsspec.open` opens a
member key as it is.
"""
from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

from grepq_core.images.paths import to_local, to_text

__all__ = ["SHARD_SUFFIXES", "PARQUET_SUFFIXES", "Place", "input_kind", "member_key", "row_key", "place", "file_name",
           "key_id"]

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet",)
_TAR, _PARQUET = "tar://", "parquet://"


@dataclass(frozen=True)
class Place:
    """Where a keyed image lives inside a container."""

    kind: str  # "tar" or "parquet"
    container: str  # the shard or Parquet file, as escaped text (to_local gives the name back)
    member: str  # tar: the member's name; parquet: the image column
    row: int | None = None  # parquet: the row, from 0


def input_kind(uri: str | bytes) -> str:
    """What an input is, by its name: ``tar`` (a shard), ``parquet`` (a Parquet file) or ``image`` (a loose
    file, or the key of one image in a container)."""
    name = to_text(uri).lower()
    if place(name) is not None:
        return "image"
    if name.endswith(SHARD_SUFFIXES):
        return "tar"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "image"


def member_key(shard: str | bytes, member: str) -> str:
    """The key of `member` (its name in the tar) of the shard `shard` (a path or URI)."""
    return f"{_TAR}{_escaped(member)}::{to_text(shard)}"


def row_key(file: str | bytes, column: str, row: int) -> str:
    """The key of the image in `column` of row `row` of the Parquet file `file`."""
    return f"{_PARQUET}{_escaped(column)}/{row}::{to_text(file)}"


def place(key: str) -> Place | None:
    """Where the image of `key` lives; None for a loose file."""
    for prefix, kind in ((_TAR, "tar"), (_PARQUET, "parquet")):
        if key.startswith(prefix):
            inner, sep, container = key[len(prefix):].partition("::")
            if not sep:
                return None
            if kind == "tar":
                return Place("tar", container, _text(to_local(inner)))
            column, _, row = inner.rpartition("/")
            return Place("parquet", container, _text(to_local(column)), int(row))
    return None


def file_name(key: str) -> str:
    """The name a label may give an image by instead of its whole key: a file's or a member's base name
    (a Parquet row has no name of its own: its key)."""
    where = place(key)
    if where is None:
        return posixpath.basename(key.replace("\\", "/"))
    return posixpath.basename(where.member) if where.kind == "tar" else key


def _escaped(name: str) -> str:
    """A name inside a key: escaped text, with ``:`` written ``\\x3a`` (``::`` ends the name)."""
    return to_text(name).replace(":", "\\x3a")


def _text(name: str | bytes) -> str:
    return name if isinstance(name, str) else name.decode("utf-8", "surrogateescape")


def key_id(text: str) -> int:
    """A key (or a stamp) as 8 bytes of its BLAKE2b digest, as an incremental run's join and the current-row
    filter carry it: the stored rows' keys cost 8 bytes each however long they are (two keys share an id by
    a 2^-64 chance)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")
