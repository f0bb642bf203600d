"""``workbench bench grad``: the adjoint against direct AD on truncated windows, and the
chaotic-divergence study.

``run(quick)`` measures, on the windowed loss of the refinement (K frames, each integrated forward
and time-reversed for n steps, loss of the per-step observable through TCF → spectrum):

- ``adjoint_vs_direct_rel_err``: ‖g_adjoint − g_direct‖ / ‖g_direct‖ (float64);
- ``adjoint_cost_ratio``: wall time of loss + gradient with the adjoint ÷ wall time of the loss
  alone (forward windows, TCF, spectrum), same inputs, after JIT warm-up (best of 3 calls);
  ``direct_cost_ratio`` the same for direct AD (one call; one window at a time in the full run).
  Each backward step of the adjoint needs the force F(x_n) (to reconstruct the state) and one
  Hessian-vector product H·w (the x-part of its adjoint equation), which it takes as the tangent
  of a forward-over-reverse linearisation whose primal is F(x_n); where the force dominates a step
  the ratio cannot go below 1 + ``force_hvp_over_force`` (the θ-part and the observable add more);
- ``force_hvp_over_force``: wall time of F with its directional derivative (F and H·w by
  ``jax.jvp`` of the force, w a unit random direction) at one frame ÷ wall time of F alone
  (interleaved, best of 10);
- ``adjoint_mem_ratio_10x`` / ``direct_mem_ratio_10x``: peak memory of the compiled loss-and-
  gradient for windows 10× longer ÷ that for the short windows.  Peak = ``temp_size_in_bytes`` +
  ``argument_size_in_bytes`` + ``output_size_in_bytes`` − ``alias_size_in_bytes`` of
  ``jax.jit(f).lower(...).compile().memory_analysis()`` (XLA's static buffer assignment; the
  fields are also reported);
- ``reversal_err``: the adjoint's reversal error, max |Δx| (nm) over windows at the start state.

Full: 64 q-TIP4P/F waters (the shipped 298 K box, Ewald), Ṁ of the q-TIP4P/F charges, the seed
paper's IR loss (0.2 ps TCF, Gaussian window σ = 1/3 ps, 8.339 cm⁻¹ grid from 8.3 to 4000 cm⁻¹,
weight 10 below 1000 cm⁻¹) against the Bertie & Lan spectrum; 2 frames → 4 windows of 400 steps (0.5 fs);
memory for 400 vs 4000 steps.  Quick (< 60 s on 2 cores): 64 Lennard-Jones argon atoms with a
fictitious ±1 e charge current as observable and a spectrum-like loss of its TCF, 4 windows of
100 steps (4 fs), memory for 100 vs 1000 steps.

``python -m workbench.bench_grad OUT_DIR`` writes ``grad.json`` (full run) and
``divergence_study.{json,png}`` there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from workbench.bench import best_time
from workbench.bench_speed import interleaved_best_ms
from workbench.devices import peak_bytes
from workbench.grad import (
    TrajectoryLoss,
    VerletDynamics,
    divergence_study,
    mdot_observable,
    plot_divergence,
    sample_frames,
    tree_relative_error,
    window_starts,
)
from workbench.grad.study import DEFAULT_MAX_POWER
from workbench.md.integrators import maxwell_boltzmann, remove_com_velocity
from workbench.observables import ir
from workbench.potentials.base import all_pairs
from workbench.potentials.lennard_jones import lennard_jones

TEMPERATURE_K = 298.15


def _memory(objective: TrajectoryLoss, args) -> dict:
    stats = objective.loss_and_grad.lower(*args).compile().memory_analysis()
    fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes")
    return {"peak_bytes": peak_bytes(stats), **{f: int(getattr(stats, f)) for f in fields}}


# ----------------------------------------------------------------------------------------------
# systems


def _lj_case(n_steps: int):
    """64 argon atoms (jittered simple-cubic lattice, 1.4 g/cm³, 120 K), charge-current observable."""
    n, a = 4, 0.53
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a + 0.1
    masses = np.full(len(grid), 39.948)
    pot = lennard_jones()
    dt = 0.004
    dyn = VerletDynamics(pot.energy_fn, np.full(3, n * a), masses, dt)
    rng = np.random.default_rng(0)
    x = np.stack([grid + rng.normal(scale=0.01, size=grid.shape) for _ in range(2)])
    v = np.stack([np.asarray(maxwell_boltzmann(jax.random.PRNGKey(k), masses, 120.0)) for k in range(2)])
    charges = jnp.asarray(np.where(np.arange(len(grid)) % 2 == 0, 1.0, -1.0))[:, None]

    def obs(state):
        return jnp.sum(charges * state.velocities, axis=0)

    grid_cm = ir.wavenumber_grid(200.0, 2.0)

    def loss(current):
        c = jnp.mean(jnp.sum(current[:, :1] * current, axis=-1), axis=0)
        spectrum = ir.cosine_transform(c * ir.window_function(dt * jnp.arange(c.shape[0]), "gaussian", 0.2),
                                       dt, grid_cm)
        return jnp.sum(spectrum**2)

    desc = f"64 LJ argon atoms, {n_steps} steps × 4 windows (dt 4 fs), ±1 e charge-current TCF loss"
    return dyn, pot.params, x, v, all_pairs(len(grid)), obs, loss, desc


def _water_frames(potential, system, n_frames: int, spacing_ps: float, dt: float, seed: int = 0):
    """Frames (positions, velocities without centre-of-mass motion) from BAOAB NVT at 298.15 K."""
    from workbench.md import MDConfig, simulate

    cfg = MDConfig(ensemble="nvt", temperature_K=TEMPERATURE_K, dt=dt, gamma=5.0,
                   sample_every=int(round(spacing_ps / dt)), seed=seed)
    traj = simulate(potential, system, n_frames * cfg.sample_every, cfg, equilibration_steps=cfg.sample_every)
    x, v = sample_frames(traj.positions, traj.velocities, n_frames)
    v = np.asarray(remove_com_velocity(jnp.asarray(v), traj.masses))
    return x, v


def _water_system():
    from workbench.models import default_system
    from workbench.potentials.qtip4pf import qtip4pf

    system = default_system()
    return system, qtip4pf(system)


def force_hvp_costs(dyn: VerletDynamics, params, x, pairs, repeats: int = 10) -> dict:
    """Best wall times (ms) of F(x) and of (F(x), H(x)·w) by ``jax.jvp`` of the force (the adjoint's
    reconstruct-and-HVP work of one backward step), w a fixed unit random direction."""
    x, pairs = jnp.asarray(x), jnp.asarray(pairs)
    box = jnp.asarray(dyn.box, x.dtype)
    w = jax.random.normal(jax.random.PRNGKey(0), x.shape, x.dtype)
    w = w / jnp.linalg.norm(w)
    force = jax.jit(lambda y: -jax.grad(dyn.energy_fn, argnums=1)(params, y, box, pairs))
    hvp = jax.jit(lambda y: jax.jvp(force, (y,), (w,)))
    return interleaved_best_ms({"force": (force, (x,)), "force_hvp": (hvp, (x,))}, repeats)


def ir_loss(system, n_steps: int, dt: float):
    """The seed paper's IR loss of windows' Ṁ (W, n + 1, 3) against Bertie & Lan:
    Σ w (nα − nα_exp)² on the 8.339 cm⁻¹ grid to 4000 cm⁻¹, w = 10 below 1000 cm⁻¹, TCF length n Δt."""
    from workbench.observables.spectrum_io import reference_water_ir

    grid_cm = ir.wavenumber_grid(4000.0, start_cm=ir.PAPER_GRID_STEP_CM)  # the data start at 0.97 cm⁻¹
    target = jnp.asarray(reference_water_ir().interpolate(grid_cm))
    weight = jnp.asarray(np.where(grid_cm < 1000.0, 10.0, 1.0))
    tau = n_steps * dt

    def loss(mdot):
        spectrum = ir.ir_spectrum(mdot, dt, system.volume, TEMPERATURE_K, grid_cm, tcf_length_ps=tau)
        return jnp.sum(weight * (spectrum - target) ** 2)

    return loss


def _water_case(n_steps: int):
    """64 q-TIP4P/F waters, Ṁ of the q-TIP4P/F charges, the paper's IR loss against experiment."""
    from workbench.observables.dipole import qtip4pf_dipole

    dt = 0.0005
    system, pot = _water_system()
    x, v = _water_frames(pot, system, 2, 0.5, dt)
    dyn = VerletDynamics.from_potential(pot, system, dt)
    obs = mdot_observable(qtip4pf_dipole(), system.box, system.molecules)
    desc = (f"64 q-TIP4P/F waters (Ewald), {n_steps} steps × 4 windows (dt 0.5 fs), IR loss "
            f"({n_steps * dt} ps TCF) vs Bertie & Lan")
    return dyn, pot.params, x, v, all_pairs(system.n_atoms), obs, ir_loss(system, n_steps, dt), desc


# ----------------------------------------------------------------------------------------------


def run(quick: bool = False) -> dict:
    """The grad benchmark (see module docstring); returns a JSON-ready dict."""
    n_short = 100 if quick else 400
    repeats = 3
    dyn, params, frames_x, frames_v, pairs, obs, loss, desc = (_lj_case if quick else _water_case)(n_short)
    x, v = window_starts(frames_x, frames_v)
    args = (params, x, v, pairs)

    adjoint = TrajectoryLoss(dyn, n_short, obs, loss, "adjoint")
    # direct AD stores every step (≈ 4 GB per 64-water window): one window at a time in the full run
    direct = TrajectoryLoss(dyn, n_short, obs, loss, "direct", batch_size=None if quick else 1)
    res_adj = adjoint.loss_and_grad(*args)
    t_grad = best_time(adjoint.loss_and_grad, args, repeats)
    t_fwd = best_time(adjoint.loss, args, repeats)
    res_dir = direct.loss_and_grad(*args)  # also the warm-up of the single timed call below
    t_direct = best_time(direct.loss_and_grad, args, 1)

    def loss_long(obs_windows):  # the 10× longer windows: same loss on their first n_short + 1 rows
        return loss(obs_windows[:, : n_short + 1])

    mem = {}
    for kind in ("adjoint", "direct"):
        mem[kind] = {"short": _memory(TrajectoryLoss(dyn, n_short, obs, loss, kind), args),
                     "long": _memory(TrajectoryLoss(dyn, 10 * n_short, obs, loss_long, kind), args)}
    ratio = {k: m["long"]["peak_bytes"] / m["short"]["peak_bytes"] for k, m in mem.items()}
    diag = jax.device_get(res_adj.diagnostics)
    costs = force_hvp_costs(dyn, params, frames_x[0], pairs)
    return {
        "system": desc,
        "precision": "float64",
        "n_steps": n_short,
        "n_windows": int(x.shape[0]),
        "adjoint_vs_direct_rel_err": float(tree_relative_error(res_adj.grad, res_dir.grad)),
        "adjoint_cost_ratio": t_grad / t_fwd,
        "direct_cost_ratio": t_direct / t_fwd,
        "force_hvp_over_force": costs["force_hvp"] / costs["force"],
        "force_ms": costs["force"],
        "adjoint_mem_ratio_10x": ratio["adjoint"],
        "direct_mem_ratio_10x": ratio["direct"],
        "reversal_err": float(diag.reversal_error[0]),
        "reversal_err_velocity_nm_per_ps": float(diag.reversal_error[1]),
        "loss_and_grad_adjoint_s": t_grad,
        "loss_forward_s": t_fwd,
        "grad_norm": float(diag.grad_norm),
        "max_displacement_nm": float(diag.max_displacement),
        "memory_bytes": mem,
        "memory_definition": "temp + argument + output − alias (XLA CompiledMemoryStats)",
    }


def divergence_study_water(taus_fs=(25, 50, 100, 200, 400, 600, 800, 1000), n_frames: int = 2,
                           dt_ps: float = 0.0005) -> dict:
    """‖d C_ṀṀ(τ)/dθ‖ for 64 q-TIP4P/F waters against the window length τ (adjoint, float64).

    θ: the 9 q-TIP4P/F parameters; L = C(τ) = mean over windows of Ṁ(0)·Ṁ(τ) (q-TIP4P/F charges);
    frames 1 ps apart from BAOAB NVT (298.15 K, γ = 5 ps⁻¹) started from the shipped 298 K box,
    centre-of-mass velocity removed, each window also time-reversed; all pairs.
    """
    from workbench.observables.dipole import qtip4pf_dipole

    system, pot = _water_system()
    t0 = time.perf_counter()
    x, v = _water_frames(pot, system, n_frames, 1.0, dt_ps)
    sampling_s = time.perf_counter() - t0
    dyn = VerletDynamics.from_potential(pot, system, dt_ps)
    obs = mdot_observable(qtip4pf_dipole(), system.box, system.molecules)
    steps = [int(round(t * 1e-3 / dt_ps)) for t in taus_fs]
    study = divergence_study(dyn, pot.params, x, v, steps, obs)
    study.update({
        "system": f"64 q-TIP4P/F waters, shipped 298 K box ({float(system.box[0]):.4f} nm), Ewald, all pairs",
        "loss": "C(τ) = mean over windows of Ṁ(0)·Ṁ(τ) in (e·nm/ps)², q-TIP4P/F charges",
        "parameters": "q-TIP4P/F (9)", "estimator": "adjoint", "precision": "float64",
        "n_windows": 2 * n_frames, "dt_ps": dt_ps, "sampling_wall_s": sampling_s,
        "criterion": "suggest_truncation: start of the final run of intervals whose local power-law "
                     f"exponent d ln‖g‖/d ln τ exceeds {DEFAULT_MAX_POWER}",
    })
    return study


def main(argv=None) -> None:
    from workbench.bench import environment
    from workbench.bench import run as run_benchmark

    out = Path((argv if argv is not None else sys.argv[1:] or ["benchmarks/results"])[0])
    out.mkdir(parents=True, exist_ok=True)
    result = run_benchmark("grad", quick=False)
    (out / "grad.json").write_text(json.dumps(result, indent=2) + "\n")
    study = {**divergence_study_water(), "environment": environment()}
    (out / "divergence_study.json").write_text(json.dumps(study, indent=2) + "\n")
    plot_divergence(study, out / "divergence_study.png",
                    title="64 q-TIP4P/F waters: ‖dC_ṀṀ(τ)/dθ‖ (adjoint, float64)")


if __name__ == "__main__":
    main()
