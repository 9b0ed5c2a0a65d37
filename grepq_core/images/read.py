"""Read one image's bytes from anywhere, with a cap, and hash them.

Local paths are read with plain ``open()``, never parsed as URLs: a file
named ``a::b.jpg`` or ``x#y.jpg`` is that file, and only regular files are
opened, so a FIFO cannot hang a worker nor ``/dev/zero`` fill its memory.
Other URIs (gs://, s3://, https://, memory://) go through fsspec.

Failure reasons, all at ``stage="read"``:

| reason | cause |
| --- | --- |
| ``unreadable`` | missing file, no permission, a directory, a broken symlink or a symlink loop, any ``OSError`` from the filesystem (a path longer than PATH_MAX is opened from its folder, so it is read like any other) |
| ``not_a_regular_file`` | a FIFO, socket or device (also through a symlink): refused before opening, as reading one can block forever or never end |
| ``too_large`` | more than ``max_bytes`` (`DEFAULT_MAX_BYTES`, 256 MiB), refused before reading where the size is known |
| ``empty_file`` | zero bytes |
"""

import contextlib
import errno
import hashlib
import os
import re
import stat

import fsspec

from grepq_core.errors import ImageError
from grepq_core.files import is_local_path, local_path

__all__ = ["DEFAULT_MAX_BYTES", "read_bytes", "read_and_hash", "open_input", "clean_detail",
           "display_path"]

# Far above any photo (a 100 MP camera JPEG is about 50 MiB), far below a worker's memory.
DEFAULT_MAX_BYTES = 256 * 2**20
_NAME_MAX = 255  # bytes in one path component on Linux filesystems
_PATH_STEP = 2048  # bytes of path opened per call when a path is longer than PATH_MAX (4096)

def read_bytes(uri: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """All bytes of a local path or an fsspec URL (gs://, s3://, https://, memory://...).

    Local paths (str, or bytes for file names that are not UTF-8; see
    `is_local_path`) are opened with plain ``open()`` and only if they are
    regular files, so a FIFO cannot hang the job nor /dev/zero fill memory.
    Files over `max_bytes` are refused before reading where the size is
    known, and no more than ``max_bytes + 1`` bytes are ever read.
    (Members of shards and rows of Parquet files: grepq_core/images/sources.py.)

    Only ``OSError`` (what filesystems raise for missing, forbidden or
    unreadable files) becomes ``unreadable``; anything else, such as a missing
    fsspec filesystem package, is a setup problem and propagates.
    """
    with open_input(uri, max_bytes) as (f, size):
        data = _read_capped(f, uri, max_bytes, size)
    if not data:
        raise ImageError("empty_file", f"{display_path(uri)}: 0 bytes", stage="read")
    return data


@contextlib.contextmanager
def open_input(uri: str | bytes, max_bytes: int | None = None):
    """(binary file object, its size or None) of a regular local file or an fsspec URL, for reading.

    A local path's kind (a FIFO, a socket or a device is refused) and size
    (over `max_bytes`, when given) are checked before it is opened, and
    again on the open file; a remote object's size before it is read. Any
    ``OSError``, on opening or while the caller reads, becomes `ImageError`
    ``unreadable`` at stage ``read``.
    """
    try:
        if is_local_path(uri):
            f, size = _open_local(local_path(uri), max_bytes)
            with f:
                yield f, size
        else:
            with fsspec.open(os.fsdecode(uri), "rb") as f:
                size = getattr(f, "size", None)
                size = size if isinstance(size, int) else None
                _check_size(uri, size, max_bytes)
                yield f, size
    except OSError as exc:
        raise ImageError("unreadable", f"{display_path(uri)}: {clean_detail(exc.strerror or str(exc))}",
                         stage="read") from exc


def _open_local(path: str | bytes, max_bytes: int | None):
    """(open file, size) of a regular local file, its kind and size checked before anything is read.

    A path longer than the system's PATH_MAX (which plain calls refuse) is
    opened from its folder, reached a few components at a time.
    """
    try:
        return _open_regular(path, max_bytes, None, path)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG or len(os.path.basename(os.fsencode(path))) > _NAME_MAX:
            raise
    folder, name = _folder_of(path)
    try:
        return _open_regular(name, max_bytes, folder, path)
    finally:
        os.close(folder)  # the file stays open


def _open_regular(path: str | bytes, max_bytes: int | None, folder: int | None, shown: str | bytes):
    """`path` (relative to the open folder `folder`, if given) opened as `_open_local` says; `shown` in messages."""
    _check_size(shown, _check_local(shown, os.stat(path, dir_fd=folder)), max_bytes)
    # O_NONBLOCK: if the path became a FIFO since the stat, open returns
    # at once instead of waiting for a writer, and the fstat refuses it.
    f = open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK, dir_fd=folder))
    try:
        size = _check_local(shown, os.fstat(f.fileno()))
        _check_size(shown, size, max_bytes)
    except BaseException:
        f.close()
        raise
    return f, size


def _folder_of(path: str | bytes) -> tuple[int, bytes]:
    """(an open descriptor of `path`'s folder, its last component), for a path too long to open in one call."""
    head, name = os.path.split(os.fsencode(path))
    folder = os.open(b"/" if head.startswith(b"/") else b".", os.O_RDONLY | os.O_DIRECTORY)
    parts = [part for part in head.split(b"/") if part]
    while parts:
        step = [parts.pop(0)]
        while parts and len(b"/".join(step)) + len(parts[0]) < _PATH_STEP:
            step.append(parts.pop(0))
        try:
            inner = os.open(b"/".join(step), os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
        finally:
            os.close(folder)
        folder = inner
    return folder, name


def _check_local(path: str | bytes, info: os.stat_result) -> int:
    """Refuse anything but a regular file; return its size."""
    if stat.S_ISDIR(info.st_mode):
        raise ImageError("unreadable", f"{display_path(path)}: is a directory", stage="read")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError("not_a_regular_file", f"{display_path(path)}: {_file_kind(info.st_mode)}", stage="read")
    return info.st_size


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), f"file type {stat.S_IFMT(mode):o}")


def _check_size(uri: str | bytes, size: int | None, max_bytes: int | None) -> None:
    if size is not None and max_bytes is not None and size > max_bytes:
        raise ImageError("too_large", f"{display_path(uri)}: {size} bytes, more than the {max_bytes} allowed",
                         stage="read")


def _read_capped(f, uri: str | bytes, max_bytes: int, size: int | None) -> bytes:
    """At most ``max_bytes + 1`` bytes of `f`: enough to tell a file over the cap, even one still growing.

    `size` (when known) sizes the first read, so a small file does not make
    Python allocate the whole cap.
    """
    limit = max_bytes + 1
    data = f.read(limit if size is None else min(size + 1, limit))
    if size is not None and len(data) == size + 1 < limit:  # grew since its size was taken
        data += f.read(limit - len(data))
    _check_size(uri, len(data), max_bytes)
    return data


def display_path(uri: str | bytes) -> str:
    """A path as valid UTF-8 text for a detail: undecodable bytes become \\xNN escapes."""
    raw = uri if isinstance(uri, bytes) else uri.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


# An object's default repr, e.g. Pillow's "cannot identify image file <_io.BytesIO object at 0x7f...>".
_ADDRESS_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def clean_detail(message: str) -> str:
    """`message` without object reprs holding memory addresses, which differ from run to run."""
    return _ADDRESS_REPR.sub("", message)


def read_and_hash(uri: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, str]:
    """(the file's bytes, their sha256 in hex); `ImageError` at stage ``read`` if it cannot be read."""
    data = read_bytes(uri, max_bytes)
    return data, hashlib.sha256(data).hexdigest()
