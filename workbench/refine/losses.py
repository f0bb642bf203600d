r"""Loss terms of the refinement.  Pure ``jax.numpy`` functions of arrays (differentiable).

IR spectrum (Han & Yu's weighted ranges, configurable), on a wavenumber grid ν̃_j with each point in
at most one range r(j) of weight w_r (points outside every range do not count):

    absolute:  L_IR = Σ_j w_{r(j)} (I_sim(ν̃_j) − I_tgt(ν̃_j))²                      [(cm⁻¹)²]
    shape:     the same with each spectrum divided, range by range, by its mean over the range's
               points, Ĩ(ν̃_j) = I(ν̃_j) / ⟨I⟩_{r(j)} (the range's area over its width on a uniform
               grid): band positions and widths count, absolute intensities do not
    normalise: divide by Σ_j w_{r(j)} I_tgt(ν̃_j)² (of the compared, possibly shape-normalised,
               target), so L_IR = 1 for a zero spectrum and terms of different kinds can be summed

With ranges [0, 1000) and [1000, 4000) cm⁻¹ of weights 10 and 1 on the 8.339 cm⁻¹ grid, the
un-normalised absolute loss is the seed paper's 10·Σ_{ν̃<1000}(ΔI)² + Σ_{1000≤ν̃<4000}(ΔI)².

Diffusion (Green–Kubo on truncated windows):  D = (1/3) ∫_0^τ C(t) dt with C the window-averaged
velocity autocorrelation (trapezoid rule), D_∞ = D + ξ k_B T/(6πηL) (Yeh–Hummer), and

    L_D = ((D_∞ − D_target) / D_target)²                                           [1]

Force matching on reference frames s with energies E_s and forces F_s (N atoms):

    L_FM = Σ_s Σ_i |F_θ,si − F_si|² / Σ_s Σ_i |F_si|²
           + λ_E · mean_s [(ΔE_s − mean_s ΔE_s) / N]²,   ΔE_s = E_θ(x_s) − E_s      [1 + λ_E (kJ/mol)²]

(the mean energy offset is free: models may differ by a constant).

RDF by reweighting (``workbench.grad.reweighting``): ⟨g(r)⟩_θ = Σ_s w_s(θ) g_s(r) over reference
samples of θ₀ with a Gaussian-smeared histogram g_s, and

    L_RDF = Σ_b (⟨g⟩_θ(r_b) − g_tgt(r_b))² / Σ_b g_tgt(r_b)²                        [1]

Density by reweighting NPT samples of θ₀ (Monte Carlo barostat, ``workbench.md.barostat``):
⟨ρ⟩_θ = Σ_s w_s(θ) Σm / V_s (``grad.reweighting.reweighted_density``; the p V terms cancel), and

    L_ρ = ((⟨ρ⟩_θ − ρ_target) / ρ_target)²   (``relative_error_loss``)                 [1]

L2:  L_L2 = Σ ‖u‖² over the trained groups, u the optimiser coordinates (``refine.parameters``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from workbench.potentials.base import minimum_image

# ----------------------------------------------------------------------------------------------
# IR


def range_index(grid, ranges) -> np.ndarray:
    """Index of the range [low, high) holding each grid point, −1 outside all ranges (first wins)."""
    grid = np.asarray(grid, float)
    idx = np.full(grid.shape, -1, dtype=np.int32)
    for k, (low, high) in reversed(list(enumerate(ranges))):
        idx[(grid >= low) & (grid < high)] = k
    return idx


def range_means(values, index, n_ranges: int):
    """Mean of ``values`` over the points of each range, (n_ranges,)."""
    onehot = (jnp.asarray(index)[:, None] == jnp.arange(n_ranges)[None, :]).astype(values.dtype)
    return (values @ onehot) / jnp.maximum(onehot.sum(axis=0), 1.0)


def shape_normalise(values, index, n_ranges: int):
    """Ĩ_j = I_j / ⟨I⟩_{r(j)} (points outside all ranges are left as they are)."""
    index = jnp.asarray(index)
    means = range_means(values, index, n_ranges)
    scale = jnp.where(index >= 0, means[jnp.clip(index, 0)], 1.0)
    return values / scale


def ir_loss(simulated, target, index, range_weights, mode: str = "absolute", normalise: bool = True):
    """The IR loss (module docstring) of spectra on one grid; ``index`` from :func:`range_index`."""
    weights = jnp.asarray(range_weights, dtype=float)
    index = jnp.asarray(index)
    w = jnp.where(index >= 0, weights[jnp.clip(index, 0)], 0.0)
    sim, tgt = jnp.asarray(simulated), jnp.asarray(target, dtype=float)
    if mode == "shape":
        sim = shape_normalise(sim, index, weights.size)
        tgt = shape_normalise(tgt, index, weights.size)
    elif mode != "absolute":
        raise ValueError(f"IR loss mode must be 'absolute' or 'shape', got {mode!r}")
    loss = jnp.sum(w * (sim - tgt) ** 2)
    return loss / jnp.sum(w * tgt**2) if normalise else loss


# ----------------------------------------------------------------------------------------------
# diffusion


def green_kubo_from_vacf(c, dt_ps: float):
    """D = (1/3) ∫_0^{t_K} C(t) dt by the trapezoid rule, C (K,) in nm²/ps² on lags kΔt → nm²/ps."""
    c = jnp.asarray(c)
    return dt_ps * (jnp.sum(c) - 0.5 * (c[0] + c[-1])) / 3.0


def relative_error_loss(value, target: float):
    """((value − target) / target)²."""
    return ((value - target) / target) ** 2


# ----------------------------------------------------------------------------------------------
# force matching


def force_matching_loss(energy_fn, params, positions, box, pairs, energies, forces,
                        energy_weight: float = 0.0):
    """L_FM of the module docstring for S frames: positions/forces (S, N, 3), energies (S,), box (3,),
    pairs (2, P) shared or (S, 2, P)."""
    value_and_grad = jax.value_and_grad(energy_fn, argnums=1)
    pair_axis = None if jnp.ndim(pairs) == 2 else 0

    def one(x, p):
        e, g = value_and_grad(params, x, box, p)
        return e, -g

    e, f = jax.vmap(one, in_axes=(0, pair_axis))(positions, pairs)
    loss = jnp.sum((f - forces) ** 2) / jnp.sum(forces**2)
    if energy_weight:
        de = (e - energies) / positions.shape[1]
        loss = loss + energy_weight * jnp.mean((de - jnp.mean(de)) ** 2)
    return loss


# ----------------------------------------------------------------------------------------------
# RDF


def smooth_rdf(positions, box, index_a, index_b, r_edges, smearing_nm: float):
    """g_AB(r) of one frame with each pair distance spread as a Gaussian of width ``smearing_nm``.

    Counts ordered pairs i ∈ A, j ∈ B, i ≠ j (minimum image) per shell [r_b, r_b+1) — the Gaussian's
    mass in the shell — divided by the ideal-gas count N_pairs/V · 4π/3 (r_{b+1}³ − r_b³), as
    ``workbench.observables.structure.rdf`` does for the sharp histogram.  (n_bins,).
    """
    x = jnp.asarray(positions)
    a, b = np.asarray(index_a), np.asarray(index_b)
    d = minimum_image(x[b][None, :, :] - x[a][:, None, :], box)
    same = a[:, None] == b[None, :]
    r = jnp.sqrt(jnp.sum(d * d, axis=-1) + same)  # 1 on the excluded diagonal keeps sqrt smooth
    edges = jnp.asarray(r_edges)
    cdf = jax.scipy.special.ndtr((edges[None, None, :] - r[..., None]) / smearing_nm)
    mass = jnp.where(same[..., None], 0.0, cdf[..., 1:] - cdf[..., :-1])
    counts = jnp.sum(mass, axis=(0, 1))
    n_pairs = a.size * b.size - int(np.sum(same))
    shell = 4.0 / 3.0 * math.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return counts / (n_pairs / jnp.prod(jnp.asarray(box)) * shell)


def rdf_loss(g, target):
    """Σ_b (g_b − g_tgt,b)² / Σ_b g_tgt,b²."""
    target = jnp.asarray(target)
    return jnp.sum((g - target) ** 2) / jnp.sum(target**2)


# ----------------------------------------------------------------------------------------------
# L2


def l2_penalty(groups_u: dict):
    """Σ over groups and leaves of ‖u‖²."""
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(groups_u))
