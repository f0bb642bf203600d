"""The sampling protocol for IR spectra and diffusion of Han & Yu (arXiv 2406.18269).

    1. Langevin NVT (BAOAB, γ = 5 ps⁻¹, Δt = 0.5 fs) at T: ``equilibrate_ps`` unsaved, then
       ``nvt_ps`` during which K = ``n_windows`` states are kept, one every nvt_ps/K.
    2. From each kept state (x, v) the centre-of-mass velocity is subtracted and an NVE
       (velocity-Verlet) window of ``window_ps`` is run; with ``time_reversal`` a second window
       starts from (x, −v) — the state's past run backwards in time, which doubles the data as in
       the paper.  Frames are stored every ``sample_fs``.
    3. Per window: Ṁ(t) of each dipole model (``jax.jvp``; ``workbench.observables.dipole``), the
       TCF ⟨Ṁ(0)·Ṁ(t)⟩ for lags 0 … ``tcf_ps`` (all time origins), and the self-diffusion coefficient
       of the molecular centres of mass after removing the system's centre-of-mass motion:
       Green–Kubo D = ⅓∫_0^{W/2}⟨v(0)·v(t)⟩dt and Einstein D = slope/6 of the MSD over [W/3, 2W/3],
       W = ``window_ps`` (``workbench.observables.diffusion``).
    4. n α(ν̃) (cm⁻¹) from the window-averaged TCF with a Gaussian lag window of width ``sigma_ps``
       (``workbench.observables.ir.ir_from_tcf``, harmonic quantum correction).

Error bars treat the K starting states as the independent samples (a window and its time-reversed
partner share a state): diffusion, std of the K per-state means / √K; band positions and heights,
the jackknife over the K states (spectra from the TCFs with one state left out).

The paper's reported spectra use 160 ps of NVT, 320 states × 2 windows × 5 ps and a 2 ps TCF (preset
"paper", ≈ 6.7 million MD steps: half a day at 150 steps/s on 2 CPU cores); ``PRESETS`` also holds a
"default" that runs in a few minutes on 2 cores, the recorded benchmark's settings and a "quick" smoke
test.
Units: ps, fs (where named), K, nm, e·nm/ps, cm⁻¹.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from workbench import units
from workbench.errors import UserInputError
from workbench.md import MDConfig, MDRunner, energy_drift
from workbench.md.integrators import MDState, remove_com_velocity
from workbench.md.simulate import ProgressFn, chunk_summary
from workbench.observables import diffusion
from workbench.observables.dipole import DipoleModel, charge_flux_dipole, dipole_trajectory, qtip4pf_dipole
from workbench.observables.ir import (
    PAPER_SIGMA_PS,
    WATER_BANDS,
    band_analysis,
    ir_from_tcf,
    ir_prefactor,
    nyquist_wavenumber,
    sum_rule_integral,
)
from workbench.observables.spectrum_io import Spectrum, write_spectrum_csv
from workbench.observables.tcf import tcf, tcf_direct
from workbench.potentials.base import Potential
from workbench.system import System

__all__ = [
    "ProtocolError", "IRProtocol", "PRESETS", "Windows", "sample_starts", "run_windows",
    "run_protocol", "check_system", "window_tcfs", "start_tcfs", "spectrum_from_tcf", "jackknife_bands",
    "diffusion_summary", "sum_rule_check", "fft_vs_direct_error", "EXPERIMENT_BANDS",
    "write_spectrum_png", "DIPOLE_MODELS", "dipole_model", "spectrum_grid", "ir_report",
    "SimulatedSpectrum", "simulated_spectrum", "truncation_scan",
]

#: Upper end (cm⁻¹) of the spectrum grid; the stored frames must resolve it (Nyquist).
MAX_WAVENUMBER = 4500.0
#: Spacing (cm⁻¹) of the spectrum grid (the Gaussian window's resolution is ≈ 1/(2πcσ) ≈ 16 cm⁻¹).
GRID_STEP = 2.0

#: Bertie & Lan (1996) band maxima of liquid water at 298 K: (position cm⁻¹, n α cm⁻¹).
EXPERIMENT_BANDS = {"stretch": (3393.0, 17401.0), "bend": (1642.0, 3724.0), "libration": (618.0, 4622.0)}


#: Dipole models by CLI name.  "charge-flux" (the default): q-TIP4P/F charges whose H charges follow
#: the O–H lengths and the H–O–H angle, coefficients fitted to the experimental stretch and bend
#: heights (``dipole.charge_flux_dipole``); "qtip4pf": the force field's fixed charges, which give
#: the wrong relative intensities (stretch too weak, bend too strong).
DIPOLE_MODELS = {"charge-flux": charge_flux_dipole, "qtip4pf": qtip4pf_dipole}


class ProtocolError(UserInputError):
    """Protocol settings or a system the protocol cannot use (the message names the problem)."""


@dataclasses.dataclass(frozen=True)
class IRProtocol:
    """Settings of the NVT → NVE-windows protocol (see the module docstring).

    Attributes:
      nvt_ps: NVT sampling length (ps) over which the K starting states are spread.
      n_windows: K, the number of starting states (2K windows with ``time_reversal``).
      window_ps: length of each NVE window (ps).
      tcf_ps: TCF length (ps) used for the spectrum (≤ ``window_ps``).
      sigma_ps: width σ of the Gaussian lag window exp(−t²/2σ²) (ps).
      equilibrate_ps: unsaved NVT before sampling (ps; rounded up to whole intervals nvt_ps/K).
      time_reversal: also run each window from the state with flipped velocities.
      temperature_K: bath temperature (K); dt_fs: time step (fs); gamma: Langevin friction (1/ps).
      sample_fs: spacing of the stored frames (fs), a multiple of ``dt_fs``.
      precision: "float64" or "float32"; seed: PRNG seed of the thermostat/initial velocities.
    """

    nvt_ps: float = 2.0
    n_windows: int = 4
    window_ps: float = 1.5
    tcf_ps: float = 1.0
    sigma_ps: float = PAPER_SIGMA_PS
    equilibrate_ps: float = 0.5
    time_reversal: bool = True
    temperature_K: float = 298.15
    dt_fs: float = 0.5
    gamma: float = 5.0
    sample_fs: float = 2.0
    precision: str = "float64"
    seed: int = 0

    def __post_init__(self):
        for name in ("nvt_ps", "window_ps", "tcf_ps", "sigma_ps", "temperature_K", "dt_fs", "gamma",
                     "sample_fs"):
            if not getattr(self, name) > 0:
                raise ProtocolError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.equilibrate_ps < 0:
            raise ProtocolError(f"equilibrate_ps must be ≥ 0, got {self.equilibrate_ps}")
        if int(self.n_windows) != self.n_windows or self.n_windows < 1:
            raise ProtocolError(f"n_windows must be a positive integer, got {self.n_windows}")
        if self.precision not in ("float32", "float64"):
            raise ProtocolError(f"precision must be float32 or float64, got {self.precision!r}")
        if not _is_multiple(self.sample_fs, self.dt_fs):
            raise ProtocolError(f"sample_fs ({self.sample_fs}) must be a multiple of dt_fs ({self.dt_fs})")
        if nyquist_wavenumber(self.frame_ps) < MAX_WAVENUMBER:
            raise ProtocolError(f"frames {self.sample_fs} fs apart resolve only up to "
                                f"{nyquist_wavenumber(self.frame_ps):.0f} cm⁻¹; use sample_fs ≤ "
                                f"{1e3 / (2 * units.SPEED_OF_LIGHT_CM_PER_PS * MAX_WAVENUMBER):.2f}")
        if self.spacing_steps < 1:
            raise ProtocolError(f"nvt_ps/n_windows = {self.nvt_ps / self.n_windows:g} ps is shorter than "
                                f"one time step")
        if self.n_lags < 2:
            raise ProtocolError(f"tcf_ps ({self.tcf_ps}) must span at least one frame of {self.sample_fs} fs")
        if self.n_lags > self.window_frames:
            raise ProtocolError(f"tcf_ps ({self.tcf_ps}) must be at most window_ps − sample_fs = "
                                f"{self.window_ps - 1e-3 * self.sample_fs:g} ps: a TCF to lag τ needs "
                                f"frames beyond τ in each window of {self.window_ps} ps")

    def replace(self, **changes) -> IRProtocol:
        return dataclasses.replace(self, **changes)

    @property
    def dt_ps(self) -> float:
        return self.dt_fs * 1e-3

    @property
    def sample_every(self) -> int:
        """MD steps between stored window frames."""
        return int(round(self.sample_fs / self.dt_fs))

    @property
    def frame_ps(self) -> float:
        """Spacing of the stored frames (ps)."""
        return self.sample_every * self.dt_ps

    @property
    def spacing_steps(self) -> int:
        """NVT steps between kept starting states (nvt_ps/K)."""
        return int(round(self.nvt_ps / self.n_windows / self.dt_ps))

    @property
    def equilibration_intervals(self) -> int:
        """Unsaved NVT, in whole intervals of ``spacing_steps``."""
        return math.ceil(self.equilibrate_ps / (self.spacing_steps * self.dt_ps) - 1e-9)

    @property
    def window_frames(self) -> int:
        return int(round(self.window_ps / self.frame_ps))

    @property
    def n_lags(self) -> int:
        """TCF lags 0 … tcf_ps (frames)."""
        return int(round(self.tcf_ps / self.frame_ps)) + 1

    @property
    def n_runs(self) -> int:
        """Number of NVE windows: K, or 2K with time reversal."""
        return self.n_windows * (2 if self.time_reversal else 1)

    @property
    def md_steps(self) -> int:
        """Total MD steps: NVT (equilibration + sampling) and all NVE windows."""
        nvt = (self.equilibration_intervals + self.n_windows) * self.spacing_steps
        return nvt + self.n_runs * self.window_frames * self.sample_every


def _is_multiple(a: float, b: float) -> bool:
    return abs(a / b - round(a / b)) < 1e-9 and round(a / b) >= 1


#: Named settings.  "paper": the seed paper's reported spectra (the NVT equilibration is ours);
#: "default": a few minutes on 2 CPU cores (≈ 30,000 steps); "benchmark": the recorded
#: ``workbench bench spectrum`` run; "quick": a smoke test (≈ 1,300 steps).
PRESETS: Mapping[str, IRProtocol] = {
    "paper": IRProtocol(nvt_ps=160.0, n_windows=320, window_ps=5.0, tcf_ps=2.0, equilibrate_ps=10.0),
    "default": IRProtocol(),
    "benchmark": IRProtocol(nvt_ps=12.0, n_windows=12, window_ps=3.0, tcf_ps=1.5, equilibrate_ps=1.0),
    "quick": IRProtocol(nvt_ps=0.05, n_windows=1, window_ps=0.3, tcf_ps=0.2, equilibrate_ps=0.0),
    # the dashboard's first spectrum: ≈ 5000 steps in float32, under a minute on 2 CPU cores
    "interactive": IRProtocol(nvt_ps=0.2, n_windows=2, window_ps=0.5, tcf_ps=0.4, equilibrate_ps=0.1,
                              precision="float32"),
}


# ----------------------------------------------------------------------------------------------
# running


@dataclasses.dataclass(frozen=True)
class Windows:
    """What the NVE windows of one protocol run yield (window w ran from starting state start[w]).

    Attributes:
      mdot: dipole-model name → (W, F, 3) Ṁ in e·nm/ps, frames ``dt_ps`` apart.
      start: (W,) index of the starting state (0 … K−1); reversed: (W,) time-reversed window.
      d_green_kubo, d_einstein: (W,) per-window diffusion coefficients (nm²/ps).
      temperature_K: (W,) mean kinetic temperature of each window (K, 3N − 3 degrees of freedom).
      drift: (W,) total-energy drift (kT per atom per ps).
      dt_ps: frame spacing; box_nm: (3,) cell; bath_temperature_K: the protocol's T.
      wall_time_s: {"nvt": s, "nve": s} (MD, JIT and dipoles included).
    """

    mdot: dict[str, np.ndarray]
    start: np.ndarray
    reversed: np.ndarray
    d_green_kubo: np.ndarray
    d_einstein: np.ndarray
    temperature_K: np.ndarray
    drift: np.ndarray
    dt_ps: float
    box_nm: np.ndarray
    bath_temperature_K: float
    wall_time_s: dict

    @property
    def volume_nm3(self) -> float:
        return float(np.prod(self.box_nm))

    @property
    def n_starts(self) -> int:
        return int(self.start.max()) + 1


def check_system(system: System) -> None:
    """Raise ``ProtocolError`` unless ``system`` is water (O, H, H molecules) in a cubic box."""
    if not system.is_water():
        raise ProtocolError("the IR protocol's dipole models need a water system (molecules O, H, H)")
    if not np.allclose(system.box, system.box[0]):
        raise ProtocolError(f"the protocol needs a cubic box (Yeh–Hummer correction, isotropic TCFs); "
                            f"got edges {np.round(system.box, 4).tolist()} nm")


def _aggregate(progress: ProgressFn | None, offset: int, total: int, stage: str):
    """A per-run progress callback reporting into one bar of ``total`` steps for ``stage``."""
    if progress is None:
        return None
    return lambda done, _total, _stage: progress(offset + done, total, stage)


def sample_starts(potential: Potential, system: System, protocol: IRProtocol,
                  progress: ProgressFn | None = None) -> list[tuple[MDState, object]]:
    """Step 1: the K NVT states (MDState, pair list) kept every nvt_ps/K after the equilibration.

    Starts from ``system.velocities`` (Maxwell–Boltzmann at T when absent).
    """
    check_system(system)
    cfg = MDConfig(ensemble="nvt", temperature_K=protocol.temperature_K, dt=protocol.dt_ps,
                   gamma=protocol.gamma, sample_every=protocol.spacing_steps,
                   precision=protocol.precision, chunk_frames=1, seed=protocol.seed)
    runner = MDRunner(potential, system, cfg)
    state, nbrs = runner.init()
    key = jax.random.PRNGKey(protocol.seed + 1)
    n_eq, k = protocol.equilibration_intervals, protocol.spacing_steps
    total = (n_eq + protocol.n_windows) * k
    starts = []
    for i in range(n_eq + protocol.n_windows):
        state, nbrs, key, _ = runner.run(state, nbrs, 1, key=key,
                                         progress=_aggregate(progress, i * k, total, "NVT"))
        if i >= n_eq:
            starts.append((state, nbrs))
    return starts


def _chunk_frames(n_frames: int, target: int = 250) -> int:
    """Largest divisor of n_frames ≤ target (equal chunks: one compiled MD loop per window length)."""
    return max(d for d in range(1, min(n_frames, target) + 1) if n_frames % d == 0)


def _mdot_functions(dipoles: Mapping[str, DipoleModel], box, molecules):
    """name → jitted (params, x (F,N,3), v (F,N,3)) ↦ Ṁ (F,3); one compilation per dipole function."""
    compiled = {}
    for model in dipoles.values():
        if model.dipole_fn not in compiled:
            fn, batch = model.dipole_fn, model.metadata.get("trajectory_batch_size")
            compiled[fn] = jax.jit(lambda p, x, v, fn=fn, batch=batch: dipole_trajectory(
                fn, p, x, v, box, molecules, batch_size=batch)[1])
    return {name: compiled[m.dipole_fn] for name, m in dipoles.items()}


def _window_diffusion(x, v, masses, molecules, dt_ps: float, window_ps: float) -> tuple[float, float]:
    """(D_GK, D_Einstein) in nm²/ps of the molecular centres of one window (system COM motion removed)."""
    xc = diffusion.molecule_centres(diffusion.remove_com_drift(x, masses), masses, molecules)
    vc = diffusion.molecule_centres(diffusion.remove_com_velocity(v, masses), masses, molecules)
    n = x.shape[0]
    t_max = min(0.5 * window_ps, (n - 1) * dt_ps)
    fit = (max(window_ps / 3.0, dt_ps), max(2.0 * window_ps / 3.0, 2.0 * dt_ps))
    gk = diffusion.green_kubo_coefficient(vc, dt_ps, t_max)
    ein = diffusion.einstein_coefficient(xc, dt_ps, fit)
    return float(gk), float(ein)


def run_windows(potential: Potential, system: System, starts, protocol: IRProtocol,
                dipoles: Mapping[str, DipoleModel], progress: ProgressFn | None = None) -> Windows:
    """Steps 2–3: the NVE windows from ``starts`` (see :func:`sample_starts`); Ṁ for each dipole model."""
    check_system(system)
    cfg = MDConfig(ensemble="nve", temperature_K=protocol.temperature_K, dt=protocol.dt_ps,
                   sample_every=protocol.sample_every, precision=protocol.precision,
                   chunk_frames=_chunk_frames(protocol.window_frames), seed=protocol.seed)
    runner = MDRunner(potential, system, cfg)
    masses, molecules, box = runner.masses, np.asarray(system.molecules), runner.box
    mdot_fns = _mdot_functions(dipoles, box, molecules)
    signs = (1.0, -1.0) if protocol.time_reversal else (1.0,)
    steps = protocol.window_frames * protocol.sample_every
    total = len(starts) * len(signs) * steps
    mdot = {name: [] for name in dipoles}
    rows = []
    t0 = time.perf_counter()
    for k, (state, nbrs) in enumerate(starts):
        v0 = remove_com_velocity(state.velocities, masses)
        for s, sign in enumerate(signs):
            done = (k * len(signs) + s) * steps
            _, _, _, frames = runner.run(state._replace(velocities=sign * v0), nbrs, protocol.window_frames,
                                         progress=_aggregate(progress, done, total, "NVE windows"))
            x, v, _ = frames
            for name, model in dipoles.items():
                mdot[name].append(np.asarray(mdot_fns[name](model.params, x, v)))
            summary = chunk_summary(frames, masses, cfg)
            drift = energy_drift(summary["time_ps"], summary["total_energy"], len(masses),
                                 protocol.temperature_K)
            gk, ein = _window_diffusion(x, v, masses, molecules, protocol.frame_ps, protocol.window_ps)
            rows.append((k, sign < 0, gk, ein, float(np.mean(summary["temperature_K"])), drift))
    start, rev, gk, ein, temp, drift = (np.array(c) for c in zip(*rows, strict=True))
    return Windows({name: np.stack(m) for name, m in mdot.items()}, start, rev, gk, ein, temp, drift,
                   protocol.frame_ps, box, protocol.temperature_K, {"nve": time.perf_counter() - t0})


def run_protocol(potential: Potential, system: System, protocol: IRProtocol,
                 dipoles: Mapping[str, DipoleModel], progress: ProgressFn | None = None) -> Windows:
    """Steps 1–3: NVT sampling then the NVE windows; ``Windows.wall_time_s`` holds both stages."""
    t0 = time.perf_counter()
    starts = sample_starts(potential, system, protocol, progress)
    t_nvt = time.perf_counter() - t0
    windows = run_windows(potential, system, starts, protocol, dipoles, progress)
    return dataclasses.replace(windows, wall_time_s={"nvt": t_nvt, **windows.wall_time_s})


# ----------------------------------------------------------------------------------------------
# analysis


def window_tcfs(mdot, n_lags: int) -> np.ndarray:
    """Per-window ⟨Ṁ(0)·Ṁ(t)⟩ (W, n_lags) in (e·nm/ps)² from Ṁ (W, F, 3), all time origins (FFT)."""
    return np.stack([np.asarray(tcf(m, max_lag=n_lags)) for m in np.asarray(mdot)])


def start_tcfs(tcfs, start) -> np.ndarray:
    """TCFs averaged over the windows of each starting state: (K, n_lags)."""
    start = np.asarray(start)
    return np.stack([np.mean(tcfs[start == k], axis=0) for k in range(int(start.max()) + 1)])


def spectrum_from_tcf(c, windows: Windows, protocol: IRProtocol, grid) -> np.ndarray:
    """n α (cm⁻¹) on ``grid`` from a TCF (n_lags,) of the run (Gaussian window σ, harmonic correction)."""
    return np.asarray(ir_from_tcf(c, windows.dt_ps, windows.volume_nm3, windows.bath_temperature_K, grid,
                                  window="gaussian", sigma_ps=protocol.sigma_ps))


def jackknife_bands(tcfs_by_start, windows: Windows, protocol: IRProtocol, grid,
                    bands: Mapping[str, tuple[float, float]] = WATER_BANDS) -> dict[str, dict]:
    """Band maxima of the spectrum of the mean TCF, with jackknife errors over the K starts.

    For the leave-one-out spectra (TCF mean over K − 1 starts) giving positions p_i, the error is
    √((K−1)/K · Σ_i (p_i − p̄)²), likewise for heights; ``None`` when K = 1.
    Returns name → {position_cm-1, position_err, height_cm-1, height_err, fwhm_cm-1}.
    """
    c = np.asarray(tcfs_by_start)
    n = c.shape[0]
    full = band_analysis(grid, spectrum_from_tcf(c.mean(axis=0), windows, protocol, grid), bands)
    loo = []
    if n > 1:
        for i in range(n):
            c_i = (c.sum(axis=0) - c[i]) / (n - 1)
            loo.append(band_analysis(grid, spectrum_from_tcf(c_i, windows, protocol, grid), bands))

    def err(values):
        values = np.asarray(values)
        return float(np.sqrt((n - 1) / n * np.sum((values - values.mean()) ** 2))) if n > 1 else None

    return {name: {"position_cm-1": b.position, "position_err": err([r[name].position for r in loo]),
                   "height_cm-1": b.height, "height_err": err([r[name].height for r in loo]),
                   "fwhm_cm-1": b.fwhm}
            for name, b in full.items()}


def diffusion_summary(windows: Windows) -> dict:
    """Green–Kubo and Einstein D (m²/s) from the windows: raw (this periodic box) and Yeh–Hummer
    corrected (+ ξ k_B T/(6πηL), η = 0.890 mPa·s of real water at 298 K), mean ± std/√K over the K
    starting states (each the mean of its windows)."""
    shift = diffusion.yeh_hummer_correction(float(windows.box_nm[0]), windows.bath_temperature_K)
    out = {}
    for name, values in (("green_kubo", windows.d_green_kubo), ("einstein", windows.d_einstein)):
        per_start = np.array([values[windows.start == k].mean() for k in range(windows.n_starts)])
        err = float(np.std(per_start, ddof=1) / np.sqrt(per_start.size)) if per_start.size > 1 else None
        mean = float(per_start.mean())
        out[name] = {"raw": diffusion.to_m2_per_s(mean),
                     "yeh_hummer": diffusion.to_m2_per_s(mean + shift),
                     "err": None if err is None else diffusion.to_m2_per_s(err)}
    out["yeh_hummer_shift"] = diffusion.to_m2_per_s(shift)
    out["note"] = ("per window W: Green–Kubo ∫ VACF to W/2, Einstein MSD fit over [W/3, 2W/3] (windows "
                   "shorter than ~3 ps underestimate D); raw: this periodic box; yeh_hummer: raw + "
                   "ξ k_B T/(6π η L), η = 0.890 mPa·s (real water); err: std/√K over the K starting states")
    return out


def sum_rule_check(mdot, windows: Windows, protocol: IRProtocol) -> dict:
    """∫_0^{ν̃_Nyquist} n α dν̃ against prefactor · ⟨Ṁ²⟩/(2cV) (``ir.sum_rule_integral``) for Ṁ (W, F, 3).

    The grid has more intervals than TCF lags, so the trapezoid rule integrates the cosine series
    exactly and the relative error measures only the prefactor/transform consistency (round-off).
    Also reports the fraction of the sum rule below 4000 cm⁻¹.
    """
    c = window_tcfs(mdot, protocol.n_lags).mean(axis=0)
    nyquist = nyquist_wavenumber(windows.dt_ps)
    grid = np.linspace(0.0, nyquist, 4 * protocol.n_lags + 1)
    spec = spectrum_from_tcf(c, windows, protocol, grid)
    integral = float(np.trapezoid(spec, grid))
    expected = sum_rule_integral(float(c[0]), windows.volume_nm3, windows.bath_temperature_K)
    below = grid <= 4000.0
    return {"integral_cm-2": integral, "expected_cm-2": expected,
            "rel_err": abs(integral - expected) / expected,
            "fraction_below_4000": float(np.trapezoid(spec[below], grid[below]) / expected),
            "prefactor_cm-1": ir_prefactor(windows.bath_temperature_K)}


def fft_vs_direct_error(mdot, n_lags: int) -> dict:
    """max |TCF_FFT − TCF_direct| over lags for the windows' Ṁ (W, F, 3) (windows averaged), and C(0)."""
    series = np.moveaxis(np.asarray(mdot), 0, 1)  # (F, W, 3): the window axis is averaged
    fast = np.asarray(tcf(series, max_lag=n_lags))
    direct = np.asarray(tcf_direct(series, max_lag=n_lags))
    return {"max_abs_err": float(np.max(np.abs(fast - direct))), "c0": float(direct[0])}


def write_spectrum_png(path, grid, values, label: str, bands: Mapping[str, dict], experiment=None,
                       title: str = "") -> None:
    """Plot n α (cm⁻¹) against ν̃ with the experimental spectrum (a ``Spectrum``) and the band maxima
    (``bands``: name → {position_cm-1, height_cm-1}) marked; matplotlib's Agg backend (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(grid, values, color="C0", label=label)
    ax.plot([b["position_cm-1"] for b in bands.values()], [b["height_cm-1"] for b in bands.values()],
            "v", color="C0")
    if experiment is not None:
        keep = experiment.wavenumber <= float(np.max(grid))
        ax.plot(experiment.wavenumber[keep], experiment.values[keep], color="k", lw=1.2,
                label=f"experiment ({experiment.source.split(',')[0] or 'file'})")
        exp_bands = band_analysis(experiment.wavenumber, experiment.values,
                                  {k: WATER_BANDS[k] for k in bands if k in WATER_BANDS})
        ax.plot([b.position for b in exp_bands.values()], [b.height for b in exp_bands.values()],
                "v", color="k")
    for name, b in bands.items():
        ax.annotate(f"{name}\n{b['position_cm-1']:.0f}", (b["position_cm-1"], b["height_cm-1"]),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8, color="C0")
    ax.set_xlabel("wavenumber (cm⁻¹)")
    ax.set_ylabel("n α (cm⁻¹)")
    ax.set_xlim(0.0, float(np.max(grid)))
    ax.set_ylim(0.0, 1.15 * ax.get_ylim()[1])  # room for the band labels
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------
# one-call report (``workbench ir``)


def dipole_model(name: str) -> DipoleModel:
    """The dipole model called ``name`` in ``DIPOLE_MODELS``, or a DeePMD DeepDipole model file (.npz:
    the graph-name layout or the project's own, ``observables.deepmd_dipole``)."""
    if name in DIPOLE_MODELS:
        return DIPOLE_MODELS[name]()
    if Path(name).is_file():
        from workbench.observables.deepmd_dipole import deepmd_dipole_model

        return deepmd_dipole_model(name)
    raise ProtocolError(f"unknown dipole model {name!r}: choose one of {', '.join(DIPOLE_MODELS)} or give "
                        f"the path of a DeePMD DeepDipole .npz file")


def spectrum_grid() -> np.ndarray:
    """The report's wavenumber grid: 0, 2, …, 4500 cm⁻¹."""
    return np.arange(0.0, MAX_WAVENUMBER + 0.5 * GRID_STEP, GRID_STEP)


@dataclasses.dataclass(frozen=True)
class SimulatedSpectrum:
    """The protocol's spectrum: n α (cm⁻¹) on ``grid`` (cm⁻¹), band maxima with jackknife errors
    (and the experiment's position and height when one was given), and the windows it came from."""

    grid: np.ndarray
    values: np.ndarray
    bands: dict
    windows: Windows

    @property
    def diffusion(self) -> dict:
        """Green–Kubo and Einstein D (m²/s) of the windows (:func:`diffusion_summary`)."""
        return diffusion_summary(self.windows)


def simulated_spectrum(potential: Potential, system: System, protocol: IRProtocol, dipole_name: str,
                       experiment: Spectrum | None = None, progress: ProgressFn | None = None
                       ) -> SimulatedSpectrum:
    """Run the protocol and return n α on :func:`spectrum_grid` with band maxima (steps 1–4)."""
    model = dipole_model(dipole_name)
    windows = run_protocol(potential, system, protocol, {dipole_name: model}, progress)
    grid = spectrum_grid()
    tcfs = window_tcfs(windows.mdot[dipole_name], protocol.n_lags)
    values = spectrum_from_tcf(tcfs.mean(axis=0), windows, protocol, grid)
    bands = jackknife_bands(start_tcfs(tcfs, windows.start), windows, protocol, grid)
    if experiment is not None:
        for name, b in band_analysis(experiment.wavenumber, experiment.values,
                                     {k: WATER_BANDS[k] for k in bands}).items():
            bands[name].update({"experiment_position_cm-1": b.position, "experiment_height_cm-1": b.height})
    return SimulatedSpectrum(grid, values, bands, windows)


def truncation_scan(potential: Potential, system: System, taus_fs, protocol: IRProtocol,
                    dipole_name: str = "charge-flux", estimator: str = "adjoint",
                    progress: ProgressFn | None = None) -> dict:
    """Gradient health before a refinement: ‖dC(τ)/dθ‖ of the Ṁ TCF at lag τ for each window length
    in ``taus_fs`` (fs), θ the potential's parameters (``grad.study.divergence_study``).

    The windows start from the protocol's K NVT states (and their time-reversed partners); returns the
    study (``tau_ps``, ``grad_norm``, ...) with ``suggested_tau_ps``, the longest τ before the norm grows
    exponentially, and ``suggested_truncation_fs``.
    """
    from workbench.grad.core import VerletDynamics
    from workbench.grad.study import divergence_study
    from workbench.grad.windows import mdot_observable

    starts = sample_starts(potential, system, protocol, progress)
    masses = np.asarray(system.masses, float)
    x = np.stack([np.asarray(state.positions) for state, _ in starts])
    v = np.stack([np.asarray(remove_com_velocity(state.velocities, masses)) for state, _ in starts])
    dynamics = VerletDynamics.from_potential(potential, system, protocol.dt_ps)
    obs = mdot_observable(dipole_model(dipole_name), system.box, system.molecules)
    steps = sorted({max(1, int(round(t / protocol.dt_fs))) for t in taus_fs})
    study = divergence_study(dynamics, potential.params, x, v, steps, obs, estimator=estimator,
                             time_reversed=protocol.time_reversal, progress=progress)
    study["suggested_truncation_fs"] = study["suggested_tau_ps"] * 1e3
    return study


def ir_report(potential: Potential, system: System, protocol: IRProtocol, dipole_name: str,
              output_prefix, experiment: Spectrum | None = None, progress: ProgressFn | None = None,
              labels: Mapping[str, str] | None = None) -> dict:
    """Run the protocol, write ``PREFIX.csv`` (n α on :func:`spectrum_grid`) and ``PREFIX.png`` (overlay
    with ``experiment``), and return a JSON-ready summary: band maxima with jackknife errors (and the
    experiment's), Green–Kubo/Einstein D, NVE checks, outputs and wall times.  ``labels`` (e.g. model
    and structure names) are copied into the summary and the files' headers.
    """
    labels = dict(labels or {})
    model = dipole_model(dipole_name)
    prefix = Path(output_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = simulated_spectrum(potential, system, protocol, dipole_name, experiment, progress)
    grid, values, bands, windows = result.grid, result.values, result.bands, result.windows
    described = ", ".join(f"{k}={v}" for k, v in labels.items())
    settings = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(protocol).items())
    csv, png = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".png")
    write_spectrum_csv(Spectrum(grid, values, "n_alpha", source=f"workbench ir: {described}"), csv,
                       comments=[f"dipole: {model.name}", f"protocol: {settings}"])
    write_spectrum_png(png, grid, values, f"{labels.get('model', 'MD')}, {model.name}", bands, experiment,
                       title=f"{described}; {protocol.n_runs} NVE windows × {protocol.window_ps:g} ps")
    return {**labels, "dipole": dipole_name, "protocol": dataclasses.asdict(protocol),
            "md_steps": protocol.md_steps, "nve_windows": protocol.n_runs, "bands": bands,
            "D_m2_s": diffusion_summary(windows),
            "mean_window_temperature_K": float(np.mean(windows.temperature_K)),
            "max_abs_energy_drift_kT_per_atom_ps": float(np.max(np.abs(windows.drift))),
            "outputs": {"csv": str(csv), "png": str(png)},
            "wall_time_s": {**{k: round(v, 1) for k, v in windows.wall_time_s.items()},
                            "total": round(time.perf_counter() - t0, 1)}}
