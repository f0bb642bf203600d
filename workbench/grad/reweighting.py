r"""Reweighting of static averages to nearby parameters (DiffTRe-style) and their gradients.

Samples x_s (s = 1 … S) drawn from the Boltzmann distribution of the reference parameters θ₀
(NVT, or NPT with per-sample boxes) give averages at θ without new sampling:

    ⟨O⟩_θ ≈ Σ_s w_s(θ) O_s(θ),   w_s(θ) = exp(−β ΔU_s) / Σ_r exp(−β ΔU_r),   ΔU_s = U_θ(x_s) − U_θ₀(x_s)

(in NPT the p V terms of θ and θ₀ cancel for the same sample, so the formula is the same).
The mass density of NPT samples, ρ_s = Σm / V_s, reweights the same way (``reweighted_density``):
it depends on θ only through the weights, d⟨ρ⟩/dθ = −β [⟨ρ ∂U/∂θ⟩_w − ⟨ρ⟩_w ⟨∂U/∂θ⟩_w].
dL/dθ follows by AD through the weights (and through O when it depends on θ, e.g. ⟨U⟩):

    d⟨O⟩/dθ = ⟨dO/dθ⟩_w − β [⟨O ∂U/∂θ⟩_w − ⟨O⟩_w ⟨∂U/∂θ⟩_w].

The estimate degrades as θ moves away from θ₀: a few samples carry all the weight.  The Kish
effective sample size

    N_eff = (Σ_s w_s)² / Σ_s w_s²           (1 ≤ N_eff ≤ S)

measures it; when N_eff / S falls below a threshold (DiffTRe uses 0.9), the caller should
re-sample at the current θ.  Units: energies kJ/mol, kT kJ/mol, positions and boxes nm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from workbench.potentials.base import EnergyFn
from workbench.units import G_PER_CM3_PER_AMU_PER_NM3

#: Static observable ``obs(params, positions, box, pairs) -> array`` of one sample.
StaticObservableFn = Callable[[Any, jax.Array, jax.Array, jax.Array], Any]

#: DiffTRe's re-sampling threshold on N_eff / S (Thaler & Zavadlav, Nat. Commun. 12, 6884 (2021)).
DEFAULT_MIN_ESS_FRACTION = 0.9


@dataclasses.dataclass(frozen=True, eq=False)
class ReferenceSamples:
    """Samples of the reference ensemble θ₀.

    positions: (S, N, 3) nm.  energies: (S,) U_θ₀(x_s) in kJ/mol.  box: (3,) nm or (S, 3) per
    sample (NPT).  pairs: (2, P) shared or (S, 2, P) per sample, covering the potential's cutoff.
    kT: k_B T in kJ/mol.
    """

    positions: Any
    energies: Any
    box: Any
    pairs: Any
    kT: float

    @classmethod
    def from_positions(cls, energy_fn: EnergyFn, params0, positions, box, pairs, kT: float,
                       batch_size: int | None = None) -> ReferenceSamples:
        """Reference samples with U_θ₀ evaluated here (no gradient: θ₀ is a constant)."""
        ref = cls(jnp.asarray(positions), None, jnp.asarray(box), jnp.asarray(pairs), float(kT))
        energies = jax.lax.stop_gradient(sample_energies(energy_fn, params0, ref, batch_size))
        return dataclasses.replace(ref, energies=energies)

    @property
    def n_samples(self) -> int:
        return int(self.positions.shape[0])


def _per_sample(ref: ReferenceSamples):
    """(positions, box, pairs) with the leading sample axis where it exists (None elsewhere)."""
    box = ref.box if ref.box.ndim == 2 else None
    pairs = ref.pairs if ref.pairs.ndim == 3 else None
    return ref.positions, box, pairs


def _map_samples(fn, ref: ReferenceSamples, batch_size: int | None):
    """fn(positions, box, pairs) over samples (vmap, or lax.map in chunks of ``batch_size``)."""

    def one(args):
        x, box, pairs = args
        return fn(x, ref.box if box is None else box, ref.pairs if pairs is None else pairs)

    if batch_size is None:
        return jax.vmap(one)(_per_sample(ref))
    return jax.lax.map(one, _per_sample(ref), batch_size=batch_size)


def sample_energies(energy_fn: EnergyFn, params, ref: ReferenceSamples, batch_size: int | None = None):
    """U_θ(x_s) for every sample, (S,) kJ/mol."""
    return _map_samples(lambda x, box, pairs: energy_fn(params, x, box, pairs), ref, batch_size)


def reweighting_weights(energy_fn: EnergyFn, params, ref: ReferenceSamples, batch_size: int | None = None):
    """Normalised weights w_s(θ) = softmax(−β ΔU)_s, (S,); differentiable w.r.t. ``params``."""
    delta = sample_energies(energy_fn, params, ref, batch_size) - ref.energies
    return jax.nn.softmax(-delta / ref.kT)


def effective_sample_size(weights):
    """Kish N_eff = (Σ w)² / Σ w² (any normalisation of the weights)."""
    w = jnp.asarray(weights)
    return jnp.sum(w) ** 2 / jnp.sum(w * w)


class ReweightedAverage(NamedTuple):
    """⟨O⟩_θ with its reliability: value (pytree like O), weights (S,), ess (N_eff), ess_fraction
    (N_eff / S) and needs_resampling (N_eff / S below the threshold)."""

    value: Any
    weights: jax.Array
    ess: jax.Array
    ess_fraction: jax.Array
    needs_resampling: jax.Array


def reweighted_average(energy_fn: EnergyFn, params, ref: ReferenceSamples, obs_fn: StaticObservableFn,
                       min_ess_fraction: float = DEFAULT_MIN_ESS_FRACTION,
                       batch_size: int | None = None) -> ReweightedAverage:
    """⟨O⟩_θ = Σ_s w_s(θ) O_s(θ) from the θ₀ samples (differentiable w.r.t. ``params``)."""
    w = reweighting_weights(energy_fn, params, ref, batch_size)
    values = _map_samples(lambda x, box, pairs: obs_fn(params, x, box, pairs), ref, batch_size)
    mean = jax.tree.map(lambda o: jnp.tensordot(w, o, axes=1), values)
    ess = jax.lax.stop_gradient(effective_sample_size(w))
    fraction = ess / w.shape[0]
    return ReweightedAverage(mean, w, ess, fraction, fraction < min_ess_fraction)


def reweighting_loss_and_grad(energy_fn: EnergyFn, params, ref: ReferenceSamples,
                              obs_fn: StaticObservableFn, loss_fn: Callable[[Any], jax.Array],
                              min_ess_fraction: float = DEFAULT_MIN_ESS_FRACTION,
                              batch_size: int | None = None):
    """L(⟨O⟩_θ) and dL/dθ; returns ``(loss, grad, ReweightedAverage)`` (check ``needs_resampling``)."""

    def objective(p):
        avg = reweighted_average(energy_fn, p, ref, obs_fn, min_ess_fraction, batch_size)
        return loss_fn(avg.value), avg

    (loss, avg), grad = jax.value_and_grad(objective, has_aux=True)(params)
    return loss, grad, avg


def density_observable(total_mass_amu: float) -> StaticObservableFn:
    """ρ = Σm / V of one sample in g/cm³ (Σm in amu, V = Π box in nm³)."""

    def density(params, positions, box, pairs):
        return total_mass_amu * G_PER_CM3_PER_AMU_PER_NM3 / jnp.prod(box)

    return density


def reweighted_density(energy_fn: EnergyFn, params, ref: ReferenceSamples, total_mass_amu: float,
                       min_ess_fraction: float = DEFAULT_MIN_ESS_FRACTION,
                       batch_size: int | None = None) -> ReweightedAverage:
    """⟨ρ⟩_θ (g/cm³) from NPT samples of θ₀ (``ref.box`` per sample, (S, 3)); differentiable."""
    return reweighted_average(energy_fn, params, ref, density_observable(total_mass_amu), min_ess_fraction,
                              batch_size)
