"""Reweighting of static averages: gradient = finite differences of the reweighted averages,
= the covariance formula, and the effective sample size falls as θ leaves θ₀."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from grad_helpers import lj_cluster

from workbench.grad import (
    ReferenceSamples,
    effective_sample_size,
    fd_check,
    reweighted_average,
    reweighting_loss_and_grad,
    reweighting_weights,
)
from workbench.md.integrators import baoab_langevin, maxwell_boltzmann
from workbench.potentials.base import pair_geometry
from workbench.potentials.lennard_jones import lennard_jones
from workbench.units import KB

TEMPERATURE = 40.0


@pytest.fixture(scope="module")
def ensemble():
    """50 samples of a 13-atom argon cluster from BAOAB Langevin at 40 K (θ₀ = argon σ, ε)."""
    dyn, params, x, _, pairs = lj_cluster(temperature=TEMPERATURE)
    step = baoab_langevin(dyn.energy_and_forces, dyn.masses, 0.004, TEMPERATURE, 5.0)

    def run(state, key):
        def body(s, k):
            s = jax.lax.fori_loop(0, 20, lambda i, c: step(c, params, pairs, jax.random.fold_in(k, i)), s)
            return s, s.positions
        return jax.lax.scan(body, state, jax.random.split(key, 60))[1]

    v0 = maxwell_boltzmann(jax.random.PRNGKey(3), dyn.masses, TEMPERATURE)
    positions = jax.jit(run)(dyn.init(params, x, v0, pairs), jax.random.PRNGKey(4))[10:]
    ref = ReferenceSamples.from_positions(dyn.energy_fn, params, positions, dyn.box, pairs, KB * TEMPERATURE)
    return lennard_jones(cutoff=4.0), ref


def mean_distance(p, x, box, pairs):
    """θ-independent observable: mean pair distance (nm)."""
    _, d, valid = pair_geometry(x, box, pairs)
    return jnp.sum(jnp.where(valid, d, 0.0)) / jnp.sum(valid)


def test_ess_is_full_at_reference_and_falls_away_from_it(ensemble):
    pot, ref = ensemble
    fractions = []
    for scale in (1.0, 1.02, 1.1, 1.3, 2.0):
        params = {**pot.params, "epsilon": pot.params["epsilon"] * scale}
        avg = reweighted_average(pot.energy_fn, params, ref, mean_distance)
        fractions.append(float(avg.ess_fraction))
        np.testing.assert_allclose(jnp.sum(avg.weights), 1.0, rtol=1e-12)
    assert fractions[0] == pytest.approx(1.0, rel=1e-12)
    assert all(a > b for a, b in zip(fractions, fractions[1:], strict=False)), fractions
    assert fractions[-1] < 0.5
    params = {**pot.params, "epsilon": pot.params["epsilon"] * 1.3}
    assert bool(reweighted_average(pot.energy_fn, params, ref, mean_distance).needs_resampling)
    assert not bool(reweighted_average(pot.energy_fn, pot.params, ref, mean_distance).needs_resampling)
    np.testing.assert_allclose(effective_sample_size(jnp.array([1.0, 1.0, 0.0, 0.0])), 2.0)


def test_gradient_matches_finite_differences_and_covariance_formula(ensemble):
    pot, ref = ensemble
    params = {"sigma": pot.params["sigma"] * 1.005, "epsilon": pot.params["epsilon"] * 1.02}

    def obs(p, x, box, pairs):
        return {"u": pot.energy_fn(p, x, box, pairs), "d": mean_distance(p, x, box, pairs)}

    def loss(o):
        return (o["u"] + 30.0) ** 2 + 100.0 * o["d"]

    value, grad, avg = reweighting_loss_and_grad(pot.energy_fn, params, ref, obs, loss)
    assert float(avg.ess_fraction) < 1.0

    def reweighted_loss(p):
        return loss(reweighted_average(pot.energy_fn, p, ref, obs).value)

    np.testing.assert_allclose(value, reweighted_loss(params), rtol=1e-12)
    check = fd_check(jax.jit(reweighted_loss), params, grad, jax.random.PRNGKey(0), n_directions=3,
                     rel_step=1e-5)
    assert np.all(np.abs(check.ad - check.fd) <= 10 * check.fd_error + 1e-8 * np.abs(check.fd)), check

    # θ-independent O: d⟨O⟩/dθ = −β [⟨O ∂U/∂θ⟩ − ⟨O⟩⟨∂U/∂θ⟩]
    g_ad = jax.grad(lambda p: reweighted_average(pot.energy_fn, p, ref, mean_distance).value)(params)
    w = reweighting_weights(pot.energy_fn, params, ref)
    o = jax.vmap(lambda x: mean_distance(params, x, ref.box, ref.pairs))(ref.positions)
    du = jax.vmap(lambda x: jax.grad(pot.energy_fn)(params, x, ref.box, ref.pairs))(ref.positions)
    for k in params:
        cov = jnp.sum(w * o * du[k]) - jnp.sum(w * o) * jnp.sum(w * du[k])
        np.testing.assert_allclose(g_ad[k], -cov / ref.kT, rtol=1e-10)
