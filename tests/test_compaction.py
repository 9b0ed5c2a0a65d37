"""`grepq compact`: many runs' shards merged into few, readers' rows unchanged, and a kill at any moment loses
no row and doubles none."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import compact, extract
from pipelines.cli import main
from transforms import compaction, runs
from transforms.store import read_table

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--pathways", "ll", "--no-zero-shot", "--batch-size", "16"]


def _rows(output: Path) -> dict:
    """Every row of each kind, as sorted JSON lines: equal when the same rows are there, each as often."""
    return {kind: sorted(json.dumps(r, sort_keys=True, default=list) for r in read_table(str(output), kind).to_pylist())
            for kind in compaction.KINDS}


@pytest.fixture
def nights(model_flags, tmp_path) -> Path:
    """An output after five nightly runs, each adding four images and one broken file."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for night in range(5):
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"{night}-{i}.jpg")
        (folder / f"{night}-broken.jpg").write_bytes(b"not an image")
        extract.run(["--input", str(folder / "*.jpg"), "--output", str(out), *model_flags, *FAST,
                     *(["--incremental"] if night else [])])
    return out


def test_compaction_merges_the_shards_and_every_reader_sees_the_same_rows(nights, model_flags):
    before, shards = _rows(nights), compaction.shard_count(str(nights))
    assert shards >= 10 and len(before["features"]) == 20 and len(before["dead_letters"]) == 5
    assert main(["compact", "--output", str(nights), "--rows-per-shard", "8"]) == 0
    assert _rows(nights) == before
    assert compaction.shard_count(str(nights)) == 3 + 1  # 20 rows in shards of 8, and the 5 dead letters
    left = sorted(p.name for p in (nights / "runs").iterdir())
    assert len(left) == 1 and json.loads((nights / "runs" / left[0]).read_text())["compaction"] is True
    assert len(json.loads((nights / "runs" / left[0]).read_text())["history"]) == 5
    again = extract.run(["--input", str(nights.parent / "in" / "*.jpg"), "--output", str(nights), *model_flags,
                         *FAST, "--incremental"])
    assert again["counts"]["images_read"] == 0 and again["counts"]["images_skipped_incremental"] == 25


_DIE_AFTER = """
import os, sys
from transforms import runs
from pipelines import compact
step = sys.argv[2]
real = getattr(runs, step)
def then_die(*args, **kwargs):
    result = real(*args, **kwargs)
    os._exit(9)  # as a SIGKILL would: no cleanup, no finally
setattr(runs, step, then_die)
compact.compact(sys.argv[1], 8)
"""


@pytest.mark.parametrize("step", ["write_replaces", "commit", "finish_compactions"])
def test_a_compaction_killed_at_any_step_leaves_every_row_once(nights, step):
    before = _rows(nights)
    done = subprocess.run([sys.executable, "-c", _DIE_AFTER, str(nights), step], cwd=ROOT)
    assert done.returncode == 9
    assert _rows(nights) == before  # readers: the old shards, or the new ones, never both
    assert main(["compact", "--output", str(nights), "--rows-per-shard", "8", "--break-lock"]) == 0
    assert _rows(nights) == before and compaction.shard_count(str(nights)) == 4


def test_a_compaction_killed_by_sigkill_at_random_moments_leaves_every_row_once(nights):
    before = _rows(nights)
    for delay in (0.5, 1.0, 1.5, 2.0, 3.0):
        child = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "compact", "--output", str(nights),
                                  "--rows-per-shard", "8", "--break-lock"], cwd=ROOT)
        time.sleep(delay)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert _rows(nights) == before, delay
    assert main(["compact", "--output", str(nights), "--break-lock"]) == 0
    assert _rows(nights) == before


def test_a_run_with_many_shards_says_to_compact_and_grepq_run_compacts_by_itself(nights, model_flags, tmp_path,
                                                                                 capsys):
    folder = nights.parent / "in"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(folder / "new.jpg")
    extract.run(["--input", str(folder / "*.jpg"), "--output", str(nights), *model_flags, *FAST, "--incremental",
                 "--compact-above", "4"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"run `grepq compact --output {nights}`" in last
    Image.fromarray(np.full((24, 32, 3), 9, np.uint8)).save(folder / "newer.jpg")
    assert main(["run", "--input", str(folder / "*.jpg"), "--output", str(nights), *model_flags, *FAST,
                 "--incremental", "--compact-above", "4"]) == 0
    assert compaction.shard_count(str(nights)) == 2 and len(read_table(str(nights), "features")) == 22


def test_runs_hide_replaced_shards_only_once_the_compaction_commits(nights):
    fs_shards = sorted((nights / "features").glob("*.parquet"))
    runs.write_replaces(str(nights), runs.new_run_id(), {"features": [p.name for p in fs_shards]}, [])
    assert len(read_table(str(nights), "features")) == 20  # a replaces file without its manifest hides nothing
    compact.compact(str(nights), 100, break_lock=True)  # and the next run clears it away
    assert not list((nights / "runs").glob(f"{runs.REPLACES}*"))


def test_a_reader_whose_shards_a_compaction_replaced_meanwhile_fails_instead_of_reading_no_rows(nights):
    import apache_beam as beam

    from transforms import store
    from transforms.sinks import ParquetSink

    p = beam.Pipeline()
    _ = (p | ParquetSink(str(nights), store.FEATURES_DIR, store.features_schema()).read(columns=["path"])
         | beam.combiners.Count.Globally())
    compact.compact(str(nights))  # after the reader listed its shards, before it reads them
    with pytest.raises(Exception, match="No such file|FileNotFound|replaced while this job read it"):
        p.run().wait_until_finish()
