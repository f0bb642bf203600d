"""Gradients by automatic differentiation through the integrator's ``lax.scan``.

Direct AD (the reference): reverse mode stores the residuals of every step (positions, pair
geometry, intermediates of the force evaluation), so memory grows as O(T) in the number of steps.

Checkpointed AD: the T steps are split into segments of L steps, each wrapped in ``jax.checkpoint``.
The backward pass keeps only the ⌈T/L⌉ segment-start states and recomputes the L steps of a
segment (storing their residuals) when it reaches it: memory O(T/L + L), minimal at L ≈ √T, for
about one extra forward pass of compute.  Both are exact: they differentiate the same floating-
point program as the forward run.
"""

from __future__ import annotations

from workbench.grad.core import ObservableFn, VerletDynamics, default_segment_length, segmented_rollout


def direct_rollout(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn):
    """``rollout(params, state0, pairs, probe) -> Rollout`` differentiated by plain AD (probe unused)."""

    def rollout(params, state0, pairs, probe):
        del probe  # exact: no reversal error to report
        return segmented_rollout(dynamics, obs_fn, params, state0, pairs, n_steps, n_steps, remat=False)[0]

    return rollout


def checkpointed_rollout(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn,
                         segment_length: int | None = None):
    """``rollout(params, state0, pairs, probe) -> Rollout`` with ``jax.checkpoint`` on segments of
    ``segment_length`` steps (default ⌈√T⌉)."""
    length = default_segment_length(n_steps) if segment_length is None else min(segment_length, n_steps)

    def rollout(params, state0, pairs, probe):
        del probe
        return segmented_rollout(dynamics, obs_fn, params, state0, pairs, n_steps, length, remat=True)[0]

    return rollout
