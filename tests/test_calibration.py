"""The calibrated 0-100 zero-shot scale: anchors, how they are built and stored, and what uses them."""
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from grepq_core.errors import GrepqError
from grepq_core.model.anchors import BAD, GOOD, Anchors, setting_key
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.pristine import PristineModel
from grepq_core.model.profiles import spec_for
from grepq_core.model.shipped import SHIPPED_PRISTINE
from grepq_core.training.distortions import apply_distortion
from pipelines import build_pristine, extract, score
from tests.conftest import photo


def test_anchors_place_good_at_90_bad_at_10_and_decrease_strictly():
    anchors = Anchors(good=2.0, bad=3.0)
    assert anchors.score(2.0) == pytest.approx(GOOD) and anchors.score(3.0) == pytest.approx(BAD)
    assert anchors.score(2.5) == pytest.approx(50.0)
    values = [anchors.score(d) for d in np.linspace(0.0, 10.0, 101)]
    assert all(0 < v < 100 for v in values) and np.all(np.diff(values) < 0)
    with pytest.raises(GrepqError, match="bad > good"):
        Anchors(good=3.0, bad=3.0)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _calibrated(images: list[np.ndarray]) -> list[float]:
    spec = spec_for(pathways=("ll",), device="cpu")
    model = Extractor.load(spec)
    return [row["zs_ll_100"] for row in model.encode([image_views(img, spec) for img in images])]


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_shipped_calibrated_score_falls_with_every_level(name):
    """On natural photos never trained on, the shipped scale falls with each level of blur, noise and JPEG."""
    img = photo(name)
    ladders = {
        "gaussian_blur": [apply_distortion(img, "gaussian_blur", level, seed=0) for level in range(1, 6)],
        "white_noise": [apply_distortion(img, "white_noise", level, seed=0) for level in range(1, 6)],
        "jpeg": [_jpeg(img, quality) for quality in (90, 50, 20, 8)],
    }
    for kind, versions in ladders.items():
        values = _calibrated(versions)
        assert all(0 < v < 100 for v in values), (kind, values)
        assert np.all(np.diff(values) < 0), (kind, values)
    assert _calibrated([img])[0] > 50  # a clean photo sits on the pristine side of the scale


def test_shipped_pristine_model_is_calibrated_for_the_fast_profile():
    model = PristineModel.load(str(SHIPPED_PRISTINE))
    spec = spec_for("fast")
    anchors = model.calibration[setting_key(spec)]
    assert 0 < anchors.good < anchors.bad


def test_build_pristine_stores_anchors_that_extract_and_score_use(photos_dir, tiny_models, tmp_path):
    out = tmp_path / "pristine.npz"
    build_pristine.run(["--input", str(photos_dir / "*.jpg"), "--output", str(out), "--ll-weights",
                        tiny_models["ll"], "--device", "cpu", "--no-progress"])
    model = PristineModel.load(str(out))
    spec = spec_for("fast")
    key = setting_key(spec)
    assert list(model.calibration) == [key]
    anchors = model.calibration[key]

    features = tmp_path / "features"
    extract.run(["--input", str(photos_dir / "*"), "--output", str(features), "--pathways", "ll",
                 "--ll-weights", tiny_models["ll"], "--pristine", str(out), "--device", "cpu"])
    rows = pq.read_table(next(features.glob("features/*.parquet"))).to_pylist()
    assert len(rows) == 6
    for row in rows:
        distance = -100 * np.log(row["zs_ll"] / (1 - row["zs_ll"]))  # zs_ll = 1 - sigmoid(d / 100)
        assert row["zs_ll_100"] == pytest.approx(anchors.score(distance), abs=1e-6)
        assert f"anchors={anchors.good:.6g}/{anchors.bad:.6g}" in row["zs_ll_identity"]

    threshold = float(np.median([r["zs_ll_100"] for r in rows]))
    scored = tmp_path / "scored"
    score.run(["--features", str(features), "--output", str(scored), "--keep-above", str(threshold),
               "--csv", str(tmp_path / "scores.csv")])
    table = pq.read_table(next(scored.glob("scores/*.parquet"))).to_pylist()
    for row in table:
        assert row["calibrated"] == row["zs_ll_100"] and row["score"] == row["zs_ll"]
        assert row["keep"] == (row["calibrated"] >= threshold)
    assert 0 < sum(r["keep"] for r in table) < len(table)
    assert (tmp_path / "scores.csv").read_text().splitlines()[0] == "path,score,calibrated,keep"


def test_settings_without_anchors_give_no_calibrated_score(photos_dir, tiny_models, tmp_path):
    """Anchors hold for the patch setting they were measured with; another setting gets none, not wrong ones."""
    out = tmp_path / "pristine.npz"
    build_pristine.run(["--input", str(photos_dir / "*.jpg"), "--output", str(out), "--ll-weights",
                        tiny_models["ll"], "--device", "cpu", "--no-progress"])
    img = photo("coffee", width=256)
    rows = {}
    for cap in (32, 64):
        spec = spec_for(pathways=("ll",), ll_weights=tiny_models["ll"], pristine=str(out), device="cpu",
                        max_patches=cap)
        rows[cap] = Extractor.load(spec).encode([image_views(img, spec)])[0]
    assert rows[32]["zs_ll_100"] is not None and rows[64]["zs_ll_100"] is None
    assert rows[64]["zs_ll"] is not None


def test_no_calibration_from_patch_files_or_when_asked_for_none(photos_dir, tiny_models, tmp_path):
    patches = tmp_path / "patches.hdf5"
    build_pristine.run(["--input", str(photos_dir / "*.jpg"), "--patches-output", str(patches)])
    for inputs, calibrate in (([str(patches)], "fast"), ([str(photos_dir / "*.jpg")], "none")):
        out = tmp_path / f"{calibrate}.npz"
        build_pristine.run([f for i in inputs for f in ("--input", i)] + [
            "--output", str(out), "--ll-weights", tiny_models["ll"], "--device", "cpu", "--no-progress",
            "--calibrate", calibrate])
        assert PristineModel.load(str(out)).calibration == {}
    with pytest.raises(GrepqError, match="calibrate"):
        build_pristine.run(["--input", str(photos_dir / "*.jpg"), "--output", str(out), "--calibrate", "fastest"])
