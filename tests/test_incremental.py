"""Nightly runs: only new images are extracted, and a killed run leaves nothing half-written."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from grepq_core.errors import GrepqError
from pipelines import extract, score
from transforms.store import read_table


def _rows(out):
    return read_table(str(out), "features").to_pandas().sort_values("path").reset_index(drop=True)


def test_incremental_run_extracts_only_new_files(photos_dir, model_flags, tmp_path):
    collection = tmp_path / "collection"
    collection.mkdir()
    images = sorted(photos_dir.glob("*.jpg"))
    for img in images[:3]:
        shutil.copy(img, collection)
    nightly, full = tmp_path / "nightly", tmp_path / "full"
    flags = [*model_flags, "--batch-size", "4"]
    extract.run(["--input", str(collection / "*"), "--output", str(nightly), *flags])
    first = _rows(nightly)
    for img in images[3:]:
        shutil.copy(img, collection)
    extract.run(["--input", str(collection / "*"), "--output", str(nightly), "--incremental", *flags])
    files = sorted((nightly / "features").glob("*.parquet"))
    assert len(files) == 2
    second_run = pd.read_parquet(files[1])
    assert sorted(second_run.path) == sorted(str(collection / p.name) for p in images[3:])
    extract.run(["--input", str(collection / "*"), "--output", str(full), *flags])
    union = _rows(nightly)
    pd.testing.assert_frame_equal(union, _rows(full))
    pd.testing.assert_frame_equal(union[union.path.isin(first.path)].reset_index(drop=True), first)


def test_incremental_run_extracts_again_with_another_pristine_model(photos_dir, model_flags, other_pristine_flags,
                                                                    tmp_path):
    """zs_ll depends on the pristine model as well as the encoders: a new one makes every row again, and the
    newest rows are the ones scored."""
    flags = ["--input", str(photos_dir / "*.png"), "--output", str(tmp_path / "out"), "--batch-size", "4"]
    extract.run([*flags, *model_flags])
    [old_rule] = _rows(tmp_path / "out").zs_ll_identity.unique()
    extract.run([*flags, "--incremental", *other_pristine_flags])
    rows = _rows(tmp_path / "out")
    by_rule = {rule: group.set_index("path") for rule, group in rows.groupby("zs_ll_identity")}
    assert len(by_rule) == 2
    first = by_rule.pop(old_rule)
    [second] = by_rule.values()
    assert sorted(first.index) == sorted(second.index) == sorted(str(p) for p in photos_dir.glob("*.png"))
    assert (first.zs_ll != second.zs_ll.loc[first.index]).all()
    score.run(["--features", str(tmp_path / "out"), "--output", str(tmp_path / "scored")])
    scored = read_table(str(tmp_path / "scored"), "scores").to_pandas().set_index("path")
    assert sorted(scored.index) == sorted(second.index)
    np.testing.assert_array_equal(scored.zs_ll.loc[second.index], second.zs_ll)


def test_incremental_run_over_shards_of_an_older_version_is_refused(photos_dir, model_flags, tmp_path):
    flags = ["--input", str(photos_dir / "*.png"), "--output", str(tmp_path), *model_flags]
    extract.run(flags)
    (shard,) = (tmp_path / "features").glob("*.parquet")
    pq.write_table(pq.read_table(shard).drop_columns(["zs_ll_identity"]), shard)
    with pytest.raises(GrepqError, match="older grepq.*zs_ll_identity.*new `output`"):
        extract.run([*flags, "--incremental"])


def test_rerun_without_incremental_refuses_to_mix_outputs(photos_dir, model_flags, tmp_path):
    extract.run(["--input", str(photos_dir / "*.png"), "--output", str(tmp_path), *model_flags])
    with pytest.raises(GrepqError, match="`incremental`"):
        extract.run(["--input", str(photos_dir / "*.png"), "--output", str(tmp_path), *model_flags])


def test_killed_run_leaves_no_readable_parquet_and_next_run_completes(photos_dir, model_flags, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        for img in sorted(photos_dir.glob("*.jpg")):
            shutil.copy(img, corpus / f"{i}_{img.name}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipelines.cli", "extract", "--input", str(corpus / "*.jpg"),
           "--output", str(out), *model_flags, "--batch-size", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (out / "features").exists() and any((out / "features").iterdir()):
            break  # Beam has started writing its temporary shards
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed; use a larger corpus"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((out / "features").glob("*.parquet")) == []
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), *model_flags, "--batch-size", "4"])
    assert len(_rows(out)) == len(list(corpus.iterdir()))


def test_scores_are_byte_identical_across_reruns(photos_dir, model_flags, tmp_path):
    extract.run(["--input", str(photos_dir / "*"), "--output", str(tmp_path / "f"), *model_flags])
    for name in ("a", "b"):
        score.run(["--features", str(tmp_path / "f"), "--output", str(tmp_path / name)])
    a, b = (read_table(str(tmp_path / n), "scores").to_pandas().sort_values("path") for n in "ab")
    assert a.score.to_numpy().tobytes() == b.score.to_numpy().tobytes()
