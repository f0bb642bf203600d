"""Truncated-window estimator: equals direct AD of the same windowed loss; time-reversed windows,
per-window pair lists and the displacement/skin diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from grad_helpers import charge_current, lj_cluster

from workbench.grad import (
    TrajectoryLoss,
    VerletDynamics,
    sample_frames,
    start_origin_tcf,
    tree_relative_error,
    window_loss_and_grad,
    window_pairs,
    window_starts,
)
from workbench.md.integrators import maxwell_boltzmann
from workbench.md.neighbor import PairListBuilder
from workbench.potentials.base import all_pairs
from workbench.potentials.lennard_jones import lennard_jones

N_STEPS = 80


def spectrum_loss(mdot):
    """TCF of the windows → cosine transform on a few frequencies → squared norm."""
    c = start_origin_tcf(mdot)
    t = jnp.arange(c.shape[0])
    omega = jnp.array([0.05, 0.11, 0.3])
    return jnp.sum((jnp.cos(omega[:, None] * t[None, :]) @ c) ** 2)


def reference_windowed_loss(dyn, params, x, v, pairs, n_steps):
    """The windowed estimator written out independently: 2K windows, plain scan, plain AD."""
    xs = jnp.concatenate([x, x])
    vs = jnp.concatenate([v, -v])

    def one(x0, v0):
        s0 = dyn.init(params, x0, v0, pairs)

        def body(s, _):
            s = dyn.step(s, params, pairs)
            return s, charge_current(s)

        _, obs = jax.lax.scan(body, s0, None, length=n_steps)
        return jnp.concatenate([charge_current(s0)[None], obs])

    return spectrum_loss(jax.vmap(one)(xs, vs))


@pytest.fixture(scope="module")
def frames():
    dyn, params, x, v, pairs = lj_cluster()
    x2 = x + 0.002 * jnp.sin(jnp.arange(x.size).reshape(x.shape))
    v2 = maxwell_boltzmann(jax.random.PRNGKey(7), np.asarray(dyn.masses), 60.0)
    return dyn, params, jnp.stack([x, x2]), jnp.stack([v, v2]), pairs


@pytest.fixture(scope="module")
def adjoint_windows(frames):
    dyn, params, x, v, pairs = frames
    return window_loss_and_grad(dyn, params, x, v, N_STEPS, charge_current, spectrum_loss,
                                estimator="adjoint")


def test_window_gradient_equals_direct_ad_of_windowed_estimator(frames, adjoint_windows):
    dyn, params, x, v, pairs = frames
    ref_loss, ref_grad = jax.jit(jax.value_and_grad(
        lambda p: reference_windowed_loss(dyn, p, x, v, pairs, N_STEPS)))(params)
    res = adjoint_windows
    np.testing.assert_allclose(res.loss, ref_loss, rtol=1e-12)
    assert float(tree_relative_error(res.grad, ref_grad)) < 1e-8
    assert float(res.diagnostics.grad_norm) > 0
    assert 0 < float(res.diagnostics.max_displacement) < 0.5
    assert res.diagnostics.problems() == []


def test_time_reversed_windows_and_batching(frames, adjoint_windows):
    dyn, params, x, v, pairs = frames
    xs, vs = window_starts(x, v)
    assert xs.shape == (4,) + x.shape[1:]
    np.testing.assert_array_equal(vs[2:], -v)
    obj = TrajectoryLoss(dyn, N_STEPS, charge_current, spectrum_loss, "adjoint", batch_size=2)
    roll = obj.rollouts(params, xs, vs, pairs)
    mdot = roll.observables
    assert mdot.shape == (4, N_STEPS + 1, 3)
    np.testing.assert_allclose(mdot[2:, 0], -mdot[:2, 0], rtol=1e-14)
    # each window run forward, then from its end with flipped velocities, returns to its start
    back = obj.rollouts(params, roll.final_state.positions, -roll.final_state.velocities, pairs)
    np.testing.assert_allclose(back.final_state.positions, xs, atol=1e-10)
    # lax.map in batches of 2 and vmap over all 4 windows agree
    lm = obj.loss_and_grad(params, xs, vs, pairs)
    np.testing.assert_allclose(lm.loss, adjoint_windows.loss, rtol=1e-12)
    assert float(tree_relative_error(lm.grad, adjoint_windows.grad)) < 1e-12


def test_start_origin_tcf_and_sample_frames():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7, 3))
    expected = [np.mean([a[w, 0] @ a[w, k] for w in range(5)]) for k in range(7)]
    np.testing.assert_allclose(start_origin_tcf(a), expected, rtol=1e-12)
    pos, vel = np.arange(10.0)[:, None, None] * np.ones((10, 2, 3)), -np.ones((10, 2, 3))
    px, _ = sample_frames(pos, vel, 4)
    np.testing.assert_array_equal(px[:, 0, 0], [0, 3, 6, 9])
    with pytest.raises(ValueError):
        sample_frames(pos, vel, 11)


def test_window_pairs_cover_cutoff_and_skin_diagnostic():
    """Periodic liquid argon: per-window lists built with a skin give the all-pairs energies; a
    window longer than the skin allows is reported."""
    n, a = 3, 0.53
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    masses = np.full(len(grid), 39.948)
    box = np.full(3, n * a)
    pot = lennard_jones(cutoff=0.7)
    dyn = VerletDynamics(pot.energy_fn, box, masses, 0.004)
    rng = np.random.default_rng(1)
    x = np.stack([grid + rng.normal(scale=0.02, size=grid.shape) for _ in range(2)])
    v = np.stack([np.asarray(maxwell_boltzmann(jax.random.PRNGKey(k), masses, 300.0)) for k in range(2)])
    builder = PairListBuilder(tuple(box), pot.cutoff, skin=0.05)
    xs, vs = window_starts(x, v)
    pairs = window_pairs(xs, builder)
    assert pairs.shape[:2] == (4, 2)
    np.testing.assert_array_equal(pairs[2:], pairs[:2])  # a frame and its reverse share one list
    energies = jax.jit(jax.vmap(pot.energy_fn, in_axes=(None, 0, None, 0)))
    np.testing.assert_allclose(energies(pot.params, xs, box, pairs),
                               energies(pot.params, xs, box, jnp.stack([all_pairs(len(grid))] * 4)),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="capacity"):
        window_pairs(xs, builder, capacity=3)

    def loss(mdot):
        return jnp.sum(start_origin_tcf(mdot) ** 2)

    res = TrajectoryLoss(dyn, 40, charge_current, loss, "adjoint").loss_and_grad(pot.params, xs, vs, pairs)
    disp = float(res.diagnostics.max_displacement)
    assert disp > 0.025  # 0.16 ps at 300 K: argon atoms move ≳ 0.05 nm
    assert any("skin/2" in p for p in res.diagnostics.problems(skin=builder.skin))
    assert res.diagnostics.problems(skin=4 * disp) == []
