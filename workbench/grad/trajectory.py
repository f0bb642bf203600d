"""One interface to all estimators: loss of per-step observables of NVE rollouts, and its gradient.

For B start states (x_0^b, v_0^b) (b = 1 … B) and parameters θ,

    s_0^b = (x_0^b, v_0^b, F(x_0^b; θ), E(x_0^b; θ)),   s_{n+1}^b = Φ_θ(s_n^b)   (velocity Verlet)
    o_n^b = obs(s_n^b),  n = 0 … T,                      L(θ) = loss({o_n^b})

and dL/dθ by the chosen estimator (``"direct"``, ``"checkpoint"`` or ``"adjoint"``, see
``core.Estimator``).  The rollouts are batched with ``jax.vmap`` (or ``jax.lax.map`` in chunks of
``batch_size`` to bound memory); gradients w.r.t. θ are summed over them by AD.  The start
positions and velocities are constants (no gradient flows into the run that produced them).
With a device ``mesh`` the rollouts are split over its devices and the gradient is all-reduced
(``grad.sharding``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from workbench.grad import sharding
from workbench.grad.adjoint import adjoint_replay, adjoint_rollout
from workbench.grad.core import (
    Estimator,
    ObservableFn,
    VerletDynamics,
    as_estimator,
    tree_norm,
)
from workbench.grad.direct import checkpointed_rollout, direct_rollout
from workbench.md.integrators import MDState

#: Loss of the stacked observables: leaves (B, T + 1, ...) -> scalar.
LossFn = Callable[[Any], jax.Array]


def rollout_fn(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn,
               estimator: str | Estimator = "adjoint"):
    """The ``rollout(params, state0, pairs, probe) -> Rollout`` of an estimator (see ``core``)."""
    if n_steps < 1:
        raise ValueError(f"a rollout needs at least one step, got n_steps={n_steps}")
    est = as_estimator(estimator)
    if est.kind == "direct":
        return direct_rollout(dynamics, n_steps, obs_fn)
    if est.kind == "checkpoint":
        return checkpointed_rollout(dynamics, n_steps, obs_fn, est.segment_length)
    return adjoint_rollout(dynamics, n_steps, obs_fn, est.anchor_every)


class GradDiagnostics(NamedTuple):
    """What to check before trusting a gradient.

    grad_norm: ‖dL/dθ‖ over all parameters (units of L per parameter unit, mixed).
    max_displacement: max over rollouts, steps and atoms of |x_n − x_0|, nm.  A pair list built at
      the start with cutoff + skin is complete while this stays below skin/2.
    reversal_error: (2,) [max |Δx| nm, max |Δv| nm/ps] between the adjoint's reconstructed and the
      stored start/anchor states (zeros for the exact estimators).
    """

    grad_norm: jax.Array
    max_displacement: jax.Array
    reversal_error: jax.Array

    def problems(self, skin: float | None = None, max_reversal_error: float = 1e-6) -> list[str]:
        """Human-readable list of violated conditions (empty when the gradient can be trusted);
        call it outside jit.

        ``skin`` (nm): the pair-list skin, or None for an all-pairs list; ``max_reversal_error``:
        tolerated position reversal error in nm.
        """
        out = []
        if not bool(jnp.isfinite(self.grad_norm)):
            out.append(f"non-finite gradient (norm {float(self.grad_norm)})")
        if skin is not None and float(self.max_displacement) >= 0.5 * skin:
            out.append(f"an atom moved {float(self.max_displacement):.4f} nm ≥ skin/2 = {0.5 * skin:.4f} nm "
                       "within a window: the fixed pair list may miss pairs (larger skin or shorter window)")
        if float(self.reversal_error[0]) > max_reversal_error:
            out.append(f"adjoint reversal error {float(self.reversal_error[0]):.2e} nm > "
                       f"{max_reversal_error:.0e} nm (use float64 or anchors: Estimator(anchor_every=K))")
        return out


class GradResult(NamedTuple):
    loss: jax.Array
    grad: Any
    diagnostics: GradDiagnostics


class TrajectoryLoss:
    """L(θ) over a batch of NVE rollouts and its gradient, jitted once for reuse.

    Args:
      dynamics: the ``VerletDynamics`` (energy function, box, masses, Δt).
      n_steps: T, steps per rollout (window length τ = T Δt).
      obs_fn: per-step observable ``obs(MDState) -> pytree``.
      loss_fn: ``loss(observables) -> scalar``, observables with leaves (B, T + 1, ...).
      estimator: ``"direct"``, ``"checkpoint"``, ``"adjoint"`` or an ``Estimator``.
      batch_size: rollouts evaluated together (``jax.lax.map``); None vmaps all B at once.  With a
        batch size the gradient is taken batch by batch (see ``_two_pass``): memory is bounded by
        one batch for every estimator (direct AD included), for one extra forward pass (none with
        the adjoint, which replays pass 1's records: O(1) states per rollout).
      mesh: a ``grad.sharding.window_mesh``: the rollouts are split over its devices (each
        device's share in batches of ``batch_size``), the gradient is taken in two passes and
        all-reduced in float64 (x64 on), then cast to the parameters' dtype.  Arguments and
        results are replicated over the mesh.  None: one device, no sharding.

    Methods (all jitted; ``pairs`` is one (2, P) list shared by all rollouts or (B, 2, P)):
      ``rollouts(params, positions, velocities, pairs) -> Rollout`` (leading axis B),
      ``loss(params, positions, velocities, pairs) -> L``,
      ``loss_and_grad(params, positions, velocities, pairs) -> GradResult``.
    """

    def __init__(self, dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn, loss_fn: LossFn,
                 estimator: str | Estimator = "adjoint", batch_size: int | None = None,
                 mesh: Mesh | None = None):
        self.dynamics = dynamics
        self.n_steps = int(n_steps)
        self.estimator = as_estimator(estimator)
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.mesh = mesh
        self._rollout = rollout_fn(dynamics, self.n_steps, obs_fn, self.estimator)
        self._record = self._replay = None
        if self.estimator.kind == "adjoint":
            self._record, self._replay = adjoint_replay(dynamics, self.n_steps, obs_fn,
                                                        self.estimator.anchor_every)
        jit = jax.jit if mesh is None else functools.partial(sharding.replicated_jit, mesh)
        self.rollouts = jit(lambda p, x, v, pairs: self._batched(p, self._probes(x), x, v, pairs))
        self.loss = jit(lambda p, x, v, pairs: self._objective(p, self._probes(x), x, v, pairs)[0])
        self.loss_and_grad = jit(self._loss_and_grad)

    @staticmethod
    def _probes(positions):
        return jnp.zeros((positions.shape[0], 2), positions.dtype)

    def _batched(self, params, probes, positions, velocities, pairs, record: bool = False):
        """The rollouts (leading axis B), split over the mesh if any; with ``record`` the adjoint's
        ``(Rollout, anchors)`` instead (``grad.adjoint.adjoint_replay``)."""
        def recorded(q, s0, pr, _probe):
            return self._record(q, s0, pr)

        def local(p, probes_, x, v, prs):
            return self._per_rollout(recorded if record else self._rollout, p, x, v, prs, probes_)

        if self.mesh is None:
            return local(params, probes, positions, velocities, pairs)
        windowed = (False, True, True, True, pairs.ndim == 3)
        split = sharding.over_windows(local, self.mesh, windowed, sharding.WINDOWED)
        return split(params, probes, positions, velocities, pairs)

    def _per_rollout(self, fn, params, positions, velocities, pairs, *per_rollout):
        """``fn(params, s_0, pairs, *per_rollout)`` for every rollout (vmap, or ``lax.map`` in
        batches of ``batch_size``), s_0 built from θ."""
        shared = pairs.ndim == 2

        def one(args):
            x, v, own_pairs, *rest = args
            pr = pairs if shared else own_pairs
            return fn(params, self.dynamics.init(params, x, v, pr), pr, *rest)

        args = (positions, velocities, None if shared else pairs, *per_rollout)
        if self.batch_size is None:
            return jax.vmap(one)(args)
        return jax.lax.map(one, args, batch_size=self.batch_size)

    def _objective(self, params, probes, positions, velocities, pairs):
        roll = self._batched(params, probes, positions, velocities, pairs)
        return self.loss_fn(roll.observables), roll.max_displacement

    def _loss_and_grad(self, params, positions, velocities, pairs) -> GradResult:
        probes = self._probes(positions)
        if self.batch_size is None and self.mesh is None:
            value_and_grad = jax.value_and_grad(self._objective, argnums=(0, 1), has_aux=True)
            (loss, max_disp), (grad, reversal) = value_and_grad(params, probes, positions, velocities, pairs)
        else:
            loss, max_disp, grad, reversal = self._two_pass(params, probes, positions, velocities, pairs)
        diagnostics = GradDiagnostics(tree_norm(grad), jnp.max(max_disp), jnp.max(reversal, axis=0))
        return GradResult(loss, grad, diagnostics)

    def _two_pass(self, params, probes, positions, velocities, pairs):
        """Gradient batch by batch: dL/dθ = Σ_b (do^b/dθ)ᵀ ∂L/∂o^b with ∂L/∂o from a first forward
        pass, then one VJP per batch of ``batch_size`` rollouts inside ``lax.map``, so only one
        batch's residuals are alive at a time.  The adjoint keeps pass 1's records and replays them
        (its backward pass alone); the exact estimators rerun the forward rollouts in pass 2.  With
        a mesh each device does its share of both passes and the sums are all-reduced."""
        records = None
        if self._replay is not None:
            records = self._batched(params, probes, positions, velocities, pairs, record=True)
            roll = records[0]
        else:
            roll = self._batched(params, probes, positions, velocities, pairs)
        loss, loss_vjp = jax.vjp(self.loss_fn, roll.observables)
        (g_obs,) = loss_vjp(jnp.ones_like(loss))
        args = (params, probes, positions, velocities, pairs, g_obs, records)
        if self.mesh is None:
            grads, reversal = self._local_vjps(*args)
        else:
            windowed = (False, True, True, True, pairs.ndim == 3, True, True)
            split = sharding.over_windows(self._local_vjps, self.mesh, windowed,
                                          (sharding.REPLICATED, sharding.WINDOWED), zero_padded=(5,))
            grads, reversal = split(*args)
        return loss, roll.max_displacement, sharding.in_dtype_of(params, grads), reversal

    def _local_vjps(self, params, probes, positions, velocities, pairs, g_obs, records):
        """(Σ_w (do^w/dθ)ᵀ g_w, per-rollout reversal errors) over these rollouts — over all devices'
        with a mesh — the sum in ``sharding.accumulation_dtype()``; ``records``: pass 1's, to replay."""
        def one(p, s0, pr, probe, g, *record):
            def observables(q, pb):
                start = self.dynamics.init(q, s0.positions, s0.velocities, pr)
                out = self._replay(q, start, pr, pb, record[0]) if record else self._rollout(q, start, pr, pb)
                return out.observables

            return jax.vjp(observables, p, probe)[1](g)

        extra = () if records is None else (records,)
        grads, reversal = self._per_rollout(one, params, positions, velocities, pairs, probes, g_obs, *extra)
        if self.mesh is not None:
            return sharding.window_total(grads), reversal
        acc = sharding.accumulation_dtype()
        return jax.tree.map(lambda a: jnp.sum(a.astype(acc), axis=0), grads), reversal


def trajectory_loss_and_grad(dynamics: VerletDynamics, params, state0: MDState, pairs, n_steps: int,
                             obs_fn: ObservableFn, loss_fn: LossFn,
                             estimator: str | Estimator = "adjoint") -> GradResult:
    """L and dL/dθ for one rollout of ``n_steps`` from ``state0`` (one-shot; see ``TrajectoryLoss``).

    ``state0`` gives x_0 and v_0; its forces and energy are recomputed from θ so that their
    dependence on θ is differentiated.  ``loss_fn`` receives the observables of this single rollout,
    leaves (T + 1, ...).
    """
    single = TrajectoryLoss(dynamics, n_steps, obs_fn, lambda obs: loss_fn(jax.tree.map(lambda o: o[0], obs)),
                            estimator)
    return single.loss_and_grad(params, state0.positions[None], state0.velocities[None], pairs)
