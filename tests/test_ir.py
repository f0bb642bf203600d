"""IR spectrum: prefactor, sum rule, a charged Langevin harmonic oscillator, windows, corrections."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

import workbench  # noqa: F401
from workbench import units
from workbench.observables.dipole import charge_flux_dipole, dipole_trajectory
from workbench.observables.ir import (
    HC_OVER_KB_CM_K,
    band_analysis,
    ir_from_tcf,
    ir_prefactor,
    ir_spectrum,
    nyquist_wavenumber,
    quantum_correction_factor,
    sum_rule_integral,
    wavenumber_grid,
    window_function,
)
from workbench.observables.tcf import tcf
from workbench.system import water_box

T = 298.15
DT = 0.004  # ps between frames
NU0 = 1000.0  # cm⁻¹
OMEGA0 = units.wavenumber_to_angular_frequency(NU0)  # rad/ps
GAMMA = 5.0  # 1/ps
MASS = 1.0  # amu
CHARGE = 1.0  # e


def test_prefactor_from_constants():
    assert ir_prefactor(298.15) == pytest.approx(3915.45, abs=0.01)
    assert ir_prefactor(350.0) == pytest.approx(3915.45 * 298.15 / 350.0, rel=1e-5)
    assert HC_OVER_KB_CM_K == pytest.approx(1.4387769, rel=1e-7)


def _langevin_oscillators(n_osc, n_frames, seed=0):
    """Velocities (n_osc, F, 3) of independent 3D harmonic oscillators in a Langevin bath.

    Exact propagation of the linear SDE dx = v dt, dv = (−ω0² x − γ v) dt + √(2γkT/m) dW over a
    frame: X(t+h) = e^{Ah} X(t) + ξ, Cov ξ = Σ_eq − e^{Ah} Σ_eq e^{Aᵀh}, Σ_eq = diag(kT/mω0², kT/m).
    """
    kT = units.kT(T)
    a = np.array([[0.0, 1.0], [-OMEGA0**2, -GAMMA]])
    prop = expm(a * DT)
    sigma_eq = np.diag([kT / (MASS * OMEGA0**2), kT / MASS])
    chol = np.linalg.cholesky(sigma_eq - prop @ sigma_eq @ prop.T)
    rng = np.random.default_rng(seed)
    state = np.sqrt(np.diag(sigma_eq))[:, None] * rng.normal(size=(2, n_osc * 3))  # equilibrium start
    v = np.empty((n_frames, n_osc * 3))
    for i in range(n_frames):
        v[i] = state[1]
        state = prop @ state + chol @ rng.normal(size=state.shape)
    return v.reshape(n_frames, n_osc, 3).transpose(1, 0, 2)


def _analytic_vacf(t):
    """⟨v(0)v(t)⟩ of a damped oscillator per component: kT/m e^{−γt/2}[cos ω1t − γ/(2ω1) sin ω1t]."""
    w1 = math.sqrt(OMEGA0**2 - 0.25 * GAMMA**2)
    return units.kT(T) / MASS * np.exp(-0.5 * GAMMA * t) * (
        np.cos(w1 * t) - 0.5 * GAMMA / w1 * np.sin(w1 * t))


@pytest.fixture(scope="module")
def oscillator_mdot():
    return CHARGE * _langevin_oscillators(n_osc=64, n_frames=5000)


def test_harmonic_oscillator_peak_and_intensity(oscillator_mdot):
    grid = np.arange(0.0, 2000.0, 1.0)
    volume = 1.0
    spec = np.asarray(ir_spectrum(oscillator_mdot, DT, volume, T, grid, tcf_length_ps=2.0))
    # the same window and transform applied to the exact TCF q²·3·C_vv(t)
    t = DT * np.arange(501)
    exact = np.asarray(ir_from_tcf(CHARGE**2 * 3 * _analytic_vacf(t), DT, volume, T, grid))
    band = band_analysis(grid, spec, {"osc": (800.0, 1200.0)})["osc"]
    band_exact = band_analysis(grid, exact, {"osc": (800.0, 1200.0)})["osc"]
    assert abs(band.position - NU0) <= 3.0
    assert abs(band_exact.position - NU0) <= 1.0
    assert band.height == pytest.approx(band_exact.height, rel=0.05)
    assert np.max(np.abs(spec - exact)) < 0.05 * band_exact.height
    # integrated intensity vs equipartition ⟨Ṁ²⟩ = q² 3kT/m per oscillator (window average)
    nyq = np.linspace(0.0, nyquist_wavenumber(DT), 2001)
    full = np.asarray(ir_spectrum(oscillator_mdot, DT, volume, T, nyq, tcf_length_ps=2.0))
    integral = np.trapezoid(full, nyq)
    analytic = sum_rule_integral(CHARGE**2 * 3 * units.kT(T) / MASS, volume, T)
    assert integral == pytest.approx(analytic, rel=0.02)


@pytest.mark.parametrize("window", ["gaussian", "hann", "none"])
def test_sum_rule_is_exact_for_every_window(oscillator_mdot, window):
    """∫_0^{ν_Nyquist} nα dν̃ = prefactor ⟨Ṁ²⟩/(2cV) with the sample ⟨Ṁ²⟩ = C(0)."""
    mdot = oscillator_mdot[:4].sum(axis=0)  # a total dipole of 4 oscillators, (F, 3)
    volume = 2.5
    nyq = np.linspace(0.0, nyquist_wavenumber(DT), 2001)  # ≥ n_lags intervals: trapezoid is exact
    spec = np.asarray(ir_spectrum(mdot, DT, volume, T, nyq, tcf_length_ps=2.0, window=window))
    c0 = float(np.mean(np.sum(mdot**2, axis=-1)))
    assert np.trapezoid(spec, nyq) == pytest.approx(sum_rule_integral(c0, volume, T), rel=1e-9)


def test_windows_and_errors():
    t = np.linspace(0.0, 2.0, 11)
    np.testing.assert_allclose(window_function(t, "gaussian", 1 / 3), np.exp(-4.5 * t**2))
    hann = np.asarray(window_function(t, "hann"))
    assert hann[0] == 1.0 and abs(hann[-1]) < 1e-15
    np.testing.assert_allclose(window_function(t, "none"), 1.0)
    with pytest.raises(ValueError, match="unknown window"):
        window_function(t, "box")
    mdot = np.zeros((100, 3))
    with pytest.raises(ValueError, match="Nyquist"):
        ir_spectrum(mdot, DT, 1.0, T, [0.0, 5000.0], tcf_length_ps=0.2)
    with pytest.raises(ValueError, match="needs at least"):
        ir_spectrum(mdot, DT, 1.0, T, [100.0], tcf_length_ps=2.0)
    with pytest.raises(ValueError, match="unknown quantum correction"):
        quantum_correction_factor([100.0], T, "bogus")


def test_quantum_corrections():
    nu = np.array([0.0, 1e-9, 618.0, 1642.0, 3393.0])
    x = HC_OVER_KB_CM_K * nu / T
    np.testing.assert_allclose(quantum_correction_factor(nu, T, "harmonic"), 1.0)
    none = np.asarray(quantum_correction_factor(nu, T, "none"))
    scho = np.asarray(quantum_correction_factor(nu, T, "schofield"))
    np.testing.assert_allclose(none[2:], (1 - np.exp(-x[2:])) / x[2:], rtol=1e-12)
    np.testing.assert_allclose(scho[2:], 2 * np.sinh(x[2:] / 2) / x[2:], rtol=1e-12)
    np.testing.assert_allclose(none[:2], 1.0, atol=1e-9)
    np.testing.assert_allclose(scho[:2], 1.0, atol=1e-9)
    # a spectrum with a correction is the harmonic one times the factor
    rng = np.random.default_rng(0)
    c = rng.normal(size=51)
    harm = ir_from_tcf(c, DT, 1.0, T, nu)
    np.testing.assert_allclose(ir_from_tcf(c, DT, 1.0, T, nu, quantum_correction="none"), harm * none,
                               rtol=1e-12)


def test_spectrum_is_differentiable_wrt_mdot():
    rng = np.random.default_rng(1)
    mdot = jnp.asarray(rng.normal(size=(120, 3)))
    grid = wavenumber_grid(4000.0)
    target = jnp.asarray(rng.normal(size=grid.size))

    @jax.jit
    def loss(m):
        return jnp.sum((ir_spectrum(m, 0.002, 2.0, T, grid, tcf_length_ps=0.2) - target) ** 2)

    g = jax.grad(loss)(mdot)
    assert g.shape == mdot.shape and bool(jnp.all(jnp.isfinite(g)))
    h = 1e-6
    e = jnp.zeros_like(mdot).at[7, 1].set(h)
    fd = (loss(mdot + e) - loss(mdot - e)) / (2 * h)
    assert float(g[7, 1]) == pytest.approx(float(fd), rel=1e-5)


def test_windows_axis_averages_tcfs():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 80, 3))
    grid = np.array([0.0, 500.0, 1500.0])
    multi = ir_spectrum(w, DT, 1.0, T, grid, tcf_length_ps=0.1)
    c = np.mean([np.asarray(tcf(w[i], max_lag=26)) for i in range(3)], axis=0)
    np.testing.assert_allclose(multi, ir_from_tcf(c, DT, 1.0, T, grid), rtol=1e-12)


def test_band_analysis_of_gaussians():
    x = np.arange(0.0, 4000.0, 0.5)
    peaks = {"stretch": (3400.0, 17000.0, 380.0), "bend": (1640.0, 3700.0, 90.0),
             "libration": (620.0, 4600.0, 500.0)}
    y = sum(h * np.exp(-4 * math.log(2) * (x - p) ** 2 / w**2) for p, h, w in peaks.values())
    bands = band_analysis(x, y)
    for name, (p, h, w) in peaks.items():
        assert bands[name].position == pytest.approx(p, abs=0.5)
        assert bands[name].height == pytest.approx(h, rel=0.01)
        assert bands[name].fwhm == pytest.approx(w, rel=0.03)


def test_gradient_from_spectrum_to_dipole_parameters_under_jit():
    """The refinement path: params → Ṁ(t) (jvp) → TCF → n α → loss, jitted, finite gradient."""
    system = water_box(4, density_g_cm3=0.5, seed=1)
    rng = np.random.default_rng(3)
    n_frames, dt = 60, 0.002
    v = rng.normal(scale=1.0, size=(n_frames, system.n_atoms, 3))
    x = system.positions + np.cumsum(v, axis=0) * dt * 0.01  # small smooth-ish motion
    model = charge_flux_dipole()
    grid = wavenumber_grid(4000.0)

    @jax.jit
    def loss(params):
        _, mdot = dipole_trajectory(model.dipole_fn, params, x, v, system.box, system.molecules)
        return jnp.sum(ir_spectrum(mdot, dt, system.volume, T, grid, tcf_length_ps=0.06) ** 2)

    value, grads = jax.value_and_grad(loss)(model.params)
    assert np.isfinite(float(value)) and float(value) > 0
    assert all(np.isfinite(float(g)) for g in grads.values())
    # without flux M is linear in q_H0, n α quadratic, the loss quartic: d loss/d q = 4 loss / q
    base = {**model.params, "a_r": 0.0, "b_r": 0.0, "a_theta": 0.0}
    val0, g0 = jax.value_and_grad(loss)(base)
    assert float(g0["q_h0"]) == pytest.approx(4 * float(val0) / float(base["q_h0"]), rel=1e-8)
