"""Integrators: velocity-Verlet (NVE) and BAOAB Langevin (NVT), as pure step functions.

State is a small pytree ``MDState(positions, velocities, forces, energy)``; positions are
*unwrapped* (nm), velocities nm/ps, forces kJ/mol/nm, potential energy kJ/mol, masses amu.
Because 1 amu·nm²/ps² = 1 kJ/mol, the acceleration is simply F/m.  Every step function has the signature

    step(state, params, pairs, key) -> state

with ``params`` the potential parameters (so the same step can be differentiated w.r.t. them) and
``pairs`` the current pair list.  ``key`` is a PRNG key (ignored by NVE).

Velocity Verlet (time-reversible, symplectic; the adjoint runs it backwards with −dt):
    v(t+dt/2) = v(t) + dt/2 · F(t)/m
    x(t+dt)   = x(t) + dt · v(t+dt/2)
    v(t+dt)   = v(t+dt/2) + dt/2 · F(t+dt)/m

BAOAB Langevin (Leimkuhler & Matthews 2013), friction γ (1/ps), bath temperature kT:
    B: v += dt/2 · F/m;  A: x += dt/2 · v;
    O: v = c1 v + sqrt((1 − c1²) kT/m) ξ,  c1 = exp(−γ dt);
    A: x += dt/2 · v;    B: v += dt/2 · F(x)/m
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from workbench.units import KB


class MDState(NamedTuple):
    positions: jax.Array  # (N, 3) nm, unwrapped
    velocities: jax.Array  # (N, 3) nm/ps
    forces: jax.Array  # (N, 3) kJ/mol/nm
    energy: jax.Array  # () potential energy, kJ/mol


def energy_and_forces_fn(energy_fn, box):
    """(E, F)(params, positions, pairs): energy (kJ/mol) and F = −∂E/∂r (kJ/mol/nm), fixed box.

    One reverse-mode pass gives both, so keeping E in the state costs nothing extra.
    """
    value_and_grad = jax.value_and_grad(energy_fn, argnums=1)

    def energy_and_forces(params, positions, pairs):
        e, g = value_and_grad(params, positions, jnp.asarray(box, positions.dtype), pairs)
        return e, -g

    return energy_and_forces


def init_state(energy_and_forces, params, positions, velocities, pairs) -> MDState:
    e, f = energy_and_forces(params, positions, pairs)
    return MDState(positions, velocities, f, e)


def velocity_verlet(energy_and_forces, masses, dt: float):
    """NVE step function (see module docstring).  ``dt`` may be negative (time reversal)."""
    inv_m = 1.0 / jnp.asarray(masses)[:, None]

    def step(state: MDState, params, pairs, key=None) -> MDState:
        x, v, f, _ = state
        v_half = v + (0.5 * dt) * f * inv_m.astype(x.dtype)
        x_new = x + dt * v_half
        e_new, f_new = energy_and_forces(params, x_new, pairs)
        v_new = v_half + (0.5 * dt) * f_new * inv_m.astype(x.dtype)
        return MDState(x_new, v_new, f_new, e_new)

    return step


def baoab_langevin(energy_and_forces, masses, dt: float, temperature_K: float, gamma: float):
    """BAOAB Langevin NVT step function (see module docstring); γ in 1/ps, T in K."""
    m = jnp.asarray(masses)[:, None]
    c1 = jnp.exp(-gamma * dt)
    noise_scale = jnp.sqrt((1.0 - c1**2) * KB * temperature_K / m)

    def step(state: MDState, params, pairs, key) -> MDState:
        x, v, f, _ = state
        dtype = x.dtype
        v = v + (0.5 * dt) * f / m.astype(dtype)
        x = x + (0.5 * dt) * v
        xi = jax.random.normal(key, v.shape, dtype)
        v = c1.astype(dtype) * v + noise_scale.astype(dtype) * xi
        x = x + (0.5 * dt) * v
        e, f = energy_and_forces(params, x, pairs)
        v = v + (0.5 * dt) * f / m.astype(dtype)
        return MDState(x, v, f, e)

    return step


def kinetic_energy(velocities, masses):
    """K = ½ Σ m v² in kJ/mol."""
    return 0.5 * jnp.sum(jnp.asarray(masses)[:, None] * velocities**2)


def temperature(velocities, masses, n_constraints: int = 0):
    """Instantaneous temperature 2K / (k_B (3N − n_constraints)) in K."""
    dof = 3 * velocities.shape[-2] - n_constraints
    return 2.0 * kinetic_energy(velocities, masses) / (KB * dof)


def maxwell_boltzmann(key, masses, temperature_K: float, dtype=jnp.float64, remove_com: bool = True):
    """Velocities (N, 3) nm/ps drawn from the Maxwell–Boltzmann distribution at T.

    With ``remove_com`` the centre-of-mass velocity is subtracted and the velocities are rescaled
    so that the temperature over 3N − 3 degrees of freedom is exactly T.
    """
    m = jnp.asarray(masses, dtype)[:, None]
    v = jax.random.normal(key, (m.shape[0], 3), dtype) * jnp.sqrt(KB * temperature_K / m)
    if remove_com:
        v = remove_com_velocity(v, masses)
        v = v * jnp.sqrt(temperature_K / temperature(v, masses, n_constraints=3))
    return v


def remove_com_velocity(velocities, masses):
    """Subtract the centre-of-mass velocity Σ m v / Σ m (zero total momentum) of each frame.

    ``velocities`` is (N, 3) or (..., N, 3), e.g. (F, N, 3) for a trajectory; ``masses`` (N,) amu.
    """
    v = jnp.asarray(velocities)
    m = jnp.asarray(masses, v.dtype)[:, None]
    return v - jnp.sum(m * v, axis=-2, keepdims=True) / jnp.sum(m)
