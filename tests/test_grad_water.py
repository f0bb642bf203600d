"""Adjoint gradients for q-TIP4P/F water (Ewald, flexible, M sites) with the Ṁ observable of the IR
loss: adjoint = direct AD and both = central finite differences (8 waters, float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workbench.grad import TrajectoryLoss, VerletDynamics, fd_check, tree_relative_error, window_starts
from workbench.grad.windows import mdot_observable
from workbench.md.integrators import maxwell_boltzmann
from workbench.observables.dipole import qtip4pf_dipole
from workbench.potentials.base import all_pairs
from workbench.potentials.qtip4pf import qtip4pf
from workbench.system import water_box

N_STEPS = 60


def tcf_loss(mdot):
    """A smooth spectrum-like loss of the window TCF ⟨Ṁ(0)·Ṁ(t)⟩ (W, T + 1, 3) → scalar."""
    c = jnp.mean(jnp.sum(mdot[:, :1] * mdot, axis=-1), axis=0)
    return jnp.sum((c * jnp.cos(0.3 * jnp.arange(c.shape[0]))) ** 2)


@pytest.mark.slow
def test_qtip4pf_adjoint_equals_direct_and_finite_differences():
    system = water_box(8, seed=3)
    pot = qtip4pf(system, cutoff=0.3, switch_distance=0.25)
    dyn = VerletDynamics.from_potential(pot, system, 0.0005)
    v = maxwell_boltzmann(jax.random.PRNGKey(2), system.masses, 150.0)
    obs = mdot_observable(qtip4pf_dipole(), system.box, system.molecules)
    x, v = window_starts(jnp.asarray(system.positions)[None], v[None])  # a window and its reverse
    pairs = all_pairs(system.n_atoms)

    direct = TrajectoryLoss(dyn, N_STEPS, obs, tcf_loss, "direct")
    ref = direct.loss_and_grad(pot.params, x, v, pairs)
    adj = TrajectoryLoss(dyn, N_STEPS, obs, tcf_loss, "adjoint").loss_and_grad(pot.params, x, v, pairs)
    assert float(tree_relative_error(adj.grad, ref.grad)) < 1e-6
    np.testing.assert_allclose(adj.loss, ref.loss, rtol=1e-12)
    assert float(adj.diagnostics.reversal_error[0]) < 1e-10

    check = fd_check(lambda p: direct.loss(p, x, v, pairs), pot.params, adj.grad, jax.random.PRNGKey(4),
                     n_directions=2, rel_step=1e-6)
    assert np.all(np.abs(check.ad - check.fd) <= 10 * check.fd_error + 1e-7 * np.abs(check.fd)), check
