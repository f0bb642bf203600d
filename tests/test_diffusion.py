"""Diffusion: Langevin free particles with D = kT/(mγ); GK vs Einstein; COM drift; Yeh–Hummer."""

import math

import numpy as np
import pytest

import workbench  # noqa: F401
from workbench import units
from workbench.observables.diffusion import (
    einstein_diffusion,
    green_kubo_diffusion,
    molecule_centres,
    msd,
    remove_com_drift,
    remove_com_velocity,
    to_m2_per_s,
    unwrap,
    yeh_hummer_correction,
)

T = 300.0
MASS = 1.0  # amu
GAMMA = 10.0  # 1/ps
DT = 0.02  # ps between frames
D_EXACT = units.kT(T) / (MASS * GAMMA)  # nm²/ps


def _free_langevin(n_particles, n_frames, seed=0):
    """Exact integration of dx = v dt, dv = −γ v dt + √(2γkT/m) dW over each frame (h = DT).

    v' = v e^{−γh} + ξ_v, x' = x + v (1 − e^{−γh})/γ + ξ_x with the Gaussian (ξ_x, ξ_v) of
    Var ξ_v = kT/m (1 − e^{−2γh}), Var ξ_x = kT/(mγ²)(2γh − 3 + 4e^{−γh} − e^{−2γh}),
    Cov = kT/(mγ) (1 − e^{−γh})².
    """
    kT_m = units.kT(T) / MASS
    e1, e2 = math.exp(-GAMMA * DT), math.exp(-2 * GAMMA * DT)
    cov = np.array([
        [kT_m / GAMMA**2 * (2 * GAMMA * DT - 3 + 4 * e1 - e2), kT_m / GAMMA * (1 - e1) ** 2],
        [kT_m / GAMMA * (1 - e1) ** 2, kT_m * (1 - e2)],
    ])
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 3.0, size=(n_particles, 3))
    v = math.sqrt(kT_m) * rng.normal(size=(n_particles, 3))
    xs = np.empty((n_frames, n_particles, 3))
    vs = np.empty_like(xs)
    for i in range(n_frames):
        xs[i], vs[i] = x, v
        noise = np.einsum("ij,jnd->ind", chol, rng.normal(size=(2, n_particles, 3)))
        x = x + v * (1 - e1) / GAMMA + noise[0]
        v = v * e1 + noise[1]
    return xs, vs


@pytest.fixture(scope="module")
def trajectory():
    return _free_langevin(256, 5000)


def test_langevin_free_particles_give_kT_over_m_gamma(trajectory):
    xs, vs = trajectory
    # removing the centre-of-mass motion of N equal particles scales D by (1 − 1/N)
    expected = D_EXACT * (1 - 1 / xs.shape[1])
    gk = green_kubo_diffusion(vs, DT, t_max_ps=1.0)
    ein = einstein_diffusion(xs, DT, fit_range_ps=(2.0, 8.0))
    assert gk.value == pytest.approx(expected, rel=0.05)
    assert ein.value == pytest.approx(expected, rel=0.05)
    # the two estimates agree within their block-averaged error bars (and 3 %)
    assert abs(gk.value - ein.value) < 3 * math.hypot(gk.stderr, ein.stderr)
    assert gk.value == pytest.approx(ein.value, rel=0.03)
    assert gk.stderr > 0 and ein.stderr > 0 and gk.block_values.shape == (5,)
    assert gk.value_m2_per_s == pytest.approx(gk.value * 1e-6)


def test_com_drift_is_removed(trajectory):
    xs, vs = trajectory
    drift = np.array([3.0, 0.0, 0.0])  # nm/ps, as if a thermostat left net momentum
    t = DT * np.arange(xs.shape[0])
    xd = xs + t[:, None, None] * drift
    vd = vs + drift
    ref = einstein_diffusion(xs, DT, fit_range_ps=(2.0, 8.0))
    drifted = einstein_diffusion(xd, DT, fit_range_ps=(2.0, 8.0))
    assert drifted.value == pytest.approx(ref.value, rel=1e-9)
    assert green_kubo_diffusion(vd, DT, 1.0).value == pytest.approx(
        green_kubo_diffusion(vs, DT, 1.0).value, rel=1e-9)
    raw = einstein_diffusion(xd, DT, fit_range_ps=(2.0, 8.0), remove_com=False)
    assert raw.value > 2 * ref.value


def test_msd_fft_equals_direct():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(60, 4, 3)), axis=0) + 100.0
    direct = [np.mean(np.sum((x[k:] - x[:60 - k]) ** 2, axis=-1)) for k in range(30)]
    np.testing.assert_allclose(msd(x, 30), direct, rtol=1e-9, atol=1e-9)


def test_com_helpers_and_unwrap():
    rng = np.random.default_rng(2)
    masses = np.array([16.0, 1.0, 1.0, 16.0, 1.0, 1.0])
    x = rng.normal(size=(10, 6, 3))
    v = rng.normal(size=(10, 6, 3))
    com = np.einsum("n,fnd->fd", masses / masses.sum(), np.asarray(remove_com_drift(x, masses)))
    np.testing.assert_allclose(com, com[:1].repeat(10, axis=0), atol=1e-12)
    vcom = np.einsum("n,fnd->fd", masses, np.asarray(remove_com_velocity(v, masses)))
    np.testing.assert_allclose(vcom, 0.0, atol=1e-12)
    centres = molecule_centres(x, masses, np.array([[0, 1, 2], [3, 4, 5]]))
    np.testing.assert_allclose(centres[:, 0], np.einsum("n,fnd->fd", masses[:3] / 18.0, x[:, :3]))
    box = np.array([2.0, 2.0, 2.0])
    path = np.cumsum(0.3 * rng.normal(size=(50, 5, 3)), axis=0)
    np.testing.assert_allclose(unwrap(np.mod(path, box), box) - path, (np.mod(path[0], box) - path[0])
                               [None].repeat(50, axis=0), atol=1e-12)


def test_yeh_hummer_correction_for_the_64_water_box():
    corr = yeh_hummer_correction(1.2385, 298.15)
    assert to_m2_per_s(corr) == pytest.approx(0.562e-9, rel=0.005)
    # scales as T/(ηL)
    assert yeh_hummer_correction(2.477, 298.15, viscosity_mPa_s=0.445) == pytest.approx(corr, rel=1e-12)


def test_bad_ranges(trajectory):
    xs, vs = trajectory
    with pytest.raises(ValueError, match="longer than a block"):
        green_kubo_diffusion(vs[:100], DT, t_max_ps=1.0)
    with pytest.raises(ValueError, match="past a block"):
        einstein_diffusion(xs[:100], DT, fit_range_ps=(0.1, 1.0))
