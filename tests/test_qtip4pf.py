"""q-TIP4P/F reference water: OpenMM agreement, finite differences, pair-list independence, invariances."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workbench import system, units
from workbench.potentials import ewald
from workbench.potentials.base import all_pairs, pairs_within
from workbench.potentials.qtip4pf import (
    DEFAULT_EWALD_TOLERANCE,
    QTIP4PFParams,
    TopologyError,
    qtip4pf,
    qtip4pf_params,
    qtip4pf_terms,
    switch,
    water_topology,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WATER64 = DATA / "water64.pdb"
needs_data = pytest.mark.skipif(not WATER64.exists(), reason=f"shared test data {WATER64} not present")


@pytest.fixture(scope="module")
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def water64(x64):
    # index=0: the file holds one MODEL; ase's last "frame" of it is empty.
    s = system.read(WATER64, index=0)
    rng = np.random.default_rng(1)
    # Perturb away from the file's geometry so that bonds, angles and switching all contribute.
    return s.replace(positions=s.positions + rng.normal(scale=0.003, size=s.positions.shape))


@pytest.fixture(scope="module")
def model(water64):
    """The default potential and one compiled (E, ∂E/∂params, ∂E/∂r) function shared by the tests."""
    pot = qtip4pf(water64)
    return pot, jax.jit(jax.value_and_grad(pot.energy_fn, argnums=(0, 1)))


def evaluate(model, positions, box, pairs=None, params=None):
    """Energy, parameter gradient and forces, with ``pairs`` padded to the all-pairs length (so
    that every list reuses one compilation)."""
    pot, fn = model
    n = len(positions)
    n_all = n * (n - 1) // 2
    pairs = np.asarray(all_pairs(n) if pairs is None else pairs)
    pairs = np.concatenate([pairs, np.full((2, n_all - pairs.shape[1]), n, dtype=np.int32)], axis=1)
    e, (gp, gx) = fn(pot.params if params is None else params, jnp.asarray(positions),
                     jnp.asarray(box), jnp.asarray(pairs, dtype=jnp.int32))
    return float(e), gp, -np.asarray(gx)


def whole_molecules(positions, box, molecules):
    """Move each H next to its O (minimum image) so that every molecule is whole."""
    pos = np.array(positions, dtype=float)
    for o, *hs in molecules:
        for h in hs:
            d = pos[h] - pos[o]
            pos[h] = pos[o] + d - box * np.round(d / box)
    return pos


def energy_and_forces(pot, positions, box, pairs=None):
    pairs = all_pairs(len(positions)) if pairs is None else jnp.asarray(pairs)
    e, g = jax.jit(jax.value_and_grad(pot.energy_fn, argnums=1))(
        pot.params, jnp.asarray(positions), jnp.asarray(box), pairs)
    return float(e), -np.asarray(g)


def openmm_energy_forces(positions, box, molecules, params, cutoff, switch_distance, tolerance):
    """The same model in OpenMM (Reference platform, double precision, Ewald)."""
    mm = pytest.importorskip("openmm")
    p = {k: float(v) for k, v in params._asdict().items()}
    n = len(positions)
    omm = mm.System()
    omm.setDefaultPeriodicBoxVectors(*(mm.Vec3(*(np.eye(3)[d] * box[d])) for d in range(3)))
    bonds = mm.CustomBondForce("D*(a^2*x^2 - a^3*x^3 + 7/12*a^4*x^4); x = r - r0")
    for name, value in (("D", p["D_r"]), ("a", p["alpha_r"]), ("r0", p["r_eq"])):
        bonds.addGlobalParameter(name, value)
    angles = mm.HarmonicAngleForce()
    nb = mm.NonbondedForce()
    nb.setNonbondedMethod(mm.NonbondedForce.Ewald)
    nb.setCutoffDistance(cutoff)
    nb.setEwaldErrorTolerance(tolerance)
    nb.setUseDispersionCorrection(False)
    if switch_distance is not None:
        nb.setUseSwitchingFunction(True)
        nb.setSwitchingDistance(switch_distance)
    oxygens = set(int(o) for o in molecules[:, 0])
    for i in range(n):
        omm.addParticle(15.9994 if i in oxygens else 1.00794)
        if i in oxygens:
            nb.addParticle(0.0, p["sigma_OO"], p["epsilon_OO"])
        else:
            nb.addParticle(p["q_H"], 1.0, 0.0)
    g = p["gamma"]
    for o, h1, h2 in (map(int, row) for row in molecules):
        m = omm.addParticle(0.0)
        omm.setVirtualSite(m, mm.ThreeParticleAverageSite(o, h1, h2, g, (1 - g) / 2, (1 - g) / 2))
        nb.addParticle(-2 * p["q_H"], 1.0, 0.0)
        bonds.addBond(o, h1, [])
        bonds.addBond(o, h2, [])
        angles.addAngle(h1, o, h2, p["theta_eq"], p["k_theta"])
        for a, b in ((o, h1), (o, h2), (h1, h2), (m, o), (m, h1), (m, h2)):
            nb.addException(a, b, 0.0, 1.0, 0.0)
    for force in (bonds, angles, nb):
        omm.addForce(force)
    context = mm.Context(omm, mm.VerletIntegrator(0.0005), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.concatenate([positions, np.zeros((len(molecules), 3))]))
    context.computeVirtualSites()
    state = context.getState(getEnergy=True, getForces=True)
    e = state.getPotentialEnergy().value_in_unit(mm.unit.kilojoule_per_mole)
    f = state.getForces(asNumpy=True).value_in_unit(mm.unit.kilojoule_per_mole / mm.unit.nanometer)
    return e, np.asarray(f)[:n]  # virtual-site forces are already redistributed onto O, H, H


def rms_rel(f, ref):
    return float(np.sqrt(np.mean((f - ref) ** 2)) / np.sqrt(np.mean(ref**2)))


# ----------------------------------------------------------------------------------------------


def test_published_parameters_in_internal_units():
    with jax.enable_x64(True):
        p = qtip4pf_params()
        assert p.D_r.dtype == jnp.float64
    np.testing.assert_allclose(float(p.D_r), 116.09 * 4.184)
    np.testing.assert_allclose(float(p.alpha_r), 22.87)
    np.testing.assert_allclose(float(p.r_eq), 0.09419)
    np.testing.assert_allclose(float(p.k_theta), 87.85 * 4.184)
    np.testing.assert_allclose(float(p.theta_eq), np.deg2rad(107.4))
    np.testing.assert_allclose(float(p.epsilon_OO), 0.1852 * 4.184)
    np.testing.assert_allclose(float(p.sigma_OO), 0.31589)
    assert float(p.q_H) == pytest.approx(0.5564) and float(p.gamma) == pytest.approx(0.73612)


def test_switch_is_openmm_polynomial():
    r = jnp.array([0.4, 0.5, 0.55, 0.6, 0.7])
    np.testing.assert_allclose(switch(r, 0.5, 0.6), [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)
    ds = jax.vmap(jax.grad(lambda x: switch(x, 0.5, 0.6)))(jnp.array([0.5, 0.6]))
    np.testing.assert_allclose(ds, 0.0, atol=1e-5)


@needs_data
@pytest.mark.parametrize("switch_distance, tolerance, e_tol, f_tol", [
    (0.5, DEFAULT_EWALD_TOLERANCE, 1e-5, 1e-4),  # the defaults, as used in MD
    (0.5, 1e-6, 1e-5, 1e-4),     # OpenMM-typical tolerance
    (None, 1e-10, 1e-8, 1e-7),   # converged Ewald on both sides: agreement to round-off
])
def test_matches_openmm(water64, model, switch_distance, tolerance, e_tol, f_tol):
    s = water64
    pos_whole = whole_molecules(s.positions, s.box, s.molecules)
    # Our side gets wrapped coordinates (molecules split by the boundary); OpenMM whole ones.
    pos_wrapped = pos_whole - s.box * np.floor(pos_whole / s.box)
    if switch_distance == 0.5 and tolerance == DEFAULT_EWALD_TOLERANCE:
        pot = model[0]
        e, _, f = evaluate(model, pos_wrapped, s.box)
    else:
        pot = qtip4pf(s, cutoff=0.6, switch_distance=switch_distance, ewald_tolerance=tolerance)
        e, f = energy_and_forces(pot, pos_wrapped, s.box)
    e_ref, f_ref = openmm_energy_forces(pos_whole, s.box, s.molecules, pot.params, 0.6,
                                        switch_distance, tolerance)
    assert abs(e - e_ref) / abs(e_ref) <= e_tol, (e, e_ref)
    assert rms_rel(f, f_ref) <= f_tol


@needs_data
def test_forces_match_finite_differences(water64, model):
    s = water64
    _, _, forces = evaluate(model, s.positions, s.box)
    h = 1e-5
    for atom, dim in ((0, 0), (1, 2), (98, 1), (191, 0)):  # O, H, O, H
        dx = np.zeros_like(s.positions)
        dx[atom, dim] = h
        fd = -(evaluate(model, s.positions + dx, s.box)[0] - evaluate(model, s.positions - dx, s.box)[0])
        assert fd / (2 * h) == pytest.approx(forces[atom, dim], rel=1e-5, abs=1e-4)


@needs_data
def test_parameter_gradient_matches_finite_differences(water64, model):
    s = water64
    params = model[0].params
    _, grad, _ = evaluate(model, s.positions, s.box)
    for name, h in (("q_H", 1e-6), ("gamma", 1e-6), ("sigma_OO", 1e-7), ("r_eq", 1e-7), ("k_theta", 1e-4)):
        plus = params._replace(**{name: getattr(params, name) + h})
        minus = params._replace(**{name: getattr(params, name) - h})
        fd = (evaluate(model, s.positions, s.box, params=plus)[0]
              - evaluate(model, s.positions, s.box, params=minus)[0]) / (2 * h)
        assert fd == pytest.approx(float(getattr(grad, name)), rel=1e-5), name


@needs_data
def test_energy_independent_of_pair_list(water64, model):
    s = water64
    pot = model[0]
    e_all, _, f_all = evaluate(model, s.positions, s.box)
    pairs = pairs_within(s.positions, s.box, pot.cutoff)
    assert pairs.shape[1] < all_pairs(s.n_atoms).shape[1]
    e_cut, _, f_cut = evaluate(model, s.positions, s.box, pairs)
    # Shuffled, padded with N inside the list, and with pairs beyond the cutoff added.
    rng = np.random.default_rng(0)
    beyond = np.asarray(all_pairs(s.n_atoms))
    d = s.positions[beyond[1]] - s.positions[beyond[0]]
    d -= s.box * np.round(d / s.box)
    beyond = beyond[:, np.linalg.norm(d, axis=1) > pot.cutoff][:, :500]
    assert beyond.shape[1] == 500
    mixed = np.concatenate([pairs, beyond, np.full((2, 300), s.n_atoms)], axis=1)
    mixed = mixed[:, rng.permutation(mixed.shape[1])]
    e_mix, _, f_mix = evaluate(model, s.positions, s.box, mixed)
    assert e_cut == pytest.approx(e_all, rel=1e-12)
    assert e_mix == pytest.approx(e_all, rel=1e-12)
    np.testing.assert_allclose(f_cut, f_all, atol=1e-8)
    np.testing.assert_allclose(f_mix, f_all, atol=1e-8)


@needs_data
def test_rigid_translation_invariance(water64, model):
    s = water64
    pairs = pairs_within(s.positions, s.box, model[0].cutoff)  # translation keeps distances
    e0, _, f0 = evaluate(model, s.positions, s.box, pairs)
    e1, _, f1 = evaluate(model, s.positions + np.array([0.37, -1.91, 5.3]), s.box, pairs)
    assert e1 == pytest.approx(e0, rel=1e-11)
    terms = jax.jit(qtip4pf_terms(s))(model[0].params, jnp.asarray(s.positions), jnp.asarray(s.box), pairs)
    assert sum(float(v) for v in terms.values()) == pytest.approx(e0, rel=1e-12)
    assert float(terms["intramolecular"]) > 0 > float(terms["electrostatic"])
    np.testing.assert_allclose(f1, f0, atol=1e-7)
    # Net force vanishes (Newton's third law, including the M-site redistribution).
    np.testing.assert_allclose(f0.sum(axis=0), 0.0, atol=1e-7)


@needs_data
def test_float32_follows_positions(water64, model):
    """x64 stays enabled (importing workbench turns it on): float32 positions alone give float32."""
    s = water64
    pot = model[0]
    e64, _, f64 = evaluate(model, s.positions, s.box)
    x = jnp.asarray(s.positions, dtype=jnp.float32)
    e, g = jax.jit(jax.value_and_grad(pot.energy_fn, argnums=1))(
        pot.params, x, jnp.asarray(s.box, dtype=jnp.float32), all_pairs(s.n_atoms))
    assert e.dtype == jnp.float32 and g.dtype == jnp.float32
    # float32 rounding of the ~4200-k-vector Ewald sum at the default δ = 1e-8: measured 1.1e-5
    assert float(e) == pytest.approx(e64, rel=3e-5)
    assert rms_rel(-np.asarray(g), f64) < 1e-4


def test_ewald_settings_and_limits():
    box = np.full(3, 1.2385)
    ew = ewald.ewald_parameters(box, 0.6, 1e-6)
    assert ew.alpha == pytest.approx(np.sqrt(-np.log(2e-6)) / 0.6)
    assert ew.multiplicity[0, ew.multiplicity.shape[1] // 2, ew.multiplicity.shape[2] // 2] == 0  # k = 0
    assert 1000 < ew.n_kvectors < 3000
    with pytest.raises(ValueError, match="half the smallest box edge"):
        ewald.ewald_parameters(box, 0.7)
    with pytest.raises(ValueError, match="box .* is required"):
        qtip4pf(np.arange(6).reshape(2, 3))


def test_ewald_of_neutral_pair_in_large_box_is_coulomb():
    """Two opposite charges 0.3 nm apart in a 10 nm box: Ewald ≈ bare Coulomb (images ~ dipole 1/L³)."""
    with jax.enable_x64(True):
        box = jnp.full(3, 10.0)
        ew = ewald.ewald_parameters(np.asarray(box), 2.5, 1e-8)
        q = jnp.array([1.0, -1.0])
        r = jnp.array([[1.0, 1.0, 1.0], [1.3, 1.0, 1.0]])

        @jax.jit
        def energy(q, r):
            return (ewald.real_space_energy(q[0] * q[1], jnp.array([0.3]), jnp.array([True]), ew.alpha)
                    + ewald.reciprocal_energy(q, r, box, ew.multiplicity, ew.alpha)
                    + ewald.self_energy(q, ew.alpha))

        e = energy(q, r)
    bare = -units.COULOMB / 0.3
    # The periodic images of a dipole p = 0.3 e nm shift the energy by −(2π/3V)·k_e·p² (tin foil).
    image = -2 * np.pi / 3 / 1000.0 * units.COULOMB * 0.3**2
    assert float(e) == pytest.approx(bare + image, rel=1e-6)


def test_topology_errors_are_clear():
    with pytest.raises(TopologyError, match="O-H-H"):
        water_topology(np.array([[0, 1, 2]]), symbols=("H", "O", "H"))
    with pytest.raises(TopologyError, match="index triples"):
        water_topology(np.arange(3).reshape(3, 1))
    with pytest.raises(TopologyError, match="exactly one water"):
        water_topology(np.array([[0, 1, 2], [2, 3, 4]]))
    argon = system.System(("Ar", "Ar"), np.zeros((2, 3)), np.full(3, 2.0), np.arange(2).reshape(2, 1))
    with pytest.raises(TopologyError):
        qtip4pf(argon)
    # A water System works without a box argument; the molecules array needs one.
    water = system.water_box(27, seed=3)
    pot = qtip4pf(water.molecules, water.box, cutoff=0.4, symbols=water.symbols)
    assert pot.cutoff == pytest.approx(0.4 + 0.04) and isinstance(pot.params, QTIP4PFParams)
    assert pot.metadata["switch_distance_nm"] == pytest.approx(0.3)
