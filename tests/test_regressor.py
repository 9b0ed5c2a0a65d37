"""Ridge on feature rows (grepq_core/fitting/ridge.py): alpha by CV, JSON storage, feature checks."""
import json

import numpy as np
import pytest
from scipy import stats

from grepq_core.errors import GrepqError
from grepq_core.fitting.ridge_file import load_ridge, save_ridge
from grepq_core.fitting.ridge_fit import MIN_TRAIN_ROWS, fit_ridge

LAYOUT = [["ll", 6], ["hl", 10]]
IDS = {"ll": "ll:resnet18-w8@0123abcd", "hl": "hl:RN50:openai@89ab"}


def _signal_data(seed: int, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Features on very different scales; MOS a linear function of a few of them plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16)) * rng.uniform(0.01, 100, size=16) + rng.normal(0, 50, size=16)
    weights = np.zeros(16)
    weights[[0, 3, 9, 14]] = rng.normal(size=4)
    signal = (X - X.mean(0)) / X.std(0) @ weights
    return X, signal + noise * signal.std() * rng.normal(size=n)


def _latent_copies(seed: int, n: int = 30, width: int = 30, share: float = 0.2):
    """Many noisy copies of one latent quality: OLS overfits, heavy shrinkage averages."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    X = np.sqrt(share) * z[:, None] + np.sqrt(1 - share) * rng.normal(size=(n, width))
    return X, z + 0.5 * rng.normal(size=n)


def test_predictions_follow_the_signal_on_held_out_rows():
    X, y = _signal_data(0, 160, noise=0.3)
    model = fit_ridge(X[:60], y[:60], LAYOUT, IDS)
    held_out = stats.spearmanr(model.predict(X[60:]), y[60:]).statistic
    assert held_out > 0.8
    assert model.n_train == 60 and model.cv["srcc"] > 0.7 and model.cv["plcc"] > 0.7
    assert model.alpha in (0.1, 1.0, 10.0, 100.0)


def test_unlabelled_rows_are_ignored():
    X, y = _signal_data(1, 40, noise=0.2)
    y_partial = y.copy()
    y_partial[::4] = np.nan
    model = fit_ridge(X, y_partial, LAYOUT, IDS)
    reference = fit_ridge(X[~np.isnan(y_partial)], y[~np.isnan(y_partial)], LAYOUT, IDS)
    assert model.n_train == 30
    np.testing.assert_allclose(model.predict(X), reference.predict(X))


def test_alpha_is_small_on_clean_linear_data():
    X, y = _signal_data(2, 40, noise=0.001)
    model = fit_ridge(X, y, LAYOUT, IDS)
    assert model.alpha == 0.1


def test_alpha_is_large_on_noisy_many_feature_data():
    X, y = _latent_copies(seed=0)
    model = fit_ridge(X, y, [["hl", 30]], {"hl": "hl:x"})
    assert model.alpha == 100.0
    srcc_by_alpha = {alpha: srcc for alpha, srcc, _ in model.cv["by_alpha"]}
    assert srcc_by_alpha[100.0] > srcc_by_alpha[0.1]


def test_json_round_trip_gives_identical_predictions(tmp_path):
    X, y = _signal_data(3, 50, noise=0.2)
    model = fit_ridge(X, y, LAYOUT, IDS)
    path = tmp_path / "ridge.json"
    save_ridge(model, str(path))
    record = json.loads(path.read_text())
    assert record["format"] == "grepq-ridge/1" and record["layout"] == LAYOUT
    back = load_ridge(str(path), layout=LAYOUT, identities=IDS)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert (back.alpha, back.n_train, back.cv, back.direction) == (model.alpha, model.n_train, model.cv,
                                                                   model.direction)
    save_ridge(model, "memory://grepq-test/ridge.json")
    np.testing.assert_array_equal(load_ridge("memory://grepq-test/ridge.json").predict(X), model.predict(X))


def test_mismatched_layout_or_identities_are_refused(tmp_path):
    X, y = _signal_data(4, 30, noise=0.2)
    path = str(tmp_path / "ridge.json")
    save_ridge(fit_ridge(X, y, LAYOUT, IDS), path)
    with pytest.raises(GrepqError, match="ll:6, hl:10"):
        load_ridge(path, layout=[["hl", 10], ["ll", 6]])
    other = {**IDS, "hl": "hl:ViT-B-32:openai@77"}
    with pytest.raises(GrepqError, match="fitted on hl:RN50:openai@89ab, these features come from hl:ViT-B-32"):
        load_ridge(path, identities=other)
    with pytest.raises(GrepqError, match="come from no ll encoder"):
        load_ridge(path, identities={"hl": IDS["hl"]})
    with pytest.raises(GrepqError, match="expects"):
        load_ridge(path).predict(X[:, :10])


def test_foreign_or_broken_files_are_refused(tmp_path):
    pickle_like = tmp_path / "model.pkl"
    pickle_like.write_bytes(b"\x80\x04\x95")
    wrong_format = tmp_path / "other.json"
    wrong_format.write_text(json.dumps({"format": "sklearn", "coef": [1.0]}))
    truncated = tmp_path / "short.json"
    truncated.write_text(json.dumps({"format": "grepq-ridge/1", "coef": [1.0]}))
    for path in (pickle_like, wrong_format, truncated, tmp_path / "missing.json"):
        with pytest.raises(GrepqError):
            load_ridge(str(path))


def test_too_few_labels_and_bad_inputs_are_errors():
    X, y = _signal_data(5, 30, noise=0.2)
    y_few = np.full(30, np.nan)
    y_few[: MIN_TRAIN_ROWS - 1] = y[: MIN_TRAIN_ROWS - 1]
    with pytest.raises(GrepqError, match=f"got {MIN_TRAIN_ROWS - 1} .*of 30"):
        fit_ridge(X, y_few, LAYOUT, IDS)
    with pytest.raises(GrepqError, match="columns"):
        fit_ridge(X[:, :12], y, LAYOUT, IDS)
    with pytest.raises(GrepqError, match="identities"):
        fit_ridge(X, y, LAYOUT, {"ll": IDS["ll"]})
    X_bad = X.copy()
    X_bad[3, 2] = np.inf
    with pytest.raises(GrepqError, match="NaN or infinity"):
        fit_ridge(X_bad, y, LAYOUT, IDS)
    assert fit_ridge(X[:MIN_TRAIN_ROWS], y[:MIN_TRAIN_ROWS], LAYOUT, IDS).n_train == MIN_TRAIN_ROWS


def _strict_json(path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{constant} in a saved model")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("factor", [1e300, -1e300, 1e-300, 1e-315], ids=["1e300", "-1e300", "1e-300", "denormal"])
def test_label_scale_changes_nothing_but_the_scale(tmp_path, factor):
    """Targets are standardised inside the fit: 1e300 or denormal labels fit exactly like 1-5 MOS."""
    X, y = _signal_data(6, 40, noise=0.3)
    base = fit_ridge(X, y, LAYOUT, IDS)
    scaled = fit_ridge(X, y * factor, LAYOUT, IDS)
    assert scaled.alpha == base.alpha and scaled.cv["srcc"] == base.cv["srcc"]
    assert scaled.cv["plcc"] == pytest.approx(base.cv["plcc"], abs=1e-6)
    rtol = 1e-7 if abs(factor) < 1e-307 else 1e-12  # a denormal keeps fewer digits
    np.testing.assert_allclose(scaled.predict(X) / factor, base.predict(X), rtol=rtol, atol=rtol)
    path = tmp_path / "ridge.json"
    save_ridge(scaled, str(path))
    assert _strict_json(path)["label_range"] == sorted([y.min() * factor, y.max() * factor])
    np.testing.assert_array_equal(load_ridge(str(path)).predict(X), scaled.predict(X))


@pytest.mark.parametrize("labels", ["near float max", "plus-minus 1e300", "tiny spread"])
def test_extreme_labels_fit_and_save_as_strict_json(tmp_path, labels):
    X, y = _signal_data(7, 40, noise=0.3)
    y = {"near float max": y / np.abs(y).max() * 1e308,
         "plus-minus 1e300": np.sign(y) * 1e300,
         "tiny spread": 1 + 1e-12 * y}[labels]
    model = fit_ridge(X, y, LAYOUT, IDS)
    assert np.isfinite(model.predict(X)).all() and model.cv["srcc"] > 0.5
    save_ridge(model, str(tmp_path / "ridge.json"))
    _strict_json(tmp_path / "ridge.json")


@pytest.mark.parametrize("labels, message", [
    (np.full(30, 3.0), "all 30 labels are 3: ridge needs labels that differ"),
    (np.zeros(30), "all 30 labels are 0"),
    (np.r_[np.full(29, 3.0), np.nan], "all 29 labels are 3"),
    (np.r_[np.arange(29.0), np.inf], "1 label\\(s\\) are infinite"),
    (np.r_[np.arange(29.0), -np.inf], "1 label\\(s\\) are infinite"),
])
def test_degenerate_labels_are_refused(labels, message):
    X, _ = _signal_data(8, 30, noise=0.2)
    with pytest.raises(GrepqError, match=message):
        fit_ridge(X, labels, LAYOUT, IDS)


def test_features_too_large_to_scale_and_bad_alphas_are_refused():
    X, y = _signal_data(9, 30, noise=0.2)
    with pytest.raises(GrepqError, match="not encoder features"):
        fit_ridge(X * 1e200, y, LAYOUT, IDS)
    for alphas in ([], [-1.0], [float("nan")], [1.0, float("inf")]):
        with pytest.raises(GrepqError, match="alphas must be finite"):
            fit_ridge(X, y, LAYOUT, IDS, alphas=alphas)


def test_a_fit_that_overflows_is_refused_not_saved(monkeypatch):
    """Whatever the cause, a fit with a non-finite number in it never becomes a model."""
    from grepq_core.fitting import ridge_fit

    X, y = _signal_data(10, 30, noise=0.2)
    real = ridge_fit._TargetScale.unit
    monkeypatch.setattr(ridge_fit._TargetScale, "unit", property(lambda self: real.fget(self) * 1e308))
    with pytest.raises(GrepqError, match="the ridge fit is unusable \\(field coef\\[0\\] must be finite"):
        fit_ridge(X, y, LAYOUT, IDS)


def test_by_alpha_reports_rmse_in_label_units():
    X, y = _signal_data(11, 40, noise=0.3)
    model = fit_ridge(X, y * 10, LAYOUT, IDS)
    small = fit_ridge(X, y, LAYOUT, IDS)
    for (_, _, rmse_big), (_, _, rmse) in zip(model.cv["by_alpha"], small.cv["by_alpha"]):
        assert rmse_big == pytest.approx(10 * rmse)


def test_free_columns_are_not_penalised():
    """With a huge alpha the penalised weights vanish and the free column gets its least-squares weight; with
    none the fit is ordinary least squares on all columns."""
    from sklearn.linear_model import LinearRegression

    from grepq_core.fitting.ridge_fit import FreeColumnsRidge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 0.3, 3.0]) + rng.normal(0, 0.1, 40)
    shrunk = FreeColumnsRidge(alpha=1e12).fit(X, y)
    alone = LinearRegression().fit(X[:, -1:], y)
    assert np.abs(shrunk.coef_[:-1]).max() < 1e-6
    assert shrunk.coef_[-1] == pytest.approx(alone.coef_[0]) and shrunk.intercept_ == pytest.approx(alone.intercept_)
    free = FreeColumnsRidge(alpha=0.0).fit(X, y)
    assert np.allclose(free.predict(X), LinearRegression().fit(X, y).predict(X))


def test_a_weighted_correction_is_that_share_of_the_ridge_and_the_free_column_refitted_to_the_rest():
    """weight 0: least squares on the free column alone; weight w: the penalised weights are w times the
    full ridge's, and the free column and intercept are least squares of what they leave."""
    from sklearn.linear_model import LinearRegression

    from grepq_core.fitting.ridge_fit import FreeColumnsRidge

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 0.3, 3.0]) + rng.normal(0, 0.1, 40)
    none = FreeColumnsRidge(alpha=1.0, weight=0.0).fit(X, y)
    alone = LinearRegression().fit(X[:, -1:], y)
    assert np.abs(none.coef_[:-1]).max() == 0
    assert none.coef_[-1] == pytest.approx(alone.coef_[0]) and none.intercept_ == pytest.approx(alone.intercept_)
    full, part = FreeColumnsRidge(alpha=1.0).fit(X, y), FreeColumnsRidge(alpha=1.0, weight=0.3).fit(X, y)
    assert np.allclose(part.coef_[:-1], 0.3 * full.coef_[:-1])
    rest = LinearRegression().fit(X[:, -1:], y - X[:, :-1] @ part.coef_[:-1])
    assert part.coef_[-1] == pytest.approx(rest.coef_[0]) and part.intercept_ == pytest.approx(rest.intercept_)
    with pytest.raises(GrepqError, match="weight is between 0 and 1"):
        fit_ridge(X, y, [["ll", 6]], {"ll": "ll:x"}, free=1, weight=1.5)
