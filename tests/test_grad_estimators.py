"""Gradient estimators on a 13-atom Lennard-Jones cluster (float64): adjoint = direct AD =
checkpointed AD, and all = central finite differences.  All pairs stay inside the cutoff, so the
energy is smooth along the trajectories.  (q-TIP4P/F water: ``test_grad_water.py``.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from grad_helpers import lj_cluster

from workbench.grad import (
    Estimator,
    fd_check,
    rollout_fn,
    trajectory_loss_and_grad,
    tree_relative_error,
)


def lj_obs(state):
    """A pytree observable touching every state component."""
    return {"kin": jnp.sum(state.velocities**2), "pot": state.energy,
            "x": state.positions[:3, 0], "f": jnp.sum(state.forces[0])}


def lj_loss(o):
    return (jnp.mean(jnp.sin(o["kin"]) * o["pot"]) + jnp.sum(o["x"] ** 2) + 1e-3 * jnp.mean(o["f"] ** 2))


N_STEPS = 200
#: T = 200 = 13 segments of ⌈√T⌉ = 15 plus 5 (the checkpoint remainder path); adjoint anchors
#: every 7 steps (T not a multiple of K) besides the default start/end-only adjoint
LJ_ESTIMATORS = {"direct": "direct", "checkpoint": "checkpoint", "adjoint": "adjoint",
                 "adjoint K=7": Estimator("adjoint", anchor_every=7)}


@pytest.fixture(scope="module")
def lj_setup():
    return lj_cluster()


@pytest.fixture(scope="module")
def lj_results(lj_setup):
    dyn, params, x, v, pairs = lj_setup
    s0 = dyn.init(params, x, v, pairs)
    return {name: trajectory_loss_and_grad(dyn, params, s0, pairs, N_STEPS, lj_obs, lj_loss, est)
            for name, est in LJ_ESTIMATORS.items()}


def test_estimators_agree_on_lj_cluster(lj_results):
    ref = lj_results["direct"]
    for name, res in lj_results.items():
        assert float(tree_relative_error(res.grad, ref.grad)) < 1e-10, name
        np.testing.assert_allclose(res.loss, ref.loss, rtol=1e-12)
        assert float(res.diagnostics.max_displacement) == pytest.approx(
            float(ref.diagnostics.max_displacement), rel=1e-12)
    for name in ("adjoint", "adjoint K=7"):
        err = lj_results[name].diagnostics.reversal_error
        assert float(err[0]) < 1e-11 and float(err[1]) < 1e-10, (name, err)
    assert np.all(np.asarray(ref.diagnostics.reversal_error) == 0.0)
    assert float(ref.diagnostics.max_displacement) > 0.01


def test_lj_gradients_match_finite_differences(lj_setup, lj_results):
    dyn, params, x, v, pairs = lj_setup
    roll = rollout_fn(dyn, N_STEPS, lj_obs, "direct")
    loss = jax.jit(lambda p: lj_loss(roll(p, dyn.init(p, x, v, pairs), pairs, jnp.zeros(2)).observables))
    ref = lj_results["direct"].grad
    check = fd_check(loss, params, ref, jax.random.PRNGKey(1), n_directions=3, rel_step=1e-5)
    # the h-vs-2h difference estimates the FD error; allow 10× that plus 1e-8 relative
    assert np.all(np.abs(check.ad - check.fd) <= 10 * check.fd_error + 1e-8 * np.abs(check.fd)), check
    for name, res in lj_results.items():
        mine = fd_check(loss, params, res.grad, jax.random.PRNGKey(1), n_directions=3, rel_step=1e-5)
        np.testing.assert_allclose(mine.ad, check.ad, rtol=1e-9, err_msg=name)


def test_final_state_cotangent_and_batched_rollouts(lj_setup):
    """A loss of the final state (not only of observables), over a batch with per-rollout pairs."""
    dyn, params, x, v, pairs = lj_setup
    xs, vs = jnp.stack([x, x + 0.001]), jnp.stack([v, -v])
    pair_batch = jnp.stack([pairs, pairs])

    def grad(est):
        roll = rollout_fn(dyn, 40, lambda s: s.energy, est)

        def total(p):
            def one(x0, v0, pr):
                out = roll(p, dyn.init(p, x0, v0, pr), pr, jnp.zeros(2))
                return jnp.sum(out.final_state.positions ** 2) + out.final_state.energy * out.observables[-5]
            return jnp.sum(jax.vmap(one)(xs, vs, pair_batch))
        return jax.jit(jax.grad(total))(params)

    assert float(tree_relative_error(grad("adjoint"), grad("direct"))) < 1e-10


@pytest.mark.parametrize("anchor_every", [None, 7])
def test_replayed_record_gives_the_adjoint_gradient_without_integrating(lj_setup, anchor_every):
    """Pass 2 of a two-pass gradient: the VJP of ``replay`` on pass 1's record equals the adjoint
    rollout's (same backward pass, same reversal error), and its program does not integrate: it
    holds every scan of the rollout's VJP except the forward rollout's."""
    from workbench.grad.adjoint import adjoint_replay

    dyn, params, x, v, pairs = lj_setup
    est = Estimator("adjoint", anchor_every=anchor_every)
    rollout = rollout_fn(dyn, N_STEPS, lj_obs, est)
    record, replay = adjoint_replay(dyn, N_STEPS, lj_obs, anchor_every)
    rec = jax.jit(lambda p: record(p, dyn.init(p, x, v, pairs), pairs))(params)

    def grad(fn, *extra):
        def total(p, probe):
            return lj_loss(fn(p, dyn.init(p, x, v, pairs), pairs, probe, *extra).observables)
        return jax.jit(jax.grad(total, argnums=(0, 1)))

    probe = jnp.zeros(2)
    g_roll, err_roll = grad(rollout)(params, probe)
    g_replay, err_replay = grad(replay, rec)(params, probe)
    assert float(tree_relative_error(g_replay, g_roll)) < 1e-12
    np.testing.assert_allclose(err_replay, err_roll, rtol=1e-6, atol=1e-18)
    assert float(tree_relative_error(g_roll, trajectory_loss_and_grad(
        dyn, params, dyn.init(params, x, v, pairs), pairs, N_STEPS, lj_obs, lj_loss, "direct").grad)) < 1e-7

    def scans(fn, *args):  # lax.scan calls in the traced program (nested ones included)
        return str(jax.make_jaxpr(fn)(*args)).count("scan[")

    forward = lambda p: rollout(p, dyn.init(p, x, v, pairs), pairs, probe).observables  # noqa: E731
    n_forward, n_replay = scans(forward, params), scans(grad(replay, rec), params, probe)
    assert n_forward >= 1 and n_replay >= 1  # the forward rollout; the backward pass
    assert scans(grad(rollout), params, probe) - n_replay == n_forward
