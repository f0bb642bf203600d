"""Small systems shared by the gradient tests (imported as a module from tests/)."""

import jax
import jax.numpy as jnp
import numpy as np

from workbench.grad import VerletDynamics
from workbench.md.integrators import maxwell_boltzmann
from workbench.potentials.base import all_pairs
from workbench.potentials.lennard_jones import lennard_jones

ARGON_MASS = 39.948
CLUSTER_BOX = 20.0


def cluster_positions(n=13, seed=0):
    """Argon atoms placed at random ≥ 0.36 nm apart within a 0.9 nm cube at the centre of the box."""
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(-0.45, 0.45, 3)
        if all(np.linalg.norm(p - q) > 0.36 for q in pos):
            pos.append(p)
    return np.array(pos) + 0.5 * CLUSTER_BOX


def lj_cluster(n=13, temperature=60.0, seed=0, dt=0.004):
    """(dynamics, params, x, v, pairs) of an argon cluster in a 20 nm box with a 4 nm cutoff: every
    pair stays inside the cutoff, so the energy is smooth along trajectories (clean FD checks)."""
    masses = np.full(n, ARGON_MASS)
    pot = lennard_jones(cutoff=4.0)
    dyn = VerletDynamics(pot.energy_fn, np.full(3, CLUSTER_BOX), masses, dt)
    v = maxwell_boltzmann(jax.random.PRNGKey(seed), masses, temperature)
    return dyn, pot.params, jnp.asarray(cluster_positions(n, seed)), v, all_pairs(n)


def charge_current(state):
    """A fictitious Ṁ: Σ_i q_i v_i with charges ±1 alternating (e·nm/ps)."""
    q = jnp.where(jnp.arange(state.velocities.shape[0]) % 2 == 0, 1.0, -1.0)
    return jnp.sum(q[:, None] * state.velocities, axis=0)
