"""NVE energy conservation of 64-water boxes with q-TIP4P/F and the EANN MLP (float64, 0.5 fs).

Criterion (issue): drift < 1e-4 kT per atom per ps, the drift being the least-squares slope of the
total energy (not end minus start).
"""

import numpy as np
import pytest
from conftest import shared_file

from workbench import models
from workbench import system as systems
from workbench.md import MDConfig, energy_drift, simulate
from workbench.potentials.qtip4pf import qtip4pf

NVE = MDConfig(ensemble="nve", dt=0.0005, sample_every=2, precision="float64", chunk_frames=1000)


def _check_nve(potential, system, n_steps, bound=1e-4):
    """The slope is noise-limited for short runs (the total energy wanders by ~0.1 kJ/mol as pairs
    cross the cutoff): ≥ 3 ps keeps its standard error well below the 1e-4 bound."""
    traj = simulate(potential, system, n_steps, NVE)
    drift = energy_drift(traj.time_ps, traj.total_energy, system.n_atoms, 298.15)
    assert abs(drift) < bound, f"drift {drift:.2e} kT/atom/ps"
    # a conserved quantity, not a frozen system: kinetic energy exchanges with potential energy
    assert np.std(traj.kinetic_energy) > 20 * np.std(traj.total_energy)
    assert 250 < traj.temperature.mean() < 350
    return drift


def test_qtip4pf_nve_energy_drift():
    system = models.default_system()  # equilibrated at 298 K, velocities included
    _check_nve(qtip4pf(system), system, 6000)


def test_eann_nve_energy_drift():
    from workbench.potentials.model_io import load_model

    pdb = systems.read(shared_file("water64.pdb"))
    model = load_model(shared_file("eann_water_dft_start.npz"))
    # start from the shipped equilibrated velocities on the shared structure (same atom order O,H,H)
    system = pdb.replace(velocities=models.default_system().velocities)
    # The EANN's total energy wanders by ~0.4 kJ/mol on ps times, so slopes over 1–3 ps scatter by
    # several 1e-4 kT/atom/ps (the 2.5 ps quarters of a 10 ps run: −3.9e-4 … +2.2e-4) while the
    # 10 ps run after 1 ps of NVT gives −9.4e-6 ± 1.6e-5, inside the 1e-4 goal: `workbench bench md`
    # (full) records that run (long_nve in benchmarks/results/md.json).  This 1 ps run guards against
    # regressions (a broken force/energy pair drifts by orders of magnitude more).
    _check_nve(model.potential(system), system, 2000, bound=5e-4)


@pytest.mark.parametrize("precision", ["float32"])
def test_float32_runs_and_stays_close_to_float64(precision):
    system = models.default_system()
    pot = qtip4pf(system)
    cfg32 = MDConfig(ensemble="nve", sample_every=10, precision=precision)
    t32 = simulate(pot, system, 100, cfg32)
    t64 = simulate(pot, system, 100, MDConfig(ensemble="nve", sample_every=10))
    assert t32.positions.dtype == np.float32
    # 50 fs of chaotic MD: trajectories agree to well below a bond length
    assert np.max(np.abs(t32.positions - t64.positions)) < 1e-3
    np.testing.assert_allclose(t32.potential_energy, t64.potential_energy, rtol=1e-4)
