"""``workbench bench spectrum``: IR band maxima and self-diffusion of q-TIP4P/F water.

The shipped 64-water box at 298.15 K runs the protocol of ``workbench.protocol`` (preset "benchmark";
"quick" with ``--quick``).  From the same NVE windows it reports

- ``peaks_cm-1``: band maxima (stretch, bend, libration) with the charge-flux dipole (the protocol's
  default), and in ``bands`` positions, heights and FWHM with jackknife errors for both the
  charge-flux and the fixed q-TIP4P/F charges (the charge-flux model with zero flux, identical to
  ``qtip4pf_dipole``), next to experiment and classical q-TIP4P/F literature values;
- ``sum_rule_rel_err``: |∫_0^{ν̃_Nyquist} n α dν̃ − prefactor⟨Ṁ²⟩/(2cV)| / (prefactor⟨Ṁ²⟩/(2cV));
- ``fft_vs_direct_max_abs_err``: max over lags of |TCF by FFT − TCF by direct sum| of the run's Ṁ,
  in (e·nm/ps)² (``tcf_c0`` = ⟨Ṁ²⟩ for scale);
- ``D_m2_s``: Green–Kubo and Einstein D of the molecular centres, "raw" (this periodic box) and
  "yeh_hummer" (+ ξk_BT/(6πηL), η of real water), ± std/√K over the K starting states.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from workbench import protocol as P
from workbench.models import default_system, load_potential
from workbench.observables.dipole import charge_flux_dipole

#: Classical q-TIP4P/F MD (DESIGN.md; Habershon et al. 2009): band maxima (cm⁻¹) and D (m²/s).
LITERATURE_QTIP4PF = {"stretch": 3600.0, "bend": 1650.0, "libration": 710.0, "D_m2_s": [2.2e-9, 2.3e-9]}
EXPERIMENT_D_M2_S = 2.30e-9  # Holz et al. 2000, 298.15 K


def run(quick: bool) -> dict:
    system = default_system()
    potential = load_potential("qtip4pf", system)
    protocol = P.PRESETS["quick" if quick else "benchmark"]
    dipoles = {"charge_flux": charge_flux_dipole(),
               "fixed_charges": charge_flux_dipole(a_r=0.0, b_r=0.0, a_theta=0.0)}
    windows = P.run_protocol(potential, system, protocol, dipoles)
    grid = P.spectrum_grid()
    bands = {name: P.jackknife_bands(P.start_tcfs(P.window_tcfs(windows.mdot[name], protocol.n_lags),
                                                  windows.start), windows, protocol, grid)
             for name in dipoles}
    sum_rule = P.sum_rule_check(windows.mdot["charge_flux"], windows, protocol)
    fft = P.fft_vs_direct_error(windows.mdot["charge_flux"], protocol.n_lags)
    diffusion = P.diffusion_summary(windows)
    diffusion["experiment"] = EXPERIMENT_D_M2_S
    return {
        "model": "qtip4pf",
        "system": f"shipped box, {system.n_atoms // 3} waters, L = {system.box[0]:.4f} nm",
        "temperature_K": protocol.temperature_K, "protocol": dataclasses.asdict(protocol),
        "md_steps": protocol.md_steps, "nve_windows": protocol.n_runs,
        "peaks_cm-1": {b: v["position_cm-1"] for b, v in bands["charge_flux"].items()},
        "bands": bands,
        "experiment": {b: {"position_cm-1": p, "height_cm-1": h} for b, (p, h) in P.EXPERIMENT_BANDS.items()},
        "literature_qtip4pf_classical": LITERATURE_QTIP4PF,
        "sum_rule_rel_err": sum_rule["rel_err"], "sum_rule": sum_rule,
        "fft_vs_direct_max_abs_err": fft["max_abs_err"], "tcf_c0": fft["c0"],
        "D_m2_s": diffusion,
        "nve_mean_temperature_K": float(np.mean(windows.temperature_K)),
        "nve_max_abs_drift_kT_per_atom_ps": float(np.max(np.abs(windows.drift))),
        "md_wall_time_s": {k: round(v, 1) for k, v in windows.wall_time_s.items()},
    }
