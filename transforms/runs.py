"""Runs under one output: a name each, one lock at a time, and a commit that makes them visible.

A run writes its shards as OUTPUT/KIND/RUN-*.parquet and, once every shard
of every kind is in place, commits by writing OUTPUT/runs/RUN.json whole
(grepq_core.files.write_file: a temporary file flushed and renamed on local
disk, one object created in one request on gs://). Readers see a run's
shards only when its manifest exists and parses (`transforms/store.py`), so
a run killed anywhere, or stopped by a full disk, leaves either all of its
outputs or none; a manifest that cannot be read (one left empty by an older
grepq on a full disk) counts as no commit, with a one-line warning.

Only one run may write into an output at a time: `OutputLock` creates
OUTPUT/runs/LOCK only if it does not exist (O_EXCL locally, a
generation-matched create on gs://). `grepq score` and `grepq filter`,
which replace what they write whole, hold OUTPUT/_grepq.lock the same way
(`RESULTS_LOCK`: apart from runs/LOCK, so scoring a folder does not stop
its next extract, and `_` keeps Parquet readers off it). Holding runs/LOCK,
a run removes what killed runs left behind: their uncommitted shards,
unreadable manifests, Beam's beam-temp-* folders, and what a killed
compaction (transforms/compaction.py) left to delete.

A compaction is a run too: before its manifest it writes
OUTPUT/runs/replaces-RUN.json, the shards it replaces; once it has
committed, readers no longer see those shards, whether or not they are
deleted yet. Beam-free, like store.py.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from importlib import metadata

import fsspec

from grepq_core.errors import GrepqError
from grepq_core.files import is_local_path, write_file

__all__ = ["RUN_ID", "REPLACES", "LOCK", "RESULTS_LOCK", "TAKEOVER_SETTLE_SECONDS", "new_run_id", "grepq_version",
           "OutputLock", "results_lock", "commit", "committed_runs", "manifests", "run_of", "replaced", "write_replaces",
           "clean_uncommitted", "finish_compactions"]

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"^(run-\d{8}T\d{6}Z-[0-9a-f]{6})")
RUNS_DIR = "runs"
LOCK = "LOCK"
RESULTS_LOCK = "_grepq.lock"  # held by score and filter in their output folders
_MAX_MANIFEST_BYTES = 16 * 2**20  # a manifest is a few kB
_WARNED: set[str] = set()  # unreadable manifests already reported by this process
TAKEOVER_SETTLE_SECONDS = 0.5  # how long a run that took over a dead run's lock waits before it trusts it
REPLACES = "replaces-"  # runs/replaces-RUN.json: what the compaction RUN replaces


def now() -> str:
    """The time as manifests and locks record it (UTC, ISO 8601)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_run_id() -> str:
    """Names a run's shards and manifest: UTC time first, so later runs sort after earlier ones."""
    return time.strftime("run-%Y%m%dT%H%M%SZ-", time.gmtime()) + uuid.uuid4().hex[:6]


def grepq_version() -> str:
    try:
        return metadata.version("grepq")
    except metadata.PackageNotFoundError:
        return "unknown"


def run_of(shard: str) -> str | None:
    """The run id a shard's file name starts with; None for shards that predate run manifests."""
    match = RUN_ID.match(shard.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def _runs_dir(output: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    return fs, f"{root}/{RUNS_DIR}"


def committed_runs(output: str) -> set[str]:
    """The runs whose manifest exists under `output` and can be read."""
    return {m["run"] for m in manifests(output)}


def manifests(output: str) -> list[dict]:
    """The committed runs' manifests under `output`, oldest first; unreadable ones are left out, with a warning."""
    fs, folder = _runs_dir(output)
    found = (_once(version, lambda: _read_manifest(fs, path)) for path, version in
             _listing(fs, f"{folder}/run-*.json"))
    return [record for record in found if record is not None]


def _listing(fs: fsspec.AbstractFileSystem, pattern: str) -> list[tuple[str, tuple]]:
    """(path, version) of the files matching `pattern`, in path order, from one listing; the version (the URI,
    size and modification time, generation on gs://) changes whenever the file's content does."""
    found = fs.glob(pattern, detail=True)
    return sorted((path, (fs.unstrip_protocol(path), *(info.get(k) for k in ("size", "mtime", "generation"))))
                  for path, info in found.items())


# version -> parsed JSON. Manifests and replaces files are written whole once and never changed, so
# each is read once per process, however many shard lists a command asks for (one request each on gs://).
_PARSED: dict[tuple, dict] = {}
_MAX_PARSED = 10_000


def _once(version: tuple, read) -> dict | None:
    """What `read()` parses from the file at `version`, read only the first time; a None (unreadable) is not
    remembered."""
    if version not in _PARSED:
        record = read()
        if record is None:
            return None
        if len(_PARSED) >= _MAX_PARSED:
            _PARSED.clear()
        _PARSED[version] = record
    return _PARSED[version]


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    """The manifest at `path`, or None when it is not one whole manifest of the run its name gives."""
    record, problem = None, None
    try:
        with fs.open(path, "rb") as f:
            record = json.loads(f.read(_MAX_MANIFEST_BYTES))
    except OSError as e:
        problem = e.strerror or type(e).__name__
    except ValueError:
        problem = "not whole JSON"
    if problem is None and not (isinstance(record, dict) and record.get("run") == _run_name(path)):
        problem = "not this run's record"
    if problem is None:
        return record
    if path not in _WARNED:
        _WARNED.add(path)
        log.warning("%s is not a readable run manifest (%s): its run counts as not committed; the next extract "
                    "into this output removes it and the run's shards", path, problem)
    return None


def _run_name(path: str) -> str:
    return path.rsplit("/", 1)[-1][:-len(".json")]


def _replaces(output: str) -> dict[str, dict]:
    """run -> what its replaces file says, for every compaction that wrote one (committed or not)."""
    fs, folder = _runs_dir(output)
    out = {}
    for path, version in _listing(fs, f"{folder}/{REPLACES}run-*.json"):
        out[path.rsplit("/", 1)[-1][len(REPLACES):-len(".json")]] = _once(version, lambda: _read_json(fs, path))
    return out


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict:
    with fs.open(path, "r") as f:
        return json.loads(f.read())


def replaced(output: str, committed: set[str] | None = None) -> dict[str, set[str]]:
    """kind -> names of the shards that committed compactions replaced (hidden from readers)."""
    committed = committed_runs(output) if committed is None else committed
    out: dict[str, set[str]] = {}
    for run, body in _replaces(output).items():
        if run in committed:
            for kind, names in body["shards"].items():
                out.setdefault(kind, set()).update(names)
    return out


def write_replaces(output: str, run: str, shards: dict[str, list[str]], replaced_runs: list[str]) -> None:
    """Name, before the compaction `run` commits, the shards (kind -> names) and the runs it replaces."""
    fs, folder = _runs_dir(output)
    path = f"{folder}/{REPLACES}{run}.json"
    write_file(fs.unstrip_protocol(path) if "://" in output else path,
               json.dumps({"shards": shards, "runs": replaced_runs}))


def commit(output: str, run: str, manifest: dict) -> str:
    """Write the run's manifest whole, the last step of a run; returns its path."""
    fs, folder = _runs_dir(output)
    path = f"{folder}/{run}.json"
    text = json.dumps({"run": run, "grepq_version": grepq_version(), **manifest}, indent=1, sort_keys=True)
    write_file(fs.unstrip_protocol(path) if "://" in output else path, text)
    return path


def clean_uncommitted(output: str, kinds: tuple[str, ...]) -> list[str]:
    """Remove shards of runs that never committed, manifests that cannot be read, temporary files and folders,
    and what compactions replaced (or, uncommitted, wrote); returns what went."""
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    done = committed_runs(output)
    gone = replaced(output, done)
    removed = []
    for kind in kinds:
        for path in fs.glob(f"{root}/{kind}/*"):
            name = path.rsplit("/", 1)[-1]
            uncommitted = run_of(name) not in (None, *done)
            stale_shard = name.endswith(".parquet") and (uncommitted or name in gone.get(kind, ()))
            if stale_shard or name.startswith("beam-temp-"):
                fs.rm(path, recursive=True)
                removed.append(path)
    for path in fs.glob(f"{root}/{RUNS_DIR}/run-*.json") + fs.glob(f"{root}/{RUNS_DIR}/.*.tmp"):
        if path.endswith(".tmp") or _run_name(path) not in done:
            fs.rm(path)
            removed.append(path)
    removed += finish_compactions(output, done)
    return removed


def finish_compactions(output: str, committed: set[str]) -> list[str]:
    """Delete the manifests of the runs committed compactions replaced, then their replaces files; and the
    replaces files of compactions that never committed. Their shards must be gone already."""
    fs, folder = _runs_dir(output)
    removed = []
    for run, body in _replaces(output).items():
        paths = [f"{folder}/{old}.json" for old in body["runs"]] if run in committed else []
        for path in [*paths, f"{folder}/{REPLACES}{run}.json"]:
            if fs.exists(path):
                fs.rm(path)
                removed.append(path)
    return removed


class OutputLock:
    """Exclusive right to write into `output`, as a LOCK object created only if absent.

    A lock left by a killed local run (its process gone, on this host) is
    taken over with a warning; any other held lock is an error naming the
    run that holds it, and `force` takes it over. `lock` is the object's
    path under `output`: runs/LOCK for extract and compact, `RESULTS_LOCK`
    for score and filter.
    """

    def __init__(self, output: str, run: str, force: bool = False, lock: str = f"{RUNS_DIR}/{LOCK}"):
        self.output, self.run, self.force = output.rstrip("/"), run, force
        self._fs, root = fsspec.core.url_to_fs(self.output)
        self._path = f"{root}/{lock}"
        self._made: list[str] = []  # local folders the lock created, deepest first

    def _holder(self) -> dict:
        try:
            with self._fs.open(self._path, "r") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not is_local_path(self.output) or holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False
        return False

    def _create(self, body: str) -> bool:
        """Create the lock object if it does not exist; False if it does."""
        if self.output.startswith("gs://"):
            return _create_gcs(self._path, body)
        if not is_local_path(self.output):
            raise GrepqError(f"no lock for {self.output}: grepq writes to local folders and gs:// only")
        folder = os.path.dirname(self._path)
        while not os.path.exists(folder):  # made here, and removed on exit if still empty
            self._made.append(folder)
            folder = os.path.dirname(folder)
        try:
            self._fs.makedirs(os.path.dirname(self._path), exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise GrepqError(f"cannot write {self._path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
        except OSError as e:
            os.unlink(self._path)
            raise GrepqError(f"cannot write {self._path}: {e.strerror}") from None
        return True

    def __enter__(self) -> "OutputLock":
        body = json.dumps({"run": self.run, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": now()})
        if self._create(body):
            return self
        holder = self._holder()
        if self.force or self._stale(holder):
            self._fs.rm(self._path)
            if self._create(body) and self._kept():
                log.warning("took over %s from run %s, which died holding it", self.output, holder.get("run"))
                return self
            holder = self._holder()
        raise GrepqError(f"{self.output} is being written by run {holder.get('run', '?')} (started "
                         f"{holder.get('started', '?')} by pid {holder.get('pid', '?')} on {holder.get('host', '?')}): "
                         f"wait for it, or if it died, pass `break_lock`")

    def _kept(self) -> bool:
        """After a takeover, whether the lock is still this run's: another run that found the same dead
        holder at the same moment removes what it takes for that holder's lock too, then creates its own;
        the last to create it holds it, and every other sees so once the moment is past."""
        time.sleep(TAKEOVER_SETTLE_SECONDS)
        return self._holder().get("run") == self.run

    def __exit__(self, *exc) -> None:
        if self._holder().get("run") != self.run:
            return  # taken over (`break_lock`) while this run held it: the lock is another run's now
        try:
            self._fs.rm(self._path)
        except FileNotFoundError:
            pass
        for folder in self._made:  # a run that stopped before writing leaves no empty output behind
            try:
                os.rmdir(folder)
            except OSError:
                break


def results_lock(output: str, force: bool = False) -> OutputLock:
    """The lock that `grepq score` and `grepq filter` hold in their output folder (`RESULTS_LOCK`)."""
    return OutputLock(output, new_run_id(), force=force, lock=RESULTS_LOCK)


def _create_gcs(path: str, body: str) -> bool:
    """A generation-matched create (if_generation_match=0) of BUCKET/NAME: exactly one writer succeeds."""
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    bucket, _, name = path.partition("/")
    try:
        storage.Client().bucket(bucket).blob(name).upload_from_string(body, if_generation_match=0)
    except PreconditionFailed:
        return False
    return True
