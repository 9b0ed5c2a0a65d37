"""grepq_core.files: files written whole or not at all, never over a device or FIFO; reads that stop at a cap."""
import os
import stat
import subprocess
import sys
import textwrap
import threading

import fsspec
import pytest

from grepq_core.errors import GrepqError
from grepq_core.files import check_writable, open_capped, write_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    target = tmp_path / "sub" / "model.json"
    write_file(str(target), "first")
    write_file(str(target), b"second")
    assert target.read_text() == "second" and os.listdir(tmp_path / "sub") == ["model.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from grepq_core.errors import GrepqError
    from grepq_core.files import write_file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))  # no file grows past 100 bytes
    try:
        write_file(sys.argv[1], "x" * 1000)
    except GrepqError as e:
        print(e)
""")


def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path):
    target = tmp_path / "runs.json"
    target.write_text("the old manifest")
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(target)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == f"cannot write {target}: File too large"
    assert target.read_text() == "the old manifest" and os.listdir(tmp_path) == ["runs.json"]


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to a fifo"])
def test_what_is_not_a_regular_file_is_refused_and_kept(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "folder":
        target.mkdir()
    else:
        os.mkfifo(tmp_path / "fifo")
        if kind == "fifo":
            os.rename(tmp_path / "fifo", target)
        else:
            target.symlink_to(tmp_path / "fifo")
    with pytest.raises(GrepqError, match=f"refusing to write {target}: it exists and is "):
        write_file(str(target), "report")
    with pytest.raises(GrepqError, match="refusing to write"):
        check_writable(f"file://{target}")
    assert not target.is_file() and target.exists()


def test_remote_files_are_written_in_one_piece():
    uri = "memory://grepq-test-files/model.json"
    try:
        write_file(uri, "whole")
        assert fsspec.open(uri, "r").open().read() == "whole"
    finally:
        fsspec.filesystem("memory").rm("grepq-test-files", recursive=True)


def test_a_capped_read_stops_one_byte_past_the_cap(tmp_path):
    exact, over = tmp_path / "exact.csv", tmp_path / "over.csv"
    exact.write_bytes(b"a" * 1000)
    over.write_bytes(b"a" * 1001)
    with open_capped(str(exact), 1000, "`labels` exact.csv") as f:
        assert f.read() == b"a" * 1000
    with pytest.raises(GrepqError, match="`labels` over.csv is larger than 1000 bytes"):
        with open_capped(str(over), 1000, "`labels` over.csv") as f:
            f.read()


@pytest.mark.timeout(60)
def test_a_pipe_is_read_as_a_stream(tmp_path):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"path,score\na.jpg,1\n"))
    writer.start()
    with open_capped(str(fifo), 1000, "`labels` pipe") as f:
        assert f.read() == b"path,score\na.jpg,1\n"
    writer.join()


def test_a_missing_file_names_the_setting(tmp_path):
    with pytest.raises(GrepqError, match="`labels` none.csv does not exist"):
        open_capped(str(tmp_path / "none.csv"), 10, "`labels` none.csv")
