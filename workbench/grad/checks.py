"""Gradient checks: estimators against each other and against central finite differences.

Finite differences along random directions.  For a direction d in parameter space (each component
scaled by the magnitude of its parameter, so that σ ≈ 0.3 nm and ε ≈ 1 kJ/mol are perturbed alike)
and a relative step h,

    D_FD(h) = [L(θ + h d) − L(θ − h d)] / (2h)  =  ∇L·d + O(h²) + O(ε_mach |L| / h),

and |D_FD(h) − D_FD(2h)| estimates the FD error (the O(h²) term grows 4× from h to 2h).  The AD
directional derivative ∇L·d must agree within that accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from workbench.grad.core import ESTIMATORS, ObservableFn, VerletDynamics, tree_relative_error
from workbench.grad.trajectory import GradResult, LossFn, TrajectoryLoss


class FDCheck(NamedTuple):
    """Per direction: AD and FD directional derivatives, the FD error estimate and the relative
    deviation |AD − FD| / |FD| (arrays of length n_directions)."""

    ad: np.ndarray
    fd: np.ndarray
    fd_error: np.ndarray
    rel_error: np.ndarray


def random_direction(key, params):
    """A direction pytree d_i = z_i · max(|θ_i|, 1e-3 ·‖θ‖_∞), z ~ N(0, 1): relative perturbations."""
    leaves, treedef = jax.tree.flatten(params)
    scale = max(float(jnp.max(jnp.abs(jnp.asarray(x)))) for x in leaves)
    keys = jax.random.split(key, len(leaves))
    out = [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) * jnp.maximum(jnp.abs(x), 1e-3 * scale)
           for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, out)


def fd_check(loss: Callable[[Any], jax.Array], params, grad, key, n_directions: int = 3,
             rel_step: float = 1e-5) -> FDCheck:
    """Compare ∇L·d (from ``grad``) with central finite differences of ``loss(params)`` along
    ``n_directions`` random directions (see module docstring)."""

    def shifted(d, step):
        return float(loss(jax.tree.map(lambda x, y: x + step * y, params, d)))

    def central(d, h):
        return (shifted(d, h) - shifted(d, -h)) / (2.0 * h)

    ad, fd, err = [], [], []
    for k in jax.random.split(key, n_directions):
        d = random_direction(k, params)
        ad.append(float(sum(jnp.vdot(g, y) for g, y in zip(jax.tree.leaves(grad), jax.tree.leaves(d),
                                                              strict=True))))
        f1 = central(d, rel_step)
        fd.append(f1)
        err.append(abs(f1 - central(d, 2.0 * rel_step)))
    ad, fd, err = np.array(ad), np.array(fd), np.array(err)
    return FDCheck(ad, fd, err, np.abs(ad - fd) / np.maximum(np.abs(fd), np.finfo(float).tiny))


def compare_estimators(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn, loss_fn: LossFn,
                       params, positions, velocities, pairs, estimators=ESTIMATORS,
                       reference: str = "direct") -> tuple[dict[str, GradResult], dict[str, float]]:
    """Loss and gradient by each estimator on the same rollouts, and each gradient's relative error
    ‖g − g_ref‖/‖g_ref‖ against ``reference`` (float64 runs agree to ~1e-12)."""
    results = {e: TrajectoryLoss(dynamics, n_steps, obs_fn, loss_fn, e).loss_and_grad(
        params, positions, velocities, pairs) for e in estimators}
    ref = results[reference].grad
    errors = {e: float(tree_relative_error(r.grad, ref)) for e, r in results.items()}
    return results, errors
