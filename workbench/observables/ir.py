r"""Infrared absorption spectrum n(ω)α(ω) from the time derivative of the total dipole.

Formula (classical TCF with the harmonic quantum correction, the workbench default):

    n(ω) α(ω) = β / (6 c ε0 V) · ∫_{−∞}^{∞} dt e^{−iωt} ⟨Ṁ(0)·Ṁ(t)⟩
              = β / (6 c ε0 V) · 2 ∫_0^{∞} dt ⟨Ṁ(0)·Ṁ(t)⟩ cos ωt,         ω = 2π c ν̃,

with β = 1/(k_B T) and V the box volume; the TCF of a classical trajectory is real and even in t.

Prefactor in workbench units (Ṁ in e·nm/ps, t in ps, V in nm³, result in cm⁻¹)::

    β/(6 c ε0) · e² · (1 nm²/ps² · ps / nm³) = e²/(k_B T · 6 c ε0) · 1/(nm·ps)
      [β/(6cε0) in s/C² (J⁻¹ · s/m · J·m/C²); × C²/(nm·ps) = 10⁹·10¹² C²/(m·s) → m⁻¹]
      = (1.602176634e-19 C)² · 10²¹ / (1.380649e-23 J/K · 298.15 K · 6 · 299792458 m/s
        · 8.8541878128e-12 F/m)  m⁻¹
      = 3.91545e5 m⁻¹ = 3915.45 cm⁻¹            at 298.15 K, scaling as 1/T
(:func:`ir_prefactor` evaluates it from the CODATA constants in ``workbench.units``.)

Quantum correction.  The quantum lineshape is n α = ω (1 − e^{−βħω}) / (6 ħ c ε0 V) · Ĉ_MM^qm(ω);
approximating Ĉ^qm(ω) ≈ Q(ω) Ĉ^cl(ω) and using Ĉ_ṀṀ = ω² Ĉ_MM gives

    n α = f(x) · [β/(6 c ε0 V) Ĉ_ṀṀ^cl(ω)],      x = βħω = h c ν̃ / (k_B T),   f = Q (1 − e^{−x}) / x,

with the choices (Ramírez, López-Ciudad, Kumar & Marx, J. Chem. Phys. 121, 3973 (2004))
``"harmonic"``: Q = x/(1 − e^{−x}), f = 1 (the formula above, the default; it coincides with the
fully classical ħ → 0 limit of the lineshape);
``"schofield"``: Q = e^{x/2}, f = 2 sinh(x/2)/x;
``"none"`` (Q = 1, the "standard" choice): f = (1 − e^{−x})/x.

Sum rule (how the prefactor is checked in the tests).  Since ∫_{−∞}^{∞} dω Ĉ(ω) = 2π C(0),
∫_0^∞ dν̃ 2∫_0^∞ dt C(t) cos(2πcν̃t) = C(0)/(2c), so with the harmonic correction

    ∫_0^∞ n α(ν̃) dν̃ = prefactor · ⟨Ṁ²⟩ / (2 c V)        (c in cm/ps; result in cm⁻²),

independent of the window (w(0) = 1).  The discrete transform used here,
Ĉ(ν̃) = Δt [C_0 + 2 Σ_{k≥1} w_k C_k cos(2πcν̃ kΔt)] (last point with weight ½), satisfies it exactly
when integrated from 0 to the Nyquist wavenumber 1/(2cΔt).

All spectrum functions are pure ``jax.numpy`` and differentiable w.r.t. the Ṁ series (or TCF);
frame spacing and TCF length must be Python numbers (they fix array shapes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.observables.tcf import tcf

__all__ = [
    "ir_prefactor", "IR_PREFACTOR_298K", "PAPER_SIGMA_PS", "PAPER_GRID_STEP_CM",
    "window_function", "quantum_correction_factor", "cosine_transform", "ir_from_tcf",
    "ir_spectrum", "wavenumber_grid", "nyquist_wavenumber", "sum_rule_integral",
    "Band", "WATER_BANDS", "band_analysis",
]

PLANCK_SI = 6.62607015e-34  # J·s (exact)
#: h c / k_B in cm·K (x = βħω = HC_OVER_KB · ν̃[cm⁻¹] / T[K]); 1.438776877...
HC_OVER_KB_CM_K = PLANCK_SI * units.SPEED_OF_LIGHT_SI * 100.0 / units.BOLTZMANN_SI

#: Gaussian window width of the seed paper's code (ps).
PAPER_SIGMA_PS = 1.0 / 3.0
#: Wavenumber spacing of the seed paper's loss grid: 1/(2 c · 2 ps) = 8.339 cm⁻¹.
PAPER_GRID_STEP_CM = 1.0 / (2.0 * units.SPEED_OF_LIGHT_CM_PER_PS * 2.0)

WINDOWS = ("gaussian", "hann", "none")
QUANTUM_CORRECTIONS = ("harmonic", "schofield", "none")


def ir_prefactor(temperature_K: float = 298.15) -> float:
    """β/(6 c ε0) in cm⁻¹ per (e·nm/ps)²·ps/nm³: 3915.45 at 298.15 K (derivation in the module doc)."""
    kT_joule = units.BOLTZMANN_SI * temperature_K
    si = units.ELEMENTARY_CHARGE_SI**2 / (
        kT_joule * 6.0 * units.SPEED_OF_LIGHT_SI * units.VACUUM_PERMITTIVITY_SI)
    per_metre = si * 1e9 * 1e12  # e²·nm²/ps² · ps / nm³ → C²·m⁻¹·s⁻¹ factors
    return per_metre / 100.0


IR_PREFACTOR_298K = ir_prefactor(298.15)


def nyquist_wavenumber(dt_ps: float) -> float:
    """Highest wavenumber a series sampled every ``dt_ps`` resolves: 1/(2 c Δt) in cm⁻¹."""
    return 1.0 / (2.0 * units.SPEED_OF_LIGHT_CM_PER_PS * dt_ps)


def wavenumber_grid(stop_cm: float = 4000.0, step_cm: float = PAPER_GRID_STEP_CM,
                    start_cm: float = 0.0) -> np.ndarray:
    """Evenly spaced wavenumbers start, start+step, … ≤ stop (cm⁻¹); default the paper's 8.339 grid."""
    n = int(math.floor((stop_cm - start_cm) / step_cm + 1e-9)) + 1
    return start_cm + step_cm * np.arange(n)


def window_function(t_ps, kind: str = "gaussian", sigma_ps: float = PAPER_SIGMA_PS):
    """Lag window w(t), t ≥ 0 in ps, w(0) = 1.

    ``"gaussian"``: exp(−t²/(2σ²)); ``"hann"``: ½[1 + cos(π t/t_max)] with t_max the last lag
    (zero at the end of the TCF); ``"none"``: 1 (a plain truncation).
    """
    t = jnp.asarray(t_ps)
    kind = kind.lower()
    if kind == "gaussian":
        if sigma_ps <= 0:
            raise ValueError(f"Gaussian window width sigma_ps must be > 0, got {sigma_ps}")
        return jnp.exp(-0.5 * (t / sigma_ps) ** 2)
    if kind == "hann":
        t_max = t[-1]
        return 0.5 * (1.0 + jnp.cos(jnp.pi * t / t_max))
    if kind == "none":
        return jnp.ones_like(t)
    raise ValueError(f"unknown window {kind!r}; choose one of {WINDOWS}")


def quantum_correction_factor(wavenumbers_cm, temperature_K: float, kind: str = "harmonic"):
    """Factor f(x), x = hcν̃/(k_B T), multiplying the harmonic-corrected spectrum (see module doc).

    ``"harmonic"``: 1; ``"schofield"``: 2 sinh(x/2)/x; ``"none"``: (1 − e^{−x})/x; all → 1 as x → 0.
    """
    kind = kind.lower()
    if kind not in QUANTUM_CORRECTIONS:
        raise ValueError(f"unknown quantum correction {kind!r}; choose one of {QUANTUM_CORRECTIONS}")
    nu = jnp.asarray(wavenumbers_cm, dtype=float)
    if kind == "harmonic":
        return jnp.ones_like(nu)
    x = HC_OVER_KB_CM_K * nu / temperature_K
    small = jnp.abs(x) < 1e-6
    xs = jnp.where(small, 1.0, x)  # keeps the unused branch (and its gradient) finite
    if kind == "schofield":
        return jnp.where(small, 1.0 + x**2 / 24.0, 2.0 * jnp.sinh(0.5 * xs) / xs)
    return jnp.where(small, 1.0 - 0.5 * x, -jnp.expm1(-xs) / xs)


def cosine_transform(c, dt_ps: float, wavenumbers_cm):
    """Ĉ(ν̃) = ∫_{−∞}^{∞} C(|t|) cos(2πcν̃t) dt ≈ Δt [C_0 + 2 Σ_{k=1}^{K−1} ω_k C_k cos(2πcν̃ t_k)].

    Trapezoid weights (ω_{K−1} = ½, else 1); ``c`` (K,) on lags t_k = kΔt (ps); result in units of
    C × ps, shape (n_ν̃,).  A dense matrix product: any wavenumber grid, differentiable.
    """
    c = jnp.asarray(c)
    k = c.shape[0]
    t = dt_ps * jnp.arange(k)
    weights = jnp.full(k, 2.0).at[0].set(1.0)
    if k > 1:
        weights = weights.at[-1].set(1.0)
    omega = 2.0 * jnp.pi * units.SPEED_OF_LIGHT_CM_PER_PS * jnp.asarray(wavenumbers_cm, dtype=float)
    return dt_ps * (jnp.cos(omega[:, None] * t[None, :]) @ (weights * c))


def _check_grid(wavenumbers_cm, dt_ps):
    try:
        nu = np.asarray(wavenumbers_cm, dtype=float)
    except Exception:  # a tracer: the caller is transforming; skip the concrete check
        return
    if nu.ndim != 1:
        raise ValueError(f"wavenumbers must be a 1-D grid in cm⁻¹, got shape {nu.shape}")
    limit = nyquist_wavenumber(dt_ps)
    if np.any(nu < 0) or np.any(nu > limit * (1 + 1e-9)):
        raise ValueError(f"wavenumbers must lie in [0, {limit:.1f}] cm⁻¹ (the Nyquist limit of "
                         f"frames {dt_ps} ps apart); got {nu.min():.1f} … {nu.max():.1f}")


def ir_from_tcf(c, dt_ps: float, volume_nm3: float, temperature_K: float, wavenumbers_cm,
                window: str = "gaussian", sigma_ps: float = PAPER_SIGMA_PS,
                quantum_correction: str = "harmonic"):
    """n α (cm⁻¹) from a TCF ⟨Ṁ(0)·Ṁ(t)⟩ (K,) in (e·nm/ps)² on lags kΔt.

    n α(ν̃) = f_QC(ν̃) · ir_prefactor(T) / V · Ĉ_w(ν̃), with Ĉ_w the cosine transform
    (:func:`cosine_transform`) of w(t)·C(t) and w the lag window (:func:`window_function`).
    """
    _check_grid(wavenumbers_cm, dt_ps)
    c = jnp.asarray(c)
    t = dt_ps * jnp.arange(c.shape[0])
    cw = c * window_function(t, window, sigma_ps)
    spectrum = ir_prefactor(1.0) / temperature_K / volume_nm3 * cosine_transform(cw, dt_ps, wavenumbers_cm)
    return spectrum * quantum_correction_factor(wavenumbers_cm, temperature_K, quantum_correction)


def ir_spectrum(mdot, dt_ps: float, volume_nm3: float, temperature_K: float, wavenumbers_cm,
                tcf_length_ps: float = 2.0, window: str = "gaussian", sigma_ps: float = PAPER_SIGMA_PS,
                quantum_correction: str = "harmonic"):
    """IR spectrum n α (cm⁻¹) on ``wavenumbers_cm`` from a Ṁ time series.

    Args:
      mdot: (F, 3) total-dipole derivative in e·nm/ps, or (W, F, 3) for W independent windows
        (e.g. NVE segments started from sampled frames), whose TCFs are averaged.
      dt_ps: frame spacing (ps).
      volume_nm3: box volume V (nm³); temperature_K: T of the ensemble (K).
      wavenumbers_cm: 1-D grid in cm⁻¹ within [0, 1/(2cΔt)].
      tcf_length_ps: TCF length t_max (ps): lags 0 … round(t_max/Δt). The seed paper uses 0.2 ps
        in its loss and 2 ps (the default) for reported spectra.
      window: ``"gaussian"`` (σ = ``sigma_ps``, default 1/3 ps as in the paper), ``"hann"``, ``"none"``.
      quantum_correction: ``"harmonic"`` (default; the DESIGN.md formula), ``"schofield"``, ``"none"``.

    Returns:
      (n_ν̃,) n α in cm⁻¹ (a JAX array, differentiable w.r.t. ``mdot``).
    """
    mdot = jnp.asarray(mdot)
    if mdot.ndim == 2:
        series = mdot
    elif mdot.ndim == 3:
        series = jnp.moveaxis(mdot, 0, 1)  # (F, W, 3): the TCF averages over the W axis
    else:
        raise ValueError(f"mdot must be (F, 3) or (W, F, 3), got shape {mdot.shape}")
    if mdot.shape[-1] != 3:
        raise ValueError(f"mdot's last axis must hold x, y, z; got shape {mdot.shape}")
    if dt_ps <= 0:
        raise ValueError(f"dt_ps must be > 0, got {dt_ps}")
    n_frames = series.shape[0]
    n_lags = int(round(tcf_length_ps / dt_ps)) + 1
    if n_lags < 2:
        raise ValueError(f"tcf_length_ps = {tcf_length_ps} is shorter than one frame ({dt_ps} ps)")
    if n_lags > n_frames:
        raise ValueError(f"a {tcf_length_ps} ps TCF needs at least {n_lags} frames {dt_ps} ps apart; "
                         f"the series has {n_frames}")
    c = tcf(series, max_lag=n_lags)
    return ir_from_tcf(c, dt_ps, volume_nm3, temperature_K, wavenumbers_cm, window, sigma_ps,
                       quantum_correction)


def sum_rule_integral(mean_square_mdot: float, volume_nm3: float, temperature_K: float) -> float:
    """∫_0^∞ n α dν̃ (cm⁻²) implied by ⟨Ṁ²⟩ [(e·nm/ps)²]: prefactor(T) · ⟨Ṁ²⟩ / (2 c V)."""
    return (ir_prefactor(temperature_K) * mean_square_mdot
            / (2.0 * units.SPEED_OF_LIGHT_CM_PER_PS * volume_nm3))


# ----------------------------------------------------------------------------------------------
# band analysis


@dataclasses.dataclass(frozen=True)
class Band:
    """A band's maximum within [low, high] (cm⁻¹): position (cm⁻¹), height (spectrum units) and
    full width at half maximum (cm⁻¹; NaN when the spectrum does not fall below half height on
    both sides)."""

    name: str
    low: float
    high: float
    position: float
    height: float
    fwhm: float


#: Search ranges (cm⁻¹) of the bands of liquid water: O–H stretch (exp. 3393 cm⁻¹), H–O–H bend
#: (1642), libration (618).  Combination (≈2126) and far-IR (≈180) bands can be passed the same way.
WATER_BANDS: Mapping[str, tuple[float, float]] = {
    "stretch": (2800.0, 3900.0),
    "bend": (1450.0, 1850.0),
    "libration": (300.0, 1000.0),
}


def _half_crossing(x, y, i_peak, half, step):
    """Wavenumber where y first drops below ``half`` walking from i_peak by ``step`` (±1); NaN if never."""
    i = i_peak
    while 0 <= i + step < len(y):
        j = i + step
        if y[j] < half:
            # linear interpolation between i (≥ half) and j (< half)
            return x[i] + (half - y[i]) * (x[j] - x[i]) / (y[j] - y[i])
        i = j
    return float("nan")


def band_analysis(wavenumbers_cm, values, bands: Mapping[str, tuple[float, float]] = WATER_BANDS
                  ) -> dict[str, Band]:
    """Position (of the maximum), height and FWHM of named bands.

    The maximum is searched within each band's range; the half-height crossings are searched
    outwards from it over the whole spectrum (linear interpolation between grid points), so a
    width is reported even when it extends beyond the search range.  NumPy, not differentiable.
    """
    x = np.asarray(wavenumbers_cm, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"wavenumbers and values must be 1-D of equal length, got {x.shape}, {y.shape}")
    order = np.argsort(x)
    x, y = x[order], y[order]
    out = {}
    for name, (low, high) in bands.items():
        inside = np.nonzero((x >= low) & (x <= high))[0]
        if inside.size == 0:
            raise ValueError(f"band {name!r} ({low}–{high} cm⁻¹) lies outside the spectrum "
                             f"({x[0]:.0f}–{x[-1]:.0f} cm⁻¹)")
        i_peak = int(inside[np.argmax(y[inside])])
        height = float(y[i_peak])
        left = _half_crossing(x, y, i_peak, 0.5 * height, -1)
        right = _half_crossing(x, y, i_peak, 0.5 * height, +1)
        out[name] = Band(name, float(low), float(high), float(x[i_peak]), height, float(right - left))
    return out
