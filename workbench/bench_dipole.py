"""``workbench bench dipole``: cost of the DeePMD dipole model in JAX, and what the seed's wrong
dipole derivative does to an IR-loss gradient.

System: the benchmark water (``models.benchmark_water()``: water64.pdb with the seed paper's
starting EANN from ../shared/data), the DeePMD DeepDipole of ../shared/data/deepdipole_water.npz.
The benchmark needs that file and says so when it is absent.

``cost``, per precision (float64, float32; parameters and positions in that dtype), wall time per
frame after JIT warm-up (best of ``repeats`` calls):

- ``dipole_forward_ms``: M (3,) of the frame (``DipoleModel.dipole_fn``);
- ``mdot_jvp_ms``: (M, Ṁ) by ``jax.jvp`` with the frame's velocities;
- ``eann_forces_ms``: EANN forces −∂E/∂x with a pair list (cutoff + 0.1 nm skin, built once);
- ``*_over_eann``: the ratios (cost of the dipole observable relative to one MD force call).

``ir_gradient``: the gradient w.r.t. the **EANN parameters θ** (what the seed paper refines through
the dipole) of the IR loss of truncated NVE windows — the quantity the seed's derivative corrupts:

    L(θ) = Σ_ν̃ w(ν̃) (nα_θ(ν̃) − nα_exp(ν̃))²,  w = 10 below 1000 cm⁻¹, 1 to 4000 cm⁻¹,

nα from the TCF of Ṁ over the windows (``ir.ir_spectrum``, TCF length = window length, Gaussian
window σ = 1/3 ps, 8.339 cm⁻¹ grid), Bertie & Lan target.  Each start frame runs an NVE window
(velocity Verlet, 0.5 fs, float64, exact AD: direct up to 20 steps, else checkpointed; full run:
also time-reversed).  The
rollout records Ṁ split as Ṁ_ionic + Ṁ_electronic (one jvp of ``deepmd_dipole_parts_fn``); one
forward pass and one backward pass batched over two cotangents (∂L/∂Ṁ on either part) give the
parts g_ionic, g_electronic of dL/dθ.  The exact gradient is g_ionic + g_electronic; the seed's
(exact Ṁ values, electronic derivative × (−1/10), as ``deepmd_dipole.seed_mdot``) is
g_ionic − g_electronic/10.  Reported: ``rel_diff`` = ‖g_seed − g_exact‖/‖g_exact‖ (= 1.1 ×
``electronic_share``), ``cosine`` between them, their norms, per-parameter-group relative
differences, and ``electronic_share`` = ‖g_electronic‖/‖g_exact‖.

Quick: 1 start frame (water64.pdb, Maxwell–Boltzmann velocities at 298.15 K, COM removed), one
window of ``QUICK_STEPS`` = 10 steps (a 5 fs TCF: only the code path, not a meaningful spectrum), cost
best of 2 calls.  Full: 2 frames 0.5 ps apart from EANN Langevin NVT (298.15 K, γ = 5 ps⁻¹) → 4
windows of 400 steps (0.2 ps TCF, the seed's loss), cost best of 20 calls.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from workbench.bench import best_time
from workbench.errors import UserInputError

TEMPERATURE_K = 298.15
DT_PS = 0.0005
QUICK_STEPS = 10


def _dipole_file():
    from workbench.models import SHARED_DATA

    path = SHARED_DATA / "deepdipole_water.npz"
    if not path.exists():
        raise UserInputError(f"the dipole benchmark needs {path} (../shared/data, project machines only)")
    return path


def _cost(system, potential, dipole, velocities, precision: str, repeats: int) -> dict:
    from workbench.md.neighbor import PairListBuilder
    from workbench.observables.dipole import dipole_and_derivative

    dtype = jnp.float32 if precision == "float32" else jnp.float64
    x = jnp.asarray(system.positions, dtype)
    v = jnp.asarray(velocities, dtype)
    box = jnp.asarray(system.box, dtype)
    mol = jnp.asarray(system.molecules)
    dparams = jax.tree.map(lambda a: jnp.asarray(a, dtype), dipole.params)
    eparams = jax.tree.map(lambda a: jnp.asarray(a, dtype), potential.params)
    pairs = PairListBuilder(tuple(np.asarray(system.box, float)), potential.cutoff, 0.1).allocate(x).idx

    forward = jax.jit(lambda p, y: dipole.dipole_fn(p, y, box, mol))
    jvp = jax.jit(lambda p, y, w: dipole_and_derivative(dipole.dipole_fn, p, y, w, box, mol))
    forces = jax.jit(lambda p, y: -jax.grad(potential.energy_fn, argnums=1)(p, y, box, pairs))
    out = {"dipole_forward_ms": 1e3 * best_time(forward, (dparams, x), repeats),
           "mdot_jvp_ms": 1e3 * best_time(jvp, (dparams, x, v), repeats),
           "eann_forces_ms": 1e3 * best_time(forces, (eparams, x), repeats)}
    out["dipole_forward_over_eann"] = out["dipole_forward_ms"] / out["eann_forces_ms"]
    out["mdot_jvp_over_eann"] = out["mdot_jvp_ms"] / out["eann_forces_ms"]
    return out


def _start_frames(system, potential, quick: bool):
    from workbench.md.integrators import maxwell_boltzmann, remove_com_velocity

    masses = np.asarray(system.masses, float)
    if quick:
        v = remove_com_velocity(maxwell_boltzmann(jax.random.PRNGKey(0), masses, TEMPERATURE_K), masses)
        desc = "water64.pdb + Maxwell–Boltzmann"
        return np.asarray(system.positions, float)[None], np.asarray(v)[None], desc
    from workbench.bench_grad import _water_frames

    x, v = _water_frames(potential, system, 2, 0.5, DT_PS)
    return x, v, "EANN Langevin NVT 298.15 K, frames 0.5 ps apart"


def _ir_gradient(system, potential, dipole, quick: bool, n_steps: int | None = None) -> dict:
    from workbench.bench_grad import ir_loss
    from workbench.grad import VerletDynamics, tree_relative_error, window_pairs, window_starts
    from workbench.grad.trajectory import rollout_fn
    from workbench.md.neighbor import PairListBuilder
    from workbench.observables import deepmd_dipole as dd

    n_steps = n_steps or (QUICK_STEPS if quick else 400)
    frames_x, frames_v, frames_desc = _start_frames(system, potential, quick)
    x, v = window_starts(frames_x, frames_v, time_reversed=not quick)
    builder = PairListBuilder(tuple(np.asarray(system.box, float)), potential.cutoff, 0.1)
    pairs = window_pairs(x, builder)
    dyn = VerletDynamics.from_potential(potential, system, DT_PS)
    box = np.asarray(system.box, float)
    mol = np.asarray(system.molecules)
    parts = dd.deepmd_dipole_parts_fn(dd.config_of(dipole))
    dparams = dipole.params

    def obs(state):  # Ṁ = Ṁ_ionic + Ṁ_electronic, both by one jvp
        _, (ionic, electronic) = jax.jvp(lambda y: parts(dparams, y, box, mol), (state.positions,),
                                         (state.velocities,))
        return {"ionic": ionic, "electronic": electronic}

    loss = ir_loss(system, n_steps, DT_PS)

    estimator = "direct" if n_steps <= 20 else "checkpoint"  # direct AD stores every step
    rollout = rollout_fn(dyn, n_steps, obs, estimator)

    def observables(params):
        def one(args):
            xs, vs, pr = args
            return rollout(params, dyn.init(params, xs, vs, pr), pr, jnp.zeros(2, xs.dtype)).observables

        return jax.lax.map(one, (x, v, pairs))

    @jax.jit
    def grads(params):
        """L and (g_ionic, g_electronic): the parts of dL/dθ through Ṁ_ionic and Ṁ_electronic.
        g_exact = g_ionic + g_electronic, the seed's g = g_ionic − g_electronic/10."""
        o, vjp = jax.vjp(observables, params)
        value, g_mdot = jax.value_and_grad(loss)(o["ionic"] + o["electronic"])
        cots = {"ionic": jnp.stack([g_mdot, jnp.zeros_like(g_mdot)]),
                "electronic": jnp.stack([jnp.zeros_like(g_mdot), g_mdot])}
        both = jax.vmap(lambda c: vjp(c)[0])(cots)  # one backward pass, batched over the 2 cotangents
        return value, jax.tree.map(lambda a: a[0], both), jax.tree.map(lambda a: a[1], both)

    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), potential.params)
    t0 = time.perf_counter()
    value, g_ion, g_el = jax.block_until_ready(grads(params))
    wall = time.perf_counter() - t0
    factor = dd.SEED_DERIVATIVE_FACTOR
    g = {"exact": jax.tree.map(jnp.add, g_ion, g_el),
         "seed": jax.tree.map(lambda a, b: a + factor * b, g_ion, g_el), "ionic": g_ion}
    flat_e = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(g["exact"])])
    flat_s = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(g["seed"])])
    per_group = {k: float(jnp.linalg.norm(g["seed"][k] - g["exact"][k]) / jnp.linalg.norm(g["exact"][k]))
                 for k in sorted(g["exact"]) if float(jnp.linalg.norm(g["exact"][k])) > 0}
    return {
        "parameters": f"EANN θ ({int(flat_e.size)} parameters)",
        "loss": f"IR loss (weights 10/1 split at 1000 cm⁻¹, 8.339 cm⁻¹ grid to 4000) of a "
                f"{n_steps * DT_PS} ps TCF vs Bertie & Lan",
        "start_frames": frames_desc,
        "n_windows": int(x.shape[0]), "n_steps": n_steps, "dt_ps": DT_PS,
        "estimator": f"{estimator} (exact AD)",
        "loss_value": float(value),
        "rel_diff": float(tree_relative_error(g["seed"], g["exact"])),
        "cosine": float(flat_e @ flat_s / (jnp.linalg.norm(flat_e) * jnp.linalg.norm(flat_s))),
        "electronic_share": float(tree_relative_error(g["ionic"], g["exact"])),
        "grad_norm_exact": float(jnp.linalg.norm(flat_e)),
        "grad_norm_seed": float(jnp.linalg.norm(flat_s)),
        "rel_diff_per_group": per_group,
        "wall_s_incl_jit": wall,
    }


def run(quick: bool) -> dict:
    from workbench.md.integrators import maxwell_boltzmann
    from workbench.models import benchmark_water
    from workbench.observables.deepmd_dipole import deepmd_dipole_model

    dipole = deepmd_dipole_model(_dipole_file())
    system, potential, model_name = benchmark_water()
    if not system.is_water():
        raise UserInputError("the dipole benchmark needs the water box (../shared/data/water64.pdb)")
    v = np.asarray(maxwell_boltzmann(jax.random.PRNGKey(1), np.asarray(system.masses, float), TEMPERATURE_K))
    repeats = 2 if quick else 20
    cost = {p: _cost(system, potential, dipole, v, p, repeats) for p in ("float64", "float32")}
    return {
        "system": f"{system.n_atoms // 3} waters, L = {float(system.box[0]):.4f} nm",
        "potential": model_name,
        "dipole_model": "DeePMD se_e2_a DeepDipole (deepdipole_water.npz), JAX",
        "cost_per_frame": cost,
        "repeats": repeats,
        "ir_gradient": _ir_gradient(system, potential, dipole, quick),
    }
