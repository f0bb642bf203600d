"""``workbench bench twin``: the twin (known-answer) experiment of the refinement.

The target is the IR spectrum simulated with the twin-truth water model (``potentials.twin``:
q-TIP4P/F with α_r × 0.98, k_θ × 0.85, q_H × 1.03, its dipole with q_H × 1.03).  The refinement
starts from the shipped MLP when ``assets/models/`` holds one, else from q-TIP4P/F with the published
parameters (``start_model`` in the JSON says which), and trains the potential (for q-TIP4P/F: α_r,
k_θ, q_H; relative coordinates) and the dipole's q_H together, with the seed paper's IR loss
(weights 10 / 1 below / above 1000 cm⁻¹, 8.339 cm⁻¹ grid to 4000 cm⁻¹, normalised).

Spectra for the metrics come from forward-only evaluations (``Trainer.evaluate``): the truth with
``eval_repeats`` × 2K windows for the target, the starting and the refined model with the same
number of windows, the same random numbers and the same starting state (common random numbers,
so their difference is not sampling noise).  Keys:

- ``ir_loss_initial``, ``ir_loss_final``: the IR loss of the starting / refined model's evaluation
  spectrum against the target; ``ir_loss_reduction`` = 1 − final/initial;
- ``band_err_cm-1_initial``, ``band_err_cm-1_final``: mean |Δ| of the stretch, bend and libration
  maxima (``observables.ir.band_analysis``) between model and truth evaluation spectra, cm⁻¹;
- ``bands``: those maxima per model; ``params``: the trained parameters, start / final / truth;
- ``iteration_s``: mean wall time per refinement iteration after the first (JIT excluded).

Quick (2 × 2 windows of 0.1 ps, 3 iterations) measures the code path; full (4 × 2 windows of
0.2 ps, 15 iterations) is the recorded run (``benchmarks/results/twin.json``).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from workbench.models import SHIPPED_MODEL_FILES
from workbench.observables.ir import PAPER_GRID_STEP_CM, WATER_BANDS, band_analysis, wavenumber_grid
from workbench.observables.spectrum_io import Spectrum
from workbench.potentials.twin import TWIN_FACTORS, twin_dipole, twin_params
from workbench.refine import Trainer, from_dict
from workbench.refine.losses import ir_loss
from workbench.refine.parameters import named_leaves

BANDS = ("stretch", "bend", "libration")


def shipped_mlp() -> Path | None:
    """The shipped EANN water model's file, if it exists (``workbench.models.SHIPPED_MODEL_FILES``)."""
    found = [p for p in SHIPPED_MODEL_FILES.values() if p.exists()]
    return found[0] if found else None


@dataclasses.dataclass(frozen=True)
class TwinSize:
    """Size of a twin run: structure ("default": the shipped 64-water box) and q-TIP4P/F cutoff (nm,
    None: default), iterations, frames per iteration (2× windows), window length τ (fs), NVT per
    iteration and before the run (ps), learning rate (relative), evaluation repeats."""

    structure: str = "default"
    cutoff_nm: float | None = None
    iterations: int = 40
    n_windows: int = 8
    truncation_fs: float = 200.0
    sampling_ps: float = 1.0
    equilibrate_ps: float = 1.0
    lr: float = 0.01
    repeats: int = 8


#: "full" is what 2 shared CPU cores finish in about an hour; the seed paper's scale (320 windows per
#: iteration, 0.2 ps) is ``examples/water_ir_paper.toml`` and needs a GPU.
SIZES = {"full": TwinSize(iterations=15, n_windows=4, truncation_fs=200.0, sampling_ps=0.5,
                          equilibrate_ps=0.5, lr=0.01, repeats=4),
         "quick": TwinSize(iterations=3, n_windows=2, truncation_fs=100.0, sampling_ps=0.2,
                           equilibrate_ps=0.1, lr=0.01, repeats=2)}


def twin_config(size: TwinSize, run_dir: Path, model: str) -> dict:
    qtip = model in ("qtip4pf", "qtip4pf-twin")
    return {
        "run": {"iterations": size.iterations, "seed": 1, "dir": str(run_dir)},
        "system": {"structure": size.structure, "model": model,
                   **({"cutoff_nm": size.cutoff_nm} if size.cutoff_nm and qtip else {})},
        "dipole": {"model": "qtip4pf-twin" if model == "qtip4pf-twin" else "qtip4pf"},
        "md": {"dt_fs": 0.5, "equilibrate_ps": size.equilibrate_ps, "sampling_ps": size.sampling_ps,
               "n_windows": size.n_windows, "truncation_fs": size.truncation_fs,
               "window_batch": math.gcd(4, 2 * size.n_windows)},
        "loss": {"ir": {"weight": 1.0, "grid_step_cm": 0.0}},
        # an MLP's weights move in absolute coordinates: a hundredth of the relative step
        "train": {"potential": {"lr": size.lr if qtip else 0.01 * size.lr,
                                "parameterisation": "relative" if qtip else "absolute",
                                "params": ["alpha_r", "k_theta", "q_H"] if qtip else ["*"]},
                  "dipole": {"enabled": True, "lr": size.lr, "params": ["q_h"],
                             "parameterisation": "relative"}},
    }


def _bands(grid, spectrum) -> dict:
    found = band_analysis(grid, spectrum, {b: WATER_BANDS[b] for b in BANDS})
    return {b: found[b].position for b in BANDS}


def _truth(trainer: Trainer, mlp: Path | None, work: Path, size: TwinSize):
    """(evaluator, θ_truth, φ_truth): the trainer itself when it runs q-TIP4P/F (the truth differs only
    in parameters, so the compiled MD is shared), else a trainer of the twin-truth model."""
    if mlp is None:
        return trainer, twin_params(), twin_dipole().params
    truth = Trainer(from_dict(twin_config(size, work / "truth", "qtip4pf-twin")), work / "truth")
    return truth, truth.problem.potential.params, truth.problem.dipole.params


def _trained_values(trainer: Trainer, theta, phi) -> dict:
    """Trained leaves of the groups with ≤ 64 numbers: group → name → value."""
    out = {}
    for g, group in trainer.groups.items():
        if group.size <= 64:
            leaves = named_leaves(theta if g == "potential" else phi)
            out[g] = {n: np.asarray(leaves[n]).tolist() for n in group.names}
    return out


def run(quick: bool = False) -> dict:
    """``workbench bench twin [--quick]`` (see module docstring)."""
    return run_twin(SIZES["quick" if quick else "full"], mlp=shipped_mlp())


def run_twin(size: TwinSize, run_dir: str | None = None, mlp: Path | None = None) -> dict:
    """A twin experiment of the given size starting from ``mlp`` (a model file) or q-TIP4P/F;
    returns a JSON-ready dict (module docstring)."""
    model = str(mlp) if mlp is not None else "qtip4pf"
    work = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="twin_"))
    cfg = from_dict(twin_config(size, work, model))
    trainer = Trainer(cfg, work)
    repeats = size.repeats
    grid = wavenumber_grid(4000.0, PAPER_GRID_STEP_CM)
    trainer.set_ir_target(Spectrum(grid, np.ones(grid.size), source="placeholder until the truth is run"))
    evaluator, truth_theta, truth_phi = _truth(trainer, mlp, work, size)
    key = jax.random.PRNGKey(2024)
    x0, v0 = trainer.engine.initial_state()
    x_t, v_t = evaluator.engine.equilibrate(truth_theta, x0, v0, key, 2 * size.equilibrate_ps)
    truth = evaluator.evaluate(truth_theta, truth_phi, x_t, v_t, key, repeats)
    trainer.set_ir_target(Spectrum(trainer.problem.ir.grid, truth["spectrum"],
                                   source="twin truth (workbench.potentials.twin)"))
    ir = trainer.problem.ir
    theta0, phi0 = trainer.params({n: g.zeros() for n, g in trainer.groups.items()})
    key_eval = jax.random.PRNGKey(7)
    initial = trainer.evaluate(theta0, phi0, x0, v0, key_eval, repeats)
    t0 = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - t0
    final = trainer.evaluate(result.potential_params, result.dipole_params, x0, v0, key_eval, repeats)

    def loss(spectrum):
        lc = cfg.loss.ir
        return float(ir_loss(spectrum, ir.values, ir.index, lc.range_weights, lc.mode, lc.normalise))

    bands = {name: _bands(ir.grid, e["spectrum"]) for name, e in
             (("truth", truth), ("initial", initial), ("final", final))}

    def band_err(name):
        return float(np.mean([abs(bands[name][b] - bands["truth"][b]) for b in BANDS]))

    iters = result.iterations
    l0, l1 = loss(initial["spectrum"]), loss(final["spectrum"])
    return {
        "start_model": f"shipped MLP {model}" if mlp is not None else
        "qtip4pf (published parameters; no shipped MLP in assets/models)",
        "truth": "q-TIP4P/F twin: " + ", ".join(f"{n} × {f}" for n, f in TWIN_FACTORS.items())
                 + "; dipole q_H × 1.03",
        "ir_loss_initial": l0,
        "ir_loss_final": l1,
        "ir_loss_reduction": 1.0 - l1 / l0,
        "band_err_cm-1_initial": band_err("initial"),
        "band_err_cm-1_final": band_err("final"),
        "bands_cm-1": bands,
        "params": {"start": _trained_values(trainer, theta0, phi0),
                   "final": _trained_values(trainer, result.potential_params, result.dipole_params),
                   "truth": _trained_values(trainer, truth_theta, truth_phi) if mlp is None else None},
        "iterations": result.state.iteration,
        "train_loss_by_iteration": [e["loss"]["ir"] for e in iters],
        "windows_per_iteration": cfg.md.n_runs,
        "eval_windows": cfg.md.n_runs * repeats,
        "truncation_fs": cfg.md.truncation_fs,
        "iteration_s": float(np.mean([e["wall_time_s"] for e in iters[1:]])) if len(iters) > 1 else None,
        "refine_wall_s": wall,
        "rollbacks": sum(e["kind"] == "rollback" for e in result.history),
        "run_dir": str(work),
    }
