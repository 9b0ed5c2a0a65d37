"""Evaluation metrics (grepq_core/metrics.py): rank correlations, PLCC/RMSE after the logistic map."""
import logging

import numpy as np
import pytest
from scipy import optimize, stats

from grepq_core import metrics
from grepq_core.metrics import correlations, krcc, logistic4, logistic_map, plcc, rmse, srcc


def _sigmoid_mos(seed: int, n: int = 80, noise: float = 0.05):
    """MOS a saturating function of the prediction, as in real score/MOS plots."""
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0, 1, size=n)
    mos = 1 + 4 / (1 + np.exp(-(pred - 0.5) * 12)) + noise * rng.normal(size=n)
    return pred, mos


def test_rank_correlations_equal_scipy():
    pred, mos = _sigmoid_mos(0, noise=0.5)
    assert srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos).statistic)
    assert krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos).statistic)
    assert srcc(-pred, mos) == pytest.approx(-srcc(pred, mos))


def test_plcc_on_a_linear_relation_equals_pearson():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=60)
    mos = 3 * pred + 10 + rng.normal(size=60)
    assert plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=5e-3)


def test_plcc_beats_raw_pearson_on_a_sigmoid_relation():
    pred, mos = _sigmoid_mos(2)
    mapped, fitted = logistic_map(pred, mos)
    raw = stats.pearsonr(pred, mos).statistic
    assert fitted
    assert plcc(pred, mos) > raw + 0.02
    assert plcc(pred, mos) == pytest.approx(stats.pearsonr(mapped, mos).statistic)
    assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((mapped - mos) ** 2)))
    linear = np.polyval(np.polyfit(pred, mos, 1), pred)
    assert rmse(pred, mos) < np.sqrt(np.mean((linear - mos) ** 2))


def test_logistic_map_is_monotonic_for_dmos_style_labels():
    pred, mos = _sigmoid_mos(3)
    mapped, fitted = logistic_map(pred, -mos)
    order = np.argsort(pred)
    assert fitted
    assert np.all(np.diff(mapped[order]) <= 1e-12)
    assert plcc(pred, -mos) == pytest.approx(plcc(pred, mos), abs=1e-4)


def test_correlations_agree_with_the_single_metrics():
    pred, mos = _sigmoid_mos(4, noise=0.3)
    result = correlations(pred, mos)
    assert set(result) == {"srcc", "plcc", "krcc", "rmse"}
    assert result["srcc"] == pytest.approx(srcc(pred, mos))
    assert result["krcc"] == pytest.approx(krcc(pred, mos))
    assert result["plcc"] == pytest.approx(plcc(pred, mos))
    assert result["rmse"] == pytest.approx(rmse(pred, mos))


def test_non_finite_pairs_are_dropped_and_too_few_are_an_error():
    pred, mos = _sigmoid_mos(5, n=30, noise=0.3)
    pred_gaps, mos_gaps = pred.copy(), mos.copy()
    pred_gaps[[0, 5]] = np.nan
    mos_gaps[7] = np.inf
    keep = np.ones(30, bool)
    keep[[0, 5, 7]] = False
    assert srcc(pred_gaps, mos_gaps) == pytest.approx(srcc(pred[keep], mos[keep]))
    assert plcc(pred_gaps, mos_gaps) == pytest.approx(plcc(pred[keep], mos[keep]))
    with pytest.raises(ValueError, match="at least 3"):
        correlations([1.0, 2.0, np.nan, 4.0], [1.0, np.nan, 3.0, 5.0])
    with pytest.raises(ValueError):
        srcc([1.0, 2.0, 3.0], [1.0, 2.0])


def test_constant_predictions_fall_back_and_have_no_correlation(caplog):
    mos = np.linspace(1, 5, 12)
    with caplog.at_level(logging.WARNING, logger="grepq_core.metrics"):
        mapped, fitted = logistic_map(np.full(12, 0.7), mos)
        result = correlations(np.full(12, 0.7), mos)
    assert not fitted
    np.testing.assert_allclose(mapped, mos.mean())
    assert "logistic fit failed" in caplog.text
    assert np.isnan(result["srcc"]) and np.isnan(result["plcc"]) and np.isnan(result["krcc"])
    assert result["rmse"] == pytest.approx(mos.std())


def test_failed_fit_falls_back_to_the_linear_map(monkeypatch, caplog):
    pred, mos = _sigmoid_mos(6, noise=0.3)

    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(optimize, "curve_fit", no_convergence)
    with caplog.at_level(logging.WARNING, logger="grepq_core.metrics"):
        mapped, fitted = logistic_map(pred, -mos)
    assert not fitted and "logistic fit failed" in caplog.text
    assert plcc(pred, -mos) == pytest.approx(abs(stats.pearsonr(pred, -mos).statistic))
    np.testing.assert_allclose(mapped, np.polyval(np.polyfit(pred, -mos, 1), pred))


def test_logistic4_shape():
    x = np.linspace(-5, 5, 11)
    y = logistic4(x, 5.0, 1.0, 0.0, -2.0)
    assert y[5] == pytest.approx(3.0)
    assert np.all(np.diff(y) > 0) and 1 < y.min() and y.max() < 5
    assert metrics.logistic4(x, 5.0, 1.0, 0.0, 2.0) == pytest.approx(y)
