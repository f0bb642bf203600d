r"""The refinement loop: sample, run windows, differentiate, update — checkpointed and self-healing.

Iteration k (k = 1 … ``run.iterations``), with θ = θ(u) the current parameters:

1. NVT sampling with θ, continuing from the previous iteration's last state: K window starts
   (``refine.windows``).
2. NVE windows from them (and their time reversals); the window loss L_win(signals) (IR, diffusion)
   and its cotangents; static terms (force matching, RDF and density by reweighting, L2) evaluated
   on θ(u).  A reweighting term keeps its reference samples (NVT frames for the RDF, frames of an NPT
   run with θ for the density) while their N_eff/S at θ stays above its ``min_ess_fraction``.
3. dL/du = Jᵀ(dL_win/dθ, dL_win/dφ) + ∇_u L_static, with J the Jacobian of u ↦ (θ, φ)
   (``refine.parameters``); each group's optax transform (clip → Adam or SGD → schedule) gives its
   update, multiplied by the learning-rate factor f (1, halved at every rollback).
4. Checkpoint k (atomic) and one ``iteration`` event (``refine.events``).

Safety: non-finite values, an NVT temperature above ``max_temperature_factor`` × T or a window
energy drift above ``max_energy_drift_kT`` (kT per atom) raise ``IterationFailure``.  The failing
iteration k used θ_{k−1}, produced by the update of iteration k − 1: the trainer restores checkpoint
k − 2, halves f, logs a ``rollback`` event and redoes iteration k − 1.  After
``safety.max_rollbacks`` consecutive rollbacks — or at once when θ₀ itself fails, where no smaller
step can help — it gives up with ``RefinementFailed`` (a message naming the cause and what to
change).  Nothing non-finite is ever written to a checkpoint.

Resume: ``Trainer.resume(run_dir)`` reloads the newest checkpoint (parameters, optimiser state,
PRNG key, NVT state, event history, pair-list capacity) and continues with exactly the next
iteration: the same random numbers and the same results as a run that was never interrupted.

The trainer knows nothing about any UI: it calls its subscribers with events and checks
``stop_requested()`` between NVT chunks, window batches and iterations.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from workbench.errors import UserInputError
from workbench.grad.reweighting import (
    ReferenceSamples,
    effective_sample_size,
    reweighted_average,
    reweighted_density,
    reweighting_weights,
    sample_energies,
)
from workbench.md import MDConfig, NPTRunner
from workbench.md.neighbor import box_pairs_per_frame
from workbench.observables import ir
from workbench.observables.diffusion import yeh_hummer_correction
from workbench.observables.spectrum_io import Spectrum, write_spectrum_csv
from workbench.potentials.base import all_pairs
from workbench.refine import checkpoint as ckpt
from workbench.refine import losses
from workbench.refine.config import ConfigError, RefineConfig, load_config, to_toml
from workbench.refine.events import EventBus, JSONLWriter, Subscriber, jsonable, read_jsonl
from workbench.refine.parameters import ParameterGroup, leaf_names
from workbench.refine.problem import Problem, build_problem, ir_target
from workbench.refine.windows import IterationFailure, Stopped, WindowEngine
from workbench.units import KB

CONFIG_NAME = "config.toml"
METRICS_NAME = "metrics.jsonl"
#: Arrays of a reweighting reference in ``TrainState.references`` and checkpoints (``ref/<term>/<name>``).
REFERENCE_ARRAYS = ("positions", "energies", "boxes")


class RefinementFailed(UserInputError):
    """The refinement gave up (the message says why and what to change)."""


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a refinement needs to continue (what a checkpoint holds).

    iteration: completed iterations; u: group → {name: array} optimiser coordinates; opt_state:
    group → optax state; key: PRNG key (uint32[2]); md_positions/md_velocities: last NVT state;
    lr_factor: learning-rate factor f; rollbacks: rollbacks since the iteration that last failed
    (``failed_at``) last completed; history: events so far;
    pair_capacity: window pair-list rows; references: reweighting reference samples of the static
    terms, term ("rdf", "density") → (positions (S, N, 3), energies U_θ_ref (S,), boxes (S, 3) or None).
    """

    iteration: int
    u: dict
    opt_state: dict
    key: np.ndarray
    md_positions: np.ndarray
    md_velocities: np.ndarray
    lr_factor: float = 1.0
    rollbacks: int = 0
    failed_at: int = 0
    history: tuple = ()
    pair_capacity: int | None = None
    references: dict = dataclasses.field(default_factory=dict)

    def replace(self, **changes) -> TrainState:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RefineResult:
    """status ("completed" | "stopped"), the final state, θ and φ (all None when stopped during the
    initial equilibration), and the run directory."""

    status: str
    state: TrainState
    potential_params: object
    dipole_params: object
    run_dir: Path

    @property
    def iteration(self) -> int:
        """Iterations completed (0 when stopped before the trainer had a state)."""
        return self.state.iteration if self.state else 0

    @property
    def history(self) -> list[dict]:
        return list(self.state.history) if self.state else []

    @property
    def iterations(self) -> list[dict]:
        return [e for e in self.history if e["kind"] == "iteration"]


def make_optimizer(cfg: RefineConfig, lr: float) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(transform, schedule): clip (optional) → Adam (β1, β2) or plain SGD → −lr·schedule(step)
    (see ``[optimizer]``)."""
    opt = cfg.optimizer
    n = cfg.run.iterations
    if opt.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, n, alpha=opt.final_fraction)
    elif opt.schedule == "exponential":
        schedule = optax.exponential_decay(lr, 1, opt.decay_rate)
    else:
        schedule = optax.constant_schedule(lr)
    parts = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm > 0 else []
    if opt.name == "adam":
        parts.append(optax.scale_by_adam(b1=opt.b1, b2=opt.b2))
    parts.append(optax.scale_by_learning_rate(schedule))
    return optax.chain(*parts), schedule


class Trainer:
    """Refine a potential (and/or dipole model) as configured; see the module docstring.

    Args:
      config: a validated ``RefineConfig``.
      run_dir: output folder (default ``config.run.dir`` or ``runs/<name>``); created if missing.
      subscribers: callables receiving each event (``refine.events``); a ``metrics.jsonl`` writer
        is always added.
      stop_requested: polled between NVT chunks, window batches and iterations.
    """

    def __init__(self, config: RefineConfig, run_dir=None, subscribers: Iterable[Subscriber] = (),
                 stop_requested: Callable[[], bool] | None = None, _resume: bool = False):
        self.config = config
        self.run_dir = Path(run_dir or config.run.dir or Path("runs") / "refine")
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.stop_requested = stop_requested or (lambda: False)
        self._resume = _resume
        if not _resume and ckpt.list_checkpoints(self.checkpoint_dir):
            raise ConfigError(f"run.dir: {self.run_dir} already holds checkpoints; resume it "
                              f"(workbench refine --resume {self.run_dir}) or choose another run.dir")
        self.bus = EventBus([JSONLWriter(self.run_dir / METRICS_NAME), *subscribers])
        self.problem: Problem = build_problem(config)
        self.groups = self._groups()
        self.optimizers = {n: make_optimizer(config, g.lr) for n, g in config.train.groups.items()}
        self.dipole_base = self.problem.dipole.params if self.problem.dipole is not None else {}
        signals = {"ir": "mdot", "diffusion": "vacf"}
        self.engine = WindowEngine(
            self.problem.potential, self.problem.system, self.problem.dipole, config.md,
            config.system.temperature_K, config.run.precision,
            [signals[t] for t in config.loss.window_terms], "dipole" in self.groups, config.run.seed)
        self.fm_pairs = None
        if self.problem.reference is not None:
            self.fm_pairs = self.engine.pairs_for(self.problem.reference.positions)
        self._jit_window_loss()
        loss = config.loss
        self._weights = {"ir": loss.ir.weight, "diffusion": loss.diffusion.weight,
                         "force_matching": loss.force_matching.weight, "rdf": loss.rdf.weight,
                         "density": loss.density.weight, "l2": loss.l2.weight}
        self._npt = None
        self._total_grad = jax.jit(jax.value_and_grad(self._total_fn, has_aux=True))
        self._params = jax.jit(self.params)

    @classmethod
    def resume(cls, run_dir, subscribers: Iterable[Subscriber] = (),
               stop_requested: Callable[[], bool] | None = None) -> Trainer:
        """A trainer continuing the run in ``run_dir`` (its ``config.toml`` and newest checkpoint)."""
        run_dir = Path(run_dir)
        if not ckpt.list_checkpoints(run_dir / "checkpoints"):
            raise ConfigError(f"--resume: {run_dir} holds no checkpoint to resume from")
        config = load_config(run_dir / CONFIG_NAME)
        return cls(config, run_dir, subscribers, stop_requested, _resume=True)

    def set_ir_target(self, spectrum: Spectrum) -> None:
        """Use ``spectrum`` (n·α) as the IR target: written to ``run_dir/ir_target.csv``, which the
        config (and its copy in the run directory) then names.  Call before :meth:`run`."""
        path = self.run_dir / "ir_target.csv"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_spectrum_csv(spectrum, path)
        self.config = self.config.replace(**{"loss.ir.target": str(path.resolve())})
        self.problem = dataclasses.replace(self.problem, ir=ir_target(self.config))
        self._jit_window_loss()

    def _jit_window_loss(self):
        self._window_loss = jax.jit(jax.value_and_grad(self._window_loss_fn, has_aux=True))
        self._window_value = jax.jit(self._window_loss_fn)

    def evaluate(self, theta, phi, positions, velocities, key, repeats: int = 1) -> dict:
        """Forward only: ``repeats`` × (NVT sampling of K frames with θ from (x, v), their windows);
        the window loss terms, spectrum (IR) and D (diffusion) of all windows together, and the
        last NVT state.  Equal ``key`` and (x, v) give common random numbers for comparing θ's."""
        signals = []
        for _ in range(repeats):
            key, sub = jax.random.split(key)
            frames = self.engine.sample(theta, positions, velocities, sub, self.stop_requested)
            positions, velocities = frames.last_positions, frames.last_velocities
            x, v, pairs = self.engine.starts(frames)
            signals.append(self.engine.forward(theta, phi, x, v, pairs, self.stop_requested)[0])
        _, aux = self._window_value(jax.tree.map(lambda *a: jnp.concatenate(a), *signals))
        out = {"terms": {k: float(val) for k, val in aux["terms"].items()},
               "positions": positions, "velocities": velocities}
        if "spectrum" in aux:
            out["spectrum"] = np.asarray(aux["spectrum"])
        if "diffusion" in aux:
            out["diffusion_nm2_per_ps"] = float(aux["diffusion"])
        return out

    # -- parameters ---------------------------------------------------------------------------
    def _groups(self) -> dict[str, ParameterGroup]:
        out = {}
        for name, g in self.config.train.groups.items():
            base = self.problem.potential.params if name == "potential" else self.problem.dipole.params
            out[name] = ParameterGroup.select(name, base, g.params, g.parameterisation == "relative")
        return out

    def params(self, u: dict):
        """(θ, φ) for optimiser coordinates ``u`` (untrained groups stay at their start)."""
        theta = self.groups["potential"].apply(u["potential"]) if "potential" in self.groups \
            else self.problem.potential.params
        phi = self.groups["dipole"].apply(u["dipole"]) if "dipole" in self.groups else self.dipole_base
        return theta, phi

    # -- loss functions -------------------------------------------------------------------------
    def _window_loss_fn(self, signals):
        """Σ weighted window terms and aux (terms, spectrum, D) from all windows' signals."""
        cfg, md = self.config, self.config.md
        terms, aux = {}, {}
        if "mdot" in signals:
            target = self.problem.ir
            spectrum = ir.ir_spectrum(signals["mdot"], md.dt_ps, self.problem.system.volume,
                                      cfg.system.temperature_K, target.grid,
                                      tcf_length_ps=md.window_steps * md.dt_ps, window=cfg.loss.ir.window,
                                      sigma_ps=cfg.loss.ir.sigma_ps,
                                      quantum_correction=cfg.loss.ir.quantum_correction)
            terms["ir"] = losses.ir_loss(spectrum, target.values, target.index, cfg.loss.ir.range_weights,
                                         cfg.loss.ir.mode, cfg.loss.ir.normalise)
            aux["spectrum"] = spectrum
        if "vacf" in signals:
            d = losses.green_kubo_from_vacf(jnp.mean(signals["vacf"], axis=0), md.dt_ps) + self._yeh_hummer()
            terms["diffusion"] = losses.relative_error_loss(d, cfg.loss.diffusion.target_nm2_per_ps)
            aux["diffusion"] = d
        weights = {"ir": cfg.loss.ir.weight, "diffusion": cfg.loss.diffusion.weight}
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {"terms": terms, **aux}

    def _yeh_hummer(self) -> float:
        dcfg = self.config.loss.diffusion
        if not dcfg.finite_size_correction:
            return 0.0
        return yeh_hummer_correction(float(np.min(self.problem.system.box)), self.config.system.temperature_K,
                                     dcfg.viscosity_mPa_s)

    def _total_fn(self, u, g_theta, g_phi, refs):
        """Linear surrogate ⟨g, (θ, φ)(u)⟩ plus the static terms: its u-gradient is dL/du."""
        cfg = self.config
        theta, phi = self.params(u)
        linear = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g_theta), jax.tree.leaves(theta),
                                                        strict=True))
        linear += sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g_phi), jax.tree.leaves(phi),
                                                         strict=True))
        terms, aux = {}, {}
        energy_fn, system = self.problem.potential.energy_fn, self.problem.system
        box = jnp.asarray(system.box)
        if cfg.loss.force_matching.weight > 0:
            ref = self.problem.reference
            terms["force_matching"] = losses.force_matching_loss(
                energy_fn, theta, jnp.asarray(ref.positions), box, self.fm_pairs, jnp.asarray(ref.energies),
                jnp.asarray(ref.forces), cfg.loss.force_matching.energy_weight)
        if cfg.loss.rdf.weight > 0:
            avg = reweighted_average(energy_fn, theta, self._samples(*refs["rdf"]),
                                     self._rdf_observable, cfg.loss.rdf.min_ess_fraction)
            terms["rdf"] = losses.rdf_loss(avg.value, self.problem.rdf_target)
            aux["ess"] = {"rdf": avg.ess_fraction}
        if cfg.loss.density.weight > 0:
            avg = reweighted_density(energy_fn, theta, self._samples(*refs["density"]),
                                     float(np.sum(system.masses)), cfg.loss.density.min_ess_fraction)
            terms["density"] = losses.relative_error_loss(avg.value, cfg.loss.density.target_g_cm3)
            aux["ess"] = {**aux.get("ess", {}), "density": avg.ess_fraction}
            aux["density"] = avg.value
        if cfg.loss.l2.weight > 0:
            terms["l2"] = losses.l2_penalty(u)
        static = sum(self._weights[k] * v for k, v in terms.items())
        return linear + static, {"terms": terms, **aux}

    def _samples(self, positions, energies, box, pairs) -> ReferenceSamples:
        return ReferenceSamples(positions, energies, box, pairs, KB * self.config.system.temperature_K)

    def _rdf_observable(self, params, x, box, pairs):
        sym = np.asarray(self.problem.system.symbols)
        a, b = self.config.loss.rdf.pair
        return losses.smooth_rdf(x, box, np.nonzero(sym == a)[0], np.nonzero(sym == b)[0],
                                 self.problem.rdf_edges, self.config.loss.rdf.smearing_nm)

    # -- state ----------------------------------------------------------------------------------
    def _initial_state(self) -> TrainState:
        key = jax.random.PRNGKey(self.config.run.seed)
        u = {n: g.zeros() for n, g in self.groups.items()}
        opt_state = {n: self.optimizers[n][0].init(u[n]) for n in self.groups}
        x, v = self.engine.initial_state()
        key, sub = jax.random.split(key)
        theta, _ = self._params(u)
        self._stage(0, "equilibrate", 0, 1)
        try:
            x, v = self.engine.equilibrate(theta, x, v, sub, self.config.md.equilibrate_ps,
                                           self.stop_requested)
        except IterationFailure as err:
            message = self._unstable_start(str(err))
            self.bus.emit({"kind": "run_end", "status": "gave_up", "iteration": 0, "message": message})
            raise RefinementFailed(message) from err
        self._stage(0, "equilibrate", 1, 1)
        return TrainState(0, u, opt_state, np.asarray(key), np.asarray(x), np.asarray(v),
                          pair_capacity=self.engine.pair_capacity)

    def _save(self, state: TrainState) -> Path:
        arrays = {"key": state.key, "md_positions": state.md_positions, "md_velocities": state.md_velocities}
        for g, values in state.u.items():
            arrays.update({f"u/{g}/{n}": np.asarray(v) for n, v in values.items()})
            arrays.update({f"base/{g}/{n}": np.asarray(v) for n, v in _leaves(self.groups[g]).items()})
            arrays.update({f"opt/{g}/{i}": np.asarray(leaf)
                           for i, leaf in enumerate(jax.tree.leaves(state.opt_state[g]))})
        for term, samples in state.references.items():
            arrays.update({f"ref/{term}/{name}": a for name, a in zip(REFERENCE_ARRAYS, samples, strict=True)
                           if a is not None})
        for name, a in arrays.items():
            if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
                raise IterationFailure(f"non-finite values in {name}; not checkpointed")
        meta = {"iteration": state.iteration, "lr_factor": state.lr_factor, "rollbacks": state.rollbacks,
                "failed_at": state.failed_at,
                "history": list(state.history), "pair_capacity": state.pair_capacity}
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.checkpoint_dir, state.iteration), arrays, meta)
        ckpt.prune_checkpoints(self.checkpoint_dir, self.config.run.keep_checkpoints)
        return path

    def _load(self, path) -> TrainState:
        arrays, meta = ckpt.load_checkpoint(path)
        u, opt_state = {}, {}
        for g, group in self.groups.items():
            for n, v in _leaves(group).items():
                stored = arrays.get(f"base/{g}/{n}")
                if stored is None or stored.shape != np.shape(v) or not np.allclose(stored, v, rtol=1e-12):
                    raise ConfigError(f"{path}: the starting {g} parameter {n!r} differs from the model in "
                                      f"the config; this run cannot be resumed with it")
            u[g] = {n: jnp.asarray(arrays[f"u/{g}/{n}"]) for n in group.names}
            template = self.optimizers[g][0].init(u[g])
            leaves = [jnp.asarray(arrays[f"opt/{g}/{i}"]) for i in range(len(jax.tree.leaves(template)))]
            opt_state[g] = jax.tree.unflatten(jax.tree.structure(template), leaves)
        return TrainState(meta["iteration"], u, opt_state, arrays["key"], arrays["md_positions"],
                          arrays["md_velocities"], meta["lr_factor"], meta["rollbacks"], meta["failed_at"],
                          tuple(meta["history"]), meta["pair_capacity"], _references(arrays))

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> RefineResult:
        """Run (or continue) the refinement; returns when done or stopped, raises ``RefinementFailed``."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._resume:
            state = self._load(ckpt.list_checkpoints(self.checkpoint_dir)[-1][1])
            # metrics.jsonl is rewritten from the checkpoint's history: continuous, no duplicates
            ckpt.atomic_write_text(self.run_dir / METRICS_NAME,
                                   "".join(_json_line(e) for e in state.history))
        else:
            ckpt.atomic_write_text(self.run_dir / CONFIG_NAME, to_toml(self.config.resolved(self.run_dir)))
            (self.run_dir / METRICS_NAME).unlink(missing_ok=True)
            state = None
        start = {"kind": "start", "iteration": 0 if state is None else state.iteration,
                 "iterations": self.config.run.iterations, "resumed": self._resume,
                 "run_dir": str(self.run_dir),
                 "n_params": {n: g.size for n, g in self.groups.items()},
                 "param_names": {n: list(g.names) for n, g in self.groups.items()}}
        if self.problem.ir is not None:
            start["target_spectrum"] = {"wavenumber": self.problem.ir.grid, "values": self.problem.ir.values}
        self.bus.emit(start)
        try:
            if state is None:
                state = self._initial_state()
                state = state.replace(history=(jsonable(start),))
                self._save(state)
            while state.iteration < self.config.run.iterations:
                if self.stop_requested():
                    raise Stopped
                try:
                    state = self._iteration(state)
                except IterationFailure as err:
                    state = self._rollback(state, str(err))
        except Stopped:
            return self._finish(state, "stopped", "stop requested; resume with --resume")
        return self._finish(state, "completed", f"{state.iteration} iterations")

    def _finish(self, state: TrainState | None, status: str, message: str) -> RefineResult:
        if state is None:  # stopped during the initial equilibration: nothing to keep
            self.bus.emit({"kind": "run_end", "status": status, "iteration": 0, "message": message})
            return RefineResult(status, None, None, None, self.run_dir)
        theta, phi = self._params(state.u)
        from workbench.refine.outputs import write_outputs

        write_outputs(self, state, theta, phi)
        self.bus.emit({"kind": "run_end", "status": status, "iteration": state.iteration, "message": message})
        return RefineResult(status, state, theta, phi, self.run_dir)

    def _stage(self, iteration, stage, done, total):
        self.bus.emit({"kind": "stage", "iteration": iteration, "stage": stage, "done": done, "total": total})

    def _iteration(self, state: TrainState) -> TrainState:
        cfg, engine = self.config, self.engine
        k = state.iteration + 1
        t0 = time.perf_counter()
        theta, phi = self._params(state.u)
        key, sub = jax.random.split(jnp.asarray(state.key))
        self._stage(k, "sampling", 0, 1)
        engine.pair_capacity = state.pair_capacity
        frames = engine.sample(theta, state.md_positions, state.md_velocities, sub, self.stop_requested)
        limit = cfg.safety.max_temperature_factor * cfg.system.temperature_K
        if frames.temperature_K > limit:
            raise IterationFailure(f"temperature exploded: NVT mean {frames.temperature_K:.0f} K > "
                                   f"{limit:.0f} K")
        self._stage(k, "sampling", 1, 1)
        x, v, pairs = engine.starts(frames)
        warnings = []
        g_theta = jax.tree.map(jnp.zeros_like, theta)
        g_phi = jax.tree.map(jnp.zeros_like, phi)
        window_aux, diag, reversal = {"terms": {}}, {}, np.zeros(2)
        if cfg.loss.window_terms:
            signals, diag = engine.forward(theta, phi, x, v, pairs, self.stop_requested,
                                           lambda d, n: self._stage(k, "windows", d, n))
            if not diag["finite"]:
                raise IterationFailure("the NVE windows produced non-finite energies")
            if diag["energy_drift_kT_per_atom"] > cfg.safety.max_energy_drift_kT:
                raise IterationFailure(f"energy exploded in an NVE window: |ΔE_tot| = "
                                       f"{diag['energy_drift_kT_per_atom']:.3g} kT per atom > "
                                       f"{cfg.safety.max_energy_drift_kT:g}")
            (_, window_aux), cotangents = self._window_loss(signals)
            g_theta, g_phi, reversal = engine.gradient(theta, phi, x, v, pairs, cotangents,
                                                       self.stop_requested,
                                                       lambda d, n: self._stage(k, "gradient", d, n),
                                                       records=diag["records"])
            if engine.builder is not None and diag["max_displacement_nm"] >= 0.5 * cfg.md.skin_nm:
                warnings.append(f"an atom moved {diag['max_displacement_nm']:.3f} nm ≥ skin/2 in a window: "
                                "raise md.skin_nm")
        references = {}
        if cfg.loss.rdf.weight > 0:
            references["rdf"] = self._reference("rdf", state, theta, lambda: (frames.positions, None))
        if cfg.loss.density.weight > 0:
            references["density"] = self._reference(
                "density", state, theta, lambda: self._npt_samples(theta, frames, jax.random.fold_in(sub, 1)))
        refs = {term: self._reference_arrays(*samples) for term, samples in references.items()}
        (_, static_aux), grad_u = self._total_grad(state.u, g_theta, g_phi, refs)
        terms = {**window_aux["terms"], **static_aux["terms"]}
        loss = {n: float(val) for n, val in terms.items()}
        loss["total"] = float(sum(self._weights[n] * val for n, val in loss.items()))
        grad_norm = {g: float(optax.tree.norm(grad_u[g])) for g in self.groups}
        grad_norm["total"] = float(optax.tree.norm(grad_u))
        if not all(np.isfinite(list(loss.values()))) or not np.isfinite(grad_norm["total"]):
            raise IterationFailure(f"non-finite loss or gradient (loss {loss}, ‖g‖ {grad_norm['total']})")
        u, opt_state, lr = {}, {}, {}
        for g in self.groups:
            tx, schedule = self.optimizers[g]
            updates, opt_state[g] = tx.update(grad_u[g], state.opt_state[g], state.u[g])
            u[g] = optax.apply_updates(state.u[g], jax.tree.map(lambda d: state.lr_factor * d, updates))
            lr[g] = float(schedule(state.iteration)) * state.lr_factor
        if not all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(u)):
            raise IterationFailure("the update produced non-finite parameters")
        event = {"kind": "iteration", "iteration": k, "loss": loss, "grad_norm": grad_norm, "lr": lr,
                 "params": self._reported_params(u), "reversal_error": reversal,
                 "max_displacement_nm": diag.get("max_displacement_nm"),
                 "energy_drift_kT_per_atom": diag.get("energy_drift_kT_per_atom"),
                 "temperature_K": frames.temperature_K, "warnings": warnings}
        if "spectrum" in window_aux:
            spectrum = np.asarray(window_aux["spectrum"])
            event["spectrum"] = {"wavenumber": self.problem.ir.grid, "simulated": spectrum}
            event["bands"] = band_metrics(self.problem.ir.grid, spectrum, self.problem.ir.values)
        if "diffusion" in window_aux:
            event["diffusion_nm2_per_ps"] = float(window_aux["diffusion"])
        if "ess" in static_aux:
            event["ess"] = {term: float(f) for term, f in static_aux["ess"].items()}
        if "density" in static_aux:
            event["density_g_cm3"] = float(static_aux["density"])
        event["wall_time_s"] = time.perf_counter() - t0
        event = jsonable(event)
        rollbacks = 0 if k >= state.failed_at else state.rollbacks  # reset once past the failure
        new = TrainState(k, u, opt_state, np.asarray(key), frames.last_positions, frames.last_velocities,
                         state.lr_factor, rollbacks, state.failed_at, state.history + (event,),
                         engine.pair_capacity, references)
        self._save(new)
        self.bus.emit(event)
        return new

    def _reference(self, term: str, state: TrainState, theta, new_samples):
        """Reweighting reference (positions, energies, boxes) of a static term: the stored one while
        its N_eff/S ≥ ``loss.<term>.min_ess_fraction`` at θ, else ``new_samples()`` → (positions, boxes
        or None) of the current θ with U_θ evaluated here."""
        stored = state.references.get(term)
        if stored is not None:
            ref = self._samples(*self._reference_arrays(*stored))
            ess = effective_sample_size(reweighting_weights(self.problem.potential.energy_fn, theta, ref))
            if float(ess) / ref.n_samples >= getattr(self.config.loss, term).min_ess_fraction:
                return stored
        x, boxes = new_samples()
        ref = self._samples(*self._reference_arrays(x, np.zeros(len(x)), boxes))
        energies = sample_energies(self.problem.potential.energy_fn, theta, ref)
        return np.asarray(x), np.asarray(energies), boxes

    def _reference_arrays(self, positions, energies, boxes):
        """(positions, energies, box, pairs) for ``ReferenceSamples``: the system's box and the
        window pair lists, or per-sample boxes (NPT) with lists built in each sample's box."""
        x = jnp.asarray(positions)
        if boxes is None:
            return x, jnp.asarray(energies), jnp.asarray(self.problem.system.box), self.engine.pairs_for(x)
        potential = self.engine.potential
        pairs = all_pairs(x.shape[1]) if potential.cutoff is None else \
            box_pairs_per_frame(x, boxes, potential.cutoff + self.config.md.skin_nm)
        return x, jnp.asarray(energies), jnp.asarray(boxes), pairs

    def _npt_samples(self, theta, frames, key):
        """``loss.density.n_samples`` NPT frames (positions, boxes) of θ over ``sampling_ps``, after
        ``equilibrate_ps`` of NPT from the iteration's last NVT state (Monte Carlo barostat)."""
        dcfg, runner = self.config.loss.density, self._npt_runner()
        every = runner.config.sample_every
        try:
            state, pairs = runner.init(*frames.first_chain(), params=theta)
            n_eq = int(round(dcfg.equilibrate_ps / self.config.md.dt_ps / every))
            if n_eq:
                state, pairs, key, _ = runner.run(state, pairs, n_eq, params=theta, key=key, store=False,
                                                  stage="equilibrate", stop_requested=self.stop_requested)
            _, _, _, out = runner.run(state, pairs, dcfg.n_samples, params=theta, key=key,
                                      stop_requested=self.stop_requested)
        except (FloatingPointError, RuntimeError) as err:
            raise IterationFailure(f"NPT sampling for the density loss failed: {err}") from err
        if self.stop_requested():
            raise Stopped
        positions, boxes = np.asarray(out[0], float), np.asarray(out[3], float)
        if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(boxes))):
            raise IterationFailure("NPT sampling for the density loss produced non-finite positions or boxes")
        return positions, boxes

    def _npt_runner(self) -> NPTRunner:
        if self._npt is None:
            md, dcfg = self.config.md, self.config.loss.density
            self._npt = NPTRunner(self.engine.potential, self.problem.system, MDConfig(
                ensemble="npt", temperature_K=self.config.system.temperature_K, dt=md.dt_ps,
                gamma=md.gamma_per_ps,
                sample_every=max(1, int(round(dcfg.sampling_ps / dcfg.n_samples / md.dt_ps))),
                precision=np.dtype(self.engine.dtype).name,
                skin=md.skin_nm, chunk_frames=dcfg.n_samples, seed=self.config.run.seed,
                pressure_bar=dcfg.pressure_bar, barostat_every=dcfg.barostat_every))
        return self._npt

    def _reported_params(self, u) -> dict:
        """Current values of the trained leaves of small groups (≤ 64 numbers)."""
        theta, phi = self._params(u)
        out = {}
        for g, group in self.groups.items():
            if group.size <= 64:
                tree = theta if g == "potential" else phi
                values = dict(zip(leaf_names(tree), jax.tree.leaves(tree), strict=True))
                out[g] = {n: np.asarray(values[n]) for n in group.names}
        return out

    def _rollback(self, state: TrainState, reason: str) -> TrainState:
        failed = state.iteration + 1
        safety = self.config.safety
        if state.iteration == 0:
            message = self._unstable_start(reason)
            self.bus.emit({"kind": "run_end", "status": "gave_up", "iteration": 0, "message": message})
            raise RefinementFailed(message)
        if state.rollbacks >= safety.max_rollbacks:
            message = (f"gave up at iteration {failed} after {state.rollbacks} rollbacks (learning rates "
                       f"× {state.lr_factor:g}): {reason}. The last good checkpoint is "
                       f"{ckpt.checkpoint_path(self.checkpoint_dir, state.iteration)}; lower train.*.lr "
                       f"or md.dt_fs, or raise safety.max_rollbacks")
            self.bus.emit({"kind": "run_end", "status": "gave_up", "iteration": state.iteration,
                           "message": message})
            raise RefinementFailed(message)
        restore = state.iteration - 1
        path = ckpt.checkpoint_path(self.checkpoint_dir, restore)
        if not path.exists():
            raise RefinementFailed(f"iteration {failed} failed ({reason}) and checkpoint {path} needed to "
                                   f"roll "
                                   f"back is missing (run.keep_checkpoints ≥ 2 keeps it)")
        previous = self._load(path)
        factor = 0.5 * state.lr_factor
        event = {"kind": "rollback", "iteration": failed, "reason": reason, "restored_iteration": restore,
                 "lr_factor": factor, "attempt": state.rollbacks + 1}
        restored = previous.replace(lr_factor=factor, rollbacks=state.rollbacks + 1,
                                    failed_at=max(failed, state.failed_at),
                                    history=previous.history + (jsonable(event),))
        self._save(restored)
        ckpt.checkpoint_path(self.checkpoint_dir, state.iteration).unlink(missing_ok=True)
        self.bus.emit(event)
        return restored

    def _unstable_start(self, reason: str) -> str:
        return (f"the MD is unstable with the starting parameters, so no learning-rate change can help: "
                f"{reason}. Check md.dt_fs (now {self.config.md.dt_fs} fs), the model and the structure")


def refinement_job(config: RefineConfig | None = None, run_dir=None, resume: bool = False):
    """A ``job(emit, stop_requested)`` running a refinement (new, or resumed from ``run_dir``): the
    shape of work a background thread runs, e.g. ``workbench.ui.jobs.BackgroundJob``."""

    def job(emit: Subscriber, stop_requested: Callable[[], bool]) -> None:
        if resume:
            Trainer.resume(run_dir, [emit], stop_requested).run()
        else:
            Trainer(config, run_dir, [emit], stop_requested).run()

    return job


def band_metrics(grid, simulated, target, bands=ir.WATER_BANDS) -> dict:
    """Position, FWHM and height (cm⁻¹) of each band in range of the grid, simulated and target."""
    grid = np.asarray(grid)
    inside = {n: r for n, r in bands.items() if grid.min() <= r[0] and r[1] <= grid.max()}
    if not inside:
        return {}
    sim, tgt = ir.band_analysis(grid, simulated, inside), ir.band_analysis(grid, target, inside)
    return {n: {"position_sim": sim[n].position, "position_target": tgt[n].position,
                "fwhm_sim": sim[n].fwhm, "fwhm_target": tgt[n].fwhm,
                "height_sim": sim[n].height, "height_target": tgt[n].height} for n in inside}


def _leaves(group: ParameterGroup) -> dict:
    values = dict(zip(leaf_names(group.base), jax.tree.leaves(group.base), strict=True))
    return {n: np.asarray(values[n]) for n in group.names}


def _references(arrays: dict) -> dict:
    """TrainState.references from checkpoint arrays ``ref/<term>/<name>`` (boxes absent: None)."""
    terms = {key.split("/")[1] for key in arrays if key.startswith("ref/")}
    return {t: tuple(arrays.get(f"ref/{t}/{name}") for name in REFERENCE_ARRAYS) for t in sorted(terms)}


def _json_line(event: dict) -> str:
    return json.dumps(event) + "\n"


__all__ = ["RefineResult", "RefinementFailed", "TrainState", "Trainer", "band_metrics", "make_optimizer",
           "read_jsonl", "refinement_job"]
