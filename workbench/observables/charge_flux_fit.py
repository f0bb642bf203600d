"""Fitting charge-flux dipole coefficients to IR band heights on a fixed trajectory.

For given positions and velocities Ṁ is linear in the coefficients c = (q_H0, a_r, b_r, a_θ) of
``dipole.charge_flux_dipole``: Ṁ(t; c) = Σ_j c_j B_j(t), B_j the Ṁ of unit model j
(``dipole.charge_flux_basis``).  Hence

    ⟨Ṁ(0)·Ṁ(t)⟩ = Σ_jk c_j c_k C_jk(t),   C_jk(t) = ⟨B_j(0)·B_k(t)⟩,
    n α(ν̃; c)   = Σ_jk c_j c_k S_jk(ν̃),   S_jk = n α of C_jk  (the spectrum is linear in the TCF),

and trying a coefficient vector costs one small contraction per grid point — no MD and no dipole
evaluation.  :func:`fit_band_heights` adjusts the free coefficients so that the maxima of named
bands reach target heights (least squares on the relative errors H_b(c)/H_b* − 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from workbench.observables.ir import PAPER_SIGMA_PS, WATER_BANDS, ir_from_tcf
from workbench.observables.tcf import tcf

__all__ = ["cross_tcfs", "cross_spectra", "combined_spectrum", "band_heights", "fit_band_heights"]


def cross_tcfs(basis_mdot, n_lags: int) -> np.ndarray:
    """C_jk(t) = ⟨B_j(0)·B_k(t)⟩ (B, B, n_lags), all time origins, averaged over windows.

    ``basis_mdot``: (B, W, F, 3) unit-model Ṁ series in e·nm/ps (W windows of F frames).
    """
    b = np.moveaxis(np.asarray(basis_mdot), 1, 2)  # (B, F, W, 3): tcf averages the window axis
    n = b.shape[0]
    return np.array([[np.asarray(tcf(b[j], b[k], max_lag=n_lags)) for k in range(n)] for j in range(n)])


def cross_spectra(c_jk, dt_ps: float, volume_nm3: float, temperature_K: float, wavenumbers_cm,
                  sigma_ps: float = PAPER_SIGMA_PS) -> np.ndarray:
    """S_jk(ν̃) (B, B, n_ν̃) in cm⁻¹: ``ir.ir_from_tcf`` of each C_jk (Gaussian window σ)."""
    c = np.asarray(c_jk)
    return np.array([[np.asarray(ir_from_tcf(c[j, k], dt_ps, volume_nm3, temperature_K, wavenumbers_cm,
                                             sigma_ps=sigma_ps))
                      for k in range(c.shape[1])] for j in range(c.shape[0])])


def combined_spectrum(coeffs, s_jk) -> np.ndarray:
    """n α(ν̃; c) = Σ_jk c_j c_k S_jk(ν̃) (cm⁻¹)."""
    c = np.asarray(coeffs, dtype=float)
    return np.einsum("j,k,jkn->n", c, c, np.asarray(s_jk))


def band_heights(values, wavenumbers_cm, bands: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Maximum of ``values`` within each band's range (cm⁻¹)."""
    x = np.asarray(wavenumbers_cm)
    return {name: float(np.max(values[(x >= lo) & (x <= hi)])) for name, (lo, hi) in bands.items()}


def fit_band_heights(s_jk, wavenumbers_cm, names: Sequence[str], start: Mapping[str, float],
                     free: Sequence[str], targets: Mapping[str, float],
                     bands: Mapping[str, tuple[float, float]] = WATER_BANDS) -> dict:
    """Coefficients whose spectrum Σ c_j c_k S_jk has band maxima ``targets`` (cm⁻¹).

    Args:
      s_jk: (B, B, n_ν̃) cross spectra (:func:`cross_spectra`) of the basis ``names``.
      start: a value for every coefficient in ``names`` (the fixed ones keep theirs).
      free: the coefficients to adjust; targets: band name → target height.
    Returns ``{"coefficients": name → value, "heights": band → fitted height, "residuals": band →
    H/H* − 1, "success": bool}``.
    """
    from scipy.optimize import least_squares

    names = list(names)
    fit_bands = {b: bands[b] for b in targets}

    def coefficients(p):
        values = dict(start)
        values.update(zip(free, p, strict=True))
        return values

    def residuals(p):
        c = coefficients(p)
        heights = band_heights(combined_spectrum([c[n] for n in names], s_jk), wavenumbers_cm, fit_bands)
        return np.array([heights[b] / targets[b] - 1.0 for b in targets])

    result = least_squares(residuals, np.array([start[f] for f in free], dtype=float), xtol=1e-12,
                           ftol=1e-12)
    final = coefficients(result.x)
    spectrum = combined_spectrum([final[n] for n in names], s_jk)
    return {"coefficients": {k: float(v) for k, v in final.items()},
            "heights": band_heights(spectrum, wavenumbers_cm, bands),
            "residuals": dict(zip(targets, residuals(result.x).tolist(), strict=True)),
            "success": bool(result.success)}
