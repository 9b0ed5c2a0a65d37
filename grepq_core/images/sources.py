"""Every image of an input, and the bytes of any key, whatever holds them: a file, a tar shard, a Parquet file.

An input is a loose image file, a WebDataset tar shard (grepq_core/images/
shards.py) or a Parquet file with an image column (grepq_core/images/
parquet.py), told apart by its name (`keys.input_kind`). `images` lists the
images of one input as (key, bytes or `ImageError`), in order; `read` reads
the image of one key (grepq_core/images/keys.py) back, which the report,
the Python API and `grepq evaluate` use to reopen what a run scored.
"""
from __future__ import annotations

import bisect
import itertools
from typing import Iterator

from grepq_core.errors import ImageError
from grepq_core.images import parquet, shards
from grepq_core.images.keys import input_kind, place
from grepq_core.images.paths import to_local, to_text
from grepq_core.images.read import DEFAULT_MAX_BYTES, open_input, read_bytes

__all__ = ["images", "read", "read_input"]


def images(uri: str | bytes, image_column: str | None = None,
           max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[str, bytes | ImageError]]:
    """(key, bytes or the `ImageError` why not) of every image of one input, in order.

    `uri` is an input as a user names it: a path (raw, not escaped), a URI,
    or the key of one image in a container.
    """
    kind = input_kind(uri)
    if kind == "tar":
        yield from shards.images(uri, max_bytes)
    elif kind == "parquet":
        try:
            column, sizes = parquet.row_groups(uri, image_column)
        except ImageError as e:
            yield to_text(uri), e
            return
        first = 0
        for group, rows in enumerate(sizes):
            yield from parquet.images(uri, column, group, first, max_bytes)
            first += rows
    else:
        key = to_text(uri)
        try:
            yield key, read(key, max_bytes) if place(key) else read_bytes(uri, max_bytes)
        except ImageError as e:
            yield key, e


def read(key: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the image `key` names, as outputs write keys (escaped text; raw bytes for a file name):
    a file's, a shard member's or a Parquet cell's; `ImageError` if there are none."""
    where = place(key) if isinstance(key, str) else None
    if where is None:
        return read_bytes(to_local(key) if isinstance(key, str) else key, max_bytes)
    container = to_local(where.container)
    if where.kind == "tar":
        with open_input(container) as (f, _):
            stream = shards.members(f, max_bytes, wanted=lambda name: name == where.member)
            found = next((m for m in stream if m.name == where.member and not m.broken), None)
        result = shards.content(found, max_bytes) if found else ImageError(
            "unreadable", f"{key}: the shard has no such member", stage="read")
    else:
        column, sizes = parquet.row_groups(container, where.member)
        ends = list(itertools.accumulate(sizes))
        group = bisect.bisect_right(ends, where.row)
        if group == len(sizes):
            raise ImageError("unreadable", f"{key}: the file has {sum(sizes)} rows", stage="read")
        result = parquet.image(container, column, group, where.row - ends[group] + sizes[group], max_bytes)
    if isinstance(result, ImageError):
        raise result
    return result


def read_input(uri: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of an input that names one image (a raw path, a URI, or a key); `ImageError` if none."""
    _, data = next(images(uri, max_bytes=max_bytes))
    if isinstance(data, ImageError):
        raise data
    return data
