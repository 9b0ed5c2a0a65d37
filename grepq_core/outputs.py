"""Files grepq writes are whole or absent: written under a temporary name beside their place, then renamed.

A reader (or a killed run's next attempt) never sees half a file: a local
file is renamed into place (atomic on one filesystem); an object store's
object appears whole when its upload closes, and the temporary one is
moved onto the final name.
"""
from __future__ import annotations

import contextlib
import os
import uuid

import fsspec

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(uri: str, mode: str = "wb"):
    """A file object for `uri` (a path or an fsspec URL) that appears at `uri` only once the block ends
    without an exception."""
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open(temporary, mode) as f:
            yield f
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.rm(temporary)
        raise
