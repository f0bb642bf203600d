"""What every gradient estimator shares: the NVE dynamics, the rollout result and the forward scan.

A *rollout* integrates velocity-Verlet NVE for T steps from a start state s_0 and records a per-step
observable o_n = obs(s_n), n = 0 … T (the start state included, so T + 1 rows).  The estimators in
this package differ only in how they differentiate it:

    rollout(params, state0, pairs, probe) -> Rollout(observables, final_state, max_displacement)

- ``params``: the potential's parameter pytree θ (differentiated).
- ``state0``: ``MDState`` s_0 = (x_0, v_0, f_0, e_0); its cotangent is returned, so a start state
  built from θ (f_0 = F(x_0; θ), e_0 = E(x_0; θ)) is differentiated through by plain JAX AD.
- ``pairs``: (2, P) pair list, a constant inside the rollout (no gradient).  It must cover every
  pair within ``cutoff`` for the whole window; a list built at the start with ``cutoff + skin``
  does so while every atom stays within skin/2 of its start position (two atoms can then close
  in by less than the skin), which ``max_displacement`` reports.
- ``probe``: a (2,) float array of zeros that carries diagnostics out of the backward pass (the
  only channel a ``jax.custom_vjp`` backward rule has): its "gradient" is the adjoint's reversal
  error [max |Δx| nm, max |Δv| nm/ps]; exact estimators give zeros.

Units: nm, ps, amu, kJ/mol (1 amu·nm²/ps² = 1 kJ/mol, so the acceleration is F/m).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from workbench.md import integrators
from workbench.md.integrators import MDState
from workbench.potentials.base import EnergyFn

#: Per-step observable ``obs(state) -> pytree of arrays`` (e.g. Ṁ (3,) in e·nm/ps).  It must be a
#: pure function of the state; arrays it closes over must be concrete (not traced), as it is
#: called inside a ``custom_vjp`` rule.
ObservableFn = Callable[[MDState], Any]

ESTIMATORS = ("direct", "checkpoint", "adjoint")


@dataclasses.dataclass(frozen=True, eq=False)
class VerletDynamics:
    """Velocity-Verlet NVE for one energy function, fixed box and masses.

    Attributes:
      energy_fn: ``(params, positions_nm, box_nm, pairs) -> kJ/mol`` (``potentials.base`` contract).
      box: (3,) orthorhombic cell edges, nm.
      masses: (N,) amu.
      dt: time step, ps.

    Derived attributes: ``energy_and_forces(params, x, pairs) -> (E, F)`` and
    ``step(state, params, pairs, key=None) -> state``, which is
    ``workbench.md.integrators.velocity_verlet`` (the production integrator): the direct and
    checkpointed estimators differentiate exactly it, and the adjoint's hand-written reverse pass
    is tested against them.
    """

    energy_fn: EnergyFn
    box: Any
    masses: Any
    dt: float

    @classmethod
    def from_potential(cls, potential, system, dt: float) -> VerletDynamics:
        """Dynamics of a ``Potential`` in a ``System``'s box with its masses."""
        return cls(potential.energy_fn, np.asarray(system.box, float), np.asarray(system.masses, float),
                   float(dt))

    def __post_init__(self):
        # built once, outside any trace (the step closes over 1/m as a concrete array)
        with jax.ensure_compile_time_eval():
            ef = integrators.energy_and_forces_fn(self.energy_fn, np.asarray(self.box, float))
            object.__setattr__(self, "energy_and_forces", ef)
            object.__setattr__(self, "step", integrators.velocity_verlet(
                ef, np.asarray(self.masses, float), self.dt))

    def init(self, params, positions, velocities, pairs) -> MDState:
        """Start state (x, v, F(x; θ), E(x; θ)): differentiable w.r.t. ``params``."""
        return integrators.init_state(self.energy_and_forces, params, positions, velocities, pairs)

    def inverse_masses(self, dtype):
        """1/m as an (N, 1) array (broadcasts over x, y, z)."""
        return jnp.asarray(1.0 / np.asarray(self.masses, float)[:, None], dtype)


class Rollout(NamedTuple):
    """Result of a rollout of T steps.

    observables: pytree of the stacked obs(s_n), leaves (T + 1, ...), n = 0 … T.
    final_state: s_T (differentiable like the observables).
    max_displacement: max over steps and atoms of |x_n − x_0| in nm (not differentiated).
    """

    observables: Any
    final_state: MDState
    max_displacement: jax.Array


@dataclasses.dataclass(frozen=True)
class Estimator:
    """Which gradient estimator a rollout uses, with its settings.

    kind: ``"direct"`` (AD through the scan: stores every step, memory O(T)),
      ``"checkpoint"`` (AD with ``jax.checkpoint`` on segments: memory O(T/L + L), exact) or
      ``"adjoint"`` (reverse-time integration, memory O(1) in T, exact up to reversal round-off).
    segment_length: L for ``"checkpoint"``; default ⌈√T⌉ (memory O(√T)).
    anchor_every: K for ``"adjoint"``: (x, v) are stored every K steps (memory O(T/K)) and the
      reverse pass is reset to them, which bounds the reversal error; default only the start and
      final states are kept (O(1)).
    """

    kind: str = "adjoint"
    segment_length: int | None = None
    anchor_every: int | None = None

    def __post_init__(self):
        if self.kind not in ESTIMATORS:
            raise ValueError(f"unknown gradient estimator {self.kind!r}; choose one of {ESTIMATORS}")
        for name in ("segment_length", "anchor_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be ≥ 1, got {value}")


def as_estimator(estimator: str | Estimator) -> Estimator:
    return estimator if isinstance(estimator, Estimator) else Estimator(kind=estimator)


def max_displacement(positions, reference):
    """max_i |x_i − x_ref,i| in nm (no gradient flows through it)."""
    d = jax.lax.stop_gradient(positions - reference)
    return jnp.sqrt(jnp.max(jnp.sum(d * d, axis=-1)))


def _scan_steps(dynamics: VerletDynamics, obs_fn: ObservableFn, params, pairs, x_ref, carry, length: int):
    """``length`` velocity-Verlet steps; returns ((state, max displacement), stacked obs(s_n))."""

    def body(c, _):
        state, maxd = c
        state = dynamics.step(state, params, pairs)
        return (state, jnp.maximum(maxd, max_displacement(state.positions, x_ref))), obs_fn(state)

    return jax.lax.scan(body, carry, None, length=length)


def segmented_rollout(dynamics: VerletDynamics, obs_fn: ObservableFn, params, state0: MDState, pairs,
                      n_steps: int, segment_length: int, remat: bool):
    """Forward scan in segments of L steps (an outer scan over ⌊T/L⌋ segments plus a remainder).

    With ``remat`` each segment is a ``jax.checkpoint``: reverse-mode AD then keeps only the segment
    boundary states and recomputes the L steps inside a segment when it gets there.

    Returns ``(Rollout, (x_b, v_b))`` with the positions and velocities at the segment starts
    0, L, 2L, … < T (stacked): the adjoint's anchors.
    """
    x_ref = jax.lax.stop_gradient(state0.positions)
    n_seg, rem = divmod(n_steps, segment_length)

    def segment(length, carry):
        return _scan_steps(dynamics, obs_fn, params, pairs, x_ref, carry, length)

    run = jax.checkpoint(segment, static_argnums=(0,)) if remat else segment

    def outer(carry, _):
        start = carry[0]
        carry, obs = run(segment_length, carry)
        return carry, (obs, (start.positions, start.velocities))

    carry = (state0, jnp.zeros((), state0.positions.dtype))
    carry, (obs, bounds) = jax.lax.scan(outer, carry, None, length=n_seg)
    obs = jax.tree.map(lambda a: a.reshape((n_seg * segment_length,) + a.shape[2:]), obs)
    if rem:
        start = carry[0]
        carry, obs_rem = run(rem, carry)
        obs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), obs, obs_rem)
        bounds = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), bounds,
                              (start.positions, start.velocities))
    obs = jax.tree.map(lambda o0, o: jnp.concatenate([o0[None], o]), obs_fn(state0), obs)
    final, maxd = carry
    return Rollout(obs, final, maxd), bounds


def default_segment_length(n_steps: int) -> int:
    """⌈√T⌉ (T ≥ 1): the memory-optimal segment length of one-level checkpointing."""
    return math.isqrt(n_steps - 1) + 1


# ----------------------------------------------------------------------------------------------
# pytree arithmetic


def tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def tree_norm(tree):
    """Euclidean norm over all leaves of a pytree."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves))


def tree_relative_error(a, b):
    """‖a − b‖ / ‖b‖ over whole pytrees (the reference is ``b``)."""
    return tree_norm(jax.tree.map(jnp.subtract, a, b)) / tree_norm(b)
