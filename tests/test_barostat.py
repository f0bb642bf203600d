"""Monte Carlo barostat (workbench.md.barostat) and NPT runs: the acceptance rule is exact (ideal
gas ⟨V⟩ = (n + 1) kT / P), an interacting NPT ensemble has ⟨P_virial⟩ = P, molecules are scaled
rigidly, and the reweighted density gradient equals finite differences of the reweighted average."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workbench.grad.reweighting import ReferenceSamples, reweighted_density
from workbench.md import MDConfig, barostat, simulate
from workbench.md.neighbor import box_pairs_capacity, box_pairs_per_frame, build_box_pairs
from workbench.observables.structure import block_average
from workbench.potentials.base import Potential
from workbench.potentials.lennard_jones import lennard_jones
from workbench.system import System, water_box
from workbench.units import KB, KJ_PER_MOL_PER_NM3_PER_BAR


def _ideal_gas() -> Potential:
    return Potential("ideal gas", lambda p, x, box, pairs: 0.0 * jnp.sum(x), {}, None)


def test_bar_in_internal_units():
    assert KJ_PER_MOL_PER_NM3_PER_BAR == pytest.approx(0.0602214, rel=1e-6)


def test_ideal_gas_volume_is_exact():
    """p(V) ∝ V^n exp(−βPV) gives ⟨V⟩ = (n + 1) kT/P; 30 000 trials with the step size fixed after
    equilibration: the mean must agree within 4 block standard errors (and 1.5 %)."""
    n, temperature = 20, 300.0
    rng = np.random.default_rng(0)
    system = System(("Ar",) * n, rng.uniform(0, 2.0, (n, 3)), np.full(3, 2.0), np.arange(n)[:, None])
    pressure = (n + 1) * KB * temperature / 8.0  # ⟨V⟩ = 8 nm³
    cfg = MDConfig(ensemble="npt", temperature_K=temperature, dt=0.005, sample_every=1, barostat_every=1,
                   pressure_bar=pressure / KJ_PER_MOL_PER_NM3_PER_BAR, chunk_frames=10000)
    traj = simulate(_ideal_gas(), system, 30000, cfg, equilibration_steps=2000)
    mean, err = block_average(traj.volumes, 10)
    assert 0.2 < traj.barostat_acceptance < 0.9
    assert abs(mean - 8.0) < max(4 * err, 1e-3)
    assert abs(mean - 8.0) < 0.12


def test_molecular_scaling_keeps_water_rigid():
    """A volume move scales the O–O (centre) distances and leaves every O–H length and H–O–H angle."""
    system = water_box(8, seed=1)
    x = jnp.asarray(system.positions)
    mol_of = barostat.molecule_index(system.molecules, system.n_atoms)
    y = barostat.scale_molecules(x, system.masses, mol_of, 8, 1.05)
    o, h1, h2 = (system.molecules[:, k] for k in range(3))
    for a, b in ((o, h1), (o, h2), (h1, h2)):
        np.testing.assert_allclose(np.linalg.norm(y[b] - y[a], axis=-1), np.linalg.norm(x[b] - x[a], axis=-1),
                                   rtol=1e-12)
    com = barostat.molecule_centres(x, system.masses, mol_of, 8)
    np.testing.assert_allclose(barostat.molecule_centres(y, system.masses, mol_of, 8), 1.05 * com, rtol=1e-12)
    # a whole Monte Carlo trial (accepted or not) keeps the geometry too, and counts n = 8 molecules
    box = jnp.asarray(system.box)
    pairs = build_box_pairs(x, box, 0.7, box_pairs_capacity(x, box, 0.7))
    from workbench.md.integrators import MDState
    state = MDState(x, jnp.zeros_like(x), jnp.zeros_like(x), jnp.zeros(()))
    baro = barostat.init_barostat(box, 0.2)
    zero = lambda p, y, b, i: (0.0 * jnp.sum(y), jnp.zeros_like(y))  # noqa: E731
    move = jax.jit(partial(barostat.volume_move, zero, None,
                           masses=system.masses, molecule_of=mol_of, n_molecules=8, pressure=1.0, kT=2.5,
                           reach=0.7, adapt=False))
    for seed in range(6):
        state, pairs, baro = move(state, pairs, baro, jax.random.PRNGKey(seed))
        y = state.positions
        np.testing.assert_allclose(np.linalg.norm(y[h1] - y[o], axis=-1),
                                   np.linalg.norm(x[h1] - x[o], axis=-1), rtol=1e-12)
    assert int(baro.total_accepted) >= 1


def test_log_acceptance_counts_molecules():
    """ln A = −β(ΔU + PΔV) + n ln(V'/V) (here ΔU = 0: only the PV and Jacobian terms)."""
    value = barostat.log_acceptance(0.0, 10.0, 11.0, 0.5, 2.0, 30)
    assert float(value) == pytest.approx(-0.5 * 1.0 / 2.0 + 30 * np.log(1.1))


@pytest.fixture(scope="module")
def lj_npt():
    """125 Lennard-Jones argon atoms at 120 K and 300 bar (liquid), 20 000 steps of 5 fs."""
    n, a = 5, 0.38
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a + 0.1
    system = System(("Ar",) * len(grid), grid, np.full(3, n * a), np.arange(len(grid))[:, None])
    pot = lennard_jones(cutoff=0.75)
    cfg = MDConfig(ensemble="npt", temperature_K=120.0, dt=0.005, gamma=2.0, sample_every=20,
                   barostat_every=5, pressure_bar=300.0, chunk_frames=500)
    return pot, simulate(pot, system, 20000, cfg, equilibration_steps=4000)


def test_lj_npt_virial_pressure_equals_target(lj_npt):
    """In the NPT ensemble ⟨N kT/V − ∂U/∂V⟩ = P exactly (integrate ∂/∂V of V^N e^{−β(U+PV)}): the virial
    pressure of the sampled frames, each in its own box, must average to the 300 bar target."""
    pot, traj = lj_npt
    reach = pot.cutoff + 0.05
    pairs = box_pairs_per_frame(traj.positions, traj.boxes, reach)
    masses = jnp.asarray(traj.masses)[:, None]

    def pressure(x, box, v, idx):
        ke = 0.5 * jnp.sum(masses * v**2)
        return barostat.virial_pressure(pot.energy_fn, pot.params, x, box, idx, ke)

    p = np.asarray(jax.vmap(pressure)(jnp.asarray(traj.positions), jnp.asarray(traj.boxes),
                                      jnp.asarray(traj.velocities), pairs)) / KJ_PER_MOL_PER_NM3_PER_BAR
    mean, err = block_average(p, 10)
    assert np.std(traj.volumes) > 0.005 * np.mean(traj.volumes)  # the volume really fluctuates
    assert abs(mean - 300.0) < max(3.5 * err, 30.0), (mean, err)


def test_reweighted_density_gradient_matches_finite_differences(lj_npt):
    """d⟨ρ⟩_θ/dθ by AD through the weights equals central differences of the reweighted ⟨ρ⟩_θ."""
    pot, traj = lj_npt
    x, boxes = traj.positions[::4], traj.boxes[::4]
    pairs = box_pairs_per_frame(x, boxes, pot.cutoff + 0.05)
    kT = KB * 120.0
    ref = ReferenceSamples.from_positions(pot.energy_fn, pot.params, x, boxes, pairs, kT)
    mass = float(np.sum(traj.masses))
    at_ref = reweighted_density(pot.energy_fn, pot.params, ref, mass)
    assert float(at_ref.value) == pytest.approx(float(np.mean(traj.density_g_cm3[::4])), rel=1e-12)

    def rho(params):
        return reweighted_density(pot.energy_fn, params, ref, mass).value

    theta = {"sigma": jnp.asarray(0.3407), "epsilon": jnp.asarray(0.999)}
    grad = jax.grad(rho)(theta)
    for name, h in (("sigma", 1e-6), ("epsilon", 1e-5)):
        up = {**theta, name: theta[name] + h}
        down = {**theta, name: theta[name] - h}
        fd = (rho(up) - rho(down)) / (2 * h)
        assert float(grad[name]) == pytest.approx(float(fd), rel=1e-5), name
    assert float(grad["sigma"]) < 0  # larger atoms, lower density
    assert float(reweighted_density(pot.energy_fn, theta, ref, mass).ess_fraction) > 0.1


def test_dispersion_tail_energy_of_qtip4pf():
    """E_tail(V) = (2πN²/V) ∫_{r_s}^∞ r²[1 − S(r)] u(r) dr: the closed form without switching, the
    switched part against scipy's quadrature, E_tail ∝ 1/V, and the wrapped energy adds exactly it."""
    from scipy.integrate import quad

    from workbench.models import default_system, load_potential
    from workbench.potentials.base import all_pairs
    from workbench.potentials.dispersion import qtip4pf_tail_energy, with_dispersion_correction
    from workbench.potentials.qtip4pf import switch

    system = default_system()
    pot = load_potential("qtip4pf", system)
    p, box = pot.params, jnp.asarray(system.box)
    eps, sig = float(p.epsilon_OO), float(p.sigma_OO)
    volume = float(jnp.prod(box))

    def u(r):
        return 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)

    tail = 4 * eps * sig**3 * ((sig / 0.6) ** 9 / 9 - (sig / 0.6) ** 3 / 3)
    expected = 2 * np.pi * 64**2 / volume * tail
    assert float(qtip4pf_tail_energy(p, box, 64, 0.6, None)) == pytest.approx(expected, rel=1e-12)
    inner = quad(lambda r: r**2 * (1 - float(switch(r, 0.5, 0.6))) * u(r), 0.5, 0.6)[0]
    switched = float(qtip4pf_tail_energy(p, box, 64, 0.6, 0.5))
    assert switched == pytest.approx(2 * np.pi * 64**2 / volume * (tail + inner), rel=1e-6)
    larger = float(qtip4pf_tail_energy(p, 1.1 * box, 64, 0.6, 0.5))
    assert larger == pytest.approx(switched / 1.1**3, rel=1e-12)
    corrected = with_dispersion_correction(pot)
    x, pairs = jnp.asarray(system.positions), all_pairs(system.n_atoms)
    diff = jax.jit(corrected.energy_fn)(p, x, box, pairs) - jax.jit(pot.energy_fn)(p, x, box, pairs)
    assert float(diff) == pytest.approx(switched, rel=1e-10)
    with pytest.raises(ValueError, match="q-TIP4P/F"):
        with_dispersion_correction(lennard_jones())


def test_cli_md_npt_reports_density(tmp_path, capsys):
    """`workbench md --ensemble npt`: ⟨ρ⟩ with a block error, the per-frame volume/density CSV and
    frames whose cells follow the box; water stays intact (O–H < 0.12 nm) through the volume moves."""
    import json
    from pathlib import Path

    from workbench import system as systems
    from workbench.cli import main

    structure = Path(__file__).resolve().parents[1] / "assets" / "structures" / "water64_298K.extxyz"
    out, csv = tmp_path / "npt.extxyz", tmp_path / "rho.csv"
    assert main(["md", str(structure), "--model", "qtip4pf", "--ensemble", "npt", "--pressure-bar", "1",
                 "--time-ps", "0.05", "--sample-every", "10", "--barostat-every", "2",
                 "--density-out", str(csv), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    series = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert series.shape == (10, 3) and summary["frames"] == 10
    assert summary["density_g_cm3"] == pytest.approx(series[:, 2].mean())
    assert 0.9 < summary["density_g_cm3"] < 1.1 and summary["density_stderr_g_cm3"] > 0
    assert 0 < summary["barostat_acceptance"] <= 1 and np.ptp(series[:, 1]) > 0
    last = systems.read(out, index=-1)
    assert np.prod(last.box) == pytest.approx(series[-1, 1], rel=1e-9)
    d = last.positions[last.molecules[:, 1:]] - last.positions[last.molecules[:, :1]]
    assert np.all(np.linalg.norm(d, axis=-1) < 0.12)
