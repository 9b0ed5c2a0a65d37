"""The Python API and the console: the same numbers as the pipeline, few lines, progress, a CSV."""
import csv
import glob
import os

import numpy as np
import pandas as pd
import pytest

import grepq_core
from pipelines import extract, fit, score
from pipelines.cli import main
from transforms.store import read_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = sorted(glob.glob(os.path.join(ROOT, "samples", "*.jpg")))


def _settings(tiny_models):
    return {"ll_weights": tiny_models["ll"], "pristine": tiny_models["pristine"], "device": "cpu",
            "batch_size": 8, "max_patches": 8}


@pytest.fixture(scope="module")
def pipeline(tiny_models, model_flags, tmp_path_factory):
    """extract + fit + score over the bundled samples with the tiny models (LL only)."""
    out = tmp_path_factory.mktemp("pipeline")
    flags = [*model_flags, "--pathways", "ll", "--batch-size", "8", "--max-patches", "8"]
    extract.run(["--input", os.path.join(ROOT, "samples", "*.jpg"), "--output", str(out), *flags])
    fit.run(["--features", str(out), "--labels", os.path.join(ROOT, "samples", "labels.csv"),
             "--output", str(out / "model.json")])
    score.run(["--features", str(out), "--output", str(out / "zero_shot")])
    score.run(["--features", str(out), "--model", str(out / "model.json"), "--output", str(out / "ridge")])
    return out


def test_load_score_gives_the_pipelines_numbers(tiny_models, pipeline, tmp_path, monkeypatch):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    model = grepq_core.load(pathways="ll", **_settings(tiny_models))
    monkeypatch.chdir(os.path.join(ROOT, "samples"))
    frame = model.score([*(os.path.basename(p) for p in SAMPLES), str(bad)])  # relative paths: the CLI's keys
    assert list(frame.path) == [*SAMPLES, str(bad)]
    rows = read_table(str(pipeline), "features").to_pandas().set_index("path")
    zero_shot = read_table(str(pipeline / "zero_shot"), "scores").to_pandas().set_index("path")
    good = frame.iloc[:-1].set_index("path")
    for path, row in good.iterrows():
        np.testing.assert_array_equal(row.ll_features, rows.loc[path, "ll_features"])
        assert row.zs_ll == rows.loc[path, "zs_ll"] and row.ll_identity == rows.loc[path, "ll_identity"]
        assert row.score == zero_shot.loc[path, "score"] and row.scorer == zero_shot.loc[path, "scorer"]
    assert good.dead_letter_reason.isna().all()
    assert frame.iloc[-1].dead_letter_reason == "not_an_image" and pd.isna(frame.iloc[-1].score)

    ridge = grepq_core.load(pathways="ll", model=str(pipeline / "model.json"), **_settings(tiny_models))
    scored = ridge.score(SAMPLES).set_index("path")
    expected = read_table(str(pipeline / "ridge"), "scores").to_pandas().set_index("path")
    np.testing.assert_allclose(scored.score.loc[SAMPLES], expected.score.loc[SAMPLES], rtol=0, atol=1e-12)
    assert (scored.scorer == expected.scorer.loc[SAMPLES]).all() and scored.scorer.iloc[0].startswith("ridge:")


def test_extract_prints_a_handful_of_lines_and_shows_progress(model_flags, tmp_path, capfd):
    argv = ["extract", "--input", os.path.join(ROOT, "samples", "*.jpg"), *model_flags, "--pathways", "ll",
            "--batch-size", "4", "--max-patches", "8"]
    assert main([*argv, "--output", str(tmp_path / "a")]) == 0
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) <= 5, lines
    assert "32 images read, 32 scored" in out
    assert main([*argv, "--output", str(tmp_path / "b"), "--progress-every", "0.2"]) == 0
    progress = [line for line in capfd.readouterr().err.splitlines() if "progress:" in line]
    assert progress and "of 32 images done" in progress[-1] and "images/s" in progress[-1]


def test_score_writes_a_csv_for_people_who_do_not_read_parquet(pipeline, tmp_path):
    path = tmp_path / "scores.csv"
    assert main(["score", "--features", str(pipeline), "--output", str(tmp_path / "s"), "--csv", str(path),
                 "--keep-top-fraction", "0.5"]) == 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [*rows[0]] == ["path", "score", "calibrated", "keep"] and len(rows) == len(SAMPLES)
    scores = read_table(str(tmp_path / "s"), "scores").to_pandas().set_index("path")
    assert sorted(r["path"] for r in rows) == SAMPLES
    assert all(float(r["score"]) == scores.loc[r["path"], "score"] for r in rows)
    assert all((r["calibrated"] == "") == pd.isna(scores.loc[r["path"], "calibrated"]) for r in rows)
    assert all((r["keep"] == "true") == scores.loc[r["path"], "keep"] for r in rows) and scores.keep.sum() >= 16


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "grepq 0.1.0"


def test_score_with_a_model_it_cannot_read_keeps_the_earlier_scores(pipeline, tmp_path):
    earlier = sorted(str(p.relative_to(pipeline)) for p in (pipeline / "ridge").rglob("*"))
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    for model in (tmp_path / "missing.json", tmp_path / "other.json"):
        assert main(["score", "--features", str(pipeline), "--output", str(pipeline / "ridge"), "--replace",
                     "--model", str(model)]) == 2
        assert sorted(str(p.relative_to(pipeline)) for p in (pipeline / "ridge").rglob("*")) == earlier
