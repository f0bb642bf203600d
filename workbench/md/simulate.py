"""Running MD: equilibrate, then sample frames every k steps, with neighbour-list safety.

The inner loop is a jitted ``lax.scan`` over ``sample_every`` integrator steps, nested in a scan
over the frames of one chunk; positions, velocities and potential energies are stored once per
frame.  Between chunks (outside jit) the pair list's overflow flag is checked; on overflow the
list is reallocated from the chunk's starting state and the chunk is run again, so no stored frame
ever used an incomplete pair list.

Ensemble "npt" runs in ``NPTRunner``: the same Langevin steps with the box in the state and a
Monte Carlo volume trial every ``barostat_every`` steps (``workbench.md.barostat``); its frames
also hold the box.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from workbench.md import barostat, integrators
from workbench.md.neighbor import (
    BoxPairs,
    PairListBuilder,
    box_pairs_capacity,
    build_box_pairs,
    overflowed,
    update_box_pairs,
)
from workbench.potentials.base import Potential, all_pairs
from workbench.system import System
from workbench.units import G_PER_CM3_PER_AMU_PER_NM3, KB, KJ_PER_MOL_PER_NM3_PER_BAR

#: Progress callback: ``progress(steps_done, steps_total, stage)`` with stage "equilibrate"/"sample".
ProgressFn = Callable[[int, int, str], None]


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """Settings of an MD run (units: ps, K, 1/ps, nm).

    ensemble: "nve" (velocity Verlet), "nvt" (BAOAB Langevin with friction ``gamma``) or "npt"
      (the same Langevin plus the Monte Carlo barostat of ``workbench.md.barostat``).
    pressure_bar: NPT pressure (bar); barostat_every: integrator steps between volume trials.
    dt: time step (0.0005 ps = 0.5 fs by default).
    sample_every: integrator steps between stored frames.
    precision: "float64" or "float32" (dtype of the state; the potential follows it).
    skin: pair-list skin (nm); chunk_frames: frames per jitted chunk (progress granularity).
    """

    ensemble: str = "nvt"
    temperature_K: float = 298.15
    dt: float = 0.0005
    gamma: float = 5.0
    sample_every: int = 10
    precision: str = "float64"
    skin: float = 0.1
    chunk_frames: int = 100
    seed: int = 0
    pressure_bar: float = 1.0
    barostat_every: int = 25

    def __post_init__(self):
        if self.ensemble not in ("nve", "nvt", "npt"):
            raise ValueError(f"ensemble must be 'nve', 'nvt' or 'npt', got {self.ensemble!r}")
        if self.barostat_every < 1:
            raise ValueError(f"barostat_every must be ≥ 1, got {self.barostat_every}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"precision must be 'float32' or 'float64', got {self.precision!r}")
        if not self.dt > 0 or not self.sample_every >= 1 or not self.temperature_K > 0:
            raise ValueError("dt and temperature must be positive and sample_every ≥ 1")

    @property
    def dtype(self):
        return jnp.float64 if self.precision == "float64" else jnp.float32


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Stored frames of a run.

    positions (F, N, 3) nm unwrapped; velocities (F, N, 3) nm/ps; potential_energy (F,) kJ/mol;
    kinetic_energy (F,) kJ/mol; dt_frame ps between frames; box (3,) nm (the last box in NPT);
    masses (N,) amu; boxes (F, 3) nm per frame in NPT, else None.
    ``final_state`` continues the run; ``n_reallocations`` counts pair-list overflows handled;
    ``barostat_acceptance``: accepted fraction of the volume trials (NPT).
    """

    positions: np.ndarray
    velocities: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    dt_frame: float
    box: np.ndarray
    masses: np.ndarray
    system: System
    config: MDConfig
    final_state: integrators.MDState
    n_reallocations: int = 0
    wall_time_s: float = 0.0
    boxes: np.ndarray | None = None
    barostat_acceptance: float | None = None

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def time_ps(self) -> np.ndarray:
        return np.arange(1, self.n_frames + 1) * self.dt_frame

    @property
    def total_energy(self) -> np.ndarray:
        return self.potential_energy + self.kinetic_energy

    @property
    def temperature(self) -> np.ndarray:
        """Instantaneous temperature (K) over 3N degrees of freedom (3N − 3 for NVE)."""
        dof = 3 * self.masses.size - (3 if self.config.ensemble == "nve" else 0)
        return 2.0 * self.kinetic_energy / (KB * dof)

    @property
    def volume(self) -> float:
        return float(np.prod(self.box))

    @property
    def volumes(self) -> np.ndarray:
        """Volume of each frame (F,) nm³ (constant unless NPT)."""
        boxes = np.broadcast_to(self.box, (self.n_frames, 3)) if self.boxes is None else self.boxes
        return np.prod(boxes, axis=-1)

    @property
    def density_g_cm3(self) -> np.ndarray:
        """Mass density of each frame (F,) g/cm³."""
        return float(np.sum(self.masses)) / self.volumes * G_PER_CM3_PER_AMU_PER_NM3

    def to_system(self, frame: int = -1) -> System:
        box = self.box if self.boxes is None else self.boxes[frame]
        return self.system.replace(positions=self.positions[frame], velocities=self.velocities[frame],
                                   box=np.asarray(box))


def energy_drift(time_ps, total_energy, n_atoms: int, temperature_K: float) -> float:
    """Drift of the total energy: least-squares slope / (kT · n_atoms), in kT per atom per ps."""
    slope = np.polyfit(np.asarray(time_ps, float), np.asarray(total_energy, float), 1)[0]
    return float(slope / (KB * temperature_K * n_atoms))


class MDRunner:
    """Jitted MD for one potential, system box and config; reusable across runs and parameters.

    ``run(state, n_frames)`` advances ``n_frames × sample_every`` steps and returns the frames.
    """

    def __init__(self, potential: Potential, system: System, config: MDConfig = MDConfig()):
        if config.ensemble == "npt":
            raise ValueError("ensemble 'npt' runs in NPTRunner (make_runner chooses it)")
        self.potential = potential
        self.system = system
        self.config = config
        self.masses = np.asarray(system.masses)
        self.box = np.asarray(system.box, float)
        energy_and_forces = integrators.energy_and_forces_fn(potential.energy_fn, self.box)
        # jitted for ``init``: evaluated eagerly, the first call compiles every primitive of the
        # energy and its gradient one by one (tens of seconds for q-TIP4P/F with Ewald on 2 cores).
        self._energy_and_forces = jax.jit(energy_and_forces)
        if config.ensemble == "nve":
            self._step = integrators.velocity_verlet(energy_and_forces, self.masses, config.dt)
        else:
            self._step = integrators.baoab_langevin(energy_and_forces, self.masses, config.dt,
                                                    config.temperature_K, config.gamma)
        self.pair_builder = None
        if potential.cutoff is not None:
            self.pair_builder = PairListBuilder(tuple(self.box), potential.cutoff, config.skin)
        self.n_reallocations = 0

    # -- pair lists -------------------------------------------------------------------------
    def allocate_pairs(self, positions, extra_capacity: int = 0):
        if self.pair_builder is None:
            return _StaticPairs(all_pairs(positions.shape[0]))
        return self.pair_builder.allocate(positions, extra_capacity)

    def _update_pairs(self, positions, nbrs):
        if self.pair_builder is None:
            return nbrs
        return self.pair_builder.update(positions, nbrs)

    # -- state --------------------------------------------------------------------------------
    def init(self, positions=None, velocities=None, params=None, seed: int | None = None):
        """Initial MDState and pair list; velocities from Maxwell–Boltzmann when not given."""
        dtype = self.config.dtype
        x = jnp.asarray(self.system.positions if positions is None else positions, dtype)
        if velocities is None:
            velocities = self.system.velocities
        if velocities is None:
            key = jax.random.PRNGKey(self.config.seed if seed is None else seed)
            velocities = integrators.maxwell_boltzmann(key, self.masses, self.config.temperature_K, dtype)
        v = jnp.asarray(velocities, dtype)
        nbrs = self.allocate_pairs(x)
        params = self.potential.params if params is None else params
        state = integrators.init_state(self._energy_and_forces, params, x, v, nbrs.idx)
        return state, nbrs

    @partial(jax.jit, static_argnums=(0, 4, 5))
    def _chunk(self, state, nbrs, key, n_frames, store, params):
        step = self._step
        update = self._update_pairs

        def one_step(carry, _):
            state, nbrs, key = carry
            key, sub = jax.random.split(key)
            nbrs = update(state.positions, nbrs)
            state = step(state, params, nbrs.idx, sub)
            return (state, nbrs, key), None

        def one_frame(carry, _):
            carry, _ = jax.lax.scan(one_step, carry, None, length=self.config.sample_every)
            s = carry[0]
            out = (s.positions, s.velocities, s.energy) if store else None
            return carry, out

        return jax.lax.scan(one_frame, (state, nbrs, key), None, length=n_frames)

    def run(self, state, nbrs, n_frames: int, *, params=None, key=None, store: bool = True,
            progress: ProgressFn | None = None, stage: str = "sample",
            on_chunk: Callable[[dict], None] | None = None,
            stop_requested: Callable[[], bool] | None = None):
        """Advance ``n_frames`` frames; returns (state, nbrs, key, frames) with frames as numpy
        arrays (positions, velocities, potential energy) or None when ``store`` is False.

        ``on_chunk(summary)`` receives ``chunk_summary`` of each finished chunk (live plots);
        ``stop_requested()`` is checked between chunks and ends the run early (frames so far kept).
        """
        params = self.potential.params if params is None else params
        if key is None:
            key = jax.random.PRNGKey(self.config.seed + 1)
        chunk = max(1, min(self.config.chunk_frames, n_frames))
        done, outputs = 0, []
        total_steps = n_frames * self.config.sample_every
        while done < n_frames:
            n = min(chunk, n_frames - done)
            for _attempt in range(5):
                (new_state, new_nbrs, new_key), out = self._advance(state, nbrs, key, n, store, params, stage)
                if not self._overflowed(new_nbrs):
                    break
                # The list overflowed somewhere in this chunk: reallocate from the chunk's start
                # with more room and redo the chunk (its frames are discarded).
                self.n_reallocations += 1
                nbrs = self._reallocate(state, nbrs)
            else:
                raise RuntimeError("pair list kept overflowing after 5 reallocations; the system "
                                   "is probably exploding (check the time step and the structure)")
            if not bool(jnp.all(jnp.isfinite(new_state.positions))):
                raise FloatingPointError(
                    f"MD blew up (non-finite positions) between step {done * self.config.sample_every} "
                    f"and {(done + n) * self.config.sample_every}; reduce the time step or check the model")
            state, nbrs, key = new_state, new_nbrs, new_key
            self._check(state)
            if store:
                outputs.append(jax.device_get(out))
            if on_chunk is not None and store:
                on_chunk(chunk_summary(outputs[-1], self.masses, self.config, first_frame=done))
            done += n
            if progress is not None:
                progress(done * self.config.sample_every, total_steps, stage)
            if stop_requested is not None and stop_requested():
                break
        frames = None
        if store:
            frames = tuple(np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0])))
        return state, nbrs, key, frames

    # -- hooks of ``run`` (``NPTRunner`` overrides them) --------------------------------------
    def _advance(self, state, nbrs, key, n_frames, store, params, stage):
        return self._chunk(state, nbrs, key, n_frames, store, params)

    def _overflowed(self, nbrs) -> bool:
        return self.pair_builder is not None and overflowed(nbrs)

    def _reallocate(self, state, nbrs):
        return self.pair_builder.allocate(state.positions, extra_capacity=_extra(nbrs))

    def _check(self, state) -> None:
        """Called after each accepted chunk (outside jit)."""


class ReplicaRunner(MDRunner):
    """``n_replicas`` independent copies of the system run side by side (NVE or Langevin NVT).

    States, pair lists and PRNG keys carry a leading replica axis R: ``run(state, nbrs, n_frames,
    key=keys)`` with keys (R, 2) advances every replica by ``n_frames × sample_every`` steps and
    returns frames (F, R, ...).  The replicas are vmapped and, with a device ``mesh``
    (``grad.sharding.window_mesh``), split over its devices (uneven counts padded with a repeated
    replica whose results are dropped); replica r evolves exactly as ``MDRunner.run`` would from
    its state with key r.  Pair lists: the shared all-pairs list (no cutoff), or one jax-md list
    per replica, all rebuilt to one capacity so they stack; when any overflows, all are rebuilt
    larger and the chunk is redone (``MDRunner.run``).
    """

    def __init__(self, potential: Potential, system: System, config: MDConfig, n_replicas: int, mesh=None):
        super().__init__(potential, system, config)
        self.n_replicas, self.mesh = int(n_replicas), mesh
        self._programs: dict = {}
        self._init = jax.jit(jax.vmap(partial(integrators.init_state, self._energy_and_forces),
                                      in_axes=(None, 0, 0, 0)))

    def allocate_pairs(self, positions, extra_capacity: int = 0):
        """Pair lists for replica positions (R, N, 3) (see the class docstring)."""
        if self.pair_builder is None:
            return _StaticPairs(all_pairs(positions.shape[-2]))
        x = jnp.asarray(positions)
        capacity = max(int(self.pair_builder.allocate(xr).idx.shape[1]) for xr in x) + extra_capacity
        return self._stacked_lists(x, capacity)

    def _stacked_lists(self, x, capacity: int):
        lists, _ = self.pair_builder.fitted(x, self.pair_builder.allocate(x[0]), capacity)
        return jax.tree.map(lambda *a: jnp.stack(a), *lists)

    def init(self, *args, **kwargs):
        raise TypeError("ReplicaRunner.init: a replica run starts from (R, N, 3) positions and velocities: "
                        "use init_replicas(positions, velocities, params)")

    def init_replicas(self, positions, velocities, params=None):
        """(states, pair lists) for replica positions and velocities (R, N, 3)."""
        dtype = self.config.dtype
        x, v = jnp.asarray(positions, dtype), jnp.asarray(velocities, dtype)
        nbrs = self.allocate_pairs(x)
        params = self.potential.params if params is None else params
        idx = nbrs.idx if nbrs.idx.ndim == 3 else jnp.broadcast_to(nbrs.idx, (x.shape[0],) + nbrs.idx.shape)
        return self._init(params, x, v, idx), nbrs

    def _program(self, n_frames: int, store: bool, shared: bool):
        """Jitted (states, pairs, keys, params) → ((states, pairs, keys), frames (R, F, ...))."""
        if (n_frames, store, shared) not in self._programs:
            from workbench.grad import sharding  # grad imports md: import here, not at the top

            pairs_axis = None if shared else 0

            def one(state, nbrs, key, params):
                return self._chunk(state, nbrs, key, n_frames, store, params)

            batched = jax.vmap(one, in_axes=(0, pairs_axis, 0, None),
                               out_axes=((0, pairs_axis, 0), 0))
            if self.mesh is None:
                program = jax.jit(batched)
            else:
                split, whole = sharding.WINDOWED, sharding.REPLICATED
                program = sharding.replicated_jit(self.mesh, sharding.over_windows(
                    batched, self.mesh, (True, not shared, True, False),
                    ((split, whole if shared else split, split), split)))
            self._programs[n_frames, store, shared] = program
        return self._programs[n_frames, store, shared]

    def run(self, state, nbrs, n_frames: int, *, key=None, on_chunk=None, **options):
        """``MDRunner.run`` for all replicas; ``key``: (R, 2) keys (default: split from the seed)."""
        if on_chunk is not None:
            raise ValueError("ReplicaRunner.run: on_chunk summarises one system; summarise the (F, R, ...) "
                             "frames instead")
        if key is None:
            key = jax.random.split(jax.random.PRNGKey(self.config.seed + 1), self.n_replicas)
        return super().run(state, nbrs, n_frames, key=key, **options)

    def _advance(self, state, nbrs, key, n_frames, store, params, stage):
        program = self._program(n_frames, store, isinstance(nbrs, _StaticPairs))
        carry, out = program(state, nbrs, key, params)
        return carry, jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)  # (F, R, ...)

    def _overflowed(self, nbrs) -> bool:
        return self.pair_builder is not None and bool(jnp.any(nbrs.did_buffer_overflow))

    def _reallocate(self, state, nbrs):
        return self._stacked_lists(state.positions, int(nbrs.idx.shape[-1]) + _extra(nbrs))


class NPTState(NamedTuple):
    """MD state, barostat state (box, step size, counts) and the step count of an NPT run."""

    md: integrators.MDState
    barostat: barostat.BarostatState
    step: jax.Array

    @property
    def positions(self):
        return self.md.positions


class NPTRunner(MDRunner):
    """``MDRunner`` for ensemble "npt": BAOAB Langevin steps in the current box and a Monte Carlo
    volume trial every ``config.barostat_every`` steps (``workbench.md.barostat``; molecules are
    scaled by their centres of mass).

    The state is an ``NPTState``; the pair list a ``BoxPairs`` (rebuilt whenever the box changes).
    Frames are (positions, velocities, potential energy, box).  The volume step size adapts while
    ``run`` is called with ``stage="equilibrate"`` and stays fixed while sampling.
    """

    def __init__(self, potential: Potential, system: System, config: MDConfig):
        if config.ensemble != "npt":
            raise ValueError(f"NPTRunner needs ensemble 'npt', got {config.ensemble!r}")
        self.potential, self.system, self.config = potential, system, config
        self.masses = np.asarray(system.masses)
        self.box = np.asarray(system.box, float)
        value_and_grad = jax.value_and_grad(potential.energy_fn, argnums=1)

        def energy_and_forces(params, positions, box, pairs):
            e, g = value_and_grad(params, positions, box.astype(positions.dtype), pairs)
            return e, -g

        self._box_energy_and_forces = energy_and_forces
        self._init_energy_and_forces = jax.jit(energy_and_forces)
        self.pair_builder = None
        self.reach = np.inf if potential.cutoff is None else potential.cutoff + config.skin
        self.molecule_of = barostat.molecule_index(system.molecules, system.n_atoms)
        self.n_molecules = int(np.asarray(system.molecules).shape[0])
        self.pressure = config.pressure_bar * KJ_PER_MOL_PER_NM3_PER_BAR
        self.n_reallocations = 0

    def init(self, positions=None, velocities=None, params=None, seed: int | None = None, box=None):
        """Initial ``NPTState`` and ``BoxPairs`` (``box`` defaults to the system's)."""
        dtype = self.config.dtype
        x = jnp.asarray(self.system.positions if positions is None else positions, dtype)
        box = jnp.asarray(self.box if box is None else box, dtype)
        if velocities is None:
            velocities = self.system.velocities
        if velocities is None:
            key = jax.random.PRNGKey(self.config.seed if seed is None else seed)
            velocities = integrators.maxwell_boltzmann(key, self.masses, self.config.temperature_K, dtype)
        pairs = build_box_pairs(x, box, self.reach, box_pairs_capacity(x, box, self.reach))
        params = self.potential.params if params is None else params
        e, f = self._init_energy_and_forces(params, x, box, pairs.idx)
        md = integrators.MDState(x, jnp.asarray(velocities, dtype), f, e)
        return NPTState(md, barostat.init_barostat(box), jnp.zeros((), jnp.int32)), pairs

    @partial(jax.jit, static_argnums=(0, 4, 5, 7))
    def _chunk(self, state, pairs, key, n_frames, store, params, adapt):
        cfg = self.config
        ef = self._box_energy_and_forces
        kT = KB * cfg.temperature_K

        def one_step(carry, _):
            s, pairs, key = carry
            key, k_step, k_move = jax.random.split(key, 3)
            box = s.barostat.box
            pairs = update_box_pairs(pairs, s.md.positions, box, self.reach, cfg.skin)
            step = integrators.baoab_langevin(lambda p, x, idx: ef(p, x, box, idx), self.masses, cfg.dt,
                                              cfg.temperature_K, cfg.gamma)
            md = step(s.md, params, pairs.idx, k_step)

            def move(args):
                md, pairs, baro = args
                return barostat.volume_move(ef, params, md, pairs, baro, k_move, masses=self.masses,
                                            molecule_of=self.molecule_of, n_molecules=self.n_molecules,
                                            pressure=self.pressure, kT=kT, reach=self.reach, adapt=adapt)

            due = (s.step + 1) % cfg.barostat_every == 0
            md, pairs, baro = jax.lax.cond(due, move, lambda args: args, (md, pairs, s.barostat))
            return (NPTState(md, baro, s.step + 1), pairs, key), None

        def one_frame(carry, _):
            carry, _ = jax.lax.scan(one_step, carry, None, length=cfg.sample_every)
            s = carry[0]
            out = (s.md.positions, s.md.velocities, s.md.energy, s.barostat.box) if store else None
            return carry, out

        return jax.lax.scan(one_frame, (state, pairs, key), None, length=n_frames)

    def _advance(self, state, nbrs, key, n_frames, store, params, stage):
        return self._chunk(state, nbrs, key, n_frames, store, params, stage == "equilibrate")

    def _overflowed(self, nbrs) -> bool:
        return bool(nbrs.overflow)

    def _reallocate(self, state, nbrs) -> BoxPairs:
        return build_box_pairs(state.positions, state.barostat.box, self.reach,
                               nbrs.idx.shape[1] + _extra(nbrs))

    def _check(self, state) -> None:
        """The interaction cutoff (q-TIP4P/F: its site cutoff) must stay within half the box."""
        cutoff = self.potential.metadata.get("site_cutoff_nm", self.potential.cutoff)
        half = 0.5 * float(jnp.min(state.barostat.box))
        if cutoff is not None and cutoff > half:
            raise RuntimeError(f"the box shrank to {2 * half:.4f} nm, less than twice the cutoff "
                               f"({cutoff} nm): use a larger system")


def make_runner(potential: Potential, system: System, config: MDConfig = MDConfig()) -> MDRunner:
    """``NPTRunner`` for ensemble "npt", else ``MDRunner``."""
    return (NPTRunner if config.ensemble == "npt" else MDRunner)(potential, system, config)


def chunk_summary(frames, masses, config: MDConfig, first_frame: int = 0) -> dict:
    """Per-frame time (ps), temperature (K), potential, kinetic and total energy (kJ/mol) of a chunk
    of frames ``(positions, velocities, potential_energy)``."""
    velocities, pe = frames[1], frames[2]
    ke = 0.5 * np.sum(np.asarray(masses)[None, :, None] * np.asarray(velocities, float) ** 2, axis=(1, 2))
    dof = 3 * len(masses) - (3 if config.ensemble == "nve" else 0)
    t = (first_frame + np.arange(1, len(pe) + 1)) * config.dt * config.sample_every
    pe = np.asarray(pe, float)
    return {"time_ps": t, "temperature_K": 2 * ke / (KB * dof), "potential_energy": pe,
            "kinetic_energy": ke, "total_energy": pe + ke}


def _extra(nbrs) -> int:
    return max(16, int(0.25 * nbrs.idx.shape[-1]))


@dataclasses.dataclass(frozen=True)
class _StaticPairs:
    """All-pairs list for potentials without a cutoff (never overflows)."""

    idx: jax.Array

    def update(self, positions):
        return self


jax.tree_util.register_pytree_node(_StaticPairs, lambda p: ((p.idx,), None), lambda _, c: _StaticPairs(c[0]))


def simulate(potential: Potential, system: System, n_steps: int, config: MDConfig = MDConfig(), *,
             equilibration_steps: int = 0, params=None, progress: ProgressFn | None = None,
             runner: MDRunner | None = None, on_chunk: Callable[[dict], None] | None = None,
             stop_requested: Callable[[], bool] | None = None) -> Trajectory:
    """Equilibrate for ``equilibration_steps`` (not stored), then run ``n_steps`` storing every
    ``config.sample_every``-th frame.  Velocities come from ``system.velocities`` or Maxwell–Boltzmann
    at ``config.temperature_K``.  ``on_chunk``/``stop_requested``: see ``MDRunner.run`` (a stop
    returns the frames sampled so far).  Returns a ``Trajectory``.
    """
    if n_steps < config.sample_every:
        raise ValueError(f"n_steps ({n_steps}) must be at least sample_every ({config.sample_every})")
    runner = runner or make_runner(potential, system, config)
    t0 = time.perf_counter()
    state, nbrs = runner.init(params=params)
    key = jax.random.PRNGKey(config.seed + 1)
    k = config.sample_every
    if equilibration_steps:
        state, nbrs, key, _ = runner.run(state, nbrs, max(1, equilibration_steps // k), params=params,
                                         key=key, store=False, progress=progress, stage="equilibrate")
    state, nbrs, key, frames = runner.run(state, nbrs, n_steps // k, params=params, key=key,
                                          progress=progress, on_chunk=on_chunk,
                                          stop_requested=stop_requested)
    positions, velocities, pe = frames[:3]
    masses = runner.masses
    ke = chunk_summary(frames, masses, config)["kinetic_energy"]
    box, npt = runner.box, {}
    if config.ensemble == "npt":
        baro = state.barostat
        box = np.asarray(baro.box, float)
        npt = {"boxes": np.asarray(frames[3], float),
               "barostat_acceptance": float(baro.total_accepted) / max(1, int(baro.total_trials))}
    return Trajectory(positions=positions, velocities=velocities, potential_energy=pe.astype(float),
                      kinetic_energy=ke, dt_frame=config.dt * k, box=box, masses=masses, system=system,
                      config=config, final_state=state, n_reallocations=runner.n_reallocations,
                      wall_time_s=time.perf_counter() - t0, **npt)
