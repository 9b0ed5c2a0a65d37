"""What a listing says of an input, so that an unchanged one is skipped without being read.

A stamp is a short text made of what a directory listing (or one metadata
request) gives without reading the object: its size, and its modification
time on a local disk or its generation (else its checksum, else its
modification time) in an object store. Feature rows and dead letters record
the stamp of the input they came from (`source_stamp`); an incremental run
skips an input whose stamp is unchanged, and reads and hashes only new or
changed ones.
"""
from __future__ import annotations

import os

import fsspec

from grepq_core.files import is_local_path, local_path
from grepq_core.images.keys import place
from grepq_core.images.paths import to_local

__all__ = ["REMOTE_FIELDS", "local_stamp", "remote_stamp", "stamp"]

# What an fsspec listing's details may say of an object's version, in order of preference
# (gcsfs: generation, crc32c, md5Hash; s3fs: ETag; most: mtime or updated).
REMOTE_FIELDS = ("generation", "crc32c", "md5Hash", "ETag", "etag", "mtime", "updated", "LastModified")


def local_stamp(info: os.stat_result) -> str:
    return f"size={info.st_size},mtime_ns={info.st_mtime_ns}"


def remote_stamp(details: dict) -> str | None:
    """The stamp of an fsspec listing's entry; None when it says nothing of the object's version."""
    version = next(((name, details[name]) for name in REMOTE_FIELDS if details.get(name) not in (None, "")), None)
    if details.get("size") is None or version is None:
        return None
    return f"size={details['size']},{version[0]}={version[1]}"


def stamp(uri: str | bytes) -> str | None:
    """The stamp of one input by a stat or one metadata request (never a read); None if there is none
    (a missing or unreadable input is then read, and dead-lettered). The key of an image in a container
    has its container's stamp."""
    where = place(uri) if isinstance(uri, str) else None
    target = to_local(where.container) if where else uri
    try:
        if is_local_path(target):
            return local_stamp(os.stat(local_path(target)))
        fs, path = fsspec.core.url_to_fs(os.fsdecode(target))
        return remote_stamp(fs.info(path))
    except (OSError, ValueError):
        return None
