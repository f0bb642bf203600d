"""Dipole models: q-TIP4P/F M-site charges, charge flux, Ṁ by jvp, whole molecules across the box."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench  # noqa: F401
from workbench.observables.dipole import (
    QTIP4PF_GAMMA,
    QTIP4PF_Q_H,
    QTIP4PF_R_EQ,
    QTIP4PF_THETA_EQ,
    charge_flux_dipole,
    dipole_trajectory,
    point_charge_dipole,
    qtip4pf_dipole,
    water_geometry,
)
from workbench.system import water_box

BOX = np.full(3, 1.2)


def _waters(n=4, seed=0):
    sys = water_box(n, density_g_cm3=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    pos = sys.positions + rng.normal(scale=0.003, size=sys.positions.shape)  # distort geometry
    return pos, sys.box, sys.molecules


def _explicit_m_site_dipole(pos, molecules, q_h=QTIP4PF_Q_H, gamma=QTIP4PF_GAMMA):
    """Σ q r over H, H and the M site written out (molecules whole)."""
    total = np.zeros(3)
    for o, h1, h2 in molecules:
        r_m = gamma * pos[o] + (1 - gamma) * 0.5 * (pos[h1] + pos[h2])
        total += q_h * pos[h1] + q_h * pos[h2] - 2 * q_h * r_m
    return total


def test_qtip4pf_matches_explicit_m_site_charges():
    pos, box, mols = _waters()
    model = qtip4pf_dipole()
    np.testing.assert_allclose(model.dipole(pos, box, mols), _explicit_m_site_dipole(pos, mols),
                               rtol=1e-12, atol=1e-14)
    generic = point_charge_dipole({"O": 0.0, "H": QTIP4PF_Q_H}, site_symbols=("O", "H", "H"),
                                  sites=[((QTIP4PF_GAMMA, (1 - QTIP4PF_GAMMA) / 2, (1 - QTIP4PF_GAMMA) / 2),
                                          -2 * QTIP4PF_Q_H)])
    np.testing.assert_allclose(generic.dipole(pos, box, mols), model.dipole(pos, box, mols),
                               rtol=1e-12, atol=1e-14)


def test_molecule_split_by_the_boundary_gives_the_same_dipole():
    pos, box, mols = _waters()
    wrapped = pos.copy()
    wrapped[mols[0, 1]] += np.array([box[0], 0.0, 0.0])  # one H of molecule 0 one box away
    wrapped[mols[1]] -= box  # a whole molecule shifted (neutral: no effect)
    for model in (qtip4pf_dipole(), charge_flux_dipole()):
        np.testing.assert_allclose(model.dipole(wrapped, box, mols), model.dipole(pos, box, mols),
                                   rtol=1e-12, atol=1e-13)


def test_mdot_by_jvp_equals_charge_weighted_velocities():
    pos, box, mols = _waters()
    rng = np.random.default_rng(3)
    vel = rng.normal(size=pos.shape)
    model = qtip4pf_dipole()
    mdot = model.dipole_derivative(pos, vel, box, mols)
    # Σ q_i v_i with the M site velocity γ v_O + (1−γ)(v_H1 + v_H2)/2
    expected = _explicit_m_site_dipole(vel, mols)
    np.testing.assert_allclose(mdot, expected, rtol=1e-12, atol=1e-14)


def test_charge_flux_reduces_to_fixed_charges_and_is_neutral():
    pos, box, mols = _waters()
    no_flux = charge_flux_dipole(a_r=0.0, b_r=0.0, a_theta=0.0)
    np.testing.assert_allclose(no_flux.dipole(pos, box, mols), qtip4pf_dipole().dipole(pos, box, mols),
                               rtol=1e-12, atol=1e-14)
    flux = charge_flux_dipole()
    shifted = pos + np.array([0.3, -0.2, 0.1])  # neutral molecules: origin-independent
    np.testing.assert_allclose(flux.dipole(shifted, box, mols), flux.dipole(pos, box, mols),
                               rtol=1e-10, atol=1e-13)
    d, r, theta = water_geometry(pos, box, mols)
    assert np.all(np.abs(np.asarray(r) - QTIP4PF_R_EQ) < 0.02)
    assert np.all(np.abs(np.asarray(theta) - QTIP4PF_THETA_EQ) < 0.5)


def _single_water(r1, r2, theta):
    s, c = jnp.sin(theta / 2), jnp.cos(theta / 2)
    return jnp.stack([jnp.zeros(3), r1 * jnp.array([s, 0.0, c]), r2 * jnp.array([-s, 0.0, c])])


def test_charge_flux_default_derivative_ratios():
    """Defaults (fitted on liquid MD, see ``charge_flux_dipole``): for an isolated molecule at
    equilibrium |∂μ/∂r1|² is 2.42 and |∂μ/∂θ|² 0.435 times the fixed-charge values, as documented."""
    mols = np.array([[0, 1, 2]])

    def derivs(model):
        f = lambda r1, r2, th: model.dipole(_single_water(r1, r2, th), BOX, mols)  # noqa: E731
        dr = jax.jacfwd(f, 0)(QTIP4PF_R_EQ, QTIP4PF_R_EQ, QTIP4PF_THETA_EQ)
        dth = jax.jacfwd(f, 2)(QTIP4PF_R_EQ, QTIP4PF_R_EQ, QTIP4PF_THETA_EQ)
        return float(dr @ dr), float(dth @ dth)

    fixed = derivs(qtip4pf_dipole())
    flux = derivs(charge_flux_dipole())
    assert flux[0] / fixed[0] == pytest.approx(2.42, rel=0.005)
    assert flux[1] / fixed[1] == pytest.approx(0.435, rel=0.005)
    # analytic fixed-charge values: (q γ)² and (q γ r0 sin(θ/2))²
    qg = QTIP4PF_Q_H * QTIP4PF_GAMMA
    assert fixed[0] == pytest.approx(qg**2, rel=1e-10)
    assert fixed[1] == pytest.approx((qg * QTIP4PF_R_EQ * math.sin(QTIP4PF_THETA_EQ / 2)) ** 2, rel=1e-10)


def test_trajectory_mdot_matches_finite_difference_of_m():
    """Nonlinear model: Ṁ(t) by jvp equals dM/dt along a smooth path x(t) = x0 + v t + ½ a t²."""
    pos, box, mols = _waters(3, seed=4)
    rng = np.random.default_rng(5)
    v0 = rng.normal(scale=1.0, size=pos.shape)
    acc = rng.normal(scale=5.0, size=pos.shape)
    times = np.linspace(0.0, 0.02, 5)
    xs = np.stack([pos + v0 * t + 0.5 * acc * t**2 for t in times])
    vs = np.stack([v0 + acc * t for t in times])
    model = charge_flux_dipole()
    m, mdot = dipole_trajectory(model.dipole_fn, model.params, xs, vs, box, mols)
    assert m.shape == mdot.shape == (5, 3)
    h = 1e-6
    dipole = jax.jit(jax.vmap(model.dipole_fn, in_axes=(None, 0, None, None)))
    xp = np.stack([pos + v0 * (t + h) + 0.5 * acc * (t + h) ** 2 for t in times])
    xm = np.stack([pos + v0 * (t - h) + 0.5 * acc * (t - h) ** 2 for t in times])
    fd = (dipole(model.params, xp, box, mols) - dipole(model.params, xm, box, mols)) / (2 * h)
    np.testing.assert_allclose(mdot, fd, rtol=1e-6, atol=1e-9)
    m_b, mdot_b = model.trajectory(xs, vs, box, mols, batch_size=2)
    np.testing.assert_allclose(mdot_b, mdot, rtol=1e-12)
    np.testing.assert_allclose(m_b, m, rtol=1e-12)


def test_params_are_differentiable():
    pos, box, mols = _waters()
    model = charge_flux_dipole()
    g = jax.grad(lambda p: jnp.sum(model.dipole(pos, box, mols, params=p) ** 2))(model.params)
    assert set(g) == set(model.params)
    assert all(np.isfinite(np.asarray(v)) for v in g.values())
    m = model.dipole(pos, box, mols)
    # M is linear in q_H0 with a_r = b_r = a_θ fixed: ∂|M|²/∂q_H0 = 2 M·∂M/∂q_H0
    dm = jax.jacfwd(lambda q: model.dipole(pos, box, mols, params={**model.params, "q_h0": q}))(
        model.params["q_h0"])
    assert float(g["q_h0"]) == pytest.approx(float(2 * m @ dm), rel=1e-10)


def test_point_charges_need_site_symbols_for_element_charges():
    with pytest.raises(ValueError, match="site_symbols"):
        point_charge_dipole({"O": -0.8, "H": 0.4})
    with pytest.raises(ValueError, match="no charge"):
        point_charge_dipole({"O": -0.8}, site_symbols=("O", "H", "H"))
