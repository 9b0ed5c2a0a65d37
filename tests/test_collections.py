"""Collections as the field stores them: WebDataset shards, Parquet files and input lists in; a filtered
collection out, read back with webdataset and pyarrow."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import hold_elsewhere

import grepq_core
from grepq_core.fitting.labels import LabelFile
from grepq_core.images import shards, sources
from pipelines import extract, filtering, score
from pipelines.cli import main
from tests.collections_corpus import caption, photo_bytes, raw_tar, write_hf_parquet, write_shards
from transforms import filtered, runs
from transforms.store import read_table

PER_SHARD = 4


@dataclass
class Extracted:
    out: Path
    rows: pd.DataFrame
    dead: pd.DataFrame


@pytest.fixture(scope="module")
def collection(photos_dir, tmp_path_factory):
    """The same six photos as loose files, as two WebDataset shards and as one Parquet file."""
    root = tmp_path_factory.mktemp("collection")
    photos = photo_bytes(photos_dir)
    write_shards(root / "shards", photos, PER_SHARD)
    write_hf_parquet(root / "hf" / "train-00000-of-00001.parquet",
                     [{"bytes": data, "path": name} for name, data in photos.items()])
    return root, photos


def _extract(inputs, out, model_flags, *extra) -> Extracted:
    flags = [f for i in inputs for f in ("--input", str(i))]
    extract.run([*flags, "--output", str(out), *model_flags, "--batch-size", "4", "--max-patches", "8", *extra])
    return Extracted(out, read_table(str(out), "features").to_pandas(), read_table(str(out), "dead_letters").to_pandas())


@pytest.fixture(scope="module")
def extracted(collection, photos_dir, model_flags, tmp_path_factory) -> dict[str, Extracted]:
    root, _ = collection
    out = tmp_path_factory.mktemp("extracted")
    return {kind: _extract(inputs, out / kind, model_flags) for kind, inputs in (
        ("files", [photos_dir / "*"]),
        ("shards", [root / "shards" / "{00000..00001}.tar"]),
        ("parquet", [root / "hf" / "*.parquet"]))}


def _comparable(e: Extracted) -> dict:
    """Each feature row without where it came from (its key and input), by content hash."""
    return {r["sha256"]: {k: v for k, v in r.items() if k not in ("path", "source", "source_stamp")}
            for r in read_table(str(e.out), "features").to_pylist()}


def _member(root: Path, index: int, name: str) -> str:
    return f"tar://{index:09d}.{name.rsplit('.', 1)[1]}::{root / 'shards' / f'{index // PER_SHARD:05d}.tar'}"


def test_the_same_images_as_files_shards_and_parquet_give_the_same_rows(extracted, collection):
    root, photos = collection
    assert all(e.dead.empty and len(e.rows) == len(photos) for e in extracted.values())
    assert _comparable(extracted["shards"]) == _comparable(extracted["files"]) == _comparable(extracted["parquet"])
    assert set(extracted["shards"].rows.path) == {_member(root, i, n) for i, n in enumerate(photos)}
    table = root / "hf" / "train-00000-of-00001.parquet"
    assert set(extracted["parquet"].rows.path) == {f"parquet://image/{i}::{table}" for i in range(len(photos))}


def test_every_key_reads_back_the_bytes_it_names(extracted, collection):
    _, photos = collection
    by_hash = {hashlib.sha256(data).hexdigest(): data for data in photos.values()}
    for e in extracted.values():
        for key, sha256 in zip(e.rows.path, e.rows.sha256):
            assert sources.read(key) == by_hash[sha256], key
    member = extracted["shards"].rows.path.iloc[0]
    with fsspec.open(member) as f:  # a member's key is its fsspec URL
        assert f.read() == sources.read(member)


def _score(features: Path, out: Path, *extra) -> pd.DataFrame:
    score.run(["--features", str(features), "--output", str(out), *extra])
    return read_table(str(out), "scores").to_pandas().set_index("path")


def _samples(paths) -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in paths), shardshuffle=False))


def test_filter_writes_the_kept_samples_as_shards_with_every_member_unchanged(extracted, collection, tmp_path):
    root, photos = collection
    names = list(photos)
    scores = _score(extracted["shards"].out, tmp_path / "scored", "--keep-top-fraction", "0.5")
    kept_keys = sorted(f"{i:09d}" for i, n in enumerate(names) if scores.keep[_member(root, i, n)])
    assert 0 < len(kept_keys) < len(photos)
    kept, rejected = tmp_path / "kept", tmp_path / "rejected"
    filtering.run(["--scores", str(tmp_path / "scored"), "--features", str(extracted["shards"].out),
                   "--output", str(kept), "--rejected", str(rejected), "--shard-size", "2"])

    written = sorted(kept.glob("*.tar"))
    assert [p.name for p in written] == [f"{i:05d}.tar" for i in range(len(written))]
    assert all(len(_samples([p])) <= 2 for p in written)
    samples = _samples(written)
    assert [s["__key__"] for s in samples] == kept_keys
    for sample in samples:
        index = int(sample["__key__"])
        name = names[index]
        assert sample[name.rsplit(".", 1)[1]] == photos[name] and sample["txt"] == caption(name)
        assert json.loads(sample["json"]) == {"source": name}
        record = json.loads(sample["grepq.json"])
        assert record["keep"] is True and record["key"] == sample["__key__"]
        assert record["score"] == scores.score[_member(root, index, name)]
    others = _samples(rejected.glob("*.tar"))
    assert sorted(s["__key__"] for s in others + samples) == [f"{i:09d}" for i in range(len(photos))]
    assert all(json.loads(s["grepq.json"])["keep"] is False for s in others)
    manifest = json.loads((kept / "_grepq_filter.json").read_text())
    assert manifest["samples"] == len(kept_keys) and manifest["kept"] is True

    assert main(["filter", "--scores", str(tmp_path / "scored"), "--output", str(kept)]) == 2
    hold_elsewhere(rejected / runs.RESULTS_LOCK)  # another filter run is writing the rejected samples
    again = ["filter", "--scores", str(tmp_path / "scored"), "--output", str(kept), "--rejected", str(rejected),
             "--replace", "--shard-size", "100"]
    assert main(again) == 2
    assert sorted(kept.glob("*.tar")) == written and not (kept / runs.RESULTS_LOCK).exists()
    assert main(again + ["--break-lock"]) == 0
    assert [p.name for p in kept.glob("*.tar")] == ["00000.tar"]
    assert not (kept / runs.RESULTS_LOCK).exists() and not (rejected / runs.RESULTS_LOCK).exists()
    assert main(["filter", "--scores", str(tmp_path / "scored"), "--output", str(kept), "--rejected",
                 str(kept / "."), "--replace"]) == 2


def test_filter_writes_parquet_with_the_source_columns_and_the_scores(extracted, collection, tmp_path):
    root, photos = collection
    scores = _score(extracted["parquet"].out, tmp_path / "scored", "--keep-top-fraction", "0.5")
    filtering.run(["--scores", str(tmp_path / "scored"), "--output", str(tmp_path / "kept")])
    table = pq.read_table(tmp_path / "kept")  # the whole folder, as a Parquet reader takes it: its manifest is skipped
    assert [p.name for p in (tmp_path / "kept").iterdir() if p.suffix == ".parquet"] == ["00000.parquet"]
    source = pq.read_table(root / "hf" / "train-00000-of-00001.parquet")
    assert table.column_names == [*source.column_names, "grepq_score", "grepq_calibrated", "grepq_keep",
                                  "grepq_scorer"]
    kept_rows = sorted(int(k.split("/")[3].split("::")[0]) for k in scores.index[scores.keep])
    assert table.column("label").to_pylist() == kept_rows
    assert table.column("image").to_pylist() == source.take(kept_rows).column("image").to_pylist()
    assert all(table.column("grepq_keep").to_pylist())


def test_labels_name_shard_members_and_parquet_rows_by_file_name(extracted, collection, tmp_path):
    root, photos = collection
    keys = [*extracted["shards"].rows.path, *extracted["parquet"].rows.path]
    by_name = {f"{i:09d}.{n.rsplit('.', 1)[1]}": float(i) for i, n in enumerate(photos)}
    row = f"parquet://image/3::{root / 'hf' / 'train-00000-of-00001.parquet'}"  # a row is named by its key
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [*by_name, row, "absent.jpg"], "score": [*by_name.values(), 30.0, 1.0]}).to_csv(
        labels, index=False)
    matched, warnings = LabelFile(str(labels)).match(keys)
    assert matched == {**{_member(root, i, n): float(i) for i, n in enumerate(photos)}, row: 30.0}
    assert "1 of 8 label rows match no feature row" in warnings[0]


def test_the_api_scores_shards_and_parquet_files_one_row_per_image(extracted, collection, tiny_models):
    root, photos = collection
    model = grepq_core.load(ll_weights=tiny_models["ll"], pristine=tiny_models["pristine"],
                            hl_model=tiny_models["hl_model"], hl_weights=tiny_models["hl"], max_patches=8,
                            batch_size=4)
    frame = model.score([root / "shards" / "00000.tar", root / "shards" / "00001.tar",
                         root / "hf" / "train-00000-of-00001.parquet"])
    assert len(frame) == 2 * len(photos) and frame.dead_letter_reason.isna().all()
    pipeline = pd.concat([extracted["shards"].rows, extracted["parquet"].rows]).set_index("path")
    for column in ("ll_features", "hl_features"):
        np.testing.assert_array_equal(np.stack(frame[column]), np.stack(pipeline.loc[frame.path, column]))


def _write_bad_collection(root: Path, photos: dict[str, bytes]) -> dict[str, str]:
    """Shards and Parquet files holding every kind of bad member, and the reason each key must get."""
    good = list(photos.values())[:2]
    raw_tar(root / "bad.tar", [
        ("000001.jpg", good[0]), ("000001.txt", b"a good sample"),
        ("000002.jpg", b"this is text, not a JPEG"),
        ("000003.txt", b"a sample without an image"), ("000003.json", b"{}"),
        ("000004.jpg", b""),
        ("000001.jpg", good[1]),
        ("../000005.jpg", good[0]), ("/abs/000006.jpg", good[0]),
        ("000007.jpg", 300 * 2**20),  # a bomb: its header says 300 MB (a hole in a sparse file)
        ("000008.jpg", good[1])])
    whole = raw_tar(root / "whole.tar", [("000001.jpg", good[0]), ("000002.jpg", good[1]), ("000003.jpg", good[0])])
    data = whole.read_bytes()
    (root / "truncated.tar").write_bytes(data[:512 * 2 + len(good[0]) + 600])  # inside the second member
    write_hf_parquet(root / "a_images.parquet", [{"bytes": good[0], "path": "a.jpg"}, None,
                                                 {"bytes": None, "path": "gone.jpg"},
                                                 {"bytes": b"not an image", "path": "x.jpg"}])
    pq.write_table(pa.table({"key": ["1"], "url": ["http://x/1.jpg"]}), root / "b_metadata.parquet")
    (root / "empty.tar").write_bytes(b"")
    b, t, p = f"::{root / 'bad.tar'}", f"::{root / 'truncated.tar'}", f"::{root / 'a_images.parquet'}"
    return {
        **{f"tar://00000{i}.jpg::{whole}": "scored" for i in (1, 2, 3)},
        f"tar://000001.jpg{b}": "scored", f"tar://000002.jpg{b}": "not_an_image", f"tar://000003.txt{b}": "no_image",
        f"tar://000003.json{b}": "no_image", f"tar://000004.jpg{b}": "empty_file",
        f"tar://../000005.jpg{b}": "unsafe_member_name",
        f"tar:///abs/000006.jpg{b}": "unsafe_member_name", f"tar://000007.jpg{b}": "too_large",
        f"tar://000008.jpg{b}": "scored",
        f"tar://000001.jpg{t}": "scored", f"tar://000002.jpg{t}": "truncated_shard",
        f"parquet://image/0{p}": "scored", f"parquet://image/1{p}": "empty_file",
        f"parquet://image/2{p}": "empty_file", f"parquet://image/3{p}": "not_an_image",
        str(root / "b_metadata.parquet"): "no_image_column", str(root / "empty.tar"): "not_a_tar",
    }


def test_every_bad_member_ends_in_one_dead_letter_and_the_rest_is_scored(photos_dir, model_flags, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    expected = _write_bad_collection(root, photo_bytes(photos_dir))
    e = _extract([root / "*.tar", root / "*.parquet"], tmp_path / "out", model_flags, "--pathways", "ll")
    # the repeated 000001.jpg of bad.tar is a dead letter under the key of the member scored before it
    duplicates = e.dead[e.dead.reason == "duplicate_member"]
    assert list(duplicates.path) == [f"tar://000001.jpg::{root / 'bad.tar'}"]
    dead = e.dead[e.dead.reason != "duplicate_member"]
    outcome = {**{k: "scored" for k in e.rows.path}, **dict(zip(dead.path, dead.reason))}
    assert len(outcome) == len(e.rows) + len(dead) and outcome == expected  # every other key once, as expected
    too_large = e.dead[e.dead.reason == "too_large"].detail.iloc[0]
    assert str(300 * 2**20) in too_large
    assert "no later member" in e.dead[e.dead.reason == "truncated_shard"].detail.iloc[0]


def test_bad_members_filter_into_typed_parquet_and_samples_known_by_their_score(photos_dir, model_flags, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    _write_bad_collection(root, photo_bytes(photos_dir))
    e = _extract([root / "*.tar", root / "*.parquet"], tmp_path / "out", model_flags, "--pathways", "ll")
    scores = _score(tmp_path / "out", tmp_path / "out", "--keep-above", "1e9")  # every scored image rejected
    assert not scores.keep.any()
    filtering.run(["--scores", str(tmp_path / "out"), "--output", str(tmp_path / "kept"),
                   "--rejected", str(tmp_path / "rejected")])

    # a_images.parquet: row 0 scored, then row groups of dead letters only; the grepq columns keep their types
    [written] = (tmp_path / "rejected").glob("*.parquet")
    rejected = pd.read_parquet(written)
    assert rejected.label.tolist() == [0, 1, 2, 3]
    assert rejected.grepq_score.notna().tolist() == [True, False, False, False]
    schema = pq.read_schema(written)
    assert [(f.name, f.type) for f in schema][-4:] == [
        ("grepq_score", pa.float64()), ("grepq_calibrated", pa.float64()), ("grepq_keep", pa.bool_()),
        ("grepq_scorer", pa.string())]
    # bad.tar's 000001.jpg has a score row and a duplicate_member dead letter; its first copy, scored, is written
    sample = next(s for s in _samples((tmp_path / "rejected").glob("*.tar")) if s["__key__"] == "000001")
    record = json.loads(sample["grepq.json"])
    key = f"tar://000001.jpg::{root / 'bad.tar'}"
    assert record["images"]["000001.jpg"]["score"] == scores.score[key] and "dead_letter" not in record["images"][
        "000001.jpg"]
    assert set(e.dead.path[e.dead.reason == "duplicate_member"]) == {key}
    # three shards hold a sample 000001: no two samples in a row share a key, which webdataset would merge
    keys = [s["__key__"] for s in _samples((tmp_path / "rejected").glob("*.tar"))]
    assert sorted(keys) == ["000001"] * 3 + ["000002"] * 2 + ["000003"] * 2 + ["000004", "000008"]
    assert all(a != b for a, b in zip(keys, keys[1:]))
    manifest = json.loads((tmp_path / "rejected" / "_grepq_filter.json").read_text())
    assert (manifest["loose_files"], manifest["unplaced_dead_letters"]) == (0, 2)  # empty.tar, b_metadata.parquet
    assert f"{root / 'truncated.tar'}: 000002: truncated: the shard breaks inside its member 000002.jpg" in [
        line for entry in manifest["files"] for line in entry["skipped"]]


def test_a_wanted_sample_that_cannot_be_copied_whole_says_why(photos_dir, tmp_path):
    """Cut inside a caption after its sample's intact image, or before a sample: never a sample short of a
    member, never a wanted key left out silently."""
    image = next(iter(photo_bytes(photos_dir).values()))
    whole = raw_tar(tmp_path / "whole.tar", [("a.jpg", image), ("a.txt", b"x" * 2000), ("b.jpg", image)])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:512 * 2 + len(image) + 511 + 1000])  # inside a.txt's data
    got = dict(shards.wanted_samples(str(cut), {"a", "b"}))
    assert got["a"] == "truncated: the shard breaks inside its member a.txt"
    assert got["b"].startswith("missing: ")
    assert dict(shards.wanted_samples(str(whole), {"a", "b"}))["a"] == {"jpg": image, "txt": b"x" * 2000}


def test_a_member_with_a_score_and_a_dead_letter_is_known_by_its_score_in_either_order():
    scored = ("000001.jpg", {"keep": True, "score": 70.0, "calibrated": 3.5, "scorer": "zero-shot"})
    dead = ("000001.jpg", {"keep": False, "dead_letter": "duplicate_member", "detail": None})
    item = ("tar", "s.tar", "000001")
    assert filtered._record(item, [scored, dead]) == filtered._record(item, [dead, scored])
    assert filtered._record(item, [dead, scored])[3]["keep"] is True


def test_a_parquet_input_without_an_image_column_is_refused_in_one_line(tmp_path, capsys):
    pq.write_table(pa.table({"key": ["1"], "url": ["http://x/1.jpg"]}), tmp_path / "00000.parquet")
    assert main(["extract", "--input", str(tmp_path / "*.parquet"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no image column" in err and "img2dataset" in err
    assert "--image-column" in err


def test_the_image_column_can_be_named(photos_dir, model_flags, tmp_path):
    photos = list(photo_bytes(photos_dir).values())[:2]
    pq.write_table(pa.table({"jpg": photos, "thumb": photos, "key": ["a", "b"]}), tmp_path / "two.parquet")
    assert main(["extract", "--input", str(tmp_path / "two.parquet"), "--output", str(tmp_path / "o")]) == 2
    e = _extract([tmp_path / "two.parquet"], tmp_path / "out", model_flags, "--pathways", "ll",
                 "--image-column", "thumb")
    assert sorted(e.rows.path) == [f"parquet://thumb/{i}::{tmp_path / 'two.parquet'}" for i in range(2)]


def test_input_lists_name_files_shards_and_members(extracted, collection, photos_dir, model_flags, tmp_path):
    root, photos = collection
    member = extracted["shards"].rows.path.iloc[0]
    files = sorted(str(p) for p in photos_dir.glob("*.jpg"))
    (tmp_path / "new.txt").write_text("# the night's new objects\n\n" + "\n".join(
        [files[0], str(root / "shards" / "00001.tar"), member, str(tmp_path / "missing.jpg")]) + "\n")
    pd.DataFrame({"url": files[1:3]}).to_csv(tmp_path / "new.csv", index=False)
    pq.write_table(pa.table({"path": files[3:]}), tmp_path / "new.parquet")
    extract.run(["--input-list", str(tmp_path / "new.txt"), "--input-list", str(tmp_path / "new.csv"),
                 "--input-list", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "out"), *model_flags,
                 "--pathways", "ll", "--max-patches", "8"])
    rows = read_table(str(tmp_path / "out"), "features").to_pandas()
    dead = read_table(str(tmp_path / "out"), "dead_letters").to_pandas()
    in_second_shard = [k for k in extracted["shards"].rows.path if k.endswith("00001.tar")]
    assert sorted(rows.path) == sorted({*files, member, *in_second_shard})
    assert list(dead.path) == [str(tmp_path / "missing.jpg")] and dead.reason.tolist() == ["unreadable"]


def test_a_list_without_a_column_naming_inputs_is_refused(tmp_path):
    pd.DataFrame({"file": ["a.jpg"]}).to_csv(tmp_path / "list.csv", index=False)
    assert main(["extract", "--input-list", str(tmp_path / "list.csv"), "--output", str(tmp_path / "o")]) == 2


def test_img2dataset_output_is_extracted_and_filtered(model_flags, tmp_path):
    """Shards, their metadata Parquet and stats as img2dataset 1.47 wrote them (tests/data/img2dataset)."""
    source = Path(__file__).parent / "data" / "img2dataset"
    meta = pq.read_table(source / "00000.parquet").to_pandas()
    fetched = meta[meta.status == "success"]
    assert 0 < len(fetched) < len(meta)  # the fixture holds failed downloads too
    e = _extract([source / "*.tar"], tmp_path / "out", model_flags, "--pathways", "ll", "--max-patches", "8")
    assert sorted(e.rows.path) == sorted(f"tar://{k}.jpg::{source / '00000.tar'}" for k in fetched.key)
    assert main(["extract", "--input", str(source / "*.parquet"), "--output", str(tmp_path / "o2")]) == 2
    scores = _score(tmp_path / "out", tmp_path / "out", "--keep-top-fraction", "0.5")
    filtering.run(["--scores", str(tmp_path / "out"), "--output", str(tmp_path / "kept")])
    kept = _samples((tmp_path / "kept").glob("*.tar"))
    originals = {s["__key__"]: s for s in _samples([source / "00000.tar"])}
    assert sorted(s["__key__"] for s in kept) == sorted(k.split("::")[0][len("tar://"):-len(".jpg")]
                                                       for k in scores.index[scores.keep])
    for sample in kept:
        assert all(sample[ext] == originals[sample["__key__"]][ext] for ext in ("jpg", "txt", "json"))
