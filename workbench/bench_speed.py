"""``workbench bench speed``: our EANN against the seed paper's own EANN code, same frame, same pair
list, same machine, same run; and the throughput of the pieces a refinement is made of.

System: the benchmark water (``models.benchmark_water()``: ../shared/data/water64.pdb, 64 waters,
with the seed's DFT starting EANN).  The seed's code is ../shared/anchors/seed_eann (its ``eann.py``
with stand-ins for the DMFF helpers it imports), put on ``sys.path`` only while it is imported here;
without it the ``seed_*`` keys are null and the reason is given.

Per precision (float64 and float32; parameters and positions in that dtype), wall times after JIT
warm-up, best of ``repeats`` calls (ours and the seed's called in turn, ``interleaved_best_ms``):

- ``force_ms``: forces −∂E/∂x of the frame.  Both codes get every pair i < j within r_c = 6 Å
  (computed once, padded to ``pair_capacity`` rows);
- ``adjoint_step_ms``: one adjoint-method step, the force and its vector–Jacobian product with
  respect to positions and parameters, (x̄, θ̄) = (∂F/∂x)ᵀ F, (∂F/∂θ)ᵀ F;
- ``seed_*`` the same with the seed's ``EANNForce.get_energy``; ``*_speedup`` = seed ÷ ours;
- ``energy_rel_err``, ``force_rel_err``: |E_ours − E_seed| / |E_seed| and
  ‖F_ours − F_seed‖ / ‖F_seed‖ on that frame;
- ``dipole_ms``: the DeePMD DeepDipole model (../shared/data/deepdipole_water.npz, if present):
  M of one frame;
- ``md_steps_per_s``: our NVE MD loop (velocity Verlet, 0.5 fs, pair list with 0.1 nm skin
  updated inside the loop), timed over ``md_steps`` steps;
- ``windows_per_s``: batched truncated windows, forward and adjoint gradient of an IR loss
  (``TrajectoryLoss`` with the adjoint estimator: W windows of ``window_steps`` steps, Ṁ of the
  q-TIP4P/F point charges, the seed paper's loss against Bertie & Lan), W ÷ wall time of one
  loss-and-gradient call; ``windows_cost_ratio`` = that time ÷ the forward windows alone (full
  run only: it needs one more compilation).

Quick (< 60 s on 2 cores): float32 only, 2 repeats, 100 MD steps, 2 windows × 10 steps.  Full:
both precisions, 20 repeats, 2000 MD steps, 8 windows × 400 steps (0.2 ps).  ``stage_wall_s``: the
wall time of each part, compilation included.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.bench import best_time, time_our_md
from workbench.errors import UserInputError
from workbench.potentials.base import pairs_within

SEED_CUTOFF_ANGSTROM = 6.0
#: Rows of the pair list given to both codes (the seed's own timing script uses 9,500).
PAIR_CAPACITY = 9500
DT_PS = 0.0005
TEMPERATURE_K = 298.15


def seed_code_dir() -> Path:
    from workbench.models import SHARED_DATA

    return SHARED_DATA.parent / "anchors" / "seed_eann"


def _import_seed_eann():
    """The seed's ``eann`` module (imported with its folder on sys.path, then removed again)."""
    folder = seed_code_dir()
    if not (folder / "eann.py").exists():
        raise FileNotFoundError(f"the seed's EANN code is not at {folder}")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("eann")
    finally:
        sys.path.remove(str(folder))


def _seed_params(npz_path: Path, dtype) -> dict:
    """The DMFF-layout npz (keys like ``['w'][3]``, ``['rs']``) as the seed's nested dict of lists."""
    out: dict = {}
    with np.load(npz_path) as data:
        for key in data.files:
            match = re.fullmatch(r"\['(\w+)'\](?:\[(\d+)\])?", key)
            if match is None:
                raise UserInputError(f"{npz_path}: unexpected key {key!r} for the seed's layout")
            name, index = match.group(1), match.group(2)
            value = jnp.asarray(data[key], dtype)
            if index is None:
                out[name] = value
            else:
                out.setdefault(name, {})[int(index)] = value
    return {k: [v[i] for i in sorted(v)] if isinstance(v, dict) else v for k, v in out.items()}


def _force_and_adjoint_step(energy_fn):
    """Jitted force(x, θ, pairs) and adjoint_step(x, θ, pairs) = VJP of the force in (x, θ) with
    cotangent F, for ``energy_fn(x, θ, pairs)``.  The pair list is an argument, as in MD."""
    force = jax.jit(lambda x, p, pairs: -jax.grad(energy_fn)(x, p, pairs))

    def adjoint_step(x, p, pairs):
        f, vjp = jax.vjp(lambda y, q: force(y, q, pairs), x, p)
        return vjp(f)

    return force, jax.jit(adjoint_step)


def interleaved_best_ms(calls: dict, repeats: int) -> dict:
    """Best wall time (ms) of each ``name -> (fn, args)`` over ``repeats`` rounds, after one warm-up
    call each; every round calls all of them in turn, so a change of machine load hits all alike."""
    for fn, args in calls.values():
        jax.block_until_ready(fn(*args))
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[name] = min(best[name], 1e3 * (time.perf_counter() - t0))
    return best


def _pair_timings(system, potential, npz_path, precision: str, repeats: int) -> dict:
    dtype = jnp.float32 if precision == "float32" else jnp.float64
    box_nm = np.asarray(system.box, float)
    pairs = pairs_within(system.positions, box_nm, SEED_CUTOFF_ANGSTROM * units.NM_PER_ANGSTROM,
                         PAIR_CAPACITY)
    x_nm = jnp.asarray(system.positions, dtype)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), potential.params)
    box = jnp.asarray(box_nm, dtype)
    pairs_j = jnp.asarray(pairs)
    force, step = _force_and_adjoint_step(lambda x, p, pairs: potential.energy_fn(p, x, box, pairs))
    calls = {"force_ms": (force, (x_nm, params, pairs_j)), "adjoint_step_ms": (step, (x_nm, params, pairs_j))}
    out = {"pairs_within_cutoff": int(np.sum(pairs[0] < system.n_atoms)), "pair_capacity": PAIR_CAPACITY}
    try:
        seed = _import_seed_eann()
    except FileNotFoundError as err:
        return {**out, **interleaved_best_ms(calls, repeats), "seed_force_ms": None,
                "seed_adjoint_step_ms": None, "force_speedup": None, "adjoint_speedup": None,
                "seed_missing": str(err)}
    species = np.asarray(system.species_index(("H", "O")))  # the seed's order, H = 0, O = 1
    model = seed.EANNForce(2, jnp.asarray(species), n_gto=12, rc=SEED_CUTOFF_ANGSTROM, sizes=(64, 64))
    seed_params = _seed_params(npz_path, dtype)
    box_a = jnp.asarray(np.diag(box_nm * units.ANGSTROM_PER_NM), dtype)
    pairs_a = jnp.asarray(pairs.T)
    seed_force, seed_step = _force_and_adjoint_step(lambda x, p, pairs: model.get_energy(x, box_a, pairs, p))
    x_a = x_nm * units.ANGSTROM_PER_NM
    calls["seed_force_ms"] = (seed_force, (x_a, seed_params, pairs_a))
    calls["seed_adjoint_step_ms"] = (seed_step, (x_a, seed_params, pairs_a))
    out.update(interleaved_best_ms(calls, repeats))
    out["force_speedup"] = out["seed_force_ms"] / out["force_ms"]
    out["adjoint_speedup"] = out["seed_adjoint_step_ms"] / out["adjoint_step_ms"]
    e_ours = float(potential.energy_fn(params, x_nm, box, pairs_j))
    e_seed = float(model.get_energy(x_a, box_a, pairs_a, seed_params))
    f_ours = np.asarray(force(x_nm, params, pairs_j), float)
    f_seed = np.asarray(seed_force(x_a, seed_params, pairs_a), float) * units.ANGSTROM_PER_NM  # kJ/mol/nm
    out["energy_kJ_mol"] = e_ours
    out["energy_rel_err"] = abs(e_ours - e_seed) / abs(e_seed)
    out["force_rel_err"] = float(np.linalg.norm(f_ours - f_seed) / np.linalg.norm(f_seed))
    return out


def _dipole_ms(system, precision: str, repeats: int):
    from workbench.models import SHARED_DATA
    from workbench.observables.deepmd_dipole import deepmd_dipole_model

    path = SHARED_DATA / "deepdipole_water.npz"
    if not path.exists():
        return None
    dtype = jnp.float32 if precision == "float32" else jnp.float64
    dipole = deepmd_dipole_model(path)
    box, mol = jnp.asarray(system.box, dtype), jnp.asarray(system.molecules)
    forward = jax.jit(lambda p, y: dipole.dipole_fn(p, y, box, mol))
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), dipole.params)
    return 1e3 * best_time(forward, (params, jnp.asarray(system.positions, dtype)), repeats)


def _windows(system, potential, precision: str, n_windows: int, n_steps: int,
             cost_ratio: bool) -> dict:
    from workbench.bench_grad import ir_loss
    from workbench.grad import TrajectoryLoss, VerletDynamics, mdot_observable, window_pairs
    from workbench.md.integrators import maxwell_boltzmann, remove_com_velocity
    from workbench.md.neighbor import PairListBuilder
    from workbench.observables.dipole import qtip4pf_dipole

    dtype = jnp.float32 if precision == "float32" else jnp.float64
    masses = np.asarray(system.masses, float)
    x = jnp.asarray(np.repeat(np.asarray(system.positions, float)[None], n_windows, 0), dtype)
    v = jnp.stack([remove_com_velocity(maxwell_boltzmann(jax.random.PRNGKey(k), masses, TEMPERATURE_K),
                                       masses) for k in range(n_windows)]).astype(dtype)
    builder = PairListBuilder(tuple(np.asarray(system.box, float)), potential.cutoff, 0.1)
    pairs = window_pairs(x, builder)
    dyn = VerletDynamics.from_potential(potential, system, DT_PS)
    obs = mdot_observable(qtip4pf_dipole(), system.box, system.molecules)
    objective = TrajectoryLoss(dyn, n_steps, obs, ir_loss(system, n_steps, DT_PS), "adjoint")
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), potential.params)
    args = (params, x, v, pairs)
    t_grad = best_time(objective.loss_and_grad, args, 1)
    out = {"windows_per_s": n_windows / t_grad, "window_steps": n_steps, "n_windows": n_windows,
           "windows_loss_and_grad_s": t_grad}
    if cost_ratio:
        out["windows_cost_ratio"] = t_grad / best_time(objective.loss, args, 1)
    return out


def run(quick: bool) -> dict:
    from workbench.models import SHARED_DATA, benchmark_water

    system, potential, model_name = benchmark_water()
    npz_path = SHARED_DATA / "eann_water_dft_start.npz"
    if not npz_path.exists() or potential.metadata.get("model") != "EANN":
        raise UserInputError(f"the speed benchmark needs the seed's EANN ({npz_path}) and "
                             f"water64.pdb in ../shared/data")
    precisions = ["float32"] if quick else ["float64", "float32"]
    repeats = 2 if quick else 20
    md_steps = 100 if quick else 2000
    n_windows, window_steps = (2, 10) if quick else (8, 400)
    per_precision = {}
    for precision in precisions:
        stages = {
            "pairs": lambda p=precision: _pair_timings(system, potential, npz_path, p, repeats),
            "dipole": lambda p=precision: {"dipole_ms": _dipole_ms(system, p, repeats)},
            "md": lambda p=precision: {"md_steps_per_s": time_our_md(potential, system, p, md_steps)},
            "windows": lambda p=precision: _windows(system, potential, p, n_windows, window_steps, not quick),
        }
        res, wall = {}, {}
        for stage, measure in stages.items():
            t0 = time.perf_counter()
            res.update(measure())
            wall[stage] = time.perf_counter() - t0
        per_precision[precision] = {**res, "stage_wall_s": wall}
    main = precisions[0]
    return {"system": f"{system.n_atoms // 3} waters, L = {float(system.box[0]):.4f} nm",
            "potential": model_name, "precision": main, "device": jax.devices()[0].device_kind,
            **per_precision[main], "per_precision": per_precision, "repeats": repeats,
            "md_steps": md_steps}
