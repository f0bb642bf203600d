r"""``workbench bench twin [--quick]``: the twin (known-answer) experiment of the refinement.

The target is the IR spectrum n·α(ν̃) simulated with the twin-truth water model (``potentials.twin``:
q-TIP4P/F with α_r × 0.98, k_θ × 0.85, q_H × 1.03, its point-charge dipole with q_H × 1.03).  The
refinement starts from q-TIP4P/F with the published parameters and trains exactly the changed ones:
the potential's α_r, k_θ, q_H and the dipole's q_H, in relative coordinates θ = θ₀(1 + u), so the
answer is known, u* = (−0.02, −0.15, +0.03; +0.03).  The loss is the seed paper's IR loss (weights
10 / 1 below / above 1000 cm⁻¹ on the 8.339 cm⁻¹ grid to 4000 cm⁻¹, normalised by Σ w I_target²).
The shipped MLP is not the start: the truth would need its own compiled q-TIP4P/F MD next to the
MLP's (the quick run could not fit in 60 s), and the MLP's 10⁴ weights cannot express the truth
exactly, so the known answer would be lost (refine it with ``workbench refine`` and
``system.model = "eann-water"``).

Evaluation.  Truth, start and refined model are each evaluated forward only (``Trainer.evaluate``:
``repeats`` × (NVT sampling, 2K windows)) from the same state with the same random numbers
(common random numbers), so their differences are due to the parameters, not to sampling noise.
The truth's evaluation spectrum is the refinement's target.  Keys:

- ``ir_loss_initial``, ``ir_loss_final``: IR loss of the start / refined evaluation spectrum against
  the target; ``ir_loss_reduction`` = 1 − final/initial;
- ``band_err_cm-1_initial``, ``band_err_cm-1_final``: mean over stretch, bend and libration of
  |ν̃_max(model) − ν̃_max(truth)| (``observables.ir.band_analysis`` on the loss grid), cm⁻¹;
- ``bands_cm-1``: those maxima per model; ``params``: the trained parameters, start / final / truth;
- ``iteration_s``: mean wall time of the refinement iterations after the first (JIT excluded);
- ``status``: "completed", or "stopped" when ``budget_s`` ran out (``iterations`` says how many ran).

Time.  A quick run is mostly compilation: the window gradient (the adjoint VJP through q-TIP4P/F
with Ewald sums) takes ≈ 33 s of CPU time (12 s tracing, 21 s XLA), the NVE windows ≈ 8 s, the
NVT sampler ≈ 7 s.  The gradient is traced and compiled on a second thread (XLA releases the GIL)
while the first thread compiles and runs the truth's and the start's MD.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np

from workbench.bench import override
from workbench.observables.ir import PAPER_GRID_STEP_CM, WATER_BANDS, band_analysis, wavenumber_grid
from workbench.observables.spectrum_io import Spectrum
from workbench.potentials.twin import TWIN_FACTORS, twin_dipole, twin_params
from workbench.refine import ConsoleProgress, Trainer, from_dict
from workbench.refine.parameters import named_leaves

BANDS = ("stretch", "bend", "libration")
#: Trained leaves per group and their twin-truth factors (the dipole's q_H follows the potential's).
TRAINED = {"potential": dict(TWIN_FACTORS), "dipole": {"q_h": TWIN_FACTORS["q_H"]}}


@dataclasses.dataclass(frozen=True)
class TwinSize:
    """Size of a twin run: iterations; starting frames per iteration K (2K windows with time
    reversal); window length τ (fs); NVT per iteration (ps, split over ``replicas`` chains run side by
    side, K/replicas frames each); NVT before the refinement and before each evaluation (ps); Adam
    learning rate (relative units per iteration) and its schedule (``optimizer.schedule``: "constant"
    or "cosine" to lr/10); evaluation repeats (each K frames); a wall-time budget of the refinement
    (s, 0: none), after which it stops between windows and the refined model is evaluated as it is."""

    iterations: int
    n_windows: int
    truncation_fs: float
    sampling_ps: float
    equilibrate_ps: float
    lr: float
    schedule: str
    repeats: int
    replicas: int = 1
    budget_s: float = 0.0


#: "full" is the recorded run (benchmarks/results/twin.json), a GPU job: 24 iterations of 128 windows
#: from 32 NVT chains, 5.7 s each on one H200, 181 s in all with compilation (on 2 CPU cores about an
#: hour per iteration, scaled from session 5's 127 s for 4 windows); "quick" the same code path at the
#: smallest size that still refines (under a minute on a CPU, JIT included).
SIZES = {"full": TwinSize(iterations=24, n_windows=64, truncation_fs=200.0, sampling_ps=16.0,
                          equilibrate_ps=1.0, lr=0.015, schedule="cosine", repeats=2, replicas=32),
         "quick": TwinSize(iterations=1, n_windows=1, truncation_fs=100.0, sampling_ps=0.05,
                           equilibrate_ps=0.0, lr=0.02, schedule="constant", repeats=1)}


def twin_config(size: TwinSize, run_dir: Path) -> dict:
    """The refinement config of a twin run (TOML tables as a dict)."""
    return {
        "run": {"iterations": size.iterations, "seed": 1, "dir": str(run_dir), "precision": "float64",
                "plots": False},
        "system": {"structure": "default", "model": "qtip4pf"},
        "dipole": {"model": "qtip4pf"},
        "md": {"dt_fs": 0.5, "equilibrate_ps": size.equilibrate_ps, "sampling_ps": size.sampling_ps,
               "n_windows": size.n_windows, "replicas": size.replicas, "truncation_fs": size.truncation_fs,
               "window_batch": 2 * size.n_windows},
        "loss": {"ir": {"weight": 1.0, "grid_step_cm": 0.0}},
        "train": {g: {"enabled": True, "lr": size.lr, "params": list(names), "parameterisation": "relative"}
                  for g, names in TRAINED.items()},
        "optimizer": {"name": "adam", "schedule": size.schedule},
    }


def truth_coordinates(trainer: Trainer) -> dict:
    """u* with θ(u*) = the twin truth (``potentials.twin``), in the trainer's relative coordinates.

    Built through the trainer's own groups, the truth's parameter pytrees have exactly the start's
    types, so truth and model share every compiled program.
    """
    u = {g: {n: np.float64(f - 1.0) for n, f in TRAINED[g].items()} for g in trainer.groups}
    theta, phi = trainer.params(u)
    for tree, reference in ((theta, twin_params()), (phi, twin_dipole().params)):
        for name, value in named_leaves(reference).items():
            got = named_leaves(tree)[name]
            if not np.allclose(got, value, rtol=1e-12):
                raise RuntimeError(f"twin truth {name}: {got} ≠ {value} (potentials.twin)")
    return u


def _compile_gradient_ahead(trainer: Trainer, theta, phi, positions, velocities) -> threading.Thread:
    """Trace and compile the window-gradient program for one batch of windows on a second thread.

    The arguments are shaped like the batches the refinement passes (``md.window_batch`` windows
    from ``positions``), so the refinement finds the program in JAX's in-memory cache.
    """
    engine, batch = trainer.engine, trainer.config.md.batch
    x = np.broadcast_to(positions, (batch, *np.shape(positions))).astype(engine.dtype)
    v = np.broadcast_to(velocities, (batch, *np.shape(velocities))).astype(engine.dtype)
    pairs = engine.pairs_for(x)

    thread = threading.Thread(target=engine.compile_gradient, args=(theta, phi, x, v, pairs),
                              name="twin-gradient-compile", daemon=True)
    thread.start()
    return thread


def _bands(grid, spectrum) -> dict:
    found = band_analysis(grid, spectrum, {b: WATER_BANDS[b] for b in BANDS})
    return {b: found[b].position for b in BANDS}


def _trained_values(trainer: Trainer, u) -> dict:
    """group → name → value of the trained leaves at coordinates ``u``."""
    trees = dict(zip(("potential", "dipole"), trainer.params(u), strict=True))
    return {g: {n: float(named_leaves(trees[g])[n]) for n in group.names}
            for g, group in trainer.groups.items()}


def run(quick: bool = False, settings=()) -> dict:
    """``workbench bench twin [--quick] [--set FIELD=VALUE ...]`` (see module docstring): the full or
    quick size with ``TwinSize`` fields overridden, e.g. ``--set n_windows=8`` on a CPU."""
    size = TwinSize(**override(dataclasses.asdict(SIZES["quick" if quick else "full"]), settings, "twin"))
    if jax.default_backend() == "cpu" and size.n_windows * size.iterations > 64:
        print(f"twin: {size.iterations} iterations × {2 * size.n_windows} windows is a GPU job; on this CPU "
              f"expect about {size.iterations * size.n_windows / 2 * 127 / 3600:.0f} h (127 s per 4 windows "
              "measured on 2 cores); --quick, or --set n_windows=N --set iterations=M, runs a smaller one",
              file=sys.stderr)
    return run_twin(size)


def run_twin(size: TwinSize, run_dir: str | None = None) -> dict:
    """A twin experiment of the given size; returns a JSON-ready dict (module docstring)."""
    work = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="twin_"))
    cfg = from_dict(twin_config(size, work))
    deadline = []  # the refinement's, set while it runs: the evaluations are never cut short

    def out_of_time() -> bool:
        return bool(deadline) and time.perf_counter() > deadline[0]

    trainer = Trainer(cfg, work, [ConsoleProgress()], stop_requested=out_of_time)
    grid = wavenumber_grid(4000.0, PAPER_GRID_STEP_CM)
    trainer.set_ir_target(Spectrum(grid, np.ones(grid.size), source="placeholder until the truth is run"))
    u0 = {n: g.zeros() for n, g in trainer.groups.items()}
    u_truth = truth_coordinates(trainer)
    x0, v0 = trainer.engine.initial_state()
    compiling = _compile_gradient_ahead(trainer, *trainer.params(u0), x0, v0)

    key_eq, key_eval = jax.random.split(jax.random.PRNGKey(2024))

    def evaluate(u, name):
        t = time.perf_counter()
        theta, phi = trainer.params(u)
        x, v = trainer.engine.equilibrate(theta, x0, v0, key_eq, size.equilibrate_ps)
        out = trainer.evaluate(theta, phi, x, v, key_eval, size.repeats)
        print(f"twin: {name} evaluated ({size.repeats} × {cfg.md.n_runs} windows) in "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
        return out

    truth = evaluate(u_truth, "truth")
    trainer.set_ir_target(Spectrum(trainer.problem.ir.grid, truth["spectrum"],
                                   source="twin truth (workbench.potentials.twin)"))
    initial = evaluate(u0, "start")
    compiling.join()
    t0 = time.perf_counter()
    if size.budget_s > 0:
        deadline.append(t0 + size.budget_s)
    result = trainer.run()
    deadline.clear()
    wall = time.perf_counter() - t0
    # plain host values: the start's types, no recompilation; the start if no state was kept
    u_final = jax.device_get(result.state.u) if result.state else u0
    final = evaluate(u_final, "refined model")

    grid = trainer.problem.ir.grid
    bands = {name: _bands(grid, e["spectrum"]) for name, e in
             (("truth", truth), ("initial", initial), ("final", final))}

    def band_err(name):
        return float(np.mean([abs(bands[name][b] - bands["truth"][b]) for b in BANDS]))

    iters = result.iterations
    l0, l1 = initial["terms"]["ir"], final["terms"]["ir"]  # evaluated against the truth's spectrum
    return {
        "start_model": "q-TIP4P/F, published parameters (Habershon et al. 2009)",
        "trained": {g: sorted(names) for g, names in TRAINED.items()},
        "parameterisation": "relative: theta = theta0 * (1 + u)",
        "truth": "q-TIP4P/F twin: " + ", ".join(f"{n} × {f}" for n, f in TWIN_FACTORS.items())
                 + f"; dipole q_h × {TRAINED['dipole']['q_h']}",
        "ir_loss_initial": l0,
        "ir_loss_final": l1,
        "ir_loss_reduction": 1.0 - l1 / l0,
        "band_err_cm-1_initial": band_err("initial"),
        "band_err_cm-1_final": band_err("final"),
        "bands_cm-1": bands,
        "params": {"start": _trained_values(trainer, u0), "final": _trained_values(trainer, u_final),
                   "truth": _trained_values(trainer, u_truth)},
        "size": dataclasses.asdict(size),
        "iterations": result.iteration,
        "status": result.status,
        "train_loss_by_iteration": [e["loss"]["ir"] for e in iters],
        "windows_per_iteration": cfg.md.n_runs,
        "eval_windows": cfg.md.n_runs * size.repeats,
        "truncation_fs": cfg.md.truncation_fs,
        "precision": cfg.run.precision,
        "iteration_s": float(np.mean([e["wall_time_s"] for e in iters[1:]])) if len(iters) > 1 else None,
        "refine_wall_s": wall,
        "rollbacks": sum(e["kind"] == "rollback" for e in result.history),
        "run_dir": str(work),
    }
