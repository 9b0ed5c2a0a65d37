"""Nightly runs cost what is new: unchanged inputs are skipped unread (strace counts the opens), changed ones
read again, identical content copied, and exact duplicates marked."""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import compact, extract, score
from tests.collections_corpus import photo_bytes, write_shards
from transforms import current
from transforms.incremental import ContentFilter, ContentFilterOf, hash_pairs
from transforms.store import read_table

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--pathways", "ll", "--no-zero-shot", "--batch-size", "64"]


def _noise_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` small JPEGs of random noise, each different."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _opened_under(folder: Path, argv: list[str], tmp_path: Path) -> tuple[list[str], str]:
    """(files under `folder` that `grepq ARGV` opened for reading, its stdout), traced with strace."""
    trace = tmp_path / "strace.log"
    done = subprocess.run(["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=openat,open", "-o", str(trace),
                           sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    opened = [m.group(1) for line in trace.read_text().splitlines()
              if "O_DIRECTORY" not in line and (m := re.search(r'open(?:at)?\([^"]*"([^"]+)"', line))
              and m.group(1).startswith(str(folder)) and "= -1" not in line]
    return opened, done.stdout


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt-get install strace; CI installs it)")
def test_a_no_op_rerun_reads_no_image_and_a_rerun_after_changes_reads_exactly_those(model_flags, tmp_path):
    images = _noise_jpegs(tmp_path / "in", 1000)
    out = tmp_path / "out"
    argv = ["extract", "--input", str(tmp_path / "in" / "*.jpg"), "--output", str(out), *model_flags, *FAST]
    extract.run(argv[1:])
    opened, said = _opened_under(tmp_path / "in", [*argv, "--incremental"], tmp_path)
    assert opened == [] and "0 images read" in said and "1000 skipped" in said

    changed = images[::100]
    for i, path in enumerate(changed):
        Image.fromarray(np.full((24, 32, 3), 7 * i, dtype=np.uint8)).save(path, quality=90)
    opened, said = _opened_under(tmp_path / "in", [*argv, "--incremental"], tmp_path)
    assert sorted(set(opened)) == sorted(str(p) for p in changed) and "10 images read, 10 scored" in said
    rows = read_table(str(out), "features").to_pandas()
    assert len(rows) == 1010  # a changed file's old row stays, with its old hash and stamp
    latest = rows[rows.path == str(changed[0])].sort_values("source_stamp")
    assert latest.sha256.nunique() == 2 and latest.source_stamp.nunique() == 2


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt-get install strace; CI installs it)")
def test_an_incremental_command_reads_each_run_manifest_once(model_flags, tmp_path):
    out = tmp_path / "out"
    argv = ["extract", "--input", str(tmp_path / "in" / "*" / "*.jpg"), "--output", str(out), "--incremental",
            *model_flags, *FAST]
    for night in range(3):
        _noise_jpegs(tmp_path / "in" / str(night), 4, seed=night)
        extract.run(argv[1:])
    manifests = sorted(str(p) for p in (out / "runs").glob("run-*.json"))
    opened, said = _opened_under(out / "runs", argv, tmp_path)
    assert "0 images read" in said
    assert sorted(p for p in opened if p in manifests) == manifests  # each once, though every step lists the runs


def test_rows_record_their_input_and_its_stamp(photos_dir, model_flags, tmp_path):
    extract.run(["--input", str(photos_dir / "*.jpg"), "--output", str(tmp_path / "out"), *model_flags, *FAST])
    rows = read_table(str(tmp_path / "out"), "features").to_pandas()
    for path, source, stamp in zip(rows.path, rows.source, rows.source_stamp):
        info = os.stat(path)
        assert source == path and stamp == f"size={info.st_size},mtime_ns={info.st_mtime_ns}"


def test_verify_reads_every_input_again_and_extracts_none(model_flags, tmp_path):
    _noise_jpegs(tmp_path / "in", 20)
    argv = ["--input", str(tmp_path / "in" / "*.jpg"), "--output", str(tmp_path / "out"), *model_flags, *FAST]
    extract.run(argv)
    manifest = extract.run([*argv, "--incremental", "--verify"])
    assert manifest["counts"]["images_read"] == 20 and manifest["counts"]["images_skipped_incremental"] == 20
    assert manifest["counts"]["images_scored"] == 0


def test_identical_content_under_a_new_key_is_copied_not_extracted(photos_dir, model_flags, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(photos_dir, folder)
    argv = ["--input", str(folder / "*"), "--output", str(tmp_path / "out"), *model_flags, *FAST]
    extract.run(argv)
    original = sorted(folder.glob("*.jpg"))[0]
    shutil.copyfile(original, folder / "copy-of-it.jpg")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "new.png")
    manifest = extract.run([*argv, "--incremental"])
    assert manifest["counts"]["images_copied"] == 1 and manifest["counts"]["images_scored"] == 1
    rows = read_table(str(tmp_path / "out"), "features").to_pandas().set_index("path")
    copy, first = rows.loc[str(folder / "copy-of-it.jpg")], rows.loc[str(original)]
    np.testing.assert_array_equal(copy.ll_features, first.ll_features)
    assert copy.sha256 == first.sha256 and copy.source == str(folder / "copy-of-it.jpg")
    assert copy.source_stamp != first.source_stamp

    score.run(["--features", str(tmp_path / "out"), "--output", str(tmp_path / "scored")])
    scores = read_table(str(tmp_path / "scored"), "scores").to_pandas().set_index("path")
    first_path = min(str(original), str(folder / "copy-of-it.jpg"))
    other = max(str(original), str(folder / "copy-of-it.jpg"))
    assert scores.duplicate_of[other] == first_path and scores.duplicate_of.drop(other).isna().all()


def test_an_unchanged_shard_is_skipped_whole_and_a_grown_one_extracts_only_its_new_member(photos_dir, model_flags,
                                                                                            tmp_path):
    photos = photo_bytes(photos_dir)
    names = list(photos)
    write_shards(tmp_path / "shards", {n: photos[n] for n in names[:4]}, 4)
    argv = ["--input", str(tmp_path / "shards" / "*.tar"), "--output", str(tmp_path / "out"), *model_flags, *FAST]
    first = extract.run(argv)
    again = extract.run([*argv, "--incremental"])
    assert again["counts"]["images_read"] == 0 and again["counts"]["images_skipped_incremental"] == 4
    out = tmp_path / "out"
    assert not list(out.glob(f"*/{again['run']}-*"))  # a night with nothing new leaves no shard to open later
    assert [p.name for p in (out / "dead_letters").iterdir()] == [f"{first['run']}-00000-of-00001.parquet"]
    write_shards(tmp_path / "shards", {n: photos[n] for n in names[:5]}, 5)  # the shard grows by one sample
    grown = extract.run([*argv, "--incremental"])
    assert grown["counts"]["images_read"] == 5 and grown["counts"]["images_scored"] == 1
    assert grown["counts"]["images_skipped_incremental"] == 4


def test_an_image_the_content_filter_mistook_for_stored_is_read_again_and_extracted(photos_dir, model_flags,
                                                                                   tmp_path, monkeypatch):
    photos = photo_bytes(photos_dir)
    names = list(photos)
    write_shards(tmp_path / "old", {n: photos[n] for n in names[:2]}, 2)
    write_shards(tmp_path / "new", {n: photos[n] for n in names[2:5]}, 3)
    out = tmp_path / "out"
    extract.run(["--input", str(tmp_path / "old" / "*.tar"), "--output", str(out), *model_flags, *FAST])
    monkeypatch.setattr(ContentFilter, "__contains__", lambda self, sha: True)  # every image a false positive
    manifest = extract.run(["--input", str(tmp_path / "*" / "*.tar"), "--output", str(out), "--incremental",
                            *model_flags, *FAST])
    assert manifest["counts"]["images_scored"] == 3 and manifest["counts"]["images_copied"] == 0
    assert len(list((out / "features").glob(f"{manifest['run']}-seen-*.parquet"))) == 1
    assert not list((out / "features").glob(f"{manifest['run']}-copies-*"))  # an empty shard is not kept

    fresh = tmp_path / "fresh"
    extract.run(["--input", str(tmp_path / "new" / "*.tar"), "--output", str(fresh), *model_flags, *FAST])
    got = read_table(str(out), "features").to_pandas().set_index("path").sort_index()
    want = read_table(str(fresh), "features").to_pandas().set_index("path").sort_index()
    assert len(got) == 5 and set(want.index) <= set(got.index)
    for key in want.index:
        np.testing.assert_array_equal(got.ll_features[key], want.ll_features[key])


def test_a_dead_letter_of_an_unchanged_input_stands_and_is_retried_on_request(model_flags, tmp_path):
    folder = tmp_path / "in"
    _noise_jpegs(folder, 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG")
    argv = ["--input", str(folder / "*.jpg"), "--output", str(tmp_path / "out"), *model_flags, *FAST]
    extract.run(argv)
    assert extract.run([*argv, "--incremental"])["counts"]["images_read"] == 0
    retried = extract.run([*argv, "--incremental", "--retry-dead-letters"])
    assert retried["counts"]["images_read"] == 1 and retried["counts"]["images_dead_lettered"] == 1


def test_each_key_is_scored_from_its_newest_run_only_and_compaction_keeps_those_rows(model_flags, tmp_path):
    """Changed in place, broken, mended, dead-lettered again on every retry: one current row per key."""
    folder, out = tmp_path / "in", tmp_path / "out"
    changed, breaks, mended, same = _noise_jpegs(folder, 4)
    mended.write_bytes(b"\xff\xd8\xff not a JPEG")
    argv = ["--input", str(folder / "*.jpg"), "--output", str(out), *model_flags, "--pathways", "ll"]
    extract.run(argv)
    Image.fromarray(np.full((24, 32, 3), 99, dtype=np.uint8)).save(changed, quality=90)
    breaks.write_bytes(b"\xff\xd8\xff cut short")
    Image.fromarray(np.full((24, 32, 3), 200, dtype=np.uint8)).save(mended, quality=90)
    for retry in ([], ["--retry-dead-letters"], ["--retry-dead-letters"]):
        extract.run([*argv, "--incremental", *retry])
    stored = read_table(str(out), "features").to_pandas()
    dead = read_table(str(out), "dead_letters").to_pandas()
    assert len(stored) == 5 and sorted(dead.path) == sorted([str(mended), *[str(breaks)] * 3])

    def scored(name):
        score.run(["--features", str(out), "--output", str(tmp_path / name), "--keep-top-fraction", "0.5"])
        rows = read_table(str(tmp_path / name), "scores").to_pandas().set_index("path")
        listed = [line for f in ("keep.txt", "reject.txt") for line in (tmp_path / name / f).read_text().split()]
        assert sorted(listed) == sorted(rows.index)
        return rows

    before = scored("scored")
    assert sorted(before.index) == sorted(str(p) for p in (changed, mended, same))
    for path in (changed, mended):
        assert before.sha256[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert current.read_table(str(out), "dead_letters").column("path").to_pylist() == [str(breaks)]

    compact.run(["--output", str(out)])
    assert len(read_table(str(out), "features")) == 3 and len(read_table(str(out), "dead_letters")) == 1
    after = scored("after")
    assert after.sort_index().equals(before.sort_index())


def test_a_row_is_retired_by_a_newer_run_of_its_key_only():
    ids = np.array([7, 7, 7, 8, 9, 9], np.uint64)
    ranks = np.array([1, 3, 3, 2, 5, 5], np.int64)
    assert current.retired_pairs(ids, ranks) == {(7, 1)}
    assert current.rank("features/run-20261208T010000Z-00000a-00000.parquet") < current.rank(
        "features/run-20261208T010001Z-000000-compact-00000.parquet")
    assert current.rank("features/part-00000.parquet") == 0


def test_the_content_filter_has_no_false_negative_and_few_false_positives():
    stored = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]
    others = [hashlib.sha256(f"other {i}".encode()).hexdigest() for i in range(100_000)]
    content = ContentFilter(len(stored))
    content.add(hash_pairs(stored))
    assert all(sha in content for sha in stored)
    assert sum(sha in content for sha in others) / len(others) < 3 * ContentFilter.RATE
    assert content.array.nbytes < 3.1 * len(stored)  # 3 bytes per stored hash


def test_the_content_filter_is_combined_from_pairs_not_from_a_filter_per_bundle():
    rows = 1_000_000
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3_000)]
    combine = ContentFilterOf(rows)
    bundles = [combine.add_input(combine.create_accumulator(), hash_pairs(shas[i:i + 1_000]))
               for i in range(0, len(shas), 1_000)]
    assert all(len(pickle.dumps(b)) < 20_000 for b in bundles)  # a bundle's pairs; a filter would be 3 MB
    content = combine.extract_output(combine.merge_accumulators(bundles))
    assert isinstance(content, ContentFilter) and content.array.nbytes > 2_000_000
    assert all(sha in content for sha in shas)
    big = combine.add_input(combine.create_accumulator(), hash_pairs(shas * 100))  # pairs outweigh the filter
    assert isinstance(big, ContentFilter) and all(sha in combine.merge_accumulators([big, bundles[0]]) for sha in shas)
