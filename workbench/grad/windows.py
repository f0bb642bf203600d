r"""Truncated-window gradients of time-correlation functions (the seed paper's scheme).

A TCF of length τ, C(t) = ⟨A(0)·B(t)⟩ for 0 ≤ t ≤ τ, only needs trajectories of length τ.  So:

1. sample K frames (x_k, v_k) from an equilibrium trajectory of the current model — constants: no
   gradient flows through the sampling run;
2. from each, integrate an NVE window of n = τ/Δt steps with the current θ, and (``time_reversed``)
   also from (x_k, −v_k), which is the trajectory backwards in time from the same frame: for
   stationary dynamics it doubles the data (e.g. for Ṁ, the reversed window gives
   Ṁ'(t) = −Ṁ(−t), so Ṁ'(0)·Ṁ'(t) samples C(−t) = C(t));
3. build the TCF (and spectrum, loss) from the 2K windows' per-step observables;
4. differentiate the loss through the windows only, with any estimator of ``grad.trajectory``:

       dL/dθ = Σ_w Σ_{n=0}^{T} (∂L/∂o_n^w) · do_n^w/dθ,   o_n^w = obs(s_n^w(θ)),

   where the cotangents ∂L/∂o_n^w come by AD from the loss (TCF → spectrum → loss).

Truncating the gradient to windows of length τ is what keeps it finite: through a chaotic
trajectory do_n/dθ grows like e^{λ n Δt} (see ``grad.study``).

Pair lists are built at each window start with cutoff + skin (``window_pairs``) and held fixed in
the window; the returned diagnostics report the largest displacement, which must stay below skin/2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from workbench.grad.core import Estimator, ObservableFn, VerletDynamics
from workbench.grad.trajectory import GradResult, LossFn, TrajectoryLoss
from workbench.md.neighbor import PairListBuilder
from workbench.observables.dipole import dipole_and_derivative
from workbench.potentials.base import all_pairs


def sample_frames(positions, velocities, n_frames: int):
    """``n_frames`` frames evenly spaced over a stored trajectory (F, N, 3), as NumPy constants.

    Spacing them as far apart as possible keeps the windows' data nearly independent.
    """
    total = np.shape(positions)[0]
    if not 1 <= n_frames <= total:
        raise ValueError(f"cannot sample {n_frames} frames from a trajectory of {total}")
    idx = np.linspace(0, total - 1, n_frames).round().astype(int)
    return np.asarray(positions)[idx], np.asarray(velocities)[idx]


def window_starts(positions, velocities, time_reversed: bool = True):
    """Start states of the windows: the K frames and, with ``time_reversed``, the K frames with
    flipped velocities appended (2K windows)."""
    x = jnp.asarray(positions)
    v = jnp.asarray(velocities, x.dtype)
    if x.ndim != 3 or x.shape != v.shape:
        raise ValueError(f"frames must be positions and velocities of shape (K, N, 3), got {x.shape} "
                         f"and {v.shape}")
    if not time_reversed:
        return x, v
    return jnp.concatenate([x, x]), jnp.concatenate([v, -v])


def window_pairs(positions, builder: PairListBuilder | None = None, capacity: int | None = None):
    """Pair lists built at each window start.

    Without ``builder`` (potentials without cutoff, or small systems) every pair is used: one
    (2, N(N−1)/2) list shared by all windows.  With a ``PairListBuilder`` (cutoff + skin) one list
    per start frame is allocated and all are padded with N to a common capacity: (W, 2, P);
    ``capacity`` fixes P (keeps shapes, hence the jit cache, stable between calls).  Identical start
    positions (a frame and its time-reversed copy) share one build.
    """
    x = np.asarray(positions)
    n_atoms = x.shape[1]
    if builder is None:
        return all_pairs(n_atoms)
    unique, inverse = np.unique(x.reshape(x.shape[0], -1), axis=0, return_inverse=True)
    lists = [np.asarray(builder.allocate(jnp.asarray(u.reshape(n_atoms, 3))).idx) for u in unique]
    need = max(a.shape[1] for a in lists)
    size = need if capacity is None else capacity
    if size < need:
        raise ValueError(f"pair-list capacity {capacity} is too small: a window start needs {need} rows")
    padded = np.full((len(lists), 2, size), n_atoms, dtype=np.int32)
    for k, a in enumerate(lists):
        padded[k, :, : a.shape[1]] = a
    return jnp.asarray(padded[np.ravel(inverse)])


def start_origin_tcf(a, b=None):
    """C(t_n) = (1/W) Σ_w a_w(0)·b_w(t_n): the TCF of windows (W, T + 1, D) with the time origin at
    each window start (units of a × b); ``b`` defaults to ``a``."""
    a = jnp.asarray(a)
    b = a if b is None else jnp.asarray(b)
    return jnp.mean(jnp.sum(a[:, :1, :] * b, axis=-1), axis=0)


def mdot_observable(dipole_model, box, molecules) -> ObservableFn:
    """obs(state) = Ṁ (3,) in e·nm/ps: the total dipole derivative J_M(x)·v of a dipole model."""
    box = np.asarray(box, float)
    molecules = np.asarray(molecules)

    def obs(state):
        return dipole_and_derivative(dipole_model.dipole_fn, dipole_model.params, state.positions,
                                     state.velocities, box, molecules)[1]

    return obs


def window_loss_and_grad(dynamics: VerletDynamics, params, positions, velocities, n_steps: int,
                         obs_fn: ObservableFn, loss_fn: LossFn, *, builder: PairListBuilder | None = None,
                         time_reversed: bool = True, estimator: str | Estimator = "adjoint",
                         batch_size: int | None = None) -> GradResult:
    """Truncated-window loss and gradient (one shot; build a ``TrajectoryLoss`` to reuse the jit).

    Args:
      dynamics: NVE dynamics of the current model.
      params: θ.
      positions, velocities: (K, N, 3) frames of an equilibrium run of the model (constants).
      n_steps: window length n (τ = n Δt).
      obs_fn: per-step observable, e.g. ``mdot_observable(...)``.
      loss_fn: loss of the windows' observables, leaves (W, n + 1, ...) with W = 2K (or K).
      builder: pair-list builder (cutoff + skin) or None for all pairs.
      time_reversed: add the velocity-flipped windows.
      estimator: ``"direct"``, ``"checkpoint"``, ``"adjoint"`` or an ``Estimator``.
      batch_size: windows evaluated (and differentiated) together; None vmaps all (see
        ``TrajectoryLoss``).

    Returns:
      ``GradResult(loss, grad, diagnostics)``; check ``diagnostics.problems(builder.skin)``.
    """
    x, v = window_starts(positions, velocities, time_reversed)
    pairs = window_pairs(x, builder)
    objective = TrajectoryLoss(dynamics, n_steps, obs_fn, loss_fn, estimator, batch_size)
    return objective.loss_and_grad(params, x, v, pairs)

