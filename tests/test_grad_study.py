"""Chaotic-divergence study: gradient norm vs window length, and the truncation criterion."""

import json

import numpy as np
import pytest
from grad_helpers import charge_current, lj_cluster

from workbench.grad import divergence_study, plot_divergence, suggest_truncation


def test_suggest_truncation_on_synthetic_curves():
    taus = np.array([0.025, 0.05, 0.1, 0.2, 0.4, 0.8])
    power = taus**2
    assert suggest_truncation(taus, power) == pytest.approx(0.8)  # never exponential
    exploding = np.where(taus <= 0.2, taus**2, 0.04 * np.exp(30 * (taus - 0.2)))
    assert suggest_truncation(taus, exploding) == pytest.approx(0.2)
    overflow = np.array([1.0, 2.0, 3.0, np.inf, np.nan, np.nan])
    assert suggest_truncation(taus, overflow) == pytest.approx(0.1)
    # an early jump followed by polynomial growth is not the onset of exponential growth
    early_spike = np.array([1.0, 30.0, 20.0, 40.0, 80.0, 1e5])
    assert suggest_truncation(taus, early_spike) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        suggest_truncation(taus[::-1], power)
    with pytest.raises(ValueError):
        suggest_truncation(taus, np.zeros_like(taus))


def test_divergence_study_on_small_cluster(tmp_path):
    dyn, params, x, v, pairs = lj_cluster(temperature=90.0)
    study = divergence_study(dyn, params, x[None], v[None], [5, 20, 60], charge_current)
    assert study["n_steps"] == [5, 20, 60]
    np.testing.assert_allclose(study["tau_ps"], [0.02, 0.08, 0.24])
    norms = np.array(study["grad_norm"])
    assert np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert norms[-1] > norms[0]  # longer windows: larger sensitivity
    assert study["suggested_tau_ps"] in study["tau_ps"]
    assert max(study["reversal_error_nm"]) < 1e-10
    json.dumps(study)  # JSON-ready
    path = tmp_path / "study.png"
    plot_divergence(study, path)
    assert path.stat().st_size > 1000
