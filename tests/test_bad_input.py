"""Every kind of broken or awkward file ends in exactly one output, on DirectRunner."""
import os

import numpy as np
import pytest
from bad_corpus import DECODE_SECONDS, expected_stage, make_bad_corpus
from PIL import Image

from grepq_core.images.paths import to_text as text_path
from pipelines import extract
from transforms.store import read_table


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, model_flags):
    corpus = tmp_path_factory.mktemp("bad")
    expected = make_bad_corpus(corpus)
    out = tmp_path_factory.mktemp("out")
    extract.run(["--input", f"{corpus}/*", "--output", str(out), *model_flags, "--batch-size", "4",
                 "--max-image-seconds", str(DECODE_SECONDS)])
    rows = read_table(str(out), "features").to_pandas()
    dead = read_table(str(out), "dead_letters").to_pandas()
    files = {text_path(p): outcome for p, outcome in expected.items() if not os.path.isdir(p)}
    return files, rows, dead


def test_inputs_equal_scored_rows_plus_dead_letters(bad_run):
    files, rows, dead = bad_run
    assert len(rows) + len(dead) == len(files)
    assert set(rows.path).isdisjoint(dead.path)
    assert set(rows.path) | set(dead.path) == set(files)


def test_each_kind_is_scored_or_dead_lettered_with_its_reason(bad_run):
    files, rows, dead = bad_run
    why = {path: (stage, reason) for path, stage, reason in zip(dead.path, dead.stage, dead.reason)}
    for path, outcome in files.items():
        if outcome == "ok":
            assert path in set(rows.path), path
        else:
            assert why.get(path) == (expected_stage(outcome, os.path.basename(path)), outcome), path


def test_converted_images_keep_their_original_size(bad_run):
    _, rows, _ = bad_run
    size = {os.path.basename(p): (w, h) for p, w, h in zip(rows.path, rows.width, rows.height)}
    assert size["exif_rotated.jpg"] == (300, 451)  # 451x300 stored, rotated by EXIF
    assert size["one_pixel.png"] == (1, 1)
    assert size["panorama_8000x200.jpg"] == (8000, 200)
    assert rows.ll_features.map(len).eq(128).all() and rows.zs_ll.notna().all()
    dup = rows[rows.path.str.contains("duplicate_")]
    assert len(dup) == 2 and dup.sha256.nunique() == 1


def test_damaged_metadata_costs_no_pixels_and_the_decoder_column_says_so(bad_run):
    _, rows, _ = bad_run
    decoder = {os.path.basename(p): d for p, d in zip(rows.path, rows.decoder)}
    assert decoder["exif_damaged.png"] == "cpu, damaged EXIF ignored"
    assert decoder["icc_12_bytes.jpg"] == decoder["ztxt_50mb.png"] == "cpu, damaged metadata ignored"
    assert decoder["exif_rotated.jpg"] == decoder["cmyk.jpg"] == "cpu"


def test_an_output_inside_the_input_is_never_read_as_input(model_flags, tmp_path, caplog):
    folder = tmp_path / "photos"
    (folder / "day1").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 60, 3), np.uint8)).save(
            folder / "day1" / f"{i}.jpg")
    out = folder / "out"
    argv = ["--input", f"{folder}/**/*", "--output", str(out), *model_flags, "--pathways", "ll", "--no-zero-shot"]
    first = extract.run(argv)
    assert first["counts"]["images_scored"] == 3 and first["counts"]["images_dead_lettered"] == 0
    caplog.clear()
    again = extract.run([*argv, "--incremental"])  # its shards, manifest and lock now lie under the glob
    assert again["counts"]["images_read"] == 0 and again["counts"]["images_dead_lettered"] == 0
    assert "lie under the output folder" in caplog.text
    assert len(read_table(str(out), "features")) == 3 and len(read_table(str(out), "dead_letters")) == 0
