"""Labels never make it worse: the fit keeps zero-shot unless features cross-validate clearly better."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from grepq_core.fitting.choice import SURE, correction_weight, fit_with_choice
from grepq_core.fitting.features import ZERO_SHOT_BLOCK, feature_matrix
from grepq_core.fitting.ridge_file import load_ridge, save_ridge
from grepq_core.fitting.ridge_fit import fit_ridge
from grepq_core.fitting.scoring import RowScorer


def _rows(n, seed, informative_features: bool, other_term=None):
    """Rows whose zero-shot score tracks quality; features track it too, or are pure noise.

    `other_term` (one value per row): a second quality term that only the features carry.
    """
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0, 1, n)
    rows = []
    for i, q in enumerate(quality):
        feats = rng.normal(size=16)
        if informative_features:
            feats[:4] += 6 * q
        if other_term is not None:
            feats[4:8] += 3 * other_term[i]
        rows.append({"path": f"{q}.jpg", "ll_features": feats.astype(np.float32), "zs_ll": 0.3 + 0.1 * q
                     + rng.normal(0, 0.01), "zs_hl": None, "zs_combined": None, "profile": "fast",
                     "ll_identity": "ll:test@1", "hl_identity": None, "zs_ll_identity": "pristine@1"})
    return rows, 100 * quality + rng.normal(0, 3, n)


def _held_out_srcc(model, rows, labels):
    """(the fit's SRCC, zero-shot's SRCC) with the labels of rows the fit never saw."""
    fitted = spearmanr(model.predict(feature_matrix(rows, model.layout)), labels)[0]
    return fitted, spearmanr([r["zs_ll"] for r in rows], labels)[0]


@pytest.mark.parametrize("seed", range(3))
def test_labels_that_agree_with_zero_shot_are_not_worse_on_held_out_rows(seed):
    rows, labels = _rows(250, seed, informative_features=False)
    model = fit_with_choice(rows[:50], labels[:50])
    fitted, zero_shot = _held_out_srcc(model, rows[50:], labels[50:])
    assert fitted >= zero_shot - 0.01
    assert set(model.choice["cv_srcc"]) == {"zero-shot", "features", "features+zero-shot"}
    assert model.choice["chosen"] != "features"


@pytest.mark.parametrize("seed", range(3))
def test_labels_with_a_term_zero_shot_misses_beat_zero_shot_on_held_out_rows(seed):
    """Labels = the quality zero-shot tracks + a second term only the features carry: the fit keeps zero-shot
    and learns the term as its correction, and ranks unseen rows better than zero-shot alone."""
    other = np.random.default_rng(100 + seed).uniform(0, 1, 250)
    rows, labels = _rows(250, seed, informative_features=False, other_term=other)
    labels = labels + 60 * other
    model = fit_with_choice(rows[:50], labels[:50])
    fitted, zero_shot = _held_out_srcc(model, rows[50:], labels[50:])
    assert model.choice["chosen"] == "features+zero-shot"
    assert model.choice["weight"] == correction_weight(model.choice["share_better"]) > 0
    assert fitted > zero_shot + 0.015


def test_informative_features_are_kept_when_they_cross_validate_better():
    rows, labels = _rows(120, 0, informative_features=True)
    for r in rows:  # a zero-shot score that knows nothing
        r["zs_ll"] = float(np.random.default_rng(len(r["path"])).uniform())
    model = fit_with_choice(rows[:60], labels[:60])
    assert model.choice["chosen"] in ("features", "features+zero-shot")
    assert model.choice["cv_srcc"][model.choice["chosen"]] > model.choice["cv_srcc"]["zero-shot"]
    if model.choice["chosen"] == "features":
        assert model.choice["share_better"] >= SURE
    else:
        assert model.choice["weight"] == correction_weight(model.choice["share_better"]) > 0


def test_a_correction_counts_as_much_as_the_resamples_are_sure_of_it():
    assert [correction_weight(p) for p in (0.0, 0.3, 0.5, 0.75, 0.9, 1.0)] == pytest.approx([0, 0, 0, 0.5, 0.8, 1])


def test_a_correction_the_labels_only_partly_back_enters_at_part_weight(tmp_path):
    """A term only the features carry, weak against the label noise: the correction is kept at a weight under
    one, its features' coefficients are that share of the full correction's at the same alpha, and the
    weight survives a save."""
    other = np.random.default_rng(101).uniform(0, 1, 50)
    rows, labels = _rows(50, 1, informative_features=False, other_term=other)
    labels = labels + 15 * other
    model = fit_with_choice(rows, labels)
    assert model.choice["chosen"] == "features+zero-shot"
    assert 0 < model.choice["weight"] < 1 and model.choice["weight"] == correction_weight(model.choice["share_better"])
    X = feature_matrix(rows, model.layout)
    full = fit_ridge(X, labels, model.layout, model.identities, alphas=(model.alpha,), free=1)
    assert np.allclose(model.coef[:-1], model.choice["weight"] * full.coef[:-1])
    save_ridge(model, str(tmp_path / "m.json"))
    assert load_ridge(str(tmp_path / "m.json")).choice == model.choice


def test_a_chosen_zero_shot_fit_saves_loads_and_scores_rows(tmp_path):
    rows, labels = _rows(60, 1, informative_features=False)
    model = fit_with_choice(rows, labels)
    save_ridge(model, str(tmp_path / "m.json"))
    loaded = load_ridge(str(tmp_path / "m.json"))
    assert loaded.choice == model.choice and loaded.identities[ZERO_SHOT_BLOCK].startswith("zero-shot:ll|")
    scorer = RowScorer(str(tmp_path / "m.json"))
    scores = [scorer(r)["score"] for r in rows]
    assert spearmanr(scores, [r["zs_ll"] for r in rows])[0] == pytest.approx(1.0)
    other = {**rows[0], "zs_ll_identity": "pristine@2"}  # another pristine model: another zero-shot rule
    with pytest.raises(Exception, match="fitted on zero-shot:ll.*pristine@1, these features come from .*pristine@2"):
        scorer(other)


def test_contents_stay_in_one_fold_so_features_that_only_know_the_content_are_not_kept():
    """Features that only say which content an image shows cross-validate well when a content's images sit
    in several folds; grouped by content, the CV sees them fail on unseen contents, as the test would, and
    what is kept ranks unseen contents no worse than zero-shot."""
    rng = np.random.default_rng(0)
    contents = 20
    level = rng.uniform(0, 60, contents)  # each content's own label level
    fingerprint = rng.normal(size=(contents, 16))
    rows, labels, groups = [], [], []
    for c in range(contents):
        for q in rng.uniform(0, 1, 6):
            rows.append({"path": f"{c}-{q}.jpg", "ll_features": (fingerprint[c] + rng.normal(0, 0.05, 16)).astype(
                np.float32), "zs_ll": 0.3 + 0.1 * q + rng.normal(0, 0.01), "zs_hl": None, "zs_combined": None,
                "profile": "fast", "ll_identity": "ll:test@1", "hl_identity": None, "zs_ll_identity": "pristine@1"})
            labels.append(level[c] + 40 * q)
            groups.append(c)
    labels, train = np.array(labels), slice(0, 60)  # the first 10 contents
    by_image = fit_with_choice(rows[train], labels[train])
    by_content = fit_with_choice(rows[train], labels[train], groups=groups[train])
    assert by_image.cv["grouped"] is False and by_content.cv["grouped"] is True
    assert by_image.choice["cv_srcc"]["features"] > by_content.choice["cv_srcc"]["features"] + 0.2
    assert by_content.choice["chosen"] != "features"
    fitted, zero_shot = _held_out_srcc(by_content, rows[60:], labels[60:])
    assert fitted >= zero_shot - 0.01
