r"""One refinement iteration's molecular dynamics: NVT sampling of window starts, NVE windows, gradients.

Sampling.  Langevin NVT (BAOAB) with the current parameters θ continues from the previous
iteration's last state; K frames are kept, one every ``sampling_ps / K``; their centre-of-mass
velocity is removed.  No gradient flows through it (the frames are constants, as in the seed paper).
With ``md.replicas`` = R > 1, R independent chains (``md.simulate.ReplicaRunner``: side by side,
split over the devices) give K/R frames each, ``sampling_ps / K`` apart: the same NVT time per
iteration in 1/R of the sequential steps.  The chains start from the same state with their own
noise and carry their own last state (R, N, 3) from iteration to iteration.

Windows.  From each frame (and, with time reversal, from the frame with flipped velocities) an NVE
window of n = τ/Δt steps is run with θ; each step yields *features* — Ṁ (IR), the molecular-centre
velocities (diffusion), the total energy (safety checks) — from which per-window *signals* are made:
Ṁ(t) (W, n+1, 3) and the window's VACF C_w(t) (W, n+1).  The loss L(signals) couples all windows
(the TCF is averaged over them), so its gradient is taken in two passes, window batch by batch:

    pass 1 (forward):  signals of every window → L, and g = ∂L/∂signals by AD of the loss alone;
    pass 2 (VJP):      dL/dθ = Σ_w ⟨g_w, d signals_w/dθ⟩ = ∇_θ Σ_w ⟨g_w, signals_w(θ)⟩

with the chosen estimator (``workbench.grad``: adjoint, checkpointed or direct AD through the
window).  This is exact (the chain rule with the cotangents held fixed), needs memory for one batch
only and lets the caller stop between batches.  With the adjoint (and φ fixed) pass 1 keeps each
window's *record* — its features, final state and anchors, on the host — and pass 2 replays it
(``grad.adjoint.adjoint_replay``): the backward pass alone.  The other estimators (and a trained φ,
whose gradient needs the states along the window) rerun the forward windows in pass 2.

Devices.  Every batch is split over the devices of ``md.devices`` (``grad.sharding``: a 1-D mesh,
all processes' devices in a ``jax.distributed`` run); the VJP sums are all-reduced and, like the
sum over batches and the signals the TCFs are averaged from, kept in float64 (x64 on).
``md.window_batch = 0`` sizes the batch from device memory on an accelerator (one window's compiled
gradient, ``devices.windows_per_batch``) and takes all windows at once on CPU.  ``precision =
"auto"`` is float32 on an accelerator, float64 on CPU (``devices.default_precision``).

Trainable dipole parameters φ.  The rollouts' observable must not depend on traced values, so when
φ is trained the features are the states (x, v) themselves and Ṁ = J_M(x; φ)·v is formed outside
the rollout; ∇_φ comes from the same surrogate.  With φ fixed, the feature is Ṁ itself (O(1) memory
per step, as the adjoint intends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from workbench import devices
from workbench.grad import VerletDynamics, rollout_fn, sharding, window_pairs, window_starts
from workbench.grad.adjoint import adjoint_replay
from workbench.grad.core import Estimator
from workbench.grad.windows import mdot_observable
from workbench.md import MDConfig, MDRunner, ReplicaRunner, integrators
from workbench.md.integrators import kinetic_energy, maxwell_boltzmann, remove_com_velocity
from workbench.md.neighbor import PairListBuilder
from workbench.md.simulate import chunk_summary
from workbench.observables import diffusion
from workbench.observables.dipole import DipoleModel, dipole_and_derivative
from workbench.potentials.base import Potential
from workbench.refine.config import ConfigError, MDSettings
from workbench.system import System
from workbench.units import KB

StopFn = Callable[[], bool]


class IterationFailure(RuntimeError):
    """The MD of an iteration blew up or left the safe range (the message says how)."""


class Stopped(Exception):  # noqa: N818 — a control-flow signal, not an error
    """A stop was requested; the iteration was abandoned."""


@dataclasses.dataclass(frozen=True)
class Frames:
    """Window starts of one iteration (COM-free velocities), the NVT state to continue from and the
    NVT mean temperature (K)."""

    positions: np.ndarray
    velocities: np.ndarray
    last_positions: np.ndarray
    last_velocities: np.ndarray
    temperature_K: float

    def first_chain(self):
        """(x, v) (N, 3) of the last state of the first NVT chain (the only one without replicas)."""
        x, v = np.asarray(self.last_positions), np.asarray(self.last_velocities)
        return (x[0], v[0]) if x.ndim == 3 else (x, v)


class WindowEngine:
    """Sampling, windows and their gradients for one potential, dipole model, system and settings.

    Args:
      potential, system: the model and the box (fixed volume).
      dipole: dipole model for Ṁ, or None without an IR term.
      md: the ``[md]`` settings; temperature_K: bath temperature; precision: state dtype
        ("float64", "float32" or "auto", see the module docstring).
      signals: which window signals to produce: subset of {"mdot", "vacf"}.
      train_dipole: whether gradients w.r.t. the dipole parameters are needed.
      seed: seed of the initial velocities when the system has none.
    """

    def __init__(self, potential: Potential, system: System, dipole: DipoleModel | None, md: MDSettings,
                 temperature_K: float, precision: str, signals, train_dipole: bool = False, seed: int = 0):
        self.system, self.md, self.temperature_K = system, md, float(temperature_K)
        precision = devices.resolve_precision(precision)
        try:
            self.mesh = sharding.window_mesh(md.devices)
        except ValueError as err:
            raise ConfigError(f"md.devices: {err}") from err
        self._batch_sizes: dict[int, int] = {}
        self.signals = tuple(sorted(signals))
        self.dipole, self.train_dipole = dipole, bool(train_dipole and "mdot" in self.signals)
        self.dtype = jnp.float64 if precision == "float64" else jnp.float32
        self.masses = np.asarray(system.masses, float)
        self.box = np.asarray(system.box, float)
        self.molecules = np.asarray(system.molecules)
        self.seed = seed
        small = potential.cutoff is None or potential.cutoff + md.skin_nm > 0.5 * float(self.box.min())
        # In a box smaller than twice cutoff + skin every pair is listed (the potentials apply the
        # minimum image and their own cutoff, so an all-pairs list is exact).
        self.potential = potential.replace(cutoff=None) if small else potential
        self.builder = None if small else PairListBuilder(tuple(self.box), potential.cutoff, md.skin_nm)
        self.pair_capacity: int | None = None
        self._like = None  # a list whose format the rebuilt lists take
        nvt = MDConfig(ensemble="nvt", temperature_K=self.temperature_K, dt=md.dt_ps, gamma=md.gamma_per_ps,
                       sample_every=md.spacing_steps, precision=precision, skin=md.skin_nm, chunk_frames=1,
                       seed=seed)
        self.nvt = (ReplicaRunner(self.potential, system, nvt, md.replicas, self.mesh) if md.replicas > 1
                    else MDRunner(self.potential, system, nvt))
        self.dynamics = VerletDynamics.from_potential(self.potential, system, md.dt_ps)
        self._init_state = jax.jit(lambda p, x, v, pairs: integrators.init_state(
            self.dynamics.energy_and_forces, p, x, v, pairs))
        features = self._features_fn()
        estimator = Estimator(md.estimator, anchor_every=md.anchor_every)
        self._rollout = rollout_fn(self.dynamics, md.window_steps, features, estimator)
        self.replays = estimator.kind == "adjoint" and not self.train_dipole
        if self.replays:
            self._record, self._replay = adjoint_replay(self.dynamics, md.window_steps, features,
                                                        estimator.anchor_every)
        self._forward = sharding.replicated_jit(self.mesh, self._sharded_forward)
        self._vjp = sharding.replicated_jit(self.mesh, self._sharded_vjp)

    # -- sampling ---------------------------------------------------------------------------
    def initial_state(self):
        """(positions, velocities) to start from: the system's, or Maxwell–Boltzmann at T (seeded)."""
        v = self.system.velocities
        if v is None:
            v = maxwell_boltzmann(jax.random.PRNGKey(self.seed), self.masses, self.temperature_K, self.dtype)
        return np.asarray(self.system.positions, float), np.asarray(v, float)

    def equilibrate(self, params, positions, velocities, key, duration_ps: float, stop: StopFn | None = None):
        """NVT for ``duration_ps`` (rounded to whole sampling intervals sampling_ps/K) from (x, v) —
        every chain, with replicas; returns the final (x, v)."""
        n = int(round(duration_ps / self.md.dt_ps / self.md.spacing_steps))
        if n == 0:
            return positions, velocities
        frames = self._nvt(params, positions, velocities, key, n, stop)
        return frames.last_positions, frames.last_velocities

    def sample(self, params, positions, velocities, key, stop: StopFn | None = None) -> Frames:
        """K NVT frames ``sampling_ps/K`` apart, continuing from (x, v) (see module docstring)."""
        return self._nvt(params, positions, velocities, key, self.md.n_windows // self.md.replicas, stop)

    def _nvt(self, params, positions, velocities, key, n_frames: int, stop) -> Frames:
        """``n_frames`` frames of every chain from (x, v) ((R, N, 3) or one state for all chains)."""
        runner, replicas = self.nvt, self.md.replicas
        try:
            x0 = jnp.asarray(positions, self.dtype)
            v0 = jnp.asarray(velocities, self.dtype)
            if replicas > 1:
                shape = (replicas, *x0.shape[-2:])
                state, nbrs = runner.init_replicas(jnp.broadcast_to(x0, shape), jnp.broadcast_to(v0, shape),
                                                   params)
                key = jax.random.split(key, replicas)
            else:
                nbrs = runner.allocate_pairs(x0) if self.builder is None else self.pair_list(x0)
                state = self._init_state(params, x0, v0, nbrs.idx)
            state, nbrs, _, frames = runner.run(state, nbrs, n_frames, params=params, key=key,
                                                stop_requested=stop)
        except (FloatingPointError, RuntimeError) as err:
            raise IterationFailure(f"NVT sampling failed: {err}") from err
        if self.builder is not None:  # an overflow inside the run reallocated a larger list
            self.pair_capacity = max(self.pair_capacity or 0, int(nbrs.idx.shape[-1]))
        if stop is not None and stop():
            raise Stopped
        if replicas > 1:  # (F, R, ...) → chain by chain, (R·F, ...)
            frames = tuple(np.swapaxes(a, 0, 1).reshape(-1, *a.shape[2:]) for a in frames)
        x, v, _ = frames
        temps = chunk_summary(frames, self.masses, runner.config)["temperature_K"]
        temperature = float(np.mean(temps))
        if not np.all(np.isfinite(x)) or not np.isfinite(temperature):
            raise IterationFailure("NVT sampling produced non-finite positions or velocities")
        v = np.asarray(remove_com_velocity(jnp.asarray(v), self.masses))
        return Frames(x, v, np.asarray(state.positions), np.asarray(state.velocities), temperature)

    # -- windows ----------------------------------------------------------------------------
    def starts(self, frames: Frames):
        """Window start positions, velocities (W, N, 3) and their pair lists (see :meth:`pairs_for`)."""
        x, v = window_starts(jnp.asarray(frames.positions, self.dtype),
                             jnp.asarray(frames.velocities, self.dtype), self.md.time_reversal)
        return x, v, self.pairs_for(x)

    def pairs_for(self, positions):
        """Pair lists for frames (S, N, 3): (S, 2, P), or one shared all-pairs (2, P) list in a small box.

        Every list is rebuilt from scratch into ``pair_capacity`` rows (jax-md's update with a
        template of that capacity), so it depends only on the frame and the capacity — a resumed run
        gets the same lists — and shapes, hence compiled code, stay the same between iterations.
        """
        if self.builder is None:
            return window_pairs(positions)
        return jnp.stack([self.pair_list(x).idx for x in np.asarray(positions)])

    def pair_list(self, positions):
        """A jax-md neighbour list of ``pair_capacity`` rows for one frame (capacity grown by 25 % +
        16 rows while the frame overflows it; first set from an allocation)."""
        x = jnp.asarray(positions)
        if self._like is None:
            self._like = self.builder.allocate(x)
        if self.pair_capacity is None:
            self.pair_capacity = int(self._like.idx.shape[1]) + 16
        (nbrs,), self.pair_capacity = self.builder.fitted([x], self._like, self.pair_capacity)
        return nbrs

    def _features_fn(self):
        """obs(state) → dict of per-step features (see module docstring)."""
        masses, box, molecules = self.masses, self.box, self.molecules
        fixed_mdot = None
        if "mdot" in self.signals and not self.train_dipole:
            fixed_mdot = mdot_observable(self.dipole, box, molecules)

        def features(state):
            out = {"etot": state.energy + kinetic_energy(state.velocities, masses)}
            if fixed_mdot is not None:
                out["mdot"] = fixed_mdot(state)
            elif "mdot" in self.signals:
                out["xv"] = (state.positions, state.velocities)
            if "vacf" in self.signals:
                v = remove_com_velocity(state.velocities, masses)
                out["v_centres"] = diffusion.molecule_centres(v[None], masses, molecules)[0]
            return out

        return features

    def _signals(self, features, dipole_params):
        """Per-window signals (W, n+1, ...) from the rollouts' features."""
        out = {}
        if "mdot" in self.signals:
            if "mdot" in features:
                out["mdot"] = features["mdot"]
            else:
                x, v = features["xv"]
                fn, box, mol = self.dipole.dipole_fn, self.box, self.molecules
                per_step = jax.vmap(jax.vmap(lambda xx, vv: dipole_and_derivative(
                    fn, dipole_params, xx, vv, box, mol)[1]))
                out["mdot"] = per_step(x, v)
        if "vacf" in self.signals:
            vc = features["v_centres"]
            out["vacf"] = jax.vmap(lambda u: diffusion.vacf(u, u.shape[0]))(vc)
        return out

    def _per_window(self, fn, params, x, v, pairs, *per_window):
        """``fn(params, s_0, pairs, *per_window)`` vmapped over the windows, s_0 built from θ."""
        pair_axis = None if pairs.ndim == 2 else 0

        def one(x0, v0, p, *rest):
            return fn(params, self.dynamics.init(params, x0, v0, p), p, *rest)

        return jax.vmap(one, in_axes=(0, 0, pair_axis) + (0,) * len(per_window))(x, v, pairs, *per_window)

    def _forward_batch(self, params, dipole_params, x, v, pairs):
        if self.replays:
            records = self._per_window(self._record, params, x, v, pairs)  # (Rollout, anchors)
            roll = records[0]
        else:
            probes = jnp.zeros((x.shape[0], 2), x.dtype)
            roll, records = self._per_window(self._rollout, params, x, v, pairs, probes), None
        return (self._signals(roll.observables, dipole_params), roll.observables["etot"],
                roll.max_displacement, records)

    def _vjp_batch(self, params, dipole_params, x, v, pairs, cotangents, records):
        def surrogate(p, dp, probes):
            if records is None:
                roll = self._per_window(self._rollout, p, x, v, pairs, probes)
            else:
                roll = self._per_window(self._replay, p, x, v, pairs, probes, records)
            sig = self._signals(roll.observables, dp)
            return sum(jnp.sum(cotangents[k] * sig[k]) for k in cotangents)

        probes = jnp.zeros((x.shape[0], 2), x.dtype)
        g_p, g_dp, reversal = jax.grad(surrogate, argnums=(0, 1, 2))(params, dipole_params, probes)
        return g_p, g_dp, jnp.max(reversal, axis=0)

    def _sharded_forward(self, params, dipole_params, x, v, pairs):
        windowed = (False, False, True, True, pairs.ndim == 3)
        split = sharding.over_windows(self._forward_batch, self.mesh, windowed, sharding.WINDOWED)
        return split(params, dipole_params, x, v, pairs)

    def _sharded_vjp(self, params, dipole_params, x, v, pairs, cotangents, records):
        """(Σ_w dL/dθ, Σ_w dL/dφ) over the batch, all-reduced in float64, and the max reversal error."""
        def local(p, dp, xs, vs, prs, cot, rec):
            g_p, g_dp, reversal = self._vjp_batch(p, dp, xs, vs, prs, cot, rec)
            return sharding.window_total((g_p, g_dp), axis=None), jax.lax.pmax(reversal, sharding.AXIS)

        split = sharding.over_windows(local, self.mesh,
                                      (False, False, True, True, pairs.ndim == 3, True, True),
                                      sharding.REPLICATED, zero_padded=(5,))
        (g_p, g_dp), reversal = split(params, dipole_params, x, v, pairs, cotangents, records)
        return g_p, g_dp, reversal

    def compile_gradient(self, params, dipole_params, x, v, pairs):
        """Trace and compile the gradient program for a batch shaped like ``x`` ahead of use (it may
        run on another thread while MD runs: XLA releases the GIL); later gradient calls with the
        same shapes and types find it in JAX's cache.  Returns the compiled program."""
        args = (params, dipole_params, x, v, pairs)
        cotangents, _, _, records = jax.eval_shape(self._forward, *args)
        return self._vjp.lower(*args, cotangents, records).compile()

    def window_batch(self, params, dipole_params, x, v, pairs) -> int:
        """Windows per compiled call: ``md.window_batch``; else, where the device reports its memory
        (GPU/TPU), the most that fit (``devices.windows_per_batch`` from the compiled gradient of one
        window per device); else (CPU) all of them."""
        n = x.shape[0]
        memory = devices.device_memory_bytes(self.mesh.local_devices[0])
        if self.md.window_batch or memory is None:
            return self.md.window_batch or n
        if n not in self._batch_sizes:
            one = slice(0, min(self.mesh.size, n))
            stats = self.compile_gradient(params, dipole_params, x[one], v[one],
                                          _take(pairs, one)).memory_analysis()
            self._batch_sizes[n] = devices.windows_per_batch(devices.peak_bytes(stats), n, self.mesh.size,
                                                              memory)
        return self._batch_sizes[n]

    def _batches(self, params, dipole_params, x, v, pairs):
        n, b = x.shape[0], self.window_batch(params, dipole_params, x, v, pairs)
        return [slice(i, i + b) for i in range(0, n, b)]

    def forward(self, params, dipole_params, x, v, pairs, stop: StopFn | None = None,
                on_batch: Callable[[int, int], None] | None = None):
        """Pass 1: signals of all windows (dict of (W, n+1, ...) arrays) and diagnostics, whose
        ``"records"`` (the adjoint's, or None) :meth:`gradient` takes."""
        out, etot, disp, records = [], [], [], []
        batches = self._batches(params, dipole_params, x, v, pairs)
        for k, sl in enumerate(batches):
            # to the host: results replicated over the mesh's devices would not mix with the caller's
            sig, e, d, rec = jax.device_get(self._forward(params, dipole_params, x[sl], v[sl],
                                                          _take(pairs, sl)))
            out.append(sig)
            records.append(rec)
            etot.append(np.asarray(e))
            disp.append(float(np.max(d)))
            if on_batch is not None:
                on_batch(k + 1, len(batches))
            if stop is not None and stop():
                raise Stopped
        acc = sharding.accumulation_dtype()  # TCFs average many windows: float64 sums
        signals = jax.tree.map(lambda *a: jnp.asarray(np.concatenate(a), acc), *out)
        etot = np.concatenate(etot)
        n_atoms = self.masses.size
        drift = float(np.max(np.abs(etot - etot[:, :1]))) / (n_atoms * KB * self.temperature_K)
        records = None if records[0] is None else jax.tree.map(lambda *a: np.concatenate(a), *records)
        return signals, {"energy_drift_kT_per_atom": drift, "max_displacement_nm": max(disp),
                         "finite": bool(np.all(np.isfinite(etot))), "records": records}

    def gradient(self, params, dipole_params, x, v, pairs, cotangents, stop: StopFn | None = None,
                 on_batch: Callable[[int, int], None] | None = None, records=None):
        """Pass 2: (dL/dθ, dL/dφ, reversal error [nm, nm/ps]) for cotangents g (dict like the signals);
        summed over batches in float64 (x64 on), returned in the parameters' dtypes.  ``records``:
        pass 1's (its diagnostics' ``"records"``) to replay instead of rerunning the windows."""
        if self.replays and records is None:
            records = self.forward(params, dipole_params, x, v, pairs, stop)[1]["records"]
        g_p = g_dp = None
        reversal = np.zeros(2)
        batches = self._batches(params, dipole_params, x, v, pairs)
        for k, sl in enumerate(batches):
            rec = None if records is None else jax.tree.map(lambda a, s=sl: a[s], records)
            gp, gdp, rev = jax.device_get(self._vjp(params, dipole_params, x[sl], v[sl], _take(pairs, sl),
                                                    {n: c[sl] for n, c in cotangents.items()}, rec))
            g_p = gp if g_p is None else jax.tree.map(np.add, g_p, gp)
            g_dp = gdp if g_dp is None else jax.tree.map(np.add, g_dp, gdp)
            reversal = np.maximum(reversal, np.asarray(rev))
            if on_batch is not None:
                on_batch(k + 1, len(batches))
            if stop is not None and stop():
                raise Stopped
        return sharding.in_dtype_of(params, g_p), sharding.in_dtype_of(dipole_params, g_dp), reversal


def _take(pairs, sl):
    return pairs if pairs.ndim == 2 else pairs[sl]

