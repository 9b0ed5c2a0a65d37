"""`grepq evaluate` on a small labelled set of real photos with graded blur, and its protocols."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from grepq_core.evaluation import protocols as E
from grepq_core.evaluation.datasets import load_dataset
from grepq_core.model.extractor import Extractor
from pipelines import evaluate, evaluate_data

BLUR_RADII = (0, 1, 2, 4)
ZERO_SHOT = {"grepq LL (zs_ll)", "grepq HL (zs_hl)", "grepq LL+HL (zs_combined)", "NIQE", "BRISQUE"}
FEW_SHOT = {"grepq LL+HL ridge", "grepq LL ridge", "grepq HL ridge", "NSS ridge (BRISQUE's 36 features)",
            "grepq zero-shot (same splits)", "grepq fit (kept by CV)"}
HL_ROWS = {"grepq HL (zs_hl)", "grepq LL+HL (zs_combined)", "grepq LL+HL ridge", "grepq HL ridge"}


@pytest.fixture(scope="module")
def dataset(photos_dir, tmp_path_factory):
    """24 images: each of the six photos at four blur radii; score falls with blur, group = photo."""
    root = tmp_path_factory.mktemp("blur_set")
    rows = []
    for source in sorted(photos_dir.iterdir()):
        img = Image.open(source).convert("RGB")
        for level, radius in enumerate(BLUR_RADII):
            name = f"{source.stem}_blur{level}.png"
            img.filter(ImageFilter.GaussianBlur(radius)).save(root / name)
            rows.append({"path": name, "score": 100 - 25 * level, "group": source.stem})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def _flags(dataset, cache, out, model_flags, *extra):
    return ["--dataset", "csv", "--root", str(dataset), "--protocol", "both", "--n-train", "10", "--splits", "3",
            "--features-cache", str(cache), "--output", str(out), "--max-patches", "8", "--batch-size", "8",
            *model_flags, *extra]


def _results(report) -> dict:
    return {(r["protocol"], r["method"]): r for r in report["results"]}


def _shards(cache) -> dict:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*.parquet")}


@pytest.fixture(scope="module")
def first_run(dataset, model_flags, tmp_path_factory):
    cache, out = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("out")
    report = evaluate.run(_flags(dataset, cache, out, model_flags))
    return cache, out, report


def test_both_protocols_write_json_and_markdown_with_every_row(first_run):
    _, out, report = first_run
    written = json.loads((out / "evaluation.json").read_text())
    markdown = (out / "evaluation.md").read_text()
    assert written["images"] == 24 and written["groups"] == 6 and written["dropped"] == []
    rows = _results(written)
    assert set(rows) == {("zero-shot", m) for m in ZERO_SHOT} | {("few-shot", m) for m in FEW_SHOT}
    for (protocol, method), row in rows.items():
        assert not row["note"].startswith("not run"), (method, row["note"])
        assert all(math.isfinite(row["values"][m]) and -1 <= row["values"][m] <= 1 for m in E.METRICS)
        assert method in markdown
        if protocol == "few-shot":
            assert all(len(row["per_split"][m]) == 3 for m in E.METRICS)
            low, high = row["iqr"]["srcc"]
            assert low <= row["values"]["srcc"] <= high
            assert row["n_test"] == 4  # one of the six contents held out, all four of its images
        else:
            assert row["n_test"] == 24
    assert "negated" in rows[("zero-shot", "NIQE")]["note"]
    # Blur is what the classical NSS statistics see: negated NIQE and BRISQUE, and a ridge on
    # BRISQUE's features fitted on 10 images, rank the blurred versions lower.
    assert rows[("zero-shot", "NIQE")]["values"]["srcc"] > 0.3
    assert rows[("zero-shot", "BRISQUE")]["values"]["srcc"] > 0.5
    assert rows[("few-shot", "NSS ridge (BRISQUE's 36 features)")]["values"]["srcc"] > 0.5


@pytest.mark.parametrize("extra, reason", [
    (["--pathways", "ll"], "--pathways ll"),
    (["--hl-weights", "/nonexistent/hl.pt"], "not loaded: weights file not found: /nonexistent/hl.pt"),
])
def test_missing_hl_pathway_is_reported_with_its_reason(dataset, model_flags, tmp_path, extra, reason):
    # A repeated flag takes its last value, so `extra` overrides the tiny model's --hl-weights.
    report = evaluate.run(_flags(dataset, tmp_path / "cache", tmp_path / "out", model_flags, *extra))
    rows = _results(report)
    for (_, method), row in rows.items():
        if method in HL_ROWS:
            assert not row["values"] and row["note"].startswith("not run") and reason in row["note"], row
        else:
            assert row["values"], row
    assert report["encoders"]["hl"] is None and report["encoders"]["ll"]
    assert "not run" in (tmp_path / "out" / "evaluation.md").read_text()


def test_cache_is_reused_and_only_for_the_same_encoders(first_run, dataset, model_flags, other_pristine_flags,
                                                        tmp_path, monkeypatch):
    cache, _, report = first_run
    before = _shards(cache)
    assert any(p.startswith("baselines/") for p in before) and any("/features/" in p for p in before)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a cached image")

    for name in ("niqe", "brisque", "nss_features"):
        monkeypatch.setattr(evaluate_data, name, fail)
    with monkeypatch.context() as m:
        m.setattr(Extractor, "encode", fail)
        again = evaluate.run(_flags(dataset, cache, tmp_path / "again", model_flags))
    assert _shards(cache) == before
    assert _results(again) == _results(report)

    # Other encoders (LL only): new feature rows, baselines still from the cache.
    evaluate.run(_flags(dataset, cache, tmp_path / "ll", model_flags, "--pathways", "ll"))
    added = set(_shards(cache)) - set(before)
    assert len(added) == 1 and "/features/" in added.pop()

    # Another pristine model, same encoders: zs_ll changes, so the feature rows are made again.
    evaluate.run(_flags(dataset, cache, tmp_path / "shifted", other_pristine_flags))
    assert len(set(_shards(cache)) - set(before)) == 2


def test_few_shot_splits_never_share_a_group(dataset):
    df = load_dataset("csv", str(dataset))
    splits = E.content_splits(df, n_train=10, splits=5, seed=0)
    groups = df["group"].to_numpy()
    for train, test in splits:
        assert len(train) == 10 and len(test) > 0
        assert not set(groups[train]) & set(groups[test])
    assert len({tuple(train) for train, _ in splits}) > 1


def test_few_shot_ridge_tracks_informative_features_not_noise():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"group": [f"g{i // 4}" for i in range(80)]})
    mos = rng.uniform(0, 100, len(df))
    informative = np.column_stack([mos + rng.normal(0, 5, len(df)), rng.normal(size=(len(df), 3))])
    noise = rng.normal(size=(len(df), 4))
    splits = E.content_splits(df, n_train=32, splits=4, seed=1)
    layout, ids = [["x", 4]], {"x": "test"}
    good = E.few_shot("informative", informative, mos, splits, layout, ids)
    bad = E.few_shot("noise", noise, mos, splits, layout, ids)
    assert good.values["srcc"] > 0.9 and abs(bad.values["srcc"]) < 0.5
    assert good.n_test == 16 and len(good.alphas) == 4  # 4 of the 20 contents, 4 images each


def test_zero_shot_leaves_out_missing_scores_and_reports_too_few():
    mos = np.arange(10.0)
    scores = mos.copy()
    scores[[2, 5]] = np.nan
    result = E.zero_shot("s", scores, mos)
    assert result.n_test == 8 and result.values["srcc"] == pytest.approx(1.0)
    assert not E.zero_shot("s", np.full(10, np.nan), mos).ran


def test_evaluate_writes_progress_lines_not_a_bar_when_logged(dataset, model_flags, tmp_path, capfd):
    """Redirected to a log, the command writes lines (no carriage returns of a progress bar)."""
    from pipelines.cli import main

    assert main(["evaluate", *_flags(dataset, tmp_path / "cache", tmp_path / "out", model_flags),
                 "--protocol", "zero-shot"]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err and "images computed" in err
