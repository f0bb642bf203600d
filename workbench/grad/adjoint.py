r"""Adjoint (reverse-time) gradients of velocity-Verlet NVE: memory independent of trajectory length.

Forward.  Step n of velocity Verlet maps s_n = (x_n, v_n, f_n, e_n) to s_{n+1}:

    h_{n+1} = v_n + (Δt/2) f_n / m                      (half kick)
    x_{n+1} = x_n + Δt h_{n+1}                          (drift)
    e_{n+1} = E(x_{n+1}; θ),  f_{n+1} = −∇_x E(x_{n+1}; θ)
    v_{n+1} = h_{n+1} + (Δt/2) f_{n+1} / m              (half kick)

The forward pass keeps only s_T, the per-step observables o_n = obs(s_n) (small: e.g. Ṁ, (T+1, 3))
and optional anchors (x, v) every K steps.

Reversal.  The step is exactly invertible, so s_n is recomputed from s_{n+1} instead of stored:

    h_{n+1} = v_{n+1} − (Δt/2) f_{n+1} / m,   x_n = x_{n+1} − Δt h_{n+1},   v_n = h_{n+1} − (Δt/2) f_n / m,

with f_n = F(x_n) (this is velocity Verlet with −Δt).  In floating point the reconstruction differs
from the forward states by round-off amplified by the chaos of the dynamics; it is measured at the
start state and at every anchor, and the reverse pass continues from the stored anchor, so the
error never accumulates over more than K steps.

Adjoint equations.  With λ_n = (x̄_n, v̄_n, f̄_n, ē_n) = ∂L/∂s_n (total, including later steps) and
g_n = ∂L/∂o_n from the loss, going backwards from λ_T = ∂L/∂s_T|_explicit + J_obs(s_T)ᵀ g_T:

    f̃_n   = f̄_n + (Δt/2) v̄_n / m                                  (f_n's total cotangent)
    x̃_n   = x̄_n + ē_n ∇_x E(x_n) − H(x_n) f̃_n                      (H = ∇_x∇_x E, symmetric)
    θ̄    += ē_n ∇_θ E(x_n) − (∇_x∇_θ E)(x_n) f̃_n                   (parameter cotangent)
    h̄_n   = v̄_n + Δt x̃_n
    λ_{n−1} = (x̃_n, h̄_n, (Δt/2) h̄_n / m, 0) + J_obs(s_{n−1})ᵀ g_{n−1}

for n = T … 1, and ∂L/∂s_0 = λ_0 is returned (the start state's f_0 = F(x_0; θ), e_0 = E(x_0; θ)
are then differentiated by ordinary AD outside).  Both second-derivative products come from one
forward-over-reverse linearisation of x ↦ (E, ∇_x E, ∇_θ E) at x_n, whose primal part also gives
f_n for the reconstruction: the backward pass costs about one force evaluation plus one
Hessian-vector product per step and keeps O(1) states.

The pair list is the same constant as in the forward pass.

Replay.  The backward pass needs from the forward pass only s_T and the anchors (its *record*).  A
caller that has already run the forward windows (a two-pass scheme: pass 1 for the loss and its
cotangents, pass 2 for the VJP) keeps their records — with the rollout's observables, which a
nonlinear loss needs in pass 2 — and differentiates ``replay`` instead of the rollout: its primal
output is the recorded rollout, its VJP the same backward pass, so pass 2 costs the backward pass
alone instead of one more forward pass plus the backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from workbench.grad.core import ObservableFn, VerletDynamics, segmented_rollout, tree_add
from workbench.md.integrators import MDState


def _max_norm(d):
    """max_i |d_i| over atoms (rows)."""
    return jnp.sqrt(jnp.max(jnp.sum(d * d, axis=-1)))


def _observable_cotangent(obs_fn, state, g):
    """J_obs(s)ᵀ g as an ``MDState`` of cotangents."""
    return jax.vjp(obs_fn, state)[1](g)[0]


def adjoint_rollout(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn,
                    anchor_every: int | None = None):
    """``rollout(params, state0, pairs, probe) -> Rollout`` with the adjoint VJP (a ``custom_vjp``).

    ``anchor_every`` = K stores (x, v) at steps 0, K, 2K, … and T; default K = T (start and final
    state only, O(1) memory).  The probe's cotangent is the reversal error
    [max |Δx| nm, max |Δv| nm/ps] over the start state and the anchors.
    """
    return _adjoint(dynamics, n_steps, obs_fn, anchor_every)[0]


def adjoint_replay(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn,
                   anchor_every: int | None = None):
    """``(record, replay)`` for a two-pass gradient (module docstring, "Replay"):

    - ``record(params, state0, pairs) -> (Rollout, anchors)``: the forward rollout and its anchors
      (x, v) at steps 0, K, 2K, … and T (2 × (A, N, 3)): what the backward pass needs;
    - ``replay(params, state0, pairs, probe, record) -> Rollout``: the recorded Rollout, without
      integrating, differentiable like ``adjoint_rollout``'s rollout (same arguments, same VJP).
    """
    _, record, replay = _adjoint(dynamics, n_steps, obs_fn, anchor_every)
    return record, replay


def _adjoint(dynamics: VerletDynamics, n_steps: int, obs_fn: ObservableFn, anchor_every: int | None):
    """(rollout, record, replay) sharing one forward and one backward pass."""
    k = n_steps if anchor_every is None else min(anchor_every, n_steps)
    dt = dynamics.dt
    half = 0.5 * dt
    box = dynamics.box

    def forward(params, state0, pairs):
        roll, (xb, vb) = segmented_rollout(dynamics, obs_fn, params, state0, pairs, n_steps, k, remat=False)
        fin = roll.final_state
        # anchor slot of step n (n a multiple of K, or n = T) is ⌈n/K⌉
        anchors = (jnp.concatenate([xb, fin.positions[None]]), jnp.concatenate([vb, fin.velocities[None]]))
        return roll, anchors

    @jax.custom_vjp
    def rollout(params, state0, pairs, probe):
        return forward(params, state0, pairs)[0]

    def rollout_fwd(params, state0, pairs, probe):
        roll, anchors = forward(params, state0, pairs)
        return roll, (params, state0, pairs, anchors, roll.final_state, probe)

    def rollout_bwd(res, ct):
        params, s0, pairs, (x_anchor, v_anchor), s_final, probe = res
        x0 = s0.positions
        inv_m = dynamics.inverse_masses(x0.dtype)
        box_ = jnp.asarray(box, x0.dtype)
        value_and_grads = jax.value_and_grad(dynamics.energy_fn, argnums=(0, 1))

        def energy_grads(x):
            e, (g_theta, g_x) = value_and_grads(params, x, box_, pairs)
            return e, g_x, g_theta

        def node(carry, inputs):
            """Reconstruct s_n, add the observable cotangent, back-propagate through step n−1."""
            n, g_n = inputs
            x, h, lam_dyn, theta_bar, err = carry
            is_anchor = (n % k == 0) | (n == n_steps)
            slot = (n + k - 1) // k
            err_x = jnp.where(is_anchor, _max_norm(x - x_anchor[slot]), 0.0)
            x = jnp.where(is_anchor, x_anchor[slot], x)
            (e, g_x, g_theta), hvp = jax.linearize(energy_grads, x)
            f = -g_x
            v = h - half * f * inv_m
            err_v = jnp.where(is_anchor, _max_norm(v - v_anchor[slot]), 0.0)
            v = jnp.where(is_anchor, v_anchor[slot], v)
            state = MDState(x, v, f, e)
            lam = tree_add(lam_dyn, _observable_cotangent(obs_fn, state, g_n))
            f_tot = lam.forces + half * lam.velocities * inv_m
            _, h_f, h_theta_f = hvp(f_tot)
            x_tot = lam.positions + lam.energy * g_x - h_f
            theta_bar = jax.tree.map(lambda t, g, hf: (t + lam.energy * g - hf).astype(t.dtype),
                                     theta_bar, g_theta, h_theta_f)
            h_bar = lam.velocities + dt * x_tot
            lam_prev = MDState(x_tot, h_bar, half * h_bar * inv_m, jnp.zeros_like(lam.energy))
            h_prev = v - half * f * inv_m
            err = jnp.maximum(err, jnp.stack([err_x, err_v]))
            return (x - dt * h_prev, h_prev, lam_prev, theta_bar, err), None

        g_obs = ct.observables
        steps = jnp.arange(1, n_steps + 1)
        later = jax.tree.map(lambda g: g[1:], g_obs)
        theta0 = jax.tree.map(jnp.zeros_like, params)
        h_final = s_final.velocities + half * s_final.forces * inv_m
        carry = (s_final.positions, h_final, ct.final_state, theta0, jnp.zeros(2, x0.dtype))
        (x_rec, h1, lam_dyn, theta_bar, err), _ = jax.lax.scan(node, carry, (steps, later), reverse=True)
        # node 0: the start state is an input (its f_0, e_0 are differentiated outside); v_0 is
        # reconstructed with the stored f_0 only to measure the reversal error.
        v_rec = h1 - half * s0.forces * inv_m
        err = jnp.maximum(err, jnp.stack([_max_norm(x_rec - x0), _max_norm(v_rec - s0.velocities)]))
        lam0 = tree_add(lam_dyn, _observable_cotangent(obs_fn, s0, jax.tree.map(lambda g: g[0], g_obs)))
        return theta_bar, lam0, None, err.astype(probe.dtype)

    rollout.defvjp(rollout_fwd, rollout_bwd)

    @jax.custom_vjp
    def replay(params, state0, pairs, probe, rec):
        return rec[0]

    def replay_fwd(params, state0, pairs, probe, rec):
        roll, anchors = rec
        return roll, (params, state0, pairs, anchors, roll.final_state, probe)

    def replay_bwd(res, ct):
        return (*rollout_bwd(res, ct), None)

    replay.defvjp(replay_fwd, replay_bwd)
    return rollout, forward, replay
