"""Charge-flux fit: Ṁ is linear in the coefficients, cross spectra combine exactly, the fit recovers
known coefficients."""

import numpy as np
import pytest

import workbench  # noqa: F401
from workbench import units
from workbench.observables import charge_flux_fit as fit
from workbench.observables.dipole import CHARGE_FLUX_LINEAR, charge_flux_basis, charge_flux_dipole
from workbench.observables.ir import ir_spectrum
from workbench.system import water_box

T, DT, V = 298.15, 0.002, 2.0


def _random_trajectory(n_frames=40, seed=0):
    system = water_box(4, density_g_cm3=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n_frames, system.n_atoms, 3))
    x = system.positions + 0.001 * np.cumsum(v, axis=0)
    return x, v, system


def test_mdot_is_linear_in_the_charge_flux_coefficients():
    x, v, system = _random_trajectory()
    coeffs = {"q_h0": 0.55, "a_r": 1.3, "b_r": -0.4, "a_theta": 0.07}
    full = charge_flux_dipole(**coeffs).trajectory(x, v, system.box, system.molecules)[1]
    basis = charge_flux_basis()
    combined = sum(coeffs[c] * basis[c].trajectory(x, v, system.box, system.molecules)[1]
                   for c in CHARGE_FLUX_LINEAR)
    np.testing.assert_allclose(combined, full, rtol=1e-10, atol=1e-12)


def test_cross_spectra_combine_to_the_spectrum_of_the_combined_series():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(3, 2, 200, 3))  # (B, W, F, 3)
    coeffs = np.array([0.5, -1.2, 2.0])
    grid = np.linspace(0.0, 4000.0, 51)
    s_jk = fit.cross_spectra(fit.cross_tcfs(basis, 26), DT, V, T, grid)
    direct = ir_spectrum(np.einsum("j,jwfd->wfd", coeffs, basis), DT, V, T, grid, tcf_length_ps=0.05)
    np.testing.assert_allclose(fit.combined_spectrum(coeffs, s_jk), direct, rtol=1e-10, atol=1e-8)


def _oscillation(nu_cm, n_frames, phase):
    """cos(ωt + φ) on all three components, (F, 3)."""
    t = DT * np.arange(n_frames)
    return np.cos(units.wavenumber_to_angular_frequency(nu_cm) * t + phase)[:, None] * np.ones(3)


def test_fit_recovers_known_coefficients():
    """Synthetic bases: q_H0 drives all three bands, a_r only the stretch, a_θ only the bend."""
    rng = np.random.default_rng(2)
    n_windows, n_frames = 6, 600
    names = ("q_h0", "a_r", "a_theta")
    basis = np.zeros((3, n_windows, n_frames, 3))
    for w in range(n_windows):
        lib, bend, stretch = (_oscillation(nu, n_frames, rng.uniform(0, 2 * np.pi))
                              for nu in (620.0, 1640.0, 3400.0))
        basis[0, w] = 3 * lib + 2 * bend + 1 * stretch
        basis[1, w] = 0.8 * stretch
        basis[2, w] = 5.0 * bend
        basis[:, w] += 0.05 * rng.normal(size=(3, n_frames, 3))
    grid = np.arange(0.0, 4000.0, 4.0)
    s_jk = fit.cross_spectra(fit.cross_tcfs(basis, 301), DT, V, T, grid)
    truth = {"q_h0": 0.5, "a_r": 1.7, "a_theta": -0.06}
    spectrum = fit.combined_spectrum([truth[n] for n in names], s_jk)
    targets = fit.band_heights(spectrum, grid, {"stretch": (2800.0, 3900.0), "bend": (1450.0, 1850.0)})
    result = fit.fit_band_heights(s_jk, grid, names, {"q_h0": 0.5, "a_r": 1.0, "a_theta": -0.02},
                                  ("a_r", "a_theta"), targets)
    assert result["success"]
    assert result["coefficients"]["a_r"] == pytest.approx(truth["a_r"], rel=1e-6)
    assert result["coefficients"]["a_theta"] == pytest.approx(truth["a_theta"], rel=1e-6)
    assert result["coefficients"]["q_h0"] == 0.5
    assert max(abs(r) for r in result["residuals"].values()) < 1e-9
