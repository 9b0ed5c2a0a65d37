"""Files grepq writes whole or not at all, only over regular files, and small files it reads with a cap.

A file grepq writes (a model, a report, a list, a run's manifest) is
readers' truth, so it must never be left half written: `write_file` writes
a hidden temporary file beside the target, flushes it to disk and renames
it over the target (local), or creates the object in one request (gs://
and other fsspec URLs). A full disk then leaves the old file or none,
never a truncated one; `writing` does the same for a file written as a
stream (a tar shard, a Parquet file of kept rows). A target that exists and is not a regular file (a
device such as /dev/null, a FIFO, a folder) is refused before anything is
written: renaming over it would replace the device node. Every failure is
a `GrepqError` that names the path.

`open_capped` reads a file given by the user (a label file, a model) as a
stream that stops at `max_bytes`, so /dev/zero or a huge file cannot fill
memory; local names are opened with plain ``open()``, never parsed as
URLs, so a pipe such as ``<(cat labels.csv)`` is read as a stream.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import tempfile
import uuid

import fsspec

from grepq_core.errors import GrepqError

__all__ = ["is_local_path", "local_path", "strict_json", "check_writable", "write_file", "writing", "open_capped"]


def is_local_path(uri: str | bytes) -> bool:
    """Whether `uri` (a path, a URI or a pattern) is local: no ``scheme://`` at all, or ``file://``."""
    text = os.fsdecode(uri)
    return "://" not in text or text.startswith("file://")


def local_path(uri: str | bytes) -> str | bytes:
    """The path of a local `uri`: ``file://`` taken off literally (no percent-decoding, as fsspec and Beam do)."""
    prefix = b"file://" if isinstance(uri, bytes) else "file://"
    return uri[len(prefix):] if uri.startswith(prefix) else uri


def strict_json(value):
    """`value` with NaN and infinity as None, recursively (dicts, lists): what strict JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def check_writable(uri: str) -> None:
    """Refuse a local target that exists and is not a regular file (for writers that rename into place)."""
    if not is_local_path(uri):
        return
    path = local_path(uri)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise GrepqError(f"cannot write {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise GrepqError(f"refusing to write {path}: it exists and is {kind}; give the path of a file")


def write_file(uri: str, data: bytes | str) -> str:
    """Write `data` (text as UTF-8) to `uri` whole or not at all; returns `uri`."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if is_local_path(uri):
            with writing(uri) as f:
                f.write(payload)
        else:
            fs, path = fsspec.core.url_to_fs(uri)
            fs.pipe_file(path, payload)
    except OSError as e:
        raise GrepqError(f"cannot write {uri}: {e.strerror or e}") from None
    return uri


@contextlib.contextmanager
def writing(uri: str):
    """A binary file whose bytes appear at `uri` (a path or an fsspec URL) only once the block ends without an
    exception: a hidden local file renamed into place, or a temporary object moved onto the name."""
    if not is_local_path(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with fs.open(temporary, "wb") as f:
                yield f
            fs.mv(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                fs.rm(temporary)
            raise
        return
    path = local_path(uri)
    check_writable(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as e:
        raise GrepqError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: umask is process-wide, and setting it while threads create files races them


class _Capped(io.RawIOBase):
    """A binary stream over `raw` that raises once more than `max_bytes` have come out of it."""

    def __init__(self, raw, max_bytes: int, what: str):
        self._raw, self._left, self._what, self._max = raw, max_bytes, what, max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(memoryview(buffer).cast("B")[:self._left + 1]) or 0
        self._left -= n
        if self._left < 0:
            raise GrepqError(f"{self._what} is larger than {_size(self._max)}")
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 2**20 else f"{n} bytes"


def open_capped(uri: str, max_bytes: int, what: str):
    """A buffered binary stream of `uri` that raises `GrepqError` past `max_bytes` (`what` names the file)."""
    try:
        raw = open(local_path(uri), "rb", buffering=0) if is_local_path(uri) else fsspec.open(uri, "rb").open()
    except FileNotFoundError:
        raise GrepqError(f"{what} does not exist") from None
    except OSError as e:
        raise GrepqError(f"cannot read {what}: {e.strerror or e}") from None
    return io.BufferedReader(_Capped(raw, max_bytes, what))
