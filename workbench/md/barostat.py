r"""Isotropic Monte Carlo barostat: volume moves that, with a thermostat, sample the NPT ensemble.

Every ``barostat_every`` integrator steps one volume move is tried (Chow & Ferguson 1995, Åqvist
et al. 2004; OpenMM's ``MonteCarloBarostat``):

    V' = V + ΔV,   ΔV uniform in [−ΔV_max, ΔV_max],   box' = s · box,   s = (V'/V)^{1/3}

    scaling: the centre of mass R_m of each molecule goes to s R_m and its atoms move rigidly with
             it (r_i → r_i + (s − 1) R_m(i)): bond lengths and angles are kept.  A monatomic system
             is the same with one-atom molecules (r_i → s r_i).

    accept with probability min(1, exp(−β [U(x') − U(x) + P (V' − V)] + n ln(V'/V)))

with n the number of scaled units (molecules, or atoms), β = 1/kT.  The n ln(V'/V) term is the
Jacobian of the scaled centre-of-mass coordinates, so the chain samples ∝ V^n exp(−β(U + PV)):
an ideal gas (U = 0) has ⟨V⟩ = (n + 1) kT / P exactly.  Velocities are left unchanged (the
Maxwell–Boltzmann distribution does not depend on V).

Step size: with ``adapt`` (equilibration), after every ``ADAPT_EVERY`` trials ΔV_max is multiplied
by 1.1 when more than 75 % were accepted and by 0.9 when fewer than 25 % (capped at 0.3 V); during
sampling it stays fixed, since a proposal that adapts to the chain's history breaks detailed balance.

Virial pressure (a check of the ensemble: ⟨P_vir⟩_NPT = P for atom-wise scaling):

    P_vir = (2K − dU/dε|₀) / (3V),   dU/dε = d/dε U(e^ε x, e^ε box)   (all atoms scaled)

Units: nm, kJ/mol, amu; pressure in kJ/mol/nm³ (1 bar = ``units.KJ_PER_MOL_PER_NM3_PER_BAR``
= 0.0602214 kJ/mol/nm³).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from workbench.md.integrators import MDState
from workbench.md.neighbor import BoxPairs, build_box_pairs

#: Volume trials between step-size adaptations; acceptance window and factors as OpenMM.
ADAPT_EVERY = 10
#: Largest ΔV_max as a fraction of V.
MAX_STEP_FRACTION = 0.3


class BarostatState(NamedTuple):
    """box (3,) nm; max_dv ΔV_max nm³; trials/accepted since the last adaptation (int);
    total_trials/total_accepted over the run (int)."""

    box: jax.Array
    max_dv: jax.Array
    trials: jax.Array
    accepted: jax.Array
    total_trials: jax.Array
    total_accepted: jax.Array


def init_barostat(box, step_fraction: float = 0.01) -> BarostatState:
    """Start with ΔV_max = ``step_fraction`` · V (OpenMM's default 1 %)."""
    box = jnp.asarray(box)
    zero = jnp.zeros((), jnp.int32)
    return BarostatState(box, step_fraction * jnp.prod(box), zero, zero, zero, zero)


def molecule_centres(positions, masses, molecule_of, n_molecules: int):
    """Centres of mass (M, 3) nm of the molecules; ``molecule_of`` (N,) molecule index per atom."""
    m = jnp.asarray(masses, positions.dtype)[:, None]
    total = jax.ops.segment_sum(m, molecule_of, n_molecules)
    return jax.ops.segment_sum(m * positions, molecule_of, n_molecules) / total


def scale_molecules(positions, masses, molecule_of, n_molecules: int, scale):
    """r_i + (s − 1) R_m(i): centres of mass scaled by ``scale``, molecules moved rigidly."""
    centres = molecule_centres(positions, masses, molecule_of, n_molecules)
    return positions + (scale - 1.0) * centres[molecule_of]


def log_acceptance(delta_u, volume, new_volume, pressure, kT, n_scaled: int):
    """ln of the acceptance ratio: −β [ΔU + P (V' − V)] + n ln(V'/V)."""
    return -(delta_u + pressure * (new_volume - volume)) / kT + n_scaled * jnp.log(new_volume / volume)


def adapt_step(baro: BarostatState) -> BarostatState:
    """Every ``ADAPT_EVERY`` trials: ΔV_max × 1.1 above 75 % acceptance, × 0.9 below 25 %."""
    due = baro.trials >= ADAPT_EVERY
    rate = baro.accepted / jnp.maximum(baro.trials, 1)
    factor = jnp.where(rate > 0.75, 1.1, jnp.where(rate < 0.25, 0.9, 1.0))
    max_dv = jnp.minimum(baro.max_dv * factor, MAX_STEP_FRACTION * jnp.prod(baro.box))
    zero = jnp.zeros_like(baro.trials)
    return baro._replace(max_dv=jnp.where(due, max_dv, baro.max_dv), trials=jnp.where(due, zero, baro.trials),
                         accepted=jnp.where(due, zero, baro.accepted))


def volume_move(energy_and_forces, params, state: MDState, pairs: BoxPairs, baro: BarostatState, key, *,
                masses, molecule_of, n_molecules: int, pressure, kT, reach: float, adapt: bool):
    """One Monte Carlo volume trial (module docstring); returns (state, pairs, baro).

    ``energy_and_forces(params, positions, box, pairs) -> (E, F)``; ``pressure`` kJ/mol/nm³, ``kT``
    kJ/mol, ``reach`` the pair-list distance (cutoff + skin, nm).  The trial's pair list is built
    for the scaled box; its overflow flag carries over to the returned list either way.
    """
    k_dv, k_acc = jax.random.split(key)
    dtype = state.positions.dtype
    volume = jnp.prod(baro.box)
    new_volume = volume + baro.max_dv * jax.random.uniform(k_dv, (), dtype, -1.0, 1.0)
    scale = (jnp.maximum(new_volume, 1e-30) / volume) ** (1.0 / 3.0)
    new_box = baro.box * scale
    x_new = scale_molecules(state.positions, masses, molecule_of, n_molecules, scale)
    trial_pairs = build_box_pairs(x_new, new_box, reach, pairs.idx.shape[1])
    e_new, f_new = energy_and_forces(params, x_new, new_box, trial_pairs.idx)
    log_a = log_acceptance(e_new - state.energy, volume, new_volume, pressure, kT, n_molecules)
    accept = (new_volume > 0) & jnp.isfinite(e_new) & (jnp.log(jax.random.uniform(k_acc, (), dtype)) < log_a)
    trial = MDState(x_new, state.velocities, f_new, e_new)
    state = jax.tree.map(lambda a, b: jnp.where(accept, a, b), trial, state)
    box = jnp.where(accept, new_box, baro.box)
    pairs = jax.tree.map(lambda a, b: jnp.where(accept, a, b), trial_pairs, pairs)
    pairs = pairs._replace(overflow=pairs.overflow | trial_pairs.overflow)
    hit = accept.astype(baro.trials.dtype)
    baro = baro._replace(box=box, trials=baro.trials + 1, accepted=baro.accepted + hit,
                         total_trials=baro.total_trials + 1, total_accepted=baro.total_accepted + hit)
    return state, pairs, (adapt_step(baro) if adapt else baro)


def molecule_index(molecules, n_atoms: int) -> np.ndarray:
    """(N,) molecule number of each atom from the (M, k) ``System.molecules`` table."""
    out = np.full(n_atoms, -1, dtype=np.int32)
    for m, atoms in enumerate(np.asarray(molecules)):
        out[np.asarray(atoms)] = m
    if np.any(out < 0):
        raise ValueError("every atom must belong to a molecule (System.molecules)")
    return out


def virial_pressure(energy_fn, params, positions, box, pairs, kinetic_energy):
    """P_vir = (2K − dU/dε|₀) / (3V) in kJ/mol/nm³, all atoms and the box scaled by e^ε."""

    def scaled_energy(eps):
        s = jnp.exp(eps)
        return energy_fn(params, s * positions, s * box, pairs)

    du = jax.grad(scaled_energy)(jnp.zeros((), positions.dtype))
    return (2.0 * kinetic_energy - du) / (3.0 * jnp.prod(box))
