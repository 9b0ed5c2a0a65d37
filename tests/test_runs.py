"""Runs as a nightly job sees them: failures that fail, one commit per run, one writer, keys that hold."""
import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from conftest import hold_elsewhere, photo
from PIL import Image

from pipelines import extract
from pipelines.cli import main
from pipelines.options import DEFAULT_RUNNER, parse
from transforms import runs
from transforms.store import read_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def corpus(tmp_path):
    """Three photos, an empty file and a text file named .jpg."""
    root = tmp_path / "in"
    root.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(photo(name, width=256)).save(root / f"{name}.jpg", quality=90)
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image")
    return root


def _flags(model_flags):
    return [*model_flags, "--pathways", "ll", "--batch-size", "4", "--max-patches", "8"]


def _rows(out):
    return read_table(str(out), "features").to_pandas(), read_table(str(out), "dead_letters").to_pandas()


def test_a_glob_that_matches_nothing_is_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["extract", "--input", str(tmp_path / "nope" / "*.jpg"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"no file matches --input {tmp_path / 'nope' / '*.jpg'}" in err and not out.exists()
    assert main(["extract", "--input", str(tmp_path), "--output", str(out)]) == 2
    assert "is a folder: give a glob of its images" in capsys.readouterr().err and not out.exists()


def test_the_dead_letter_threshold_fails_the_run_but_keeps_its_outputs(corpus, tmp_path, model_flags, capsys):
    out = tmp_path / "out"
    code = main(["extract", "--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags),
                 "--max-dead-letter-fraction", "0.3"])
    assert code == 3
    assert "2 of 5 images (40.0%) were dead-lettered, more than --max-dead-letter-fraction 0.3" in \
        capsys.readouterr().err
    rows, dead = _rows(out)
    assert len(rows) == 3 and len(dead) == 2


@pytest.mark.parametrize("argv, message", [
    (["score", "--features", "nothere", "--output", "o"], "no feature rows under nothere: run `grepq extract`"),
    (["fit", "--features", "nothere", "--labels", "l.csv", "--output", "m.json"], "no feature rows under nothere"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.csv").write_text("path,score\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_fit_error_raised_inside_the_pipeline_is_one_line(corpus, tmp_path, model_flags, capsys):
    out = tmp_path / "out"
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)])
    labels = tmp_path / "labels.csv"
    labels.write_text("path,score\n" + "".join(f"{n}.jpg,{i}\n" for i, n in enumerate(("astronaut", "coffee"))))
    capsys.readouterr()
    assert main(["fit", "--features", str(out), "--labels", str(labels), "--output", str(tmp_path / "m.json")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and "at least 10" in err[0], err


def test_score_never_mixes_two_runs(corpus, tmp_path, model_flags, capsys):
    out = tmp_path / "out"
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)])
    scored = tmp_path / "scored"
    assert main(["score", "--features", str(out), "--output", str(scored)]) == 0
    first = sorted(os.listdir(scored / "scores"))
    assert main(["score", "--features", str(out), "--output", str(scored)]) == 2
    assert "already holds scores: pass --replace" in capsys.readouterr().err
    assert sorted(os.listdir(scored / "scores")) == first
    hold_elsewhere(scored / runs.RESULTS_LOCK)  # another score run is replacing them
    assert main(["score", "--features", str(out), "--output", str(scored), "--replace"]) == 2
    assert "is being written by run run-elsewhere" in capsys.readouterr().err
    assert sorted(os.listdir(scored / "scores")) == first
    assert main(["score", "--features", str(out), "--output", str(scored), "--replace", "--break-lock",
                 "--keep-top-fraction", "0.5"]) == 0
    assert not (scored / runs.RESULTS_LOCK).exists()
    scores = read_table(str(scored), "scores").to_pandas()
    assert len(scores) == 3 and scores.keep.sum() == 2  # one run's rows only, with the new threshold
    assert len((scored / "keep.txt").read_text().splitlines()) == 2


def test_relative_and_absolute_spellings_of_one_file_give_one_row(corpus, tmp_path, model_flags, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.chdir(corpus.parent)
    extract.run(["--input", "in/*.jpg", "--output", str(out), "--incremental", *_flags(model_flags)])
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), "--incremental", *_flags(model_flags)])
    rows, dead = _rows(out)
    assert sorted(rows.path) == sorted(str(corpus / f"{n}.jpg") for n in ("astronaut", "chelsea", "coffee"))
    assert sorted(dead.path) == [str(corpus / "empty.jpg"), str(corpus / "notes.jpg")]  # not twice either


def test_every_shard_carries_the_runs_metadata_and_the_run_commits_last(corpus, tmp_path, model_flags):
    out = tmp_path / "out"
    manifest = extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)])
    shards = sorted((out / "features").glob("*.parquet")) + sorted((out / "dead_letters").glob("*.parquet"))
    assert len(shards) == 2
    for shard in shards:
        meta = json.loads(pq.read_schema(shard).metadata[b"grepq"])
        assert meta["run"] == manifest["run"] and meta["grepq_version"] == "0.1.0"
        assert meta["identities"]["profile"] == "fast" and meta["identities"]["ll_identity"].startswith("ll:")
        assert meta["started"] and "--input" in meta["argv"]
    saved = json.loads((out / "runs" / f"{manifest['run']}.json").read_text())
    assert saved["finished"] >= saved["started"] and saved["counts"]["images_scored"] == 3
    assert not (out / "runs" / "LOCK").exists()


def test_the_default_runner_is_chosen_and_nothing_is_downloaded(corpus, tmp_path, model_flags, capfd):
    _, options = parse(extract.arg_parser(), ["--input", "x", "--output", "y"])
    assert options.view_as(StandardOptions).runner == DEFAULT_RUNNER == "FnApiRunner"
    out = tmp_path / "out"
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)])
    assert main(["score", "--features", str(out), "--output", str(tmp_path / "s"), "--verbose"]) == 0
    logged = capfd.readouterr().err.lower()
    assert "apache_beam" in logged  # --verbose shows Beam's own lines, so a Prism download would show here
    assert "prism" not in logged and "downloading" not in logged


_KILL_AT_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from transforms import runs
    runs.commit = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # dies after every shard is in place
    from pipelines import extract
    extract.run(sys.argv[1:])
""")


def test_a_run_killed_before_its_commit_leaves_nothing_and_a_plain_rerun_completes(corpus, tmp_path, model_flags):
    out = tmp_path / "out"
    argv = ["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)]
    killed = subprocess.run([sys.executable, "-c", _KILL_AT_COMMIT, *argv], cwd=ROOT, capture_output=True)
    assert killed.returncode == -9
    assert list((out / "features").glob("*.parquet")) and (out / "runs" / "LOCK").exists()
    rows, dead = _rows(out)
    assert rows.empty and dead.empty  # uncommitted: invisible
    (out / "features" / "beam-temp-leftover").mkdir()
    extract.run(argv)  # not --incremental: the killed run left no committed features
    rows, dead = _rows(out)
    assert len(rows) == 3 and len(dead) == 2 and len(set(rows.path) | set(dead.path)) == 5
    assert len(list((out / "features").glob("*.parquet"))) == 1 and not (out / "features" / "beam-temp-leftover").exists()


def test_two_extracts_at_once_into_one_output_give_one_set_of_rows(corpus, tmp_path, model_flags):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "pipelines.cli", "extract", "--input", str(corpus / "*.jpg"), "--output", str(out),
            *_flags(model_flags)]
    procs = [subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 2], [0, 0]), results
    if codes == [0, 2]:
        assert any("is being written by run" in err or "already holds features" in err for _, err in results)
    rows, dead = _rows(out)
    assert len(rows) == 3 and len(dead) == 2


def test_incremental_reruns_never_repeat_a_row_or_a_dead_letter(corpus, tmp_path, model_flags):
    out = tmp_path / "out"
    argv = ["--input", str(corpus / "*.jpg"), "--output", str(out), "--incremental", *_flags(model_flags)]
    for _ in range(3):
        extract.run(argv)
    rows, dead = _rows(out)
    assert rows.path.is_unique and dead.path.is_unique and len(rows) == 3 and len(dead) == 2
    assert dead.set_index("path").loc[str(corpus / "notes.jpg"), "sha256"]  # decoded failures keep their hash
    extract.run([*argv, "--retry-dead-letters"])
    assert len(_rows(out)[1]) == 4  # tried again, dead-lettered again


def test_file_names_are_reversible_and_stay_on_one_line(tmp_path, model_flags):
    from grepq_core.images.paths import to_local

    root = tmp_path / "names"
    root.mkdir()
    data = (tmp_path / "x.jpg")
    Image.fromarray(photo("coffee", width=240)).save(data, quality=90)
    names = [os.fsencode(str(root)) + b"/coll_\xff.jpg", str(root / "coll_\\xff.jpg"), str(root / "new\nline.jpg"),
             str(root / "next_line\x85.jpg"), str(root / "line\u2028separator.jpg"), str(root / "par\u2029.jpg")]
    for name in names:
        with open(name, "wb") as f:
            f.write(data.read_bytes())
    out = tmp_path / "out"
    for _ in range(2):
        extract.run(["--input", str(root / "*.jpg"), "--output", str(out), "--incremental", *_flags(model_flags)])
    rows, _ = _rows(out)
    assert len(rows) == 6 and rows.path.is_unique
    assert sorted(os.fsencode(to_local(p)) for p in rows.path) == sorted(os.fsencode(n) for n in names)
    assert main(["score", "--features", str(out), "--output", str(tmp_path / "s"), "--keep-top-fraction", "0.5"]) == 0
    listed = [line for name in ("keep", "reject") for line in (tmp_path / "s" / f"{name}.txt").read_text().splitlines()]
    assert sorted(listed) == sorted(rows.path)  # str.splitlines breaks at U+0085, U+2028 and U+2029 too


_FILE_SIZE_LIMIT = textwrap.dedent("""
    import resource, signal, sys
    from pipelines.cli import main
    from transforms import runs

    def limit_file_size(size):  # from now on no file grows past `size` bytes: writes fail as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    when, size = sys.argv[1], int(sys.argv[2])
    if when == "start":
        limit_file_size(size)
    else:
        commit = runs.commit

        def full_at_commit(*args, **kwargs):
            limit_file_size(size)
            return commit(*args, **kwargs)

        runs.commit = full_at_commit
    sys.exit(main(sys.argv[3:]))
""")


def _with_file_size_limit(when: str, size: int, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, when, str(size), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if "error" in line.lower()]


def test_a_disk_full_at_the_commit_leaves_no_manifest_and_says_where_in_one_line(corpus, tmp_path, model_flags):
    out = tmp_path / "out"
    argv = ["extract", "--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)]
    done = _with_file_size_limit("commit", 0, argv)
    assert done.returncode == 2
    (line,) = _error_lines(done.stderr)
    assert f"error: cannot write {out}/runs/run-" in line and line.endswith(".json: File too large")
    assert not (out / "runs").exists()  # no manifest, empty or whole, no temporary file, no lock
    rows, dead = _rows(out)
    assert rows.empty and dead.empty
    extract.run(argv[1:])  # a plain rerun: nothing was committed, so nothing refuses it
    rows, dead = _rows(out)
    assert len(rows) == 3 and len(dead) == 2


def test_a_disk_full_while_shards_are_written_commits_nothing_and_says_where_in_one_line(corpus, tmp_path,
                                                                                        model_flags):
    out = tmp_path / "out"
    done = _with_file_size_limit("start", 2000, ["extract", "--input", str(corpus / "*.jpg"), "--output", str(out),
                                                 *_flags(model_flags)])
    assert done.returncode == 2
    assert _error_lines(done.stderr) == [f"grepq extract: error: cannot write under {out}: File too large"]
    assert not list((out / "runs").glob("*.json"))
    rows, dead = _rows(out)
    assert rows.empty and dead.empty


def test_an_unreadable_manifest_counts_as_no_commit(corpus, tmp_path, model_flags, capsys):
    """What an older grepq left on a full disk: a 0-byte manifest, once read as a commit."""
    out = tmp_path / "out"
    argv = ["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)]
    manifest = extract.run(argv)
    assert main(["score", "--features", str(out), "--output", str(out)]) == 0
    (out / "runs" / f"{manifest['run']}.json").write_bytes(b"")
    capsys.readouterr()
    assert main(["report", "--scores", str(out), "--output", str(tmp_path / "report.html")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "is not a readable run manifest" in line]
    assert len(warned) == 1 and "(not whole JSON): its run counts as not committed" in warned[0]
    rows, dead = _rows(out)
    assert rows.empty and dead.empty
    extract.run([*argv, "--incremental"])  # skips nothing: the broken run's rows never counted
    rows, dead = _rows(out)
    assert len(rows) == 3 and len(dead) == 2
    assert [p.name for p in (out / "runs").iterdir()] == [f"{r}.json" for r in _committed(out)]  # the empty one went


def _committed(out) -> list[str]:
    from transforms.runs import committed_runs

    return sorted(committed_runs(str(out)))


def _not_a_regular_file(path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif os.geteuid() == 0:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    else:
        pytest.skip("only root makes device nodes")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_outputs_never_replace_what_is_not_a_regular_file(corpus, tmp_path, model_flags, capsys, kind):
    """`grepq score --csv /dev/full` used to delete the device and leave a plain file in its place."""
    out = tmp_path / "out"
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), *_flags(model_flags)])
    target = tmp_path / "target"
    _not_a_regular_file(target, kind)
    capsys.readouterr()
    is_kind = stat.S_ISFIFO if kind == "fifo" else stat.S_ISCHR
    commands = [["score", "--features", str(out), "--output", str(tmp_path / "scored"), "--csv", str(target)],
                ["score", "--features", str(out), "--output", str(out)],
                ["report", "--scores", str(out), "--output", str(target)]]
    codes = [main(argv) for argv in commands]
    assert codes == [2, 0, 2]
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"grepq {c}: error: refusing to write {target}: it exists and is not a regular file (a device, "
                      "FIFO or socket); give the path of a file" for c in ("score", "report")]
    assert is_kind(os.stat(target).st_mode) and not (tmp_path / "scored").exists()


def _take_over(output: str, run: str, barrier, won) -> None:
    from grepq_core.errors import GrepqError

    barrier.wait()
    try:
        with runs.OutputLock(output, run):
            won.put(run)
            time.sleep(1)
    except GrepqError:
        pass


def test_runs_that_find_one_dead_holder_at_once_take_its_lock_over_one_at_a_time(tmp_path):
    import multiprocessing
    import socket

    ctx = multiprocessing.get_context("fork")
    dead = ctx.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    for trial in range(3):
        out = tmp_path / f"out{trial}"
        (out / "runs").mkdir(parents=True)
        (out / "runs" / runs.LOCK).write_text(json.dumps({"run": "dead", "host": socket.gethostname(),
                                                          "pid": dead.pid, "started": runs.now()}))
        barrier, won = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_take_over, args=(str(out), f"run-{i}", barrier, won)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        winners = []
        while not won.empty():
            winners.append(won.get())
        assert len(winners) == 1, winners
        assert not (out / "runs" / runs.LOCK).exists()
