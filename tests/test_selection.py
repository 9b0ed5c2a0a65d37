"""Label suggestion: spread across features and zero-shot range; `grepq suggest-labels` on a real run."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from grepq_core.fitting.ridge_file import load_ridge
from grepq_core.fitting.selection import project_features, suggest_labels
from pipelines import extract, fit
from pipelines import suggest_labels as suggest_cli
from transforms.store import read_table


def _scored_rows(n=400, dims=64, seed=0):
    """Gaussian feature rows in random order, with a zero-shot score that depends on two of the columns."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, dims))
    zero_shot = features[:, 0] + 0.5 * features[:, 1] + 0.3 * rng.normal(size=n)
    return features, zero_shot


def _clusters(sizes=(200, 100, 50, 20, 10, 5, 4, 3), dims=50, seed=0):
    """Well separated clusters of very unequal sizes, rows shuffled; returns features and cluster ids."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(len(sizes), dims))
    ids = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(ids)
    return centres[ids] + rng.normal(size=(len(ids), dims)), ids


def _per_quintile(zero_shot, rows):
    """How many of `rows` fall in each zero-shot quintile of the whole set."""
    edges = np.quantile(zero_shot, [0.2, 0.4, 0.6, 0.8])
    return np.bincount(np.searchsorted(edges, zero_shot[rows], side="right"), minlength=5)


def test_same_seed_same_picks_and_distinct_indices():
    features, zero_shot = _scored_rows()
    picks = suggest_labels(features, zero_shot, 50, seed=3)
    assert np.array_equal(picks, suggest_labels(features, zero_shot, 50, seed=3))
    assert len(picks) == 50 and len(set(picks.tolist())) == 50
    assert picks.min() >= 0 and picks.max() < len(features)
    assert len({tuple(suggest_labels(features, zero_shot, 50, seed=s)) for s in range(5)}) > 1


def test_picks_cover_the_zero_shot_range_better_than_the_first_n():
    features, zero_shot = _scored_rows()
    first = _per_quintile(zero_shot, np.arange(50))
    assert first.max() - first.min() >= 3  # the first 50 rows over- and under-sample some quintiles
    assert _per_quintile(zero_shot, suggest_labels(features, zero_shot, 50)).tolist() == [10] * 5


def test_picks_come_from_every_cluster():
    features, ids = _clusters()
    picks = suggest_labels(features, None, len(np.unique(ids)) + 2)
    assert set(ids[picks]) == set(ids)
    assert len(set(ids[:len(picks)])) < len(set(ids))  # the first rows alone miss the small clusters


def test_labelled_rows_are_never_suggested_and_are_kept_away_from():
    features, ids = _clusters()
    labelled = np.array([np.flatnonzero(ids == c)[0] for c in range(7)])
    picks = suggest_labels(features, None, 1, labelled=labelled)
    assert ids[picks].tolist() == [7]
    everything = suggest_labels(features, None, 10_000, labelled=labelled)
    assert len(everything) == len(features) - len(labelled) and not set(everything) & set(labelled)


def test_missing_zero_shot_scores_get_their_share():
    features, zero_shot = _scored_rows()
    zero_shot[:100] = np.nan
    picks = suggest_labels(features, zero_shot, 40)
    assert (picks < 100).sum() == 10  # a quarter of the rows, a quarter of the picks


def test_projection_keeps_the_leading_directions():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 3)) * [10.0, 5.0, 2.0]
    features = np.hstack([base @ rng.normal(size=(3, 80)), np.ones((300, 1))]) + 0.01 * rng.normal(size=(300, 81))
    features[:, -1] = 7.0  # a constant column carries nothing
    projected = project_features(features, dims=3)
    assert projected.shape == (300, 3)
    # the 3 components span the same space as the 3 latent factors
    residual = np.linalg.lstsq(projected, base - base.mean(axis=0), rcond=None)[1]
    assert (residual / ((base - base.mean(axis=0)) ** 2).sum(axis=0) < 0.01).all()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, photos_dir, tiny_models):
    """LL features of the photos and a blurred copy of each, from the extract pipeline."""
    root = tmp_path_factory.mktemp("suggest_in")
    for src in sorted(photos_dir.iterdir()):
        img = Image.open(src).convert("RGB")
        img.save(root / f"sharp_{src.stem}.jpg", quality=95)
        img.filter(ImageFilter.GaussianBlur(4)).save(root / f"blur_{src.stem}.jpg", quality=95)
    out = tmp_path_factory.mktemp("suggest_out")
    extract.run(["--input", str(root / "*.jpg"), "--output", str(out), "--pathways", "ll",
                 "--ll-weights", tiny_models["ll"], "--pristine", tiny_models["pristine"], "--batch-size", "4"])
    return out


def test_suggested_csv_is_a_label_file_once_filled_in(extracted, tmp_path):
    rows = read_table(str(extracted), "features").to_pandas().set_index("path")
    already = sorted(rows.index)[:2]
    pd.DataFrame({"path": already, "score": [50.0, 60.0]}).to_csv(tmp_path / "done.csv", index=False)
    suggest_cli.run(["--features", str(extracted), "-n", "4", "--output", str(tmp_path / "todo.csv"),
                     "--labels", str(tmp_path / "done.csv")])
    todo = pd.read_csv(tmp_path / "todo.csv", keep_default_na=False)
    assert list(todo.columns) == ["path", "score", "zero_shot"]
    assert len(todo) == 4 and todo.path.is_unique and not set(todo.path) & set(already)
    assert (todo.score == "").all()
    assert np.allclose(todo.zero_shot.astype(float), rows.loc[todo.path, "zs_ll"])

    suggest_cli.run(["--features", str(extracted), "-n", "50", "--output", str(tmp_path / "all.csv"),
                     "--labels", str(tmp_path / "done.csv")])
    filled = pd.read_csv(tmp_path / "all.csv")
    assert len(filled) == len(rows) - 2
    filled["score"] = np.where(filled.path.str.contains("/sharp_"), 80.0, 20.0)
    filled.to_csv(tmp_path / "all.csv", index=False)
    fit.run(["--features", str(extracted), "--labels", str(tmp_path / "all.csv"),
             "--output", str(tmp_path / "model.json")])
    assert load_ridge(str(tmp_path / "model.json")).n_train == len(rows) - 2


def test_large_collections_are_subsampled_keeping_the_labelled_rows(extracted, tmp_path):
    rows = read_table(str(extracted), "features").to_pandas()
    already = sorted(rows.path)[:2]
    pd.DataFrame({"path": already, "score": [50.0, 60.0]}).to_csv(tmp_path / "done.csv", index=False)
    argv = ["--features", str(extracted), "-n", "50", "--labels", str(tmp_path / "done.csv"), "--max-candidates", "5"]
    suggest_cli.run([*argv, "--output", str(tmp_path / "a.csv")])
    suggest_cli.run([*argv, "--output", str(tmp_path / "b.csv"), "--seed", "1"])
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert len(a) == len(b) == 3 and not set(a.path) & set(already)
    assert set(a.path) != set(b.path)  # another seed, another sample of 3 of the 10 unlabelled images
