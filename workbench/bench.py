"""``workbench bench NAME`` benchmarks.  Each returns one flat-ish dict (printed as JSON).

Contract (DESIGN.md): ``--quick`` finishes in under 60 s on 2 CPU cores, JIT included, and measures
the real code path at a smaller size; full runs are recorded in benchmarks/results/NAME.json with
the machine, jax version and date (``environment()`` below).
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.errors import UserInputError


def environment() -> dict:
    from workbench.cli import _cpu_model

    return {"cpu": _cpu_model(), "cores": _cores(), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}


def best_time(fn, args, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (compilation)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _block(tree):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a,
                                  tree)


# ---------------------------------------------------------------------------------------------
# md: our MD loop vs jax-md's own simulate.nve with the same energy function and pair list


def bench_md(quick: bool) -> dict:
    from jax_md import partition, simulate, space

    from workbench.md import energy_drift
    from workbench.models import benchmark_water

    system, potential, model_name = benchmark_water()
    steps = 400 if quick else 4000
    precisions = ["float64"] if quick else ["float32", "float64"]  # the last one is the headline
    out = {"atoms": system.n_atoms, "model": model_name, "steps": steps, "dt_fs": 0.5}
    per_precision = {}
    for precision in precisions:
        ours, frames, runner, v0 = time_our_md(potential, system, precision, steps)
        cfg, dtype = runner.config, runner.config.dtype
        pos, vel, pe = frames
        ke = 0.5 * np.sum(runner.masses[None, :, None] * vel.astype(float) ** 2, axis=(1, 2))
        t = np.arange(1, len(pe) + 1) * cfg.dt * cfg.sample_every
        drift = energy_drift(t, pe + ke, system.n_atoms, 298.15)

        # jax-md's own NVE loop, same energy function, same pair-list cutoff/skin and format.
        box = jnp.asarray(system.box, dtype)
        displacement, shift = space.periodic(box)
        nbr_fn = partition.neighbor_list(displacement, box, potential.cutoff, dr_threshold=cfg.skin,
                                         format=partition.NeighborListFormat.OrderedSparse)
        params = potential.params

        def energy(r, neighbor, params=params, box=box):
            return potential.energy_fn(params, r, box, neighbor.idx)

        init_fn, apply_fn = simulate.nve(energy, shift, cfg.dt)
        r0 = jnp.mod(jnp.asarray(system.positions, dtype), box)
        nbrs_j = nbr_fn.allocate(r0)
        masses = jnp.asarray(system.masses, dtype)[:, None]
        js = init_fn(jax.random.PRNGKey(0), r0, kT=0.0, mass=masses, neighbor=nbrs_j)
        js = js.set(momentum=masses * v0)

        jaxmd_loop = jax.jit(_jaxmd_nve_loop(apply_fn, steps))
        result = {"steps_per_s": ours, "drift_kT_per_atom_per_ps": drift}
        try:
            _block(jaxmd_loop(js, nbrs_j))
        except TypeError as err:
            # jax-md 0.2.29's neighbour-list update fails to trace in float32 with x64 enabled
            # (its rebuild branch returns float64 reference positions); report, don't hide.
            per_precision[precision] = {**result, "jaxmd_steps_per_s": None, "ratio": None,
                                        "jaxmd_error": str(err).splitlines()[0][:300]}
            continue
        t0 = time.perf_counter()
        js_end, nb_end = _block(jaxmd_loop(js, nbrs_j))
        theirs = steps / (time.perf_counter() - t0)
        if bool(nb_end.did_buffer_overflow):
            raise RuntimeError("jax-md reference loop overflowed its pair list; results invalid")
        per_precision[precision] = {**result, "jaxmd_steps_per_s": theirs, "ratio": ours / theirs}
    main = per_precision[precisions[-1]]
    out.update({"precision": precisions[-1], **main, "per_precision": per_precision})
    if not quick:
        out["long_nve"] = long_nve_drift(potential, system)
        out["drift_kT_per_atom_per_ps"] = out["long_nve"]["drift_kT_per_atom_per_ps"]
    return out


def long_nve_drift(potential, system, nve_ps: float = 10.0, equilibrate_ps: float = 1.0,
                   block_ps: float = 0.5) -> dict:
    """The issue's drift criterion on an equilibrated state: ``equilibrate_ps`` of BAOAB NVT at
    298.15 K from ``system``, then ``nve_ps`` of velocity-Verlet NVE (0.5 fs, float64, total energy
    every 1 fs).  Drift = least-squares slope of the total energy in kT per atom per ps; its
    standard error from the slope of ``block_ps`` block means (the energy wanders on ps times, so
    a short run's slope is noise); also the slope of each quarter of the run.
    """
    from workbench.md import MDConfig, energy_drift, simulate

    dt = 0.0005
    eq = simulate(potential, system, int(round(equilibrate_ps / dt)),
                  MDConfig(ensemble="nvt", dt=dt, sample_every=100, chunk_frames=10))
    start = system.replace(positions=eq.positions[-1], velocities=eq.velocities[-1])
    tr = simulate(potential, start, int(round(nve_ps / dt)),
                  MDConfig(ensemble="nve", dt=dt, sample_every=2, chunk_frames=500))
    t, e, n = np.asarray(tr.time_ps), np.asarray(tr.total_energy), system.n_atoms
    n_blocks = int(round(nve_ps / block_ps))
    tb = t[: len(t) // n_blocks * n_blocks].reshape(n_blocks, -1).mean(1)
    eb = e[: len(e) // n_blocks * n_blocks].reshape(n_blocks, -1).mean(1)
    fit, cov = np.polyfit(tb, eb, 1, cov=True)
    kt_atoms = 1.0 / (units.KB * 298.15 * n)  # kJ/mol → kT per atom
    quarters = np.array_split(np.arange(len(t)), 4)
    return {"nve_ps": nve_ps, "equilibrate_ps": equilibrate_ps, "precision": "float64", "dt_fs": 0.5,
            "drift_kT_per_atom_per_ps": energy_drift(t, e, n, 298.15),
            "drift_stderr_from_block_means": float(np.sqrt(cov[0, 0])) * kt_atoms,
            "block_means_slope": float(fit[0]) * kt_atoms,
            "quarter_drifts": [energy_drift(t[q], e[q], n, 298.15) for q in quarters],
            "total_energy_std_kJ_mol": float(np.std(e)), "mean_temperature_K": float(tr.temperature.mean())}


def time_our_md(potential, system, precision: str, steps: int, sample_every: int = 10):
    """Steps per second of our NVE loop (0.5 fs, Maxwell–Boltzmann start at 298.15 K, seed 0),
    timed on a second run of ``steps`` steps after a compiling one.

    Returns ``(steps_per_s, frames, runner, v0)`` with the timed run's frames (positions,
    velocities, potential energies every ``sample_every`` steps).
    """
    from workbench.md import MDConfig, MDRunner
    from workbench.md.integrators import maxwell_boltzmann

    cfg = MDConfig(ensemble="nve", dt=0.0005, sample_every=sample_every, precision=precision,
                   chunk_frames=steps // sample_every)
    runner = MDRunner(potential, system, cfg)
    v0 = maxwell_boltzmann(jax.random.PRNGKey(0), system.masses, 298.15, cfg.dtype)
    state, nbrs = runner.init(velocities=v0)
    runner.run(state, nbrs, steps // sample_every)  # compile
    t0 = time.perf_counter()
    final, _, _, frames = runner.run(state, nbrs, steps // sample_every)
    _block(final)
    return steps / (time.perf_counter() - t0), frames, runner, v0


def _jaxmd_nve_loop(apply_fn, steps: int):
    """jax-md's reference loop: ``steps`` × (simulate.nve apply, neighbour-list update)."""

    def loop(state, nbrs):
        def body(_, carry):
            s, nb = carry
            s = apply_fn(s, neighbor=nb)
            return s, nb.update(s.position)

        return jax.lax.fori_loop(0, steps, body, (state, nbrs))

    return loop


# ---------------------------------------------------------------------------------------------

BENCHMARKS = {
    "md": "workbench.bench:bench_md",
    "grad": "workbench.bench_grad:run",
    "spectrum": "workbench.bench_spectrum:run",
    "twin": "workbench.bench_twin:run",
    "pretrained": "workbench.bench_pretrained:run",
    "ui": "workbench.bench_ui:run",
    "dipole": "workbench.bench_dipole:run",
    "speed": "workbench.bench_speed:run",
    "scale": "workbench.bench_scale:run",
    "paper": "workbench.bench_paper:run",
}


def run(name: str, quick: bool = False, **options) -> dict:
    """Run benchmark ``name``; ``options`` (e.g. ``precision``) go to a benchmark that takes them."""
    if name not in BENCHMARKS:
        raise UserInputError(f"unknown benchmark {name!r}; available: {', '.join(sorted(BENCHMARKS))}")
    module, func = BENCHMARKS[name].split(":")
    bench = getattr(importlib.import_module(module), func)
    accepted = inspect.signature(bench).parameters
    for option in options:
        if option not in accepted:
            flag = "--" + option.replace("_", "-")
            raise UserInputError(f"benchmark {name!r} takes no {flag} option")
    t0 = time.perf_counter()
    result = bench(quick, **options)
    result = {"benchmark": name, "quick": quick, **result,
              "wall_time_s": round(time.perf_counter() - t0, 2), "environment": environment()}
    return result
