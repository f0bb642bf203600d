"""Self-diffusion coefficients: Green–Kubo and Einstein, with block-averaged error bars.

    Green–Kubo:  D = (1/3) ∫_0^{t_max} ⟨v(0)·v(t)⟩ dt          (VACF averaged over particles)
    Einstein:    MSD(t) = ⟨|r(t) − r(0)|²⟩ → 6 D t,   D = slope / 6   (fitted over [t1, t2])

Both use the all-time-origins estimator of ``workbench.observables.tcf`` (MSD by FFT too), and the
two must agree.  Positions must be unwrapped (:func:`unwrap` makes a wrapped trajectory continuous).

Centre-of-mass motion is removed first (:func:`remove_com_drift`, :func:`remove_com_velocity`): a
state equilibrated with a Langevin thermostat carries net momentum into an NVE run, and in a small
box (64 waters) that drift alone can triple the MSD slope.  Pass the whole system (or the centres of
all molecules) so the removed motion is the system's; choose the diffusing atoms with ``atoms``.

Error bars: the trajectory is cut into ``n_blocks`` contiguous blocks, D is estimated in each, and
the standard error is std(D_blocks, ddof=1)/√n_blocks.  The reported value is the estimate from the
whole trajectory with the same t_max / fit range.

Finite-size correction (Yeh & Hummer, J. Phys. Chem. B 108, 15873 (2004)), cubic box of edge L:

    D_∞ = D_PBC + ξ k_B T / (6 π η L),   ξ = 2.837297,
    η(water, 298 K) = 0.890 mPa·s (≈ +0.56e-9 m²/s for the 64-water box).

Units: nm, ps, amu; D in nm²/ps (1 nm²/ps = 1e-6 m²/s, :func:`to_m2_per_s`).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.md import integrators as md_integrators
from workbench.observables.tcf import tcf
from workbench.potentials.base import minimum_image

__all__ = [
    "YEH_HUMMER_XI", "WATER_VISCOSITY_298K_MPA_S", "DiffusionResult", "unwrap", "remove_com_drift",
    "remove_com_velocity", "molecule_centres", "msd", "vacf", "green_kubo_coefficient",
    "einstein_coefficient", "green_kubo_diffusion", "einstein_diffusion", "yeh_hummer_correction",
    "to_m2_per_s",
]

YEH_HUMMER_XI = 2.837297
WATER_VISCOSITY_298K_MPA_S = 0.890


@dataclasses.dataclass(frozen=True)
class DiffusionResult:
    """A diffusion coefficient with its block-averaging standard error (both nm²/ps).

    Attributes:
      value: estimate from the whole trajectory (nm²/ps).
      stderr: std(block values, ddof=1)/√n_blocks (nm²/ps; NaN for one block).
      method: "green-kubo" or "einstein".
      block_values: (n_blocks,) per-block estimates (nm²/ps).
      details: the integration limit / fit range used (ps) and similar.
    """

    value: float
    stderr: float
    method: str
    block_values: np.ndarray
    details: dict

    @property
    def value_m2_per_s(self) -> float:
        return to_m2_per_s(self.value)

    @property
    def stderr_m2_per_s(self) -> float:
        return to_m2_per_s(self.stderr)


def to_m2_per_s(d_nm2_per_ps):
    """nm²/ps → m²/s (× 1e-6)."""
    return d_nm2_per_ps * units.M2_PER_S_PER_NM2_PER_PS


def unwrap(positions, box):
    """Continuous trajectory from wrapped positions: r(t) = r(0) + Σ mic(r(s+1) − r(s)).

    Valid while no particle moves more than half a box edge between frames.  (F, N, 3) nm.
    """
    x = jnp.asarray(positions)
    steps = minimum_image(jnp.diff(x, axis=0), jnp.asarray(box))
    return jnp.concatenate([x[:1], x[:1] + jnp.cumsum(steps, axis=0)], axis=0)


def _weights(masses, n):
    if masses is None:
        return jnp.full(n, 1.0 / n)
    m = jnp.asarray(masses, dtype=float)
    if m.shape != (n,):
        raise ValueError(f"masses must have shape ({n},), got {m.shape}")
    return m / jnp.sum(m)


def remove_com_drift(positions, masses=None):
    """r_i(t) − [R(t) − R(0)], R the (mass-weighted) centre of mass of all N particles; (F, N, 3)."""
    x = jnp.asarray(positions)
    w = _weights(masses, x.shape[1])
    com = jnp.einsum("n,fnd->fd", w, x)
    return x - (com - com[:1])[:, None, :]


def remove_com_velocity(velocities, masses=None):
    """v_i(t) − V(t), V the (mass-weighted; equal masses when None) centre-of-mass velocity; (F, N, 3)."""
    v = jnp.asarray(velocities)
    return md_integrators.remove_com_velocity(v, np.ones(v.shape[1]) if masses is None else masses)


def molecule_centres(x, masses, molecules):
    """Mass-weighted centre of each molecule (positions or velocities): (F, N, 3) → (F, n_mol, 3).

    Positions must be unwrapped (or molecules whole) for the centre to be meaningful.
    """
    x = jnp.asarray(x)
    mol = jnp.asarray(molecules)
    m = jnp.asarray(masses, dtype=float)[mol]  # (n_mol, k)
    w = m / jnp.sum(m, axis=1, keepdims=True)
    return jnp.einsum("mk,fmkd->fmd", w, x[:, mol, :])


def msd(positions, max_lag: int | None = None):
    """Mean-square displacement MSD(k) = 1/(T−k) Σ_{t0} ⟨|r(t0+k) − r(t0)|²⟩_particles, by FFT.

    MSD(k) = [Σ_{t=0}^{T−1−k} |r(t)|² + Σ_{t=k}^{T−1} |r(t)|²]/(T−k) − 2 ⟨r(0)·r(k)⟩, with each
    particle's mean position subtracted first (the MSD is unchanged, round-off is smaller).
    positions (T, N, 3) unwrapped nm → (K,) nm².
    """
    x = jnp.asarray(positions)
    if x.ndim == 2:
        x = x[:, None, :]
    n_frames = x.shape[0]
    max_lag = n_frames if max_lag is None else int(max_lag)
    x = x - jnp.mean(x, axis=0, keepdims=True)
    sq = jnp.mean(jnp.sum(x * x, axis=-1), axis=1)  # (T,)
    prefix = jnp.concatenate([jnp.zeros(1, dtype=sq.dtype), jnp.cumsum(sq)])
    k = jnp.arange(max_lag)
    first = prefix[n_frames - k]
    last = prefix[n_frames] - prefix[k]
    return (first + last) / (n_frames - k) - 2.0 * tcf(x, max_lag=max_lag)


def vacf(velocities, max_lag: int | None = None):
    """Velocity autocorrelation ⟨v(0)·v(t)⟩ averaged over particles and time origins, (K,) nm²/ps²."""
    return tcf(velocities, max_lag=max_lag)


def green_kubo_coefficient(velocities, dt_ps: float, t_max_ps: float):
    """D = (1/3) ∫_0^{t_max} VACF dt (trapezoid), nm²/ps; differentiable (jax.numpy)."""
    n_lags = int(round(t_max_ps / dt_ps)) + 1
    c = vacf(velocities, n_lags)
    return dt_ps * (jnp.sum(c) - 0.5 * (c[0] + c[-1])) / 3.0


def einstein_coefficient(positions, dt_ps: float, fit_range_ps: tuple[float, float]):
    """D = slope/6 of a least-squares line through MSD(t) for t in [t1, t2] (nm²/ps); differentiable."""
    i1 = int(round(fit_range_ps[0] / dt_ps))
    i2 = int(round(fit_range_ps[1] / dt_ps))
    if i2 - i1 < 1:
        raise ValueError(f"fit range {fit_range_ps} ps spans fewer than two frames of {dt_ps} ps")
    m = msd(positions, i2 + 1)[i1:]
    t = dt_ps * jnp.arange(i1, i2 + 1)
    tc = t - jnp.mean(t)
    slope = jnp.sum(tc * (m - jnp.mean(m))) / jnp.sum(tc * tc)
    return slope / 6.0


def _blocks(x, n_blocks):
    n = x.shape[0] // n_blocks
    if n < 2:
        raise ValueError(f"{x.shape[0]} frames cannot make {n_blocks} blocks of at least 2 frames")
    return [x[i * n:(i + 1) * n] for i in range(n_blocks)], n


def _stderr(values):
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / math.sqrt(values.size))


def _prepare(x, masses, atoms, remove):
    x = jnp.asarray(x)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected (F, N, 3) arrays, got shape {x.shape}")
    x = remove(x, masses) if remove is not None else x
    return x if atoms is None else x[:, jnp.asarray(atoms)]


def green_kubo_diffusion(velocities, dt_ps: float, t_max_ps: float | None = None, masses=None,
                         atoms=None, n_blocks: int = 5, remove_com: bool = True) -> DiffusionResult:
    """Green–Kubo D with block error bars.

    Args:
      velocities: (F, N, 3) nm/ps of the whole system (or of all molecular centres).
      dt_ps: frame spacing; t_max_ps: VACF integration limit (default: a quarter of a block).
      masses: (N,) amu for the centre-of-mass velocity (default equal masses).
      atoms: indices of the diffusing particles (default all).
      n_blocks: blocks for the standard error; remove_com: subtract the COM velocity first.
    """
    v = _prepare(velocities, masses, atoms, remove_com_velocity if remove_com else None)
    blocks, n = _blocks(v, n_blocks)
    if t_max_ps is None:
        t_max_ps = 0.25 * (n - 1) * dt_ps
    if int(round(t_max_ps / dt_ps)) + 1 > n:
        raise ValueError(f"t_max = {t_max_ps} ps is longer than a block ({(n - 1) * dt_ps:.4g} ps); "
                         "use fewer blocks or a shorter t_max")
    per_block = np.array([float(green_kubo_coefficient(b, dt_ps, t_max_ps)) for b in blocks])
    value = float(green_kubo_coefficient(v, dt_ps, t_max_ps))
    return DiffusionResult(value, _stderr(per_block), "green-kubo", per_block,
                           {"t_max_ps": t_max_ps, "n_blocks": n_blocks, "block_frames": n})


def einstein_diffusion(positions, dt_ps: float, fit_range_ps: tuple[float, float] | None = None,
                       masses=None, atoms=None, n_blocks: int = 5, remove_com: bool = True
                       ) -> DiffusionResult:
    """Einstein D (MSD slope / 6) with block error bars.

    Args:
      positions: (F, N, 3) unwrapped nm of the whole system (or of all molecular centres).
      dt_ps: frame spacing; fit_range_ps: (t1, t2) of the linear fit (default: 10 %–40 % of a block,
        past the ballistic regime for liquids and before the lags with few time origins).
      masses, atoms, n_blocks, remove_com: as for :func:`green_kubo_diffusion` (COM drift removed).
    """
    x = _prepare(positions, masses, atoms, remove_com_drift if remove_com else None)
    blocks, n = _blocks(x, n_blocks)
    duration = (n - 1) * dt_ps
    if fit_range_ps is None:
        fit_range_ps = (0.1 * duration, 0.4 * duration)
    if fit_range_ps[1] > duration * (1 + 1e-9):
        raise ValueError(f"fit range ends at {fit_range_ps[1]} ps, past a block ({duration:.4g} ps)")
    per_block = np.array([float(einstein_coefficient(b, dt_ps, fit_range_ps)) for b in blocks])
    value = float(einstein_coefficient(x, dt_ps, fit_range_ps))
    return DiffusionResult(value, _stderr(per_block), "einstein", per_block,
                           {"fit_range_ps": tuple(fit_range_ps), "n_blocks": n_blocks,
                            "block_frames": n})


def yeh_hummer_correction(box_length_nm: float, temperature_K: float,
                          viscosity_mPa_s: float = WATER_VISCOSITY_298K_MPA_S) -> float:
    """ξ k_B T / (6 π η L) in nm²/ps (add to D_PBC); η in mPa·s, L in nm, cubic box."""
    eta = viscosity_mPa_s * units.AMU_PER_NM_PS_PER_MPA_S  # amu/(nm·ps)
    return YEH_HUMMER_XI * units.kT(temperature_K) / (6.0 * math.pi * eta * box_length_nm)
