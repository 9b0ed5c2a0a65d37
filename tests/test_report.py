"""`grepq report` on a real labelled run: the HTML, and the page as Chromium renders it."""
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from grepq_core.report import SECTIONS, ReportInputs, decile_rows, render_report
from pipelines import report, run_all, score
from transforms.store import read_table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROKEN = {"empty.jpg": "empty_file", "notes.jpg": "not_an_image", "x<b>&y.jpg": "not_an_image"}


def _section(text: str, key: str) -> str:
    """The HTML of one section of the page."""
    return text.split(f'<section id="{key}">')[1].split("</section>")[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, photos_dir, model_flags):
    """`grepq run` with labels over sharp and blurred photos plus broken files; one photo deleted afterwards."""
    root = tmp_path_factory.mktemp("report_in")
    names = []
    for src in sorted(photos_dir.iterdir()):
        img = Image.open(src).convert("RGB")
        img.save(root / f"sharp_{src.stem}.jpg", quality=95)
        img.filter(ImageFilter.GaussianBlur(4)).save(root / f"blur_{src.stem}.jpg", quality=95)
        names += [f"sharp_{src.stem}.jpg", f"blur_{src.stem}.jpg"]
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image")
    (root / "x<b>&y.jpg").write_text("<script>alert(1)</script>")
    labels = pd.DataFrame({"path": names, "score": [80.0 if n.startswith("sharp_") else 20.0 for n in names]})
    labels.to_csv(root / "labels.csv", index=False)
    out = tmp_path_factory.mktemp("report_out")
    run_all.run(["--input", str(root / "*.jpg"), "--output", str(out), *model_flags, "--batch-size", "4",
                 "--labels", str(root / "labels.csv"), "--keep-top-fraction", "0.5"])
    (root / "blur_chelsea.jpg").unlink()  # its thumbnail must be skipped, not crash the report
    return out


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("report_page") / "report.html"
    report.run(["--scores", str(run_dir), "--output", str(path)])
    return path


def test_page_is_self_contained_and_escaped(page):
    text = page.read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'id="{key}"' in text
    assert not re.search(r"<(script|link|iframe)\b", text)
    sources = re.findall(r'\bsrc="([^"]*)"', text)
    assert sources and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)
    assert "x&lt;b&gt;&amp;y.jpg" in text and "x<b>&y" not in text


def test_deciles_show_thumbnails_and_skip_unreadable_images(run_dir, page):
    scores = read_table(str(run_dir), "scores").to_pandas()
    picks = decile_rows(scores)
    assert len(picks) == 11 and picks["score"].is_monotonic_increasing
    assert picks["score"].iloc[0] == scores["score"].min() and picks["score"].iloc[-1] == scores["score"].max()
    strip = _section(page.read_text(encoding="utf-8"), "deciles")
    missing = int(picks["path"].str.endswith("/blur_chelsea.jpg").sum())
    assert missing == 1
    assert strip.count("data:image/jpeg;base64,") == len(picks) - missing
    assert strip.count("unreadable") == missing
    for value in picks["score"]:
        assert f"{value:.4g}" in strip


def test_parameters_and_dead_letters_come_from_the_run(run_dir, page):
    text = page.read_text(encoding="utf-8")
    scores = read_table(str(run_dir), "scores").to_pandas()
    features = read_table(str(run_dir), "features").to_pandas()
    params = _section(text, "parameters")
    assert features.ll_identity.iloc[0] in params and features.hl_identity.iloc[0] in params
    kept = int(scores.keep.sum())
    assert f"<td>kept</td><td>{kept}</td>" in params
    assert f"<td>rejected</td><td>{len(scores) - kept}</td>" in params
    assert f"<td>labelled images (n_train)</td><td>{len(scores)}</td>" in params
    assert f"<td>threshold</td><td>{scores.score[scores.keep].min():.4g} (lowest kept score)" in params
    assert "<td>profile</td><td>fast</td>" in params and "<td>grepq version</td><td>0.1.0</td>" in params
    assert "<td>extracted</td><td>20" in params and "*.jpg</td>" in params  # the run's date and input glob
    dead = _section(text, "dead-letters")
    assert "<td>decode</td><td>not_an_image</td><td>2</td>" in dead
    for reason in set(BROKEN.values()):
        assert f"<td>{reason}</td>" in dead


def test_threshold_flag_is_reported(run_dir, tmp_path):
    report.run(["--scores", str(run_dir), "--output", str(tmp_path / "r.html"), "--threshold", "0.25"])
    assert "<td>threshold</td><td>0.25 (given)</td>" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_scatter_names_the_missing_pathway(run_dir):
    inputs = report.build_inputs(str(run_dir))
    with_both = _section(render_report(inputs), "scatter")
    assert "data:image/png;base64," in with_both
    inputs.scores = inputs.scores.assign(zs_hl=np.nan)
    ll_only = _section(render_report(inputs), "scatter")
    assert "data:image/png" not in ll_only and "high-level (HL)" in ll_only and "low-level" not in ll_only


def test_scores_written_apart_from_the_features(run_dir, tmp_path):
    score.run(["--features", str(run_dir), "--output", str(tmp_path / "scored"), "--keep-above", "0.5"])
    alone = render_report(report.build_inputs(str(tmp_path / "scored")))
    assert "Dead letters unknown" in alone and "<td>LL encoder</td><td>the extract run" in alone
    joined = render_report(report.build_inputs(str(tmp_path / "scored"), features_dir=str(run_dir)))
    assert "<td>read</td><td>empty_file</td><td>1</td>" in joined and "<td>LL encoder</td><td>ll:" in joined
    assert "<td>scorer</td><td>zero-shot:combined</td>" in joined and "ridge alpha" not in joined


@pytest.mark.parametrize("keep", [True, False])
def test_histogram_when_all_or_none_are_kept(run_dir, keep):
    inputs = report.build_inputs(str(run_dir))
    inputs.scores = inputs.scores.assign(keep=keep)
    text = render_report(inputs)
    assert _section(text, "histogram").count("data:image/png;base64,") == 1
    # every image kept (no --keep-* flag) or none: no threshold to draw or state
    assert "(lowest kept score)" not in text
    assert ("every image was kept" in text) == keep and ("no image was kept" in text) == (not keep)


def test_empty_run_sections_say_so():
    scores = pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("path", str), ("sha256", str), ("score", float), ("calibrated", float), ("scorer", str), ("keep", bool),
        ("zs_ll", float), ("zs_hl", float), ("zs_combined", float))})
    dead = pd.DataFrame({"path": ["a.jpg"], "stage": ["read"], "reason": ["empty_file"], "detail": [""]})
    text = render_report(ReportInputs(scores, dead))
    assert "no histogram" in text and "No image has a score" in text and "<td>empty_file</td>" in text


def _chromium(url: str, tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *flags, url],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_chromium_renders_the_page(page, tmp_path):
    shot = tmp_path / "shot.png"
    result = _chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,2000")
    assert shot.exists() and shot.stat().st_size > 0, result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20
    dom = _chromium(page.as_uri(), tmp_path, "--dump-dom").stdout
    for key in SECTIONS:
        assert f'id="{key}"' in dom
    for reason in BROKEN.values():
        assert reason in dom
    assert dom.count("<img") >= 11  # histogram, scatter and the readable decile thumbnails
