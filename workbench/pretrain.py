"""Force-matching pretraining of an EANN potential on reference frames (``workbench pretrain CONFIG``).

Reference data are either generated with a reference potential (q-TIP4P/F: Langevin NVT of the
shipped 64-water box at several temperatures, frames ``sample_every_fs`` apart) or read from any
file ``ase.io`` understands with energies and forces (extxyz, ASE ``.db``, ...).  Files hold ASE
units (eV, eV/Å); inside everything is nm and kJ/mol (DESIGN.md).

The loss of a batch B of frames s with M_s molecules (atoms/3 for water; atoms for other systems) is

    L = w_E · ⟨((ΔE_s − ⟨ΔE⟩_B) / M_s)²⟩_B / σ_E²  +  w_F · ⟨|F_θ,i(s) − F_i(s)|²⟩_{B,i} / σ_F²,
    ΔE_s = E_θ(s) − E_s,

with σ_E the standard deviation of the reference energy per molecule and σ_F the force RMS
(per Cartesian component) of the training split, so both terms are dimensionless and ≈ 1 for a
model that predicts the mean.  F_θ = −∂E_θ/∂r.

The energy term sees only the *spread* of the errors within the batch: the constant offset
``initpot`` is not learnt by gradient descent but fitted in closed form (the mean error per atom is
subtracted after every epoch and once more, exactly, over the training split at the end).  Fitting
the offset with Adam fails: a step of the learning rate (~1e-3 kJ/mol per atom) cannot follow the
drift of the network's mean energy (tens of kJ/mol per atom while the forces are being learnt), so an
uncentred energy term of weight 0.1 — with σ_E ≈ 1.4 kJ/mol per molecule for 64 waters — dominated
the loss and drove the network to a flat energy (predicted forces ≈ 0, force RMSE = force RMS;
the failed first attempt of issue 6).

Initialisation (``init_params``): Gaussian centres evenly spaced on [r_min, r_c) with exponents
1/Δ² (Δ the spacing), so the short O–H and H···H distances are resolved; the first layer's weights
and bias absorb the mean and standard deviation of each input feature over a sample of atoms of
their element (the network sees standardised features; an exact reparametrisation, the
architecture is unchanged); output weights scaled by σ_F; ``initpot`` starts at the mean reference
energy per atom.  Adam with a cosine-decayed learning rate, shuffled mini-batches (seeded), early
stopping on the validation loss (the best parameters are kept).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.errors import UserInputError
from workbench.potentials.base import pairs_within


class PretrainConfigError(UserInputError):
    """A pretraining config value that is missing, unknown, of the wrong type or out of range."""


# ----------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class ReferenceSettings:
    """[reference]: generated data.  Temperatures in K, times in ps, frame spacing in fs."""

    potential: str = "qtip4pf"
    structure: str = "default"
    temperatures_K: tuple[float, ...] = (270.0, 298.15, 330.0)
    equilibrate_ps: float = 1.0
    sample_ps: float = 10.0
    sample_every_fs: float = 50.0
    dt_fs: float = 0.5
    output: str = "reference.extxyz"


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """[model]: EANN size (``n_radial`` Gaussians, hidden widths), cutoff in Å and the smallest
    initial Gaussian centre ``radial_min_angstrom`` (centres evenly spaced on [r_min, r_c))."""

    n_radial: int = 8
    hidden: tuple[int, ...] = (32, 32)
    cutoff_angstrom: float = 6.0
    radial_min_angstrom: float = 0.5


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """[training]: optimiser and stopping.  ``max_minutes`` bounds the wall time (0: no bound)."""

    epochs: int = 50
    batch_size: int = 4
    learning_rate: float = 3e-3
    final_lr_fraction: float = 0.02
    energy_weight: float = 0.1
    force_weight: float = 1.0
    validation_fraction: float = 0.1
    patience: int = 10
    max_minutes: float = 0.0
    precision: str = "float32"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """A whole pretraining config; paths are resolved against ``base_dir`` (the config's folder)."""

    output: str = "eann_water.npz"
    run_dir: str = "runs/pretrain"
    seed: int = 0
    name: str = "eann-water"
    data: str = ""
    reference: ReferenceSettings = ReferenceSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


_TABLES = {"reference": ReferenceSettings, "model": ModelSettings, "training": TrainingSettings}
_POSITIVE = {"reference.equilibrate_ps": 0.0, "reference.sample_ps": 0.0, "reference.dt_fs": 0.0,
             "reference.sample_every_fs": 0.0, "model.n_radial": 0, "model.cutoff_angstrom": 0.0,
             "training.epochs": 0, "training.batch_size": 0, "training.learning_rate": 0.0,
             "training.patience": 0}


def _coerce(key: str, value, default):
    """``value`` converted to the type of ``default`` or a ``PretrainConfigError`` naming ``key``."""
    if isinstance(default, tuple):
        if not isinstance(value, list) or not value:
            raise PretrainConfigError(f"{key}: must be a non-empty list, got {value!r}")
        kind = type(default[0])
        return tuple(_coerce(f"{key}[{i}]", v, kind()) for i, v in enumerate(value))
    if isinstance(default, bool) or isinstance(value, bool):
        if type(value) is not type(default):
            raise PretrainConfigError(f"{key}: must be {type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, type(default)):
        raise PretrainConfigError(f"{key}: must be {type(default).__name__}, got {value!r}")
    return value


def _build(cls, table: dict, prefix: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise PretrainConfigError(f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            key = prefix + f.name
            values[f.name] = _coerce(key, table[f.name], f.default)
            if key in _POSITIVE and min(np.atleast_1d(values[f.name])) <= _POSITIVE[key]:
                raise PretrainConfigError(f"{key}: must be > 0, got {table[f.name]!r}")
    return cls(**values)


def parse_config(raw: dict, base_dir: Path = Path(".")) -> PretrainConfig:
    """Validate a TOML dict into a ``PretrainConfig`` (errors name the offending key)."""
    top = {k: v for k, v in raw.items() if k not in _TABLES}
    tables = {}
    for name, cls in _TABLES.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise PretrainConfigError(f"{name}: must be a table [{name}], got {table!r}")
        tables[name] = _build(cls, table, name + ".")
    cfg = dataclasses.replace(_build(PretrainConfig, top, ""), base_dir=Path(base_dir), **tables)
    t = cfg.training
    if not 0.0 <= cfg.model.radial_min_angstrom < cfg.model.cutoff_angstrom:
        raise PretrainConfigError(f"model.radial_min_angstrom: must be in [0, cutoff = "
                                  f"{cfg.model.cutoff_angstrom}), got {cfg.model.radial_min_angstrom}")
    if not 0.0 < t.validation_fraction < 1.0:
        raise PretrainConfigError(f"training.validation_fraction: must be in (0, 1), "
                                  f"got {t.validation_fraction}")
    if t.precision not in ("float32", "float64"):
        raise PretrainConfigError(f"training.precision: must be 'float32' or 'float64', got {t.precision!r}")
    if cfg.reference.potential != "qtip4pf":
        raise PretrainConfigError(f"reference.potential: only 'qtip4pf' is available, got "
                                  f"{cfg.reference.potential!r}")
    if cfg.data and not cfg.path(cfg.data).exists():
        raise PretrainConfigError(f"data: {cfg.path(cfg.data)} does not exist")
    return cfg


def load_config(path) -> PretrainConfig:
    """Read and validate a pretraining TOML file."""
    path = Path(path)
    if not path.is_file():
        raise PretrainConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise PretrainConfigError(f"{path.name}: invalid TOML: {err}") from err
    return parse_config(raw, path.parent)


# ----------------------------------------------------------------------------------------------
# reference data


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Reference frames of one system: positions (F, N, 3) nm, boxes (F, 3) nm, energies (F,)
    kJ/mol, forces (F, N, 3) kJ/mol/nm, element symbols (N,), molecules per frame M."""

    positions: np.ndarray
    boxes: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    symbols: tuple[str, ...]
    n_molecules: int

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    def subset(self, index) -> Dataset:
        return dataclasses.replace(self, positions=self.positions[index], boxes=self.boxes[index],
                                   energies=self.energies[index], forces=self.forces[index])


def molecule_count(symbols) -> int:
    """M: the number of O atoms of a water system, else the number of atoms."""
    n_o = sum(s == "O" for s in symbols)
    return n_o if n_o and 3 * n_o == len(symbols) else len(symbols)


def dataset_from_atoms(frames, source: str = "data") -> Dataset:
    """A ``Dataset`` from ASE ``Atoms`` with energies (eV) and forces (eV/Å) and orthorhombic cells."""
    if not frames:
        raise UserInputError(f"{source}: no frames")
    symbols = tuple(frames[0].get_chemical_symbols())
    pos, boxes, energies, forces = [], [], [], []
    for k, atoms in enumerate(frames):
        if tuple(atoms.get_chemical_symbols()) != symbols:
            raise UserInputError(f"{source}: frame {k} has other atoms than frame 0 (one system per file)")
        cell = np.asarray(atoms.cell[:])
        if not atoms.pbc.all() or np.abs(cell - np.diag(np.diag(cell))).max() > 1e-8:
            raise UserInputError(f"{source}: frame {k} needs a periodic orthorhombic cell")
        try:
            energies.append(atoms.get_potential_energy() * units.KJ_PER_MOL_PER_EV)
            forces.append(atoms.get_forces() * units.KJ_PER_MOL_PER_EV * units.ANGSTROM_PER_NM)
        except Exception as err:  # ase raises several types when results are missing
            raise UserInputError(f"{source}: frame {k} has no energy/forces ({err})") from err
        pos.append(atoms.get_positions() * units.NM_PER_ANGSTROM)
        boxes.append(np.diag(cell) * units.NM_PER_ANGSTROM)
    return Dataset(np.array(pos), np.array(boxes), np.array(energies), np.array(forces), symbols,
                   molecule_count(symbols))


def read_dataset(path) -> Dataset:
    """Frames with energies and forces from any ``ase.io`` file (extxyz, ASE .db, ...)."""
    import ase.io

    path = Path(path)
    try:
        frames = ase.io.read(path, index=":")
    except Exception as err:  # ase raises many types; report the file and the reason
        raise UserInputError(f"cannot read {path}: {err}") from err
    return dataset_from_atoms(frames, path.name)


def write_dataset(path, data: Dataset, info: dict | None = None) -> Path:
    """Write frames as extxyz (or any ase format by suffix) with energy (eV) and forces (eV/Å)."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    images = []
    for k in range(data.n_frames):
        atoms = ase.Atoms(data.symbols, positions=data.positions[k] * units.ANGSTROM_PER_NM,
                          cell=data.boxes[k] * units.ANGSTROM_PER_NM, pbc=True)
        atoms.info.update(info or {})
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(data.energies[k]) / units.KJ_PER_MOL_PER_EV,
            forces=data.forces[k] / (units.KJ_PER_MOL_PER_EV * units.ANGSTROM_PER_NM))
        images.append(atoms)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, images)
    return path


def label_frames(potential, positions, box) -> tuple[np.ndarray, np.ndarray]:
    """Energies (F,) kJ/mol and forces (F, N, 3) kJ/mol/nm of ``potential`` on frames (F, N, 3) nm."""
    box = jnp.asarray(box, positions.dtype)

    @jax.jit
    def one(x):
        e, g = jax.value_and_grad(potential.energy, argnums=0)(x, box)
        return e, -g

    out = [one(jnp.asarray(x)) for x in positions]
    return np.array([float(e) for e, _ in out]), np.stack([np.asarray(f, float) for _, f in out])


def generate_reference(settings: ReferenceSettings, system, seed: int = 0, progress=None) -> Dataset:
    """q-TIP4P/F reference frames: for each temperature T, Langevin NVT (γ = 5 ps⁻¹) of ``system``
    equilibrated ``equilibrate_ps``, then ``sample_ps`` sampled every ``sample_every_fs``; energies
    and forces recomputed on the stored frames (float64)."""
    from workbench.md import MDConfig, simulate
    from workbench.potentials.qtip4pf import qtip4pf

    potential = qtip4pf(system)
    dt = settings.dt_fs * units.PS_PER_FS
    every = max(1, int(round(settings.sample_every_fs / settings.dt_fs)))
    n_steps = int(round(settings.sample_ps / dt)) // every * every
    parts = []
    for k, temperature in enumerate(settings.temperatures_K):
        cfg = MDConfig(ensemble="nvt", temperature_K=temperature, dt=dt, sample_every=every,
                       precision="float64", seed=seed + k)
        traj = simulate(potential, system.replace(velocities=None), n_steps, cfg,
                        equilibration_steps=int(round(settings.equilibrate_ps / dt)),
                        progress=_labelled(progress, f"{temperature:g} K"))
        positions = np.asarray(traj.positions, float)
        energies, forces = label_frames(potential, jnp.asarray(positions), traj.box)
        parts.append((positions, energies, forces))
    positions, energies, forces = (np.concatenate(a) for a in zip(*parts, strict=True))
    boxes = np.broadcast_to(np.asarray(system.box, float), (positions.shape[0], 3)).copy()
    return Dataset(positions, boxes, energies, forces, tuple(system.symbols), molecule_count(system.symbols))


def _labelled(progress, label: str):
    """``progress`` with ``label`` appended to every stage name (one bar per temperature)."""
    if progress is None:
        return None
    return lambda done, total, stage: progress(done, total, f"{stage} {label}")


# ----------------------------------------------------------------------------------------------
# pair lists and the model's predictions


def pair_lists(positions, boxes, cutoff_nm: float) -> np.ndarray:
    """Per-frame unordered pairs i < j within ``cutoff_nm`` (minimum image), padded with N to a
    common length: (F, 2, P) int32."""
    n = positions.shape[1]
    lists = [pairs_within(x, box, cutoff_nm) for x, box in zip(positions, boxes, strict=True)]
    width = max(p.shape[1] for p in lists)
    out = np.full((len(lists), 2, width), n, dtype=np.int32)
    for k, p in enumerate(lists):
        out[k, :, : p.shape[1]] = p
    return out


def make_predict(energy_fn):
    """``predict(params, x (B,N,3), box (B,3), pairs (B,2,P)) -> (E (B,), F (B,N,3))``."""
    value_and_grad = jax.value_and_grad(energy_fn, argnums=1)

    def one(params, x, box, pairs):
        e, g = value_and_grad(params, x, box, pairs)
        return e, -g

    return jax.vmap(one, in_axes=(None, 0, 0, 0))


def squared_errors(predict, params, batch, centred: bool = False):
    """Sums over the batch: Σ((ΔE/M)²), Σ|ΔF|² (all components), Σ ΔE, for the metrics and the loss.

    ``centred``: the energy errors ΔE have their batch mean removed first (the loss; the offset is
    fitted separately, see the module docstring).
    """
    x, box, pairs, energy, forces, n_mol = batch
    e, f = predict(params, x, box, pairs)
    de = e - energy
    sum_de = jnp.sum(de)
    if centred:
        de = de - jnp.mean(de)
    return jnp.sum(jnp.square(de / n_mol)), jnp.sum(jnp.square(f - forces)), sum_de


# ----------------------------------------------------------------------------------------------
# training


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Best parameters, their validation metrics (kJ/mol, nm) and the per-epoch history."""

    params: dict
    metrics: dict
    history: list
    wall_time_s: float


def evaluate(predict, params, data: Dataset, pairs, dtype, batch_size: int = 8) -> dict:
    """Force RMSE and RMS (kJ/mol/nm, per component) and energy RMSE per molecule (kJ/mol)."""
    se_e = se_f = 0.0
    for start in range(0, data.n_frames, batch_size):
        sl = slice(start, start + batch_size)
        batch = _batch(data.subset(sl), pairs[sl], dtype)
        e, f, _ = squared_errors(predict, params, batch)
        se_e, se_f = se_e + float(e), se_f + float(f)
    n_comp = data.forces[0].size * data.n_frames
    return {"force_rmse_kJ_mol_nm": math.sqrt(se_f / n_comp),
            "force_rms_kJ_mol_nm": float(np.sqrt(np.mean(np.square(data.forces)))),
            "energy_rmse_kJ_mol_per_molecule": math.sqrt(se_e / data.n_frames),
            "frames": data.n_frames}


def _batch(data: Dataset, pairs, dtype):
    return (jnp.asarray(data.positions, dtype), jnp.asarray(data.boxes, dtype), jnp.asarray(pairs),
            jnp.asarray(data.energies, dtype), jnp.asarray(data.forces, dtype), float(data.n_molecules))


def split(n_frames: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) frame indices; at least one frame in each."""
    order = np.random.default_rng(seed).permutation(n_frames)
    n_val = min(max(1, int(round(validation_fraction * n_frames))), n_frames - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def radial_grid(params: dict, radial_min: float, cutoff: float) -> dict:
    """Gaussian centres evenly spaced on [r_min, r_c) (Å), exponents 1/Δ² with Δ the spacing, for
    every element: neighbouring Gaussians cross at ≈ 0.78 of their height."""
    params = dict(params)
    n_species, n_radial = params["radial.rs"].shape
    step = (cutoff - radial_min) / n_radial
    dtype = params["radial.rs"].dtype
    rs = radial_min + step * np.arange(n_radial)
    params["radial.rs"] = jnp.asarray(np.broadcast_to(rs, (n_species, n_radial)), dtype)
    params["radial.inta"] = jnp.full((n_species, n_radial), 1.0 / step**2, dtype)
    return params


def standardise_inputs(params: dict, species, sample: Dataset, pairs, cutoff: float) -> dict:
    """Fold feature standardisation into the first layer: for each element s with feature mean μ
    and standard deviation σ over the atoms of ``sample``, W₀[s] ← W₀[s] / σ (rows) and
    b₀[s] ← b₀[s] − (μ/σ)·W₀[s]; the network then sees (x − μ)/σ.  Exact; the features of a
    water model span orders of magnitude (far L = 2 channels ~10, the O–H Gaussian ~0.1)."""
    from workbench.potentials import eann

    params = dict(params)
    dtype = params["layer0.w"].dtype
    species = np.asarray(species)

    @jax.jit
    def features(x, box, p):
        scale = units.ANGSTROM_PER_NM
        s, overflow = eann.orbital_sums(params, x * scale, box * scale, p, species, cutoff)
        return eann.density_features(s), overflow

    rows = []
    for k, (xi, bi, pi) in enumerate(zip(sample.positions, sample.boxes, pairs, strict=True)):
        f, overflow = features(jnp.asarray(xi, dtype), jnp.asarray(bi, dtype), jnp.asarray(pi))
        if bool(overflow):
            raise UserInputError(
                f"training frame {k}: an atom has more than "
                f"{eann.max_neighbors_default(len(species), cutoff)} neighbours within {cutoff} Å, more "
                "than the EANN's neighbour table holds (is the frame far denser than a liquid, or its "
                "cell wrong?)")
        rows.append(np.asarray(f)[None])
    x = np.concatenate(rows)
    w, b = np.array(params["layer0.w"], np.float64), np.array(params["layer0.b"], np.float64)
    for s in np.unique(species):
        xs = x[:, species == s].reshape(-1, x.shape[-1]).astype(np.float64)
        mu, sd = xs.mean(0), xs.std(0)
        sd = np.where(sd > 1e-6 * max(sd.max(), 1e-30), sd, 1.0)
        w_s = w[s] / sd[:, None]
        b[s] = b[s] - mu @ w_s
        w[s] = w_s
    params["layer0.w"], params["layer0.b"] = jnp.asarray(w, dtype), jnp.asarray(b, dtype)
    return params


def match_scale(params: dict, energy_fn, sample: Dataset, pairs, sigma_f: float,
                force_fraction: float = 0.3) -> dict:
    """Start near the data's scales: output weights scaled so that the predicted force RMS over
    ``sample`` is ``force_fraction`` · σ_F (σ_F in kJ/mol/nm; a random force field of the data's
    full magnitude would start at a relative error of √2), then ``initpot`` fitted to ``sample``."""
    params = dict(params)
    dtype = params["output.w"].dtype
    _, forces = make_predict(energy_fn)(params, jnp.asarray(sample.positions, dtype),
                                        jnp.asarray(sample.boxes, dtype), jnp.asarray(pairs))
    rms = float(jnp.sqrt(jnp.mean(jnp.square(forces))))
    params["output.w"] = params["output.w"] * (force_fraction * sigma_f / max(rms, 1e-30))
    return fit_offset(params, energy_fn, sample, pairs)


def fit_offset(params: dict, energy_fn, data: Dataset, pairs, batch_size: int = 8) -> dict:
    """``initpot`` shifted by −⟨E_θ − E⟩/N over ``data``: the least-squares energy offset."""
    params = dict(params)
    dtype = params["output.w"].dtype
    energies = jax.jit(jax.vmap(energy_fn, in_axes=(None, 0, 0, 0)))
    errors = []
    for start in range(0, data.n_frames, batch_size):
        sl = slice(start, start + batch_size)
        e = energies(params, jnp.asarray(data.positions[sl], dtype), jnp.asarray(data.boxes[sl], dtype),
                     jnp.asarray(pairs[sl]))
        errors.append(np.asarray(e, float) - data.energies[sl])
    shift = float(np.mean(np.concatenate(errors))) / data.positions.shape[1]
    params["initpot"] = params["initpot"] - jnp.asarray(shift, params["initpot"].dtype)
    return params


def init_params(data: Dataset, species, model: ModelSettings, dtype, seed: int, pairs, sigma_f: float,
                n_sample: int = 8) -> dict:
    """Fresh EANN parameters started near ``data`` (module docstring, "Initialisation")."""
    from workbench.potentials import eann

    initpot = float(np.mean(data.energies)) / len(species)
    params = eann.init_eann_params(jax.random.PRNGKey(seed), n_species=int(np.max(species)) + 1,
                                   n_radial=model.n_radial, hidden=model.hidden,
                                   cutoff_angstrom=model.cutoff_angstrom, initpot=initpot, dtype=dtype)
    params = radial_grid(params, model.radial_min_angstrom, model.cutoff_angstrom)
    sample = np.linspace(0, data.n_frames - 1, min(n_sample, data.n_frames)).round().astype(int)
    params = standardise_inputs(params, species, data.subset(sample), pairs[sample], model.cutoff_angstrom)
    energy_fn = eann.make_eann_energy_fn(species, model.cutoff_angstrom)
    return match_scale(params, energy_fn, data.subset(sample), pairs[sample], sigma_f)


def train(data: Dataset, model: ModelSettings, settings: TrainingSettings, seed: int = 0,
          log_path: Path | None = None, show_progress: bool = True) -> TrainResult:
    """Energy + force matching of a fresh EANN on ``data`` (see the module docstring)."""
    import optax
    from tqdm import tqdm

    from workbench.potentials import eann

    if data.n_frames < 2:
        raise UserInputError(f"training needs at least 2 frames, got {data.n_frames}")
    dtype = jnp.dtype(settings.precision)
    order = tuple(sorted(set(data.symbols)))
    species = np.array([order.index(s) for s in data.symbols], np.int32)
    train_idx, val_idx = split(data.n_frames, settings.validation_fraction, seed)
    train_set, val_set = data.subset(train_idx), data.subset(val_idx)
    cutoff_nm = model.cutoff_angstrom * units.NM_PER_ANGSTROM
    train_pairs = pair_lists(train_set.positions, train_set.boxes, cutoff_nm)
    val_pairs = pair_lists(val_set.positions, val_set.boxes, cutoff_nm)

    e_mol = train_set.energies / data.n_molecules
    sigma_e = float(np.std(e_mol)) or 1.0
    sigma_f = float(np.sqrt(np.mean(np.square(train_set.forces))))
    params = init_params(train_set, species, model, dtype, seed, train_pairs, sigma_f)
    energy_fn = eann.make_eann_energy_fn(species, model.cutoff_angstrom)
    predict = make_predict(energy_fn)
    batch_size = min(settings.batch_size, train_set.n_frames)
    steps_per_epoch = train_set.n_frames // batch_size
    n_comp_batch = batch_size * data.forces[0].size
    schedule = optax.cosine_decay_schedule(settings.learning_rate, settings.epochs * steps_per_epoch,
                                           alpha=settings.final_lr_fraction)
    optimizer = optax.adam(schedule)

    def loss_fn(p, batch):
        se_e, se_f, sum_de = squared_errors(predict, p, batch, centred=True)
        loss = (settings.energy_weight * se_e / (batch_size * sigma_e**2)
                + settings.force_weight * se_f / (n_comp_batch * sigma_f**2))
        return loss, sum_de

    @jax.jit
    def step(p, opt_state, batch):
        (loss, sum_de), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss, sum_de

    def val_loss(metrics):
        return (settings.energy_weight * (metrics["energy_rmse_kJ_mol_per_molecule"] / sigma_e) ** 2
                + settings.force_weight * (metrics["force_rmse_kJ_mol_nm"] / sigma_f) ** 2)

    rng = np.random.default_rng(seed)
    opt_state = optimizer.init(params)
    best = (math.inf, params, {})
    history, since_best, t0 = [], 0, time.perf_counter()
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 (closed below)
    bar = tqdm(range(settings.epochs), desc="pretrain", unit="epoch", disable=not show_progress)
    try:
        for epoch in bar:
            perm = rng.permutation(train_set.n_frames)
            losses, sum_de = [], 0.0
            for b in range(steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                params, opt_state, loss, de = step(params, opt_state,
                                                   _batch(train_set.subset(idx), train_pairs[idx], dtype))
                losses.append(float(loss))
                sum_de += float(de)
            # the offset follows the epoch's mean energy error (closed form, see module docstring)
            shift = sum_de / (steps_per_epoch * batch_size * len(species))
            params = {**params, "initpot": params["initpot"] - jnp.asarray(shift, params["initpot"].dtype)}
            metrics = evaluate(predict, params, val_set, val_pairs, dtype)
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss(metrics),
                      "lr": float(schedule((epoch + 1) * steps_per_epoch)),
                      "elapsed_s": round(time.perf_counter() - t0, 2), **metrics}
            history.append(record)
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            bar.set_postfix(val_F_rmse=f"{metrics['force_rmse_kJ_mol_nm']:.1f}",
                            val_E_rmse=f"{metrics['energy_rmse_kJ_mol_per_molecule']:.3f}")
            if record["val_loss"] < best[0]:
                best, since_best = (record["val_loss"], params, {"epoch": epoch + 1}), 0
            else:
                since_best += 1
            out_of_time = settings.max_minutes and time.perf_counter() - t0 > 60 * settings.max_minutes
            if since_best >= settings.patience or out_of_time:
                break
    finally:
        bar.close()
        if log:
            log.close()
    final = fit_offset(best[1], energy_fn, train_set, train_pairs)
    metrics = {**evaluate(predict, final, val_set, val_pairs, dtype), "train_frames": int(train_set.n_frames),
               "sigma_energy_per_molecule": sigma_e, "best_epoch": best[2].get("epoch", 0)}
    final = {k: np.asarray(v) for k, v in final.items()}
    return TrainResult(final, metrics, history, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------
# the whole command


def reference_dataset(cfg: PretrainConfig, run_dir: Path, progress=None) -> tuple[Dataset, dict]:
    """The user's ``data`` file, or freshly generated q-TIP4P/F frames written to
    ``run_dir / reference.output``; returns the data and a description for the model card."""
    if cfg.data:
        path = cfg.path(cfg.data)
        return read_dataset(path), {"source": f"file {path.name}"}
    from workbench.models import DEFAULT_STRUCTURE
    from workbench.system import read

    ref = cfg.reference
    structure = DEFAULT_STRUCTURE if ref.structure == "default" else cfg.path(ref.structure)
    data = generate_reference(ref, read(structure), cfg.seed, progress)
    out = write_dataset(run_dir / ref.output, data, {"reference": ref.potential})
    info = {"source": f"{ref.potential} Langevin NVT (gamma 5/ps, dt {ref.dt_fs:g} fs)",
            "structure": Path(structure).name, "temperatures_K": list(ref.temperatures_K),
            "equilibrate_ps": ref.equilibrate_ps, "sample_ps": ref.sample_ps,
            "sample_every_fs": ref.sample_every_fs, "file": str(out)}
    return data, info


def run_pretrain(cfg: PretrainConfig, run_dir: Path | None = None, command: str = "",
                 show_progress: bool = True) -> dict:
    """Reference data → training → model file ``cfg.output`` (with its model card) + ``run_dir``
    holding ``metrics.jsonl`` and ``summary.json``.  Returns the summary."""
    from workbench.potentials.model_io import save_model
    from workbench.progress import console_progress

    run_dir = Path(run_dir or cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data, data_info = reference_dataset(cfg, run_dir, console_progress() if show_progress else None)
    data_time = time.perf_counter() - t0
    result = train(data, cfg.model, cfg.training, cfg.seed, run_dir / "metrics.jsonl", show_progress)
    data_info.update(frames=data.n_frames, atoms=len(data.symbols), molecules=data.n_molecules)
    card = {
        "name": cfg.name,
        "species_order": sorted(set(data.symbols)),
        "cutoff": {"value": cfg.model.cutoff_angstrom, "unit": "angstrom"},
        "provenance": f"workbench pretrain (energy + force matching); reproduce: {command}".strip(),
        "model_card": "Force-matched EANN; see training.validation for the held-out errors.",
        "training": {"data": data_info, "model": dataclasses.asdict(cfg.model),
                     "settings": dataclasses.asdict(cfg.training), "seed": cfg.seed,
                     "epochs_run": len(result.history), "wall_time_s": round(result.wall_time_s, 1),
                     "validation": result.metrics, "command": command},
    }
    output = save_model(cfg.path(cfg.output), result.params, card)
    summary = {**result.metrics, "model": str(output), "run_dir": str(run_dir), "frames": data.n_frames,
               "data_time_s": round(data_time, 1), "train_time_s": round(result.wall_time_s, 1),
               "epochs": len(result.history)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
