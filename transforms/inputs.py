"""Which inputs a run reads, each with its stamp: the files its globs match and the entries of its lists.

An input is a loose image, a WebDataset tar shard or a Parquet file
(grepq_core/images/sources.py). `--input` takes globs (local or on any Beam
filesystem, ``**`` recursive) and brace patterns as webdataset writes them
(``gs://b/shards/{00000..00099}.tar``); a brace pattern's names without a
wildcard are inputs as they are, like a list's entries, so one missing
shard becomes a dead letter instead of stopping the run. `--input-list`
takes list files (grepq_core/images/lists.py), read by the workers.

Each input comes with its stamp (grepq_core/images/stamps.py): from the
listing itself for a glob (a local stat, or the object store's listing
details), from one stat or metadata request for a named input or a list
entry; never from reading it.

A run never reads its own outputs: whatever lies under an output folder
(`outputs`) is left out of the inputs, so ``--input 'D/**/*' --output
D/out`` does not read its own shards, manifests or lock as images.
"""
from __future__ import annotations

import glob
import logging
import os

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from braceexpand import braceexpand

from grepq_core.errors import GrepqError
from grepq_core.files import is_local_path, local_path
from grepq_core.images import lists, parquet
from grepq_core.images.keys import input_kind
from grepq_core.images.stamps import local_stamp, remote_stamp, stamp

__all__ = ["MatchInputs", "check_inputs", "expand_braces", "glob_local", "has_wildcard", "output_folders",
           "outside"]

log = logging.getLogger(__name__)


def has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def expand_braces(pattern: str) -> list[str]:
    """The patterns a brace pattern stands for (``{00000..00002}``, ``{a,b}``); other patterns as they are."""
    return list(braceexpand(pattern)) if "{" in pattern else [pattern]


def _beam_safe(path: str) -> str | bytes:
    """A local path Beam can encode: file names that are not UTF-8 travel as bytes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def glob_local(pattern: str) -> list[str | bytes]:
    """Local files matching `pattern` (** recursive) as absolute paths, broken and looping links included.

    Absolute, so that one file has one path whichever way the glob was
    typed. Beam's local listing silently drops entries it cannot stat, which
    would lose them; here they are kept so that reading them gives a dead
    letter. Directories are not inputs.
    """
    pattern = os.path.abspath(local_path(pattern))
    return [_beam_safe(p) for p in sorted(glob.glob(pattern, recursive=True)) if not os.path.isdir(p)]


def _named(pattern: str) -> list[str]:
    """An input named without a wildcard: itself (a local one absolute)."""
    return [os.path.abspath(local_path(pattern)) if is_local_path(pattern) else pattern]


def _stamped_local(pattern: str) -> list[tuple[str | bytes, str | None]]:
    """(path, stamp) of each local file `pattern` matches; no stamp for what cannot be stat'ed."""
    out = []
    for path in glob_local(pattern):
        try:
            out.append((path, local_stamp(os.stat(path))))
        except OSError:
            out.append((path, None))
    return out


def _stamped_remote(pattern: str) -> list[tuple[str, str | None]]:
    """(URI, stamp) of each object a remote glob matches, from the listing's own details."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(pattern)
    protocol = pattern.split("://", 1)[0]
    return [(f"{protocol}://{name}", remote_stamp(details))
            for name, details in sorted(fs.glob(path, detail=True).items()) if details.get("type") != "directory"]


def output_folders(outputs) -> tuple[str, ...]:
    """The folders whose contents are never inputs, each ending in "/": a local output as typed and as its
    real path (absolute), a remote one as it is."""
    folders = set()
    for output in filter(None, outputs):
        if is_local_path(output):
            path = local_path(output)
            folders.update({os.path.abspath(path), os.path.realpath(path)})
        else:
            folders.add(output.rstrip("/"))
    return tuple(sorted(f.rstrip("/") + "/" for f in folders))


def outside(uri: str | bytes, folders: tuple[str, ...]) -> bool:
    """Whether an input lies outside every one of `folders` (from `output_folders`)."""
    text = os.fsdecode(uri)
    return not (text if "://" in text else os.path.abspath(text)).startswith(folders)


class MatchInputs(beam.PTransform):
    """(input, stamp) of every input the globs, brace patterns and lists name, each once (local, gs://,
    any fsspec filesystem), less those under the `outputs` folders."""

    def __init__(self, patterns: list[str], input_lists: list[str] = (), outputs: list[str] = ()):
        super().__init__()
        self._patterns = [p for pattern in patterns for p in expand_braces(pattern)]
        self._lists = list(input_lists)
        self._outside = output_folders(outputs)

    def expand(self, pbegin):
        globs = [p for p in self._patterns if has_wildcard(p)]
        named = [p for p in self._patterns if not has_wildcard(p)]
        local = [p for p in globs if is_local_path(p)]
        remote = [p for p in globs if not is_local_path(p)]
        entries = ((pbegin | "Named" >> beam.Create(named) | "NamedPaths" >> beam.FlatMap(_named)),
                   (pbegin | "Lists" >> beam.Create(self._lists) | "ListEntries" >> beam.FlatMap(lists.entries)))
        found = [entries | "AllNamed" >> beam.Flatten() | "SpreadNamed" >> beam.Reshuffle()
                 | "Stat" >> beam.Map(lambda uri: (uri, stamp(uri))),
                 pbegin | "Local" >> beam.Create(local) | "Glob" >> beam.FlatMap(_stamped_local),
                 pbegin | "Remote" >> beam.Create(remote) | "Match" >> beam.FlatMap(_stamped_remote)]
        return (found | "Flatten" >> beam.Flatten()
                | "NotOutputs" >> beam.Filter(lambda item, folders: outside(item[0], folders), self._outside)
                | "Distinct" >> beam.Distinct() | "Spread" >> beam.Reshuffle())


def check_inputs(patterns: list[str], input_lists: list[str] = (), image_column: str | None = None,
                 outputs: list[str] = ()) -> int | None:
    """Stop before anything runs when the inputs are wrong; the number of images they hold, where known.

    Every glob must match a file, a named input (the first of a brace
    pattern) must exist, a folder given where a glob belongs is named as
    the mistake it is, every list must be readable with a column that names
    inputs, and the first Parquet file of each pattern must hold an image
    column. Returns how many images the inputs hold when they are all local
    loose files (the total a local run's progress counts towards), else
    None: remote listings are only probed here, containers not opened.
    Files under the `outputs` folders are not inputs; a warning says how
    many a local glob matched there, or that a remote glob may.
    """
    if not patterns and not input_lists:
        raise GrepqError("give `input` (globs of images, shards or Parquet files) or `input_list` (list files)")
    images, countable = set(), not input_lists
    folders = output_folders(outputs)
    for pattern in patterns:
        first = expand_braces(pattern)[0]
        found, where = _probe(first)
        found = _without_outputs(found, pattern, folders)
        if not found:
            raise GrepqError(f"no file matches `input` {pattern}: looked for {where}")
        kinds = {input_kind(f) for f in found}
        countable = countable and kinds == {"image"} and is_local_path(first) and "{" not in pattern
        images.update(found)
        table = next((f for f in found if input_kind(f) == "parquet"), None)
        if table is not None:
            parquet.row_groups(table, image_column)  # no image column: the one-line error names the file
    for input_list in input_lists:
        lists.check(input_list)
    return len(images) if countable else None


def _without_outputs(found: list, pattern: str, folders: tuple[str, ...]) -> list:
    """`found` less the files under the output folders, with a warning when there were (or, for a remote
    glob, whose listing is only probed here, may be) any."""
    kept = [f for f in found if outside(f, folders)]
    if len(kept) < len(found):
        log.warning("%d files that the input pattern %s matches lie under the output folder %s: a run does not "
                    "read its own outputs, so they are left out", len(found) - len(kept), pattern, " or ".join(folders))
    elif not is_local_path(pattern) and has_wildcard(pattern):
        base = pattern[:min(pattern.find(c) for c in "*?[" if c in pattern)]
        under = [f for f in folders if f.startswith(base)]
        if under:
            log.warning("the output folder %s lies under the input pattern %s: its files are left out of the inputs",
                        " or ".join(under), pattern)
    return kept


def _probe(pattern: str) -> tuple[list, str]:
    """(files `pattern` matches, where they were looked for); for a remote glob, at most one."""
    if not is_local_path(pattern):
        if not has_wildcard(pattern):
            return ([pattern] if FileSystems.exists(pattern) else []), pattern
        return [m.path for m in FileSystems.match([pattern], limits=[1])[0].metadata_list], pattern
    path = local_path(pattern)
    if os.path.isdir(path):
        raise GrepqError(f"`input` {pattern} is a folder: give a glob of its images, e.g. "
                         f"'{os.path.join(pattern, '*.jpg')}' or '{os.path.join(pattern, '**', '*')}'")
    unlistable = _unlistable(path)
    if unlistable:
        log.warning("%d folders under %s cannot be listed: their files are not matched", unlistable, pattern)
    found = glob_local(pattern) if has_wildcard(pattern) else [p for p in _named(pattern) if os.path.lexists(p)]
    return found, f"{os.path.abspath(path)} (from the folder {os.getcwd()})"


def _unlistable(pattern: str) -> int:
    """Folders under a recursive glob's base that cannot be listed (their files cannot be matched)."""
    if "**" not in pattern:
        return 0
    base = os.path.abspath(pattern.split("**", 1)[0] or ".")
    errors = []
    for _ in os.walk(base, onerror=errors.append):
        pass
    return len(errors)
