"""Fit the charge-flux coefficients a_r, a_θ (workbench.observables.dipole) on liquid q-TIP4P/F water.

    python scripts/fit_charge_flux.py [--save mdot.npz | --load mdot.npz]

Runs the IR protocol (``workbench.protocol``; q-TIP4P/F, the shipped 64-water box, 298.15 K,
settings ``FIT_PROTOCOL``) once with the four unit charge-flux models (``charge_flux_basis``), then
fits a_r and a_θ with q_H0 = 0.5564 e (q-TIP4P/F) and b_r = 0 so that the O–H stretch and H–O–H bend
maxima of n α reach Bertie & Lan's 17,401 and 3,724 cm⁻¹ (``charge_flux_fit.fit_band_heights``),
with jackknife errors over the K starting states (fits leaving one state's windows out).
Prints one JSON object: band positions and heights of fixed charges, of the current defaults and
of the fit, next to experiment.  About 100,000 MD steps (≈ 15 min on 2 loaded CPU cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from workbench import protocol as P
from workbench.models import default_system, load_potential
from workbench.observables import charge_flux_fit as fit
from workbench.observables.dipole import (
    CHARGE_FLUX_DEFAULTS,
    CHARGE_FLUX_LINEAR,
    QTIP4PF_Q_H,
    charge_flux_basis,
)
from workbench.observables.ir import band_analysis, wavenumber_grid
from workbench.progress import console_progress

FIT_PROTOCOL = P.IRProtocol(nvt_ps=8.0, n_windows=8, window_ps=2.5, tcf_ps=1.5, equilibrate_ps=0.5, seed=1)
TARGETS = {band: height for band, (_, height) in P.EXPERIMENT_BANDS.items() if band in ("stretch", "bend")}


def basis_series(save: str | None, load: str | None):
    """(basis Ṁ (4, W, F, 3), start (W,), dt_ps, box_nm, T, run info) from a new run or a saved file."""
    if load:
        data = np.load(load)
        return (data["mdot"], data["start"], float(data["dt_ps"]), data["box_nm"],
                float(data["temperature_K"]), {})
    system = default_system()
    windows = P.run_protocol(load_potential("qtip4pf", system), system, FIT_PROTOCOL, charge_flux_basis(),
                             progress=console_progress())
    mdot = np.stack([windows.mdot[c] for c in CHARGE_FLUX_LINEAR])
    if save:
        np.savez_compressed(save, mdot=mdot, start=windows.start, dt_ps=windows.dt_ps,
                            box_nm=windows.box_nm, temperature_K=windows.bath_temperature_K)
    info = {"mean_window_temperature_K": float(windows.temperature_K.mean()),
            "max_abs_drift_kT_per_atom_ps": float(np.max(np.abs(windows.drift))),
            "wall_time_s": windows.wall_time_s}
    return mdot, windows.start, windows.dt_ps, windows.box_nm, windows.bath_temperature_K, info


def fit_coefficients(mdot, dt, volume, temperature, grid, start):
    """The fit (``fit_band_heights``) on the windows ``mdot`` (4, W, F, 3) and its cross spectra."""
    c_jk = fit.cross_tcfs(mdot, FIT_PROTOCOL.n_lags)
    s_jk = fit.cross_spectra(c_jk, dt, volume, temperature, grid, FIT_PROTOCOL.sigma_ps)
    return fit.fit_band_heights(s_jk, grid, CHARGE_FLUX_LINEAR, start, ("a_r", "a_theta"), TARGETS), s_jk


def jackknife(mdot, start, dt, volume, temperature, grid, initial) -> dict:
    """Jackknife standard errors of the fitted coefficients over the starting states."""
    states = np.unique(start)
    values = np.array([[fit_coefficients(mdot[:, start != k], dt, volume, temperature, grid, initial)[0]
                        ["coefficients"][c] for c in ("a_r", "a_theta")] for k in states])
    n = len(states)
    err = np.sqrt((n - 1) / n * np.sum((values - values.mean(axis=0)) ** 2, axis=0))
    return {"a_r": float(err[0]), "a_theta": float(err[1])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", help="write the unit-model Ṁ series to this .npz")
    parser.add_argument("--load", help="fit from a saved .npz instead of running MD")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    mdot, start, dt, box, temperature, info = basis_series(args.save, args.load)
    grid = wavenumber_grid(4500.0, 2.0)
    volume = float(np.prod(box))
    fixed = {"q_h0": QTIP4PF_Q_H, "a_r": 0.0, "b_r": 0.0, "a_theta": 0.0}
    current = {"q_h0": QTIP4PF_Q_H, **CHARGE_FLUX_DEFAULTS}
    result, s_jk = fit_coefficients(mdot, dt, volume, temperature, grid, current)
    result["jackknife_err"] = jackknife(mdot, start, dt, volume, temperature, grid, current)

    def bands(coeffs):
        spectrum = fit.combined_spectrum([coeffs[c] for c in CHARGE_FLUX_LINEAR], s_jk)
        return {name: {"position_cm-1": b.position, "height_cm-1": round(b.height, 1),
                       "fwhm_cm-1": round(b.fwhm, 1)} for name, b in band_analysis(grid, spectrum).items()}

    print(json.dumps({
        "protocol": dataclasses.asdict(FIT_PROTOCOL), "windows": int(mdot.shape[1]), **info,
        "experiment": {b: {"position_cm-1": p, "height_cm-1": h} for b, (p, h) in P.EXPERIMENT_BANDS.items()},
        "fixed_charges": {"coefficients": fixed, "bands": bands(fixed)},
        "current_defaults": {"coefficients": current, "bands": bands(current)},
        "fit": {**result, "bands": bands(result["coefficients"])},
        "total_wall_time_s": round(time.perf_counter() - t0, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
