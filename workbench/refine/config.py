"""Refinement settings: a TOML file read into frozen, validated dataclasses.

Every setting of a refinement (and of the dashboard's refinement panel) has a key here.  A file
holds any subset of the tables below; missing keys take the defaults shown.  Validation is strict:
an unknown key, a value of the wrong type or one out of range raises ``ConfigError`` naming the
key (``md.dt_fs: must be > 0, got -1``).

    [run]          dir, seed, iterations, precision, keep_checkpoints, plots
    [system]       structure, model, cutoff_nm, temperature_K, params (initial parameter overrides)
    [dipole]       model, params
    [md]           dt_fs, gamma_per_ps, equilibrate_ps, sampling_ps, n_windows, replicas, time_reversal,
                   truncation_fs, estimator, window_batch, devices, skin_nm
    [loss.ir]      weight, target, mode, normalise, grid_step_cm, ranges_cm, range_weights, window,
                   sigma_ps, quantum_correction
    [loss.diffusion]       weight, target_nm2_per_ps, finite_size_correction, viscosity_mPa_s
    [loss.force_matching]  weight, data, energy_weight, max_frames
    [loss.rdf]     weight, target, pair, r_max_nm, n_bins, smearing_nm, min_ess_fraction
    [loss.density] weight, target_g_cm3, pressure_bar, equilibrate_ps, sampling_ps, n_samples,
                   barostat_every, min_ess_fraction
    [loss.l2]      weight
    [train.potential], [train.dipole]   enabled, lr, params, parameterisation
    [optimizer]    name, schedule, decay_rate, final_fraction, clip_norm, b1, b2
    [safety]       max_rollbacks, max_temperature_factor, max_energy_drift_kT
    [distributed]  enabled, coordinator_address, num_processes, process_id, local_device_ids,
                   timeout_s (multi-process runs, see docs/scale_out.md)

Paths of input files (structure, model, spectra, data) are relative to the config file's folder;
``run.dir`` is relative to the working directory (default ``runs/<config file stem>``).
Units are in the key names (fs, ps, K, nm, cm⁻¹, mPa·s).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path

from workbench.errors import UserInputError


class ConfigError(UserInputError):
    """An invalid refinement config; the message starts with the offending key."""


def _opt(default, help: str, *, gt=None, ge=None, le=None, choices=None, factory=None):
    """A config field: default, one-line help and the checks its value must pass."""
    meta = {"help": help, "gt": gt, "ge": ge, "le": le, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    dir: str | None = _opt(None, "run directory (relative to the working directory)")
    seed: int = _opt(0, "seed of every random number (thermostat, initial velocities)", ge=0)
    iterations: int = _opt(10, "number of refinement iterations", ge=1)
    precision: str = _opt("auto", "dtype of the MD state ('auto': float32 on GPU/TPU, float64 on CPU)",
                          choices=("auto", "float64", "float32"))
    keep_checkpoints: int = _opt(3, "checkpoints kept (≥ 2: a rollback needs the one before last)", ge=2)
    plots: bool = _opt(True, "write PNG plots at the end")


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    structure: str = _opt("default", "'default' (shipped 64-water box) or a structure file")
    model: str = _opt("qtip4pf", "'qtip4pf', 'qtip4pf-twin', 'lennard-jones' or a model file")
    cutoff_nm: float | None = _opt(None, "pair cutoff of q-TIP4P/F / Lennard-Jones (nm); default the model's",
                                   gt=0.0)
    temperature_K: float = _opt(298.15, "bath temperature (K)", gt=0.0)
    params: dict[str, float] = _opt(None, "initial values of named scalar potential parameters", factory=dict)


#: Built-in dipole models of ``[dipole] model`` (anything else names a DeepDipole .npz file).
DIPOLE_NAMES = ("qtip4pf", "qtip4pf-twin", "charge_flux", "none")


@dataclasses.dataclass(frozen=True)
class DipoleConfig:
    model: str = _opt("qtip4pf", "dipole model: " + ", ".join(map(repr, DIPOLE_NAMES))
                      + " or a DeePMD DeepDipole model file (.npz, workbench ir --dipole)")
    params: dict[str, float] = _opt(None, "initial values of named dipole parameters", factory=dict)


@dataclasses.dataclass(frozen=True)
class MDSettings:
    dt_fs: float = _opt(0.5, "time step (fs), NVT sampling and NVE windows", gt=0.0)
    gamma_per_ps: float = _opt(5.0, "Langevin friction of the NVT sampling (1/ps)", gt=0.0)
    equilibrate_ps: float = _opt(1.0, "NVT before the first iteration (ps)", ge=0.0)
    sampling_ps: float = _opt(1.0, "NVT per iteration; a start every sampling_ps/n_windows (ps)", gt=0.0)
    n_windows: int = _opt(4, "starting frames per iteration (×2 windows with time_reversal)", ge=1)
    replicas: int = _opt(1, "independent NVT chains the starting frames come from, run side by side "
                            "(split over md.devices), n_windows/replicas frames each", ge=1)
    time_reversal: bool = _opt(True, "also run each window from the frame with flipped velocities")
    truncation_fs: float = _opt(200.0, "window (TCF and gradient truncation) length τ (fs)", gt=0.0)
    estimator: str = _opt("adjoint", "gradient estimator", choices=("adjoint", "checkpoint", "direct"))
    anchor_fs: float = _opt(0.0, "adjoint: keep (x, v) every anchor_fs and restart the reverse pass "
                                 "from them, which bounds the reversal error (float32 on a GPU: up to "
                                 "2.4e-4 nm over 400 steps); memory grows as τ/anchor_fs (0: start and end "
                                 "states only)", ge=0.0)
    window_batch: int = _opt(0, "windows per compiled call, a divisor of the window count (0: all on CPU, "
                                "as many as fit in memory on GPU/TPU)", ge=0)
    devices: int = _opt(0, "devices the windows are split over (0: all, of every process)", ge=0)
    skin_nm: float = _opt(0.1, "pair-list skin (nm)", gt=0.0)

    @property
    def dt_ps(self) -> float:
        return self.dt_fs * 1e-3

    @property
    def window_steps(self) -> int:
        return int(round(self.truncation_fs / self.dt_fs))

    @property
    def anchor_every(self) -> int | None:
        """Steps between the adjoint's stored states, or None (start and end only)."""
        return max(1, int(round(self.anchor_fs / self.dt_fs))) if self.anchor_fs > 0 else None

    @property
    def n_runs(self) -> int:
        return self.n_windows * (2 if self.time_reversal else 1)

    @property
    def spacing_steps(self) -> int:
        return int(round(self.sampling_ps / self.n_windows / self.dt_ps))

    @property
    def batch(self) -> int:
        return self.window_batch or self.n_runs


@dataclasses.dataclass(frozen=True)
class IRLossConfig:
    weight: float = _opt(1.0, "weight of the IR term in the total loss", ge=0.0)
    target: str = _opt("experiment", "'experiment' (shipped Bertie & Lan 1996) or a spectrum file (n·α)")
    mode: str = _opt("absolute", "compare n·α ('absolute') or each range normalised by its area ('shape')",
                     choices=("absolute", "shape"))
    normalise: bool = _opt(True, "divide by Σ w·I_target² (dimensionless term)")
    grid_step_cm: float = _opt(0.0, "loss grid spacing (cm⁻¹); 0: the target's own wavenumbers", ge=0.0)
    ranges_cm: list[list[float]] = _opt(None, "wavenumber ranges [low, high) (cm⁻¹)",
                                        factory=lambda: [[0.0, 1000.0], [1000.0, 4000.0]])
    range_weights: list[float] = _opt(None, "weight of each range", factory=lambda: [10.0, 1.0])
    window: str = _opt("gaussian", "TCF lag window", choices=("gaussian", "hann", "none"))
    sigma_ps: float = _opt(1.0 / 3.0, "Gaussian lag-window width (ps)", gt=0.0)
    quantum_correction: str = _opt("harmonic", "quantum correction",
                                   choices=("harmonic", "schofield", "none"))


@dataclasses.dataclass(frozen=True)
class DiffusionLossConfig:
    weight: float = _opt(0.0, "weight of ((D − D_target)/D_target)²", ge=0.0)
    target_nm2_per_ps: float = _opt(0.0023, "target D (nm²/ps; water 298 K: 2.30e-9 m²/s)", gt=0.0)
    finite_size_correction: bool = _opt(True, "add the Yeh–Hummer correction to the simulated D")
    viscosity_mPa_s: float = _opt(0.890, "shear viscosity for the Yeh–Hummer correction (mPa·s)", gt=0.0)


@dataclasses.dataclass(frozen=True)
class ForceMatchingConfig:
    weight: float = _opt(0.0, "weight of the force-matching regulariser", ge=0.0)
    data: str = _opt("", "reference frames: .npz (positions, forces, energies, box) or extxyz")
    energy_weight: float = _opt(0.0, "weight of the per-atom energy term ((kJ/mol)⁻² per atom²)", ge=0.0)
    max_frames: int = _opt(32, "frames of the dataset used", ge=1)


@dataclasses.dataclass(frozen=True)
class RDFLossConfig:
    weight: float = _opt(0.0, "weight of Σ_r (g_θ(r) − g_target(r))² Δr / Σ g_target² Δr", ge=0.0)
    target: str = _opt("", "target g(r): two columns r (nm), g")
    pair: list[str] = _opt(None, "element pair", factory=lambda: ["O", "O"])
    r_max_nm: float = _opt(0.0, "largest r (nm); 0: half the shortest box edge", ge=0.0)
    n_bins: int = _opt(60, "histogram bins", ge=2)
    smearing_nm: float = _opt(0.005, "Gaussian smearing of the pair distances (nm)", gt=0.0)
    min_ess_fraction: float = _opt(0.5, "resample the reference when N_eff/S falls below", gt=0.0, le=1.0)


@dataclasses.dataclass(frozen=True)
class DensityLossConfig:
    weight: float = _opt(0.0, "weight of ((⟨ρ⟩ − ρ_target)/ρ_target)², ⟨ρ⟩ reweighted NPT samples", ge=0.0)
    target_g_cm3: float = _opt(0.997, "target mass density (g/cm³; water 298 K, 1 bar: 0.997)", gt=0.0)
    pressure_bar: float = _opt(1.0, "pressure of the NPT sampling (bar)")
    equilibrate_ps: float = _opt(1.0, "NPT equilibration before each new set of samples (ps)", ge=0.0)
    sampling_ps: float = _opt(2.0, "NPT run that gives the samples (ps)", gt=0.0)
    n_samples: int = _opt(20, "NPT frames kept as the reweighting reference", ge=2)
    barostat_every: int = _opt(25, "MD steps between Monte Carlo volume trials", ge=1)
    min_ess_fraction: float = _opt(0.5, "resample (new NPT run) when N_eff/S falls below", gt=0.0, le=1.0)


@dataclasses.dataclass(frozen=True)
class L2Config:
    weight: float = _opt(0.0, "weight of ‖u‖², u the parameter change in optimiser coordinates", ge=0.0)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    ir: IRLossConfig = _opt(None, "IR spectrum loss", factory=IRLossConfig)
    diffusion: DiffusionLossConfig = _opt(None, "diffusion loss", factory=DiffusionLossConfig)
    force_matching: ForceMatchingConfig = _opt(None, "force matching", factory=ForceMatchingConfig)
    rdf: RDFLossConfig = _opt(None, "RDF loss by reweighting", factory=RDFLossConfig)
    density: DensityLossConfig = _opt(None, "density loss (reweighting)", factory=DensityLossConfig)
    l2: L2Config = _opt(None, "L2 penalty on the parameter change", factory=L2Config)

    @property
    def window_terms(self) -> tuple[str, ...]:
        """Loss terms computed from the NVE windows."""
        return tuple(n for n in ("ir", "diffusion") if getattr(self, n).weight > 0)


@dataclasses.dataclass(frozen=True)
class GroupConfig:
    enabled: bool = _opt(True, "train this group")
    lr: float = _opt(1e-3, "learning rate (in optimiser coordinates per iteration)", gt=0.0)
    params: list[str] = _opt(None, "trained parameters (fnmatch patterns)", factory=lambda: ["*"])
    parameterisation: str = _opt("absolute", "θ = θ0 + u ('absolute') or θ = θ0·(1 + u) ('relative')",
                                 choices=("absolute", "relative"))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    potential: GroupConfig = _opt(None, "potential parameters", factory=GroupConfig)
    dipole: GroupConfig = _opt(None, "dipole-model parameters", factory=lambda: GroupConfig(enabled=False))

    @property
    def groups(self) -> dict[str, GroupConfig]:
        """The enabled groups by name."""
        return {n: g for n, g in (("potential", self.potential), ("dipole", self.dipole)) if g.enabled}


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = _opt("adam", "optimiser", choices=("adam", "sgd"))
    schedule: str = _opt("constant", "learning-rate schedule over iterations",
                         choices=("constant", "cosine", "exponential"))
    decay_rate: float = _opt(0.95, "exponential schedule: factor per iteration", gt=0.0, le=1.0)
    final_fraction: float = _opt(0.1, "cosine schedule: final lr / initial lr", ge=0.0, le=1.0)
    clip_norm: float = _opt(0.0, "clip each group's gradient to this global norm (0: off)", ge=0.0)
    b1: float = _opt(0.9, "Adam β1", ge=0.0, le=1.0)
    b2: float = _opt(0.999, "Adam β2", ge=0.0, le=1.0)


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
    max_rollbacks: int = _opt(3, "consecutive rollbacks (each halving the lr) before giving up", ge=0)
    max_temperature_factor: float = _opt(1.5, "failure when a mean temperature exceeds this × T", gt=1.0)
    max_energy_drift_kT: float = _opt(1.0, "failure when |E_tot(t) − E_tot(0)| in a window exceeds this "
                                      "(kT per atom)", gt=0.0)


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    enabled: bool = _opt(False, "call jax.distributed.initialize (one process per host or GPU)")
    coordinator_address: str = _opt("", "host:port of process 0 ('': detected, e.g. under SLURM)")
    num_processes: int | None = _opt(None, "number of processes (default: detected)", ge=1)
    process_id: int | None = _opt(None, "this process's index, 0 … num_processes − 1 (default: detected)",
                                  ge=0)
    local_device_ids: list[int] = _opt(None, "devices of this process (default: all visible)", factory=list)
    timeout_s: int = _opt(300, "seconds to wait for all processes to connect", ge=1)


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """The whole refinement config (see the module docstring); ``base_dir`` resolves input paths."""

    run: RunConfig = _opt(None, "run settings", factory=RunConfig)
    system: SystemConfig = _opt(None, "system and potential", factory=SystemConfig)
    dipole: DipoleConfig = _opt(None, "dipole model", factory=DipoleConfig)
    md: MDSettings = _opt(None, "sampling and windows", factory=MDSettings)
    loss: LossConfig = _opt(None, "loss terms", factory=LossConfig)
    train: TrainConfig = _opt(None, "trainable groups", factory=TrainConfig)
    optimizer: OptimizerConfig = _opt(None, "optimiser", factory=OptimizerConfig)
    safety: SafetyConfig = _opt(None, "rollback settings", factory=SafetyConfig)
    distributed: DistributedConfig = _opt(None, "multi-process (multi-host) run", factory=DistributedConfig)
    base_dir: str = dataclasses.field(default=".", compare=False, metadata={"internal": True})

    def __post_init__(self):
        _cross_checks(self)

    def path(self, value: str) -> Path:
        """An input path from the config, relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def resolved(self, run_dir) -> RefineConfig:
        """A copy whose input-file paths are absolute and whose ``run.dir`` is ``run_dir``: the
        config written into a run directory, valid wherever it is read from."""
        changes = {"run.dir": str(Path(run_dir).resolve())}
        keep = {"system.structure": "default", "system.model": None, "dipole.model": None,
                "loss.ir.target": "experiment",
                "loss.force_matching.data": "", "loss.rdf.target": ""}
        for dotted, special in keep.items():
            section, key = dotted.rsplit(".", 1)
            value = getattr(_section(self, section), key)
            named = dotted in ("system.model", "dipole.model")  # a name, or a file when one exists
            if value and value != special and (not named or self.path(value).exists()):
                changes[dotted] = str(self.path(value).resolve())
        return self.replace(**changes)

    def replace(self, **sections) -> RefineConfig:
        """A copy with whole sections or ``"section.key"`` values changed (validated again)."""
        data = to_dict(self)
        for dotted, value in sections.items():
            *parents, key = dotted.split(".")
            node = data
            for p in parents:
                node = node.setdefault(p, {})
            node[key] = to_dict(value) if dataclasses.is_dataclass(value) else value
        return from_dict(data, self.base_dir)


def _section(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _cross_checks(cfg: RefineConfig) -> None:
    md, loss = cfg.md, cfg.loss
    if md.window_steps < 2 or not math.isclose(md.window_steps * md.dt_fs, md.truncation_fs, rel_tol=1e-6):
        raise ConfigError(f"md.truncation_fs: must be a multiple (≥ 2) of md.dt_fs = {md.dt_fs}, "
                          f"got {md.truncation_fs}")
    if md.spacing_steps < 1:
        raise ConfigError(f"md.sampling_ps: {md.sampling_ps} ps over {md.n_windows} windows is shorter "
                          f"than one time step")
    if md.n_runs % md.batch:
        raise ConfigError(f"md.window_batch: must divide the number of windows ({md.n_runs}), "
                          f"got {md.window_batch}")
    if md.anchor_fs > 0 and (md.estimator != "adjoint" or md.anchor_fs >= md.truncation_fs
                             or not math.isclose(md.anchor_every * md.dt_fs, md.anchor_fs, rel_tol=1e-6)):
        raise ConfigError(f"md.anchor_fs: applies to the adjoint estimator, as a multiple of md.dt_fs "
                          f"({md.dt_fs}) shorter than md.truncation_fs ({md.truncation_fs}); got "
                          f"{md.anchor_fs} with estimator {md.estimator!r}")
    if md.n_windows % md.replicas:
        raise ConfigError(f"md.replicas: must divide md.n_windows ({md.n_windows}) so that every NVT "
                          f"chain gives the same number of starting frames, got {md.replicas}")
    ir = loss.ir
    if len(ir.ranges_cm) != len(ir.range_weights):
        raise ConfigError(f"loss.ir.range_weights: needs one weight per range ({len(ir.ranges_cm)}), "
                          f"got {len(ir.range_weights)}")
    for k, r in enumerate(ir.ranges_cm):
        if len(r) != 2 or not 0 <= r[0] < r[1]:
            raise ConfigError(f"loss.ir.ranges_cm[{k}]: must be [low, high] with 0 ≤ low < high, got {r}")
    ordered = sorted(ir.ranges_cm)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b[0] < a[1]:
            raise ConfigError(f"loss.ir.ranges_cm: ranges must not overlap, got {a} and {b}")
    if any(w < 0 for w in ir.range_weights):
        raise ConfigError(f"loss.ir.range_weights: must be ≥ 0, got {ir.range_weights}")
    if not (loss.window_terms or loss.force_matching.weight or loss.rdf.weight or loss.density.weight
            or loss.l2.weight):
        raise ConfigError("loss: every loss weight is 0; set e.g. loss.ir.weight > 0")
    if cfg.dipole.model not in DIPOLE_NAMES and not cfg.dipole.model.endswith(".npz"):
        raise ConfigError(f"dipole.model: must be one of {', '.join(map(repr, DIPOLE_NAMES))} or a "
                          f"DeepDipole .npz file, got {cfg.dipole.model!r}")
    if ir.weight > 0 and cfg.dipole.model == "none":
        raise ConfigError("dipole.model: the IR loss needs a dipole model, got 'none'")
    if loss.force_matching.weight > 0 and not loss.force_matching.data:
        raise ConfigError("loss.force_matching.data: required when loss.force_matching.weight > 0")
    if loss.rdf.weight > 0 and not loss.rdf.target:
        raise ConfigError("loss.rdf.target: required when loss.rdf.weight > 0")
    density = loss.density
    if density.weight > 0 and density.n_samples * md.dt_fs * 1e-3 > density.sampling_ps:
        raise ConfigError(f"loss.density.sampling_ps: {density.sampling_ps} ps is shorter than one time step "
                          f"per sample ({density.n_samples} samples of md.dt_fs = {md.dt_fs} fs)")
    if len(loss.rdf.pair) != 2:
        raise ConfigError(f"loss.rdf.pair: must name two elements, got {loss.rdf.pair}")
    if not cfg.train.groups:
        raise ConfigError("train: no trainable group; enable train.potential or train.dipole")
    n_proc, rank = cfg.distributed.num_processes, cfg.distributed.process_id
    if n_proc is not None and rank is not None and rank >= n_proc:
        raise ConfigError(f"distributed.process_id: must be < distributed.num_processes = {n_proc}, "
                          f"got {rank}")
    if cfg.train.dipole.enabled and cfg.dipole.model == "none":
        raise ConfigError("train.dipole.enabled: there is no dipole model to train (dipole.model = 'none')")


# ----------------------------------------------------------------------------------------------
# reading and checking


def load_config(path) -> RefineConfig:
    """Read and validate a TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path.name}: not valid TOML: {err}") from err
    return from_dict(data, str(path.resolve().parent))


def from_dict(data: dict, base_dir: str = ".") -> RefineConfig:
    """Validate a nested dict (as read from TOML) into a ``RefineConfig``."""
    return _build(RefineConfig, data, "", {"base_dir": str(base_dir)})


def _build(cls, data, where: str, extra: dict | None = None):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: must be a table, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(where, unknown[0])}: unknown key; known keys in "
                          f"[{where or 'top level'}]: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = dict(extra or {})
    for name, f in fields.items():
        if name in data:
            key = _join(where, name)
            values[name] = _check(hints[name], data[name], key)
            _check_range(f.metadata, values[name], key)
    return cls(**values)


def _join(where: str, name) -> str:
    return f"{where}.{name}" if where else str(name)


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check(tp, value, key: str):
    """``value`` converted to type ``tp`` (int → float allowed), or ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        return None if value is None else _check(inner, value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be an array, got {_kind(value)} {value!r}")
        return [_check(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a table, got {_kind(value)} {value!r}")
        return {str(k): _check(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    expected = {float: "a number", int: "an integer", bool: "a boolean (true/false)", str: "a string"}[tp]
    raise ConfigError(f"{key}: must be {expected}, got {_kind(value)} {value!r}")


def _check_range(meta, value, key: str) -> None:
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
    for bound, ok, word in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, "≥"),
                            ("le", lambda v, b: v <= b, "≤")):
        b = meta.get(bound)
        if b is not None and not ok(value, b):
            raise ConfigError(f"{key}: must be {word} {b}, got {value}")


# ----------------------------------------------------------------------------------------------
# writing


def to_dict(cfg) -> dict:
    """The config as a nested dict of TOML-ready values (``None`` values left out)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("internal"):
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif value is not None:
            out[f.name] = value
    return out


def to_toml(cfg: RefineConfig) -> str:
    """TOML text of a config (every key written, defaults included); ``from_dict`` gives it back."""
    lines: list[str] = []
    _toml_section(cfg, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_section(section, path: list[str], lines: list[str]) -> None:
    """Dataclass fields → ``[section]`` headers; everything else → ``key = value`` lines."""
    fields = [f for f in dataclasses.fields(section) if not f.metadata.get("internal")]
    plain = [f.name for f in fields if not dataclasses.is_dataclass(getattr(section, f.name))]
    if path and plain:
        lines.append(f"\n[{'.'.join(path)}]")
    for name in plain:
        value = getattr(section, name)
        if value is not None:
            lines.append(f"{name} = {_toml_value(value)}")
    for f in fields:
        if f.name not in plain:
            _toml_section(getattr(section, f.name), path + [f.name], lines)


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
