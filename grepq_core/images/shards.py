"""WebDataset tar shards, streamed member by member: never unpacked to disk, never whole in memory.

img2dataset, DataComp and NeMo Curator store collections as tar shards of
samples: consecutive members that share a key (``000012.jpg``,
``000012.txt``, ``000012.json``). Names split into key and extension by
webdataset's own rule (`webdataset.tariterators.base_plus_ext`). Members are
read one at a time, each at most `max_bytes`: a member over the cap is
skipped unread (its size is in its header, and an uncompressed shard seeks
past it). webdataset's tar iterator is not used to read: it reads every
member whole, however large it says it is.

`images` gives each image member's bytes, or why it cannot be scored:

| reason | member |
| --- | --- |
| ``duplicate_member`` | a name that came earlier in the same shard |
| ``unsafe_member_name`` | an absolute name, or one with a ``..`` part (never used as a path) |
| ``no_image`` | a member of a sample that holds no image member |
| ``too_large`` | over `max_bytes`, skipped unread |
| ``empty_file`` | zero bytes |
| ``truncated_shard`` | where the shard's stream breaks: the members after it cannot be read |
| ``not_a_tar`` | the whole shard, when it does not open as a tar archive |
"""
from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Iterator

from webdataset.tariterators import base_plus_ext

from grepq_core.errors import ImageError
from grepq_core.files import writing
from grepq_core.images.keys import member_key
from grepq_core.images.paths import to_text
from grepq_core.images.read import DEFAULT_MAX_BYTES, clean_detail, open_input

__all__ = ["IMAGE_EXTENSIONS", "Member", "members", "samples", "images", "content", "is_image", "is_unsafe",
           "sample_key", "wanted_samples", "write_tar"]

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "ppm", "pgm", "pbm", "pnm",
                              "jp2", "j2k", "jpx", "avif", "heic", "heif", "jxl", "ico", "tga"})


@dataclass(frozen=True)
class Member:
    """One member of a shard as it streams by.

    `data` is None when the member was not read: over the cap, or (with
    `broken` set) where the stream broke. A break between members has an
    empty `name`.
    """

    name: str
    size: int
    data: bytes | None
    broken: str = ""


def sample_key(name: str) -> str:
    """The WebDataset key of a member: its name without the extensions (``a/000012.seg.png`` -> ``a/000012``)."""
    key, _ = base_plus_ext(name)
    return name if key is None else key


def is_image(name: str) -> bool:
    """Whether a member holds an image, by its last extension."""
    _, ext = base_plus_ext(name)
    return ext is not None and ext.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS


def is_unsafe(name: str) -> bool:
    """An absolute name, or one that climbs out of its folder: never to be used as a path."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return not name or name.startswith(("/", "\\")) or ".." in parts


def members(f, max_bytes: int = DEFAULT_MAX_BYTES, wanted=lambda name: True) -> Iterator[Member]:
    """The regular members of the seekable tar (or .tar.gz) file `f`, in order; a last `Member` with
    `broken` set if the archive breaks before its end-of-archive block.

    Only the members whose name is `wanted` are read (the others pass with
    `data` None, sought past in an uncompressed shard).
    """
    last = None
    try:
        raw = gzip.GzipFile(fileobj=f) if _gzipped(f) else f
        stream = tarfile.open(fileobj=raw, mode="r:")
    except _BROKEN as e:
        why = clean_detail(str(e)) or "unexpected end of data"
        yield Member("", 0, None, why if _starts_with_a_header(f) else f"not_a_tar: {why}")
        return
    with stream:
        while True:
            try:
                info = stream.next()
                why = _unclean_end(raw, stream.offset) if info is None else ""
            except _BROKEN as e:
                info, why = None, clean_detail(str(e)) or "unexpected end of data"
            if info is None:
                if why:
                    yield Member("", 0, None, f"after {last!r}: {why}" if last else why)
                return
            stream.members = []  # a shard of millions of members keeps no list of them
            if not info.isreg():
                continue
            if info.size > max_bytes or not wanted(info.name):
                yield Member(info.name, info.size, None)  # never read: the next header is sought past it
                continue
            try:
                data = stream.extractfile(info).read()
            except _BROKEN as e:
                yield Member(info.name, info.size, None, clean_detail(str(e)) or "unexpected end of data")
                return
            last = info.name
            yield Member(info.name, info.size, data)


_BROKEN = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error)


def _gzipped(f) -> bool:
    head = f.read(2)
    f.seek(0)
    return head == b"\x1f\x8b"


def _starts_with_a_header(f) -> bool:
    """Whether the file opens with a valid tar header (so a failure to open it is a truncation)."""
    try:
        f.seek(0)
        head = f.read(8 * tarfile.BLOCKSIZE)
        if head[:2] == b"\x1f\x8b":  # as much of the first block as these compressed bytes give
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
        return True
    except _BROKEN:
        return False


def _unclean_end(raw, offset: int) -> str:
    """Why the archive ended at `offset` if not at its end-of-archive block (tarfile stops quietly at a
    truncated or unreadable header), else ''."""
    raw.seek(offset)
    block = raw.read(tarfile.BLOCKSIZE)
    if len(block) == tarfile.BLOCKSIZE and not any(block):
        return ""
    return "the archive ends without its end-of-archive block" if len(block) < tarfile.BLOCKSIZE else \
        "an unreadable header"


def samples(stream: Iterator[Member]) -> Iterator[list[Member]]:
    """Consecutive members with one WebDataset key, as webdataset groups them; a break is a run of its own."""
    run: list[Member] = []
    for member in stream:
        if run and (member.broken or sample_key(member.name) != sample_key(run[-1].name)):
            yield run
            run = []
        run.append(member)
        if member.broken:
            yield run
            run = []
    if run:
        yield run


def images(uri: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[str, bytes | ImageError]]:
    """(key, bytes or the `ImageError` why not) of every image of the shard `uri`, in order (module docstring).

    An unreadable shard is one item keyed by the shard itself.
    """
    shard = to_text(uri)
    try:
        with open_input(uri) as (f, _):
            yield from _images(shard, members(f, max_bytes, wanted=is_image), max_bytes)
    except ImageError as e:
        yield shard, e


def _images(shard: str, stream: Iterator[Member], max_bytes: int) -> Iterator[tuple[str, bytes | ImageError]]:
    seen: set[str] = set()
    for run in samples(stream):
        has_image = any(is_image(m.name) for m in run if not m.broken)
        for member in run:
            if member.broken:
                yield _broken(shard, member)
                continue
            duplicate = member.name in seen
            seen.add(member.name)
            if is_image(member.name) or not has_image:  # the other members travel with their sample's image
                yield member_key(shard, member.name), _why_not(member, duplicate, has_image) or content(member,
                                                                                                       max_bytes)


def _broken(shard: str, member: Member) -> tuple[str, ImageError]:
    if member.broken.startswith("not_a_tar: "):
        return shard, ImageError("not_a_tar", f"{shard}: {member.broken[len('not_a_tar: '):]}", stage="read")
    if member.name:
        return member_key(shard, member.name), ImageError(
            "truncated_shard", f"the shard ends inside this member ({member.broken}); no later member can be read",
            stage="read")
    return shard, ImageError("truncated_shard", f"the shard's stream breaks {member.broken}; no later member can "
                             "be read", stage="read")


def _why_not(member: Member, duplicate: bool, has_image: bool) -> ImageError | None:
    """Why a member of the shard is not an input to score, whatever its bytes."""
    name = member.name
    if duplicate:
        return ImageError("duplicate_member", f"{name}: a member of this name came earlier in the shard", "read")
    if is_unsafe(name):
        return ImageError("unsafe_member_name", f"{name}: absolute, or climbs out with '..'", "read")
    if not has_image:
        return ImageError("no_image", f"{name}: its sample {sample_key(name)!r} holds no image member", "read")
    return None


def content(member: Member, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | ImageError:
    """A read member's bytes, or why there are none: over the cap (unread) or empty."""
    name = member.name
    if member.data is None:
        return ImageError("too_large", f"{name}: {member.size} bytes, more than the {max_bytes} allowed", "read")
    if not member.data:
        return ImageError("empty_file", f"{name}: 0 bytes", "read")
    return member.data


def wanted_samples(uri: str | bytes, wanted: set[str],
                   max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[tuple[str, dict[str, bytes] | str]]:
    """(sample key, {extension: bytes}) of each sample of `wanted` in the shard, in the shard's order, or
    (sample key, why it cannot be copied whole): every wanted key once.

    A sample is the first run of members with its key (a later run of the
    same key, or a repeated member name, is another sample to webdataset's
    readers and was dead-lettered by extract). A sample with a member over
    the cap, one the shard breaks inside (a member of it cut short, even one
    after its image), and one the shard no longer holds give the reason
    instead of their members.
    """
    done: set[str] = set()
    held = None  # the last sample, until the next run shows that the shard did not break inside it
    with open_input(uri) as (f, _):
        for run in samples(members(f, max_bytes)):
            key = sample_key(run[0].name)
            if run[0].broken:
                where = f"the shard breaks inside its member {run[0].name}" if run[0].name else "the shard breaks"
                if held and held[0] == key:
                    held = (key, f"truncated: {where}")
                elif run[0].name and key in wanted and key not in done:
                    done.add(key)
                    yield key, f"truncated: {where}"
                break
            if held:
                yield held
                held = None
            if key in done or key not in wanted:
                continue
            done.add(key)
            big = [m.name for m in run if m.data is None]
            # {extension: bytes}; reversed, so a name repeated in the run keeps its first member; a member
            # without an extension has no place in a WebDataset sample (its readers drop it too)
            held = (key, f"too_large: {', '.join(big)} over the {max_bytes} bytes allowed" if big else
                    {ext: m.data for m in reversed(run) if (ext := base_plus_ext(m.name)[1])})
    if held:
        yield held
    for key in sorted(wanted - done):
        yield key, "missing: the shard does not hold it (it ends before, or it changed since it was scored)"


def write_tar(dest: str, items: Iterator[tuple[str, dict[str, bytes]]]) -> tuple[int, int]:
    """Write samples ({extension: bytes}) as a WebDataset shard at `dest`, whole or not at all: written
    to a temporary name beside it and renamed. Returns (samples, bytes of their members)."""
    from webdataset import TarWriter

    count = size = 0
    with writing(dest) as f, TarWriter(f, encoder=False) as writer:
        for key, exts in items:
            writer.write({"__key__": key, **exts})
            count, size = count + 1, size + sum(len(v) for v in exts.values())
    return count, size
