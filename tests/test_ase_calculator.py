"""ASE calculator: units, agreement with the JAX path, one MD step, a short optimisation."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase import units as ase_units

import workbench  # noqa: F401  (enables x64)
from workbench import units
from workbench.potentials import Potential, eann
from workbench.potentials.ase_calculator import WorkbenchCalculator
from workbench.potentials.model_io import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODEL_NPZ = DATA / "eann_water_dft_start.npz"
REFERENCE = DATA / "eann_reference.npz"


@pytest.fixture(scope="module")
def seed():
    if not (MODEL_NPZ.exists() and REFERENCE.exists()):
        pytest.skip(f"seed EANN model/reference not found in {DATA}")
    return load_model(MODEL_NPZ), dict(np.load(REFERENCE))


def water_atoms(ref, frame=1):
    symbols = ["H" if s == 0 else "O" for s in ref["species"]]
    return Atoms(symbols, positions=ref["coords"][frame], cell=ref["box"], pbc=True)


@pytest.fixture(scope="module")
def calc_and_atoms(seed):
    model, ref = seed
    atoms = water_atoms(ref)
    atoms.calc = WorkbenchCalculator(model)  # a ModelFile acts as a factory with its species order
    return atoms, ref


def test_energy_forces_in_ev_match_reference(calc_and_atoms):
    atoms, ref = calc_and_atoms
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    assert e == pytest.approx(ref["energy_start"][1] / units.KJ_PER_MOL_PER_EV, rel=1e-9)
    f_ref = ref["forces_start"][1] / units.KJ_PER_MOL_PER_EV  # kJ/mol/Å → eV/Å
    assert np.max(np.abs(f - f_ref)) <= 1e-6 * np.max(np.abs(f_ref))
    assert atoms.get_potential_energy(force_consistent=True) == e


def jax_energy_and_forces(calc, atoms):
    """E [kJ/mol] and F [kJ/mol/nm] on the JAX side: the calculator's potential and compiled function
    (compiling another copy would double the test time), with a pair list built here with numpy."""
    pot, value_and_grad = calc.potential_for(atoms)
    x = atoms.get_positions() * units.NM_PER_ANGSTROM
    box = np.diag(atoms.cell.array) * units.NM_PER_ANGSTROM
    i, j = np.triu_indices(len(x), k=1)
    dr = x[j] - x[i]
    dr -= box * np.round(dr / box)
    keep = np.linalg.norm(dr, axis=1) <= pot.cutoff
    capacity = max(calc._capacity, 256 * int(np.ceil(keep.sum() * 1.2 / 256)))
    pairs = np.full((2, capacity), len(x), dtype=np.int32)
    pairs[:, :keep.sum()] = np.stack([i[keep], j[keep]])
    e, g = value_and_grad(pot.params, jnp.asarray(x), jnp.asarray(box), jnp.asarray(pairs))
    return float(e), -np.asarray(g)


def test_agrees_with_jax_path_and_pair_capacity_is_sticky(calc_and_atoms):
    atoms, ref = calc_and_atoms
    e_jax, f_jax = jax_energy_and_forces(atoms.calc, atoms)
    assert atoms.get_potential_energy() * units.KJ_PER_MOL_PER_EV == pytest.approx(e_jax, rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces() * units.KJ_PER_MOL_PER_EV * units.ANGSTROM_PER_NM,
                               f_jax, rtol=0, atol=1e-8)
    capacity = atoms.calc._capacity
    assert capacity % 256 == 0 and capacity >= ref["npairs"][1]
    moved = atoms.copy()
    moved.positions += 0.01
    moved.calc = atoms.calc
    moved.get_potential_energy()
    assert atoms.calc._capacity == capacity


def test_velocity_verlet_step_matches_jax_step(calc_and_atoms):
    from ase.md.verlet import VelocityVerlet

    atoms0, ref = calc_and_atoms
    atoms = atoms0.copy()
    atoms.calc = atoms0.calc
    m = atoms.get_masses()[:, None]  # amu
    v0 = np.random.default_rng(0).normal(size=(len(atoms), 3)) * np.sqrt(units.kT(300.0) / m)  # nm/ps
    atoms.set_velocities(v0 * units.ANGSTROM_PER_NM * units.PS_PER_FS / ase_units.fs)
    x0 = atoms.get_positions() * units.NM_PER_ANGSTROM  # nm
    dt_fs = 0.5

    _, f0 = jax_energy_and_forces(atoms.calc, atoms)  # kJ/mol/nm = amu·nm/ps²
    VelocityVerlet(atoms, timestep=dt_fs * ase_units.fs).run(1)

    dt = dt_fs * units.PS_PER_FS
    x1 = x0 + v0 * dt + 0.5 * f0 / m * dt**2
    probe = atoms.copy()
    probe.positions = x1 * units.ANGSTROM_PER_NM
    _, f1 = jax_energy_and_forces(atoms.calc, probe)
    v1 = v0 + 0.5 * (f0 + f1) / m * dt
    np.testing.assert_allclose(atoms.get_positions() * units.NM_PER_ANGSTROM, x1, rtol=0, atol=1e-10)
    v_ase = atoms.get_velocities() * units.NM_PER_ANGSTROM * ase_units.fs / units.PS_PER_FS
    # ASE's time unit comes from its CODATA 2014 amu and e; the workbench uses CODATA 2018 (exact
    # N_A, e): the two unit systems differ at the 1e-8 level
    np.testing.assert_allclose(v_ase, v1, rtol=0, atol=1e-7)  # |v| ~ 1 nm/ps
    assert np.max(np.abs(x1 - x0)) > 1e-4  # it did move


def test_bfgs_lowers_energy_of_small_cluster(seed):
    """Three waters, open boundaries: BFGS steps with the calculator's forces lower the energy."""
    from ase.optimize import BFGS

    model, ref = seed
    atoms = Atoms(["O", "H", "H"] * 3, positions=ref["coords"][2][:9], pbc=False)
    atoms.calc = WorkbenchCalculator(model.potential, species_order=("H", "O"))
    e0 = atoms.get_potential_energy()
    opt = BFGS(atoms, logfile=None)
    opt.run(fmax=1e-3, steps=5)
    assert atoms.get_potential_energy() < e0 - 1e-3


def test_tiny_model_any_potential_and_errors():
    """A fixed Potential (here a random EANN for 6 atoms) is checked against the atoms it gets."""
    params = eann.init_eann_params(jax.random.key(0), n_radial=4, hidden=(8, 8))
    species = np.array([1, 0, 0, 1, 0, 0])
    pot = eann.eann_potential(params, species, metadata={"species_order": ["H", "O"]})
    assert isinstance(pot, Potential)
    rng = np.random.default_rng(0)
    atoms = Atoms("OH2OH2", positions=rng.uniform(0, 13, (6, 3)), cell=[13.0, 13.0, 13.0], pbc=True)
    atoms.calc = WorkbenchCalculator(pot)
    e = atoms.get_potential_energy()
    assert np.isfinite(e) and atoms.get_forces().shape == (6, 3)

    swapped = Atoms("H2OH2O", positions=atoms.positions, cell=atoms.cell, pbc=True)
    swapped.calc = WorkbenchCalculator(pot)
    with pytest.raises(ValueError, match="do not match the species"):
        swapped.get_potential_energy()

    small_cell = atoms.copy()
    small_cell.set_cell([10.0, 10.0, 10.0])
    small_cell.calc = WorkbenchCalculator(pot)
    with pytest.raises(ValueError, match="twice the cutoff"):
        small_cell.get_potential_energy()

    skewed = atoms.copy()
    skewed.set_cell([[13.0, 0, 0], [1.0, 13.0, 0], [0, 0, 13.0]])
    skewed.calc = WorkbenchCalculator(pot)
    with pytest.raises(ValueError, match="orthorhombic"):
        skewed.get_potential_energy()

    with pytest.raises(ValueError, match="species_order"):
        WorkbenchCalculator(lambda species: pot)
