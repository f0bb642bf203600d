"""``workbench bench NAME`` benchmarks.  Each returns one flat-ish dict (printed as JSON).

Contract (DESIGN.md): ``--quick`` finishes in under 60 s on 2 CPU cores, JIT included, and measures
the real code path at a smaller size; full runs are recorded in benchmarks/results/NAME.json with
the machine, jax version and date (``environment()`` below).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import inspect
import platform
import time
import tomllib

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.errors import UserInputError


def parse_set_options(items, benchmark: str) -> dict:
    """``--set`` items ``["KEY=VALUE", ...]`` → {KEY: value}, each VALUE read as a TOML value (a bare
    word that is not one is kept as a string): ``md.sampling_ps=16`` → 16, ``ir=false`` → False."""
    out = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"bench {benchmark}: --set {item!r}: expected KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        out[key.strip()] = value
    return out


def override(defaults: dict, items, benchmark: str) -> dict:
    """``defaults`` with the ``--set`` items applied; each value must have its default's type (a
    boolean, an integer, a number — an integer is taken as a float — or a string)."""
    out = dict(defaults)
    for key, value in parse_set_options(items, benchmark).items():
        if key not in out:
            raise UserInputError(f"bench {benchmark}: --set takes KEY=VALUE with KEY one of "
                                 f"{', '.join(out)}; got {key!r}")
        default, number = out[key], isinstance(value, int | float) and not isinstance(value, bool)
        for kind, wanted, ok in ((bool, "true or false", isinstance(value, bool)),
                                 (int, "an integer", number and isinstance(value, int)),
                                 (float, "a number", number), (str, "a string", isinstance(value, str))):
            if isinstance(default, kind):
                if not ok:
                    raise UserInputError(f"bench {benchmark}: {key} must be {wanted}, got {value!r}")
                out[key] = kind(value)
                break
    return out


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
    """Our NVE loop against jax-md's ``simulate.nve`` loop (same energy function, pair-list cutoff,
    skin and format), each timed ``repeats`` times, the two alternating so that load on a shared
    machine hits both alike; ``steps_per_s`` and ``jaxmd_steps_per_s`` are the best of each."""
    from jax_md import partition, simulate, space

    from workbench.md import energy_drift
    from workbench.models import benchmark_water

    system, potential, model_name = benchmark_water()
    steps = 400 if quick else 4000
    repeats = 1 if quick else 3
    precisions = ["float64"] if quick else ["float32", "float64"]  # the last one is the headline
    out = {"atoms": system.n_atoms, "model": model_name, "steps": steps, "dt_fs": 0.5, "repeats": repeats}
    per_precision = {}
    for precision in precisions:
        run_ours, runner, v0 = our_md_loop(potential, system, precision, steps)
        frames = run_ours()  # compiles; every run starts from the same state, so these are its frames
        cfg, dtype = runner.config, runner.config.dtype
        pos, vel, pe = frames
        ke = 0.5 * np.sum(runner.masses[None, :, None] * vel.astype(float) ** 2, axis=(1, 2))
        t = np.arange(1, len(pe) + 1) * cfg.dt * cfg.sample_every
        drift = energy_drift(t, pe + ke, system.n_atoms, 298.15)

        # jax-md 0.2.29's neighbour-list rebuild branch returns float64 reference positions when x64
        # is on, so its float32 loop does not trace there: it runs (and is built) with x64 off, as a
        # float32 jax-md user runs it.
        x64 = contextlib.nullcontext() if dtype == jnp.float64 else jax.enable_x64(False)
        with x64:
            box = jnp.asarray(system.box, dtype)
            displacement, shift = space.periodic(box)
            nbr_fn = partition.neighbor_list(displacement, box, potential.cutoff, dr_threshold=cfg.skin,
                                             format=partition.NeighborListFormat.OrderedSparse)
            params = jax.tree.map(lambda a, d=dtype: jnp.asarray(a, d), potential.params)

            def energy(r, neighbor, params=params, box=box):
                return potential.energy_fn(params, r, box, neighbor.idx)

            init_fn, apply_fn = simulate.nve(energy, shift, cfg.dt)
            r0 = jnp.mod(jnp.asarray(system.positions, dtype), box)
            nbrs_j = nbr_fn.allocate(r0)
            masses = jnp.asarray(system.masses, dtype)[:, None]
            js = init_fn(jax.random.PRNGKey(0), r0, kT=0.0, mass=masses, neighbor=nbrs_j)
            js = js.set(momentum=masses * jnp.asarray(v0, dtype))
            jaxmd_loop = jax.jit(_jaxmd_nve_loop(apply_fn, steps))
            _, nb_end = _block(jaxmd_loop(js, nbrs_j))  # compile
        if bool(nb_end.did_buffer_overflow):
            raise RuntimeError("jax-md reference loop overflowed its pair list; results invalid")
        ours, theirs = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run_ours()
            ours.append(steps / (time.perf_counter() - t0))
            with x64:
                t0 = time.perf_counter()
                _block(jaxmd_loop(js, nbrs_j))
                theirs.append(steps / (time.perf_counter() - t0))
        per_precision[precision] = {"steps_per_s": max(ours), "drift_kT_per_atom_per_ps": drift,
                                    "jaxmd_steps_per_s": max(theirs), "ratio": max(ours) / max(theirs),
                                    "steps_per_s_runs": ours, "jaxmd_steps_per_s_runs": theirs}
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


def our_md_loop(potential, system, precision: str, steps: int, sample_every: int = 10):
    """Our NVE loop (0.5 fs, Maxwell–Boltzmann start at 298.15 K, seed 0): ``(run, runner, v0)``,
    ``run()`` integrating ``steps`` steps from that start and returning the frames (positions,
    velocities, potential energies every ``sample_every`` steps), the same on every call."""
    from workbench.md import MDConfig, MDRunner
    from workbench.md.integrators import maxwell_boltzmann

    cfg = MDConfig(ensemble="nve", dt=0.0005, sample_every=sample_every, precision=precision,
                   chunk_frames=steps // sample_every)
    runner = MDRunner(potential, system, cfg)
    v0 = maxwell_boltzmann(jax.random.PRNGKey(0), system.masses, 298.15, cfg.dtype)
    state, nbrs = runner.init(velocities=v0)

    def run():
        final, _, _, frames = runner.run(state, nbrs, steps // sample_every)
        _block(final)
        return frames

    return run, runner, v0


def time_our_md(potential, system, precision: str, steps: int, sample_every: int = 10) -> float:
    """Steps per second of :func:`our_md_loop`, timed on a second run after a compiling one."""
    run, _, _ = our_md_loop(potential, system, precision, steps, sample_every)
    run()
    t0 = time.perf_counter()
    run()
    return steps / (time.perf_counter() - t0)


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
            flag = "--set" if option == "settings" else "--" + option.replace("_", "-")
            raise UserInputError(f"benchmark {name!r} takes no {flag} option")
    t0 = time.perf_counter()
    result = bench(quick, **options)
    result = {"benchmark": name, "quick": quick, **result,
              "wall_time_s": round(time.perf_counter() - t0, 2), "environment": environment()}
    return result
