"""From a config to the objects a refinement needs: system, potential, dipole model and loss targets.

Nothing here runs MD.  Model names: ``qtip4pf`` (``workbench.potentials.qtip4pf``), ``qtip4pf-twin``
(the twin truth, ``workbench.potentials.twin``), ``lennard-jones`` (argon defaults,
``workbench.potentials.lennard_jones``), another name of ``workbench.models.MODEL_CHOICES`` (the
shipped MLP) or a model file read by ``workbench.models.load_potential`` (the project's EANN format
and the seed's DMFF npz).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from workbench import models, units
from workbench import system as systems
from workbench.observables.dipole import DipoleModel, charge_flux_dipole, qtip4pf_dipole
from workbench.observables.ir import nyquist_wavenumber, wavenumber_grid
from workbench.observables.spectrum_io import Spectrum, read_spectrum, reference_water_ir
from workbench.potentials.base import Potential
from workbench.refine.config import ConfigError, RefineConfig
from workbench.refine.losses import range_index
from workbench.refine.parameters import with_values

POTENTIAL_NAMES = ("qtip4pf", "qtip4pf-twin", "lennard-jones")


@dataclasses.dataclass(frozen=True)
class IRTarget:
    """The IR loss's grid (cm⁻¹, only points inside a range), target n·α on it, range index per
    point and the target spectrum it came from."""

    grid: np.ndarray
    values: np.ndarray
    index: np.ndarray
    spectrum: Spectrum


@dataclasses.dataclass(frozen=True)
class ReferenceData:
    """Force-matching frames: positions, forces (S, N, 3) in nm, kJ/mol/nm; energies (S,) kJ/mol."""

    positions: np.ndarray
    forces: np.ndarray
    energies: np.ndarray


@dataclasses.dataclass(frozen=True)
class Problem:
    system: systems.System
    potential: Potential
    dipole: DipoleModel | None
    ir: IRTarget | None
    reference: ReferenceData | None
    rdf_edges: np.ndarray | None
    rdf_target: np.ndarray | None


def build_problem(cfg: RefineConfig) -> Problem:
    system = load_structure(cfg)
    potential = load_model(cfg, system)
    dipole = load_dipole(cfg)
    ir = ir_target(cfg) if cfg.loss.ir.weight > 0 else None
    reference = reference_data(cfg, system) if cfg.loss.force_matching.weight > 0 else None
    edges, g = rdf_target(cfg, system) if cfg.loss.rdf.weight > 0 else (None, None)
    return Problem(system, potential, dipole, ir, reference, edges, g)


def load_structure(cfg: RefineConfig) -> systems.System:
    spec = cfg.system.structure
    if spec == "default":
        return models.default_system()
    return systems.read(cfg.path(spec))


def load_model(cfg: RefineConfig, system: systems.System) -> Potential:
    spec, cutoff = cfg.system.model, cfg.system.cutoff_nm
    settings = {} if cutoff is None else {"cutoff": cutoff}
    if spec in ("qtip4pf", "qtip4pf-twin"):
        from workbench.potentials.qtip4pf import qtip4pf
        from workbench.potentials.twin import twin_qtip4pf

        pot = (qtip4pf if spec == "qtip4pf" else twin_qtip4pf)(system, **settings)
    elif spec == "lennard-jones":
        from workbench.potentials.lennard_jones import lennard_jones

        pot = lennard_jones(**settings)
    else:
        if cutoff is not None:
            raise ConfigError("system.cutoff_nm: a model file carries its own cutoff; remove the key")
        names = sorted(set(POTENTIAL_NAMES) | set(models.MODEL_CHOICES))
        if spec not in models.MODEL_CHOICES and not cfg.path(spec).exists():
            raise ConfigError(f"system.model: {spec!r} is neither one of {', '.join(names)} nor an existing "
                              f"model file")
        pot = models.load_potential(spec if spec in models.MODEL_CHOICES else str(cfg.path(spec)), system)
    if cfg.system.params:
        pot = pot.replace(params=with_values(pot.params, cfg.system.params, "system.params:"))
    return pot


def load_dipole(cfg: RefineConfig) -> DipoleModel | None:
    from workbench.potentials.twin import twin_dipole

    makers = {"qtip4pf": qtip4pf_dipole, "qtip4pf-twin": twin_dipole, "charge_flux": charge_flux_dipole}
    if cfg.dipole.model == "none":
        return None
    if cfg.dipole.model in makers:
        model = makers[cfg.dipole.model]()
    else:
        from workbench.observables.deepmd_dipole import deepmd_dipole_model

        path = cfg.path(cfg.dipole.model)
        if not path.is_file():
            raise ConfigError(f"dipole.model: DeepDipole file {path} does not exist")
        model = deepmd_dipole_model(path)
    if cfg.dipole.params:
        model = model.replace(params=with_values(model.params, cfg.dipole.params, "dipole.params:"))
    return model


def ir_target(cfg: RefineConfig) -> IRTarget:
    """The target spectrum on the loss grid (see ``config.IRLossConfig``)."""
    ir = cfg.loss.ir
    if ir.target == "experiment":
        spectrum = reference_water_ir()
    else:
        spectrum = read_spectrum(cfg.path(ir.target)).to_n_alpha()
    ranges = np.asarray(ir.ranges_cm, float)
    limit = min(nyquist_wavenumber(cfg.md.dt_ps), spectrum.wavenumber[-1])
    if ir.grid_step_cm > 0:
        grid = wavenumber_grid(float(ranges[:, 1].max()), ir.grid_step_cm)
    else:
        grid = spectrum.wavenumber
    grid = grid[(grid >= spectrum.wavenumber[0]) & (grid <= limit)]
    index = range_index(grid, ranges)
    grid, index = grid[index >= 0], index[index >= 0]
    if grid.size == 0:
        raise ConfigError(f"loss.ir.ranges_cm: no point of the target spectrum "
                          f"({spectrum.wavenumber[0]:.0f}–{spectrum.wavenumber[-1]:.0f} cm⁻¹) lies in "
                          f"{ir.ranges_cm}")
    return IRTarget(grid, spectrum.interpolate(grid), index, spectrum)


def reference_data(cfg: RefineConfig, system: systems.System) -> ReferenceData:
    """Force-matching frames from an .npz (positions nm, forces kJ/mol/nm, energies kJ/mol) or any
    ase-readable file with energies and forces (eV, eV/Å)."""
    fm = cfg.loss.force_matching
    path = cfg.path(fm.data)
    if not path.exists():
        raise ConfigError(f"loss.force_matching.data: {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            missing = {"positions", "forces", "energies"} - set(data.files)
            if missing:
                raise ConfigError(f"loss.force_matching.data: {path.name} lacks {sorted(missing)}")
            x, f, e = (np.asarray(data[k], float) for k in ("positions", "forces", "energies"))
    else:
        import ase.io

        frames = ase.io.read(path, index=":")
        try:
            e = np.array([a.get_potential_energy() for a in frames]) * units.KJ_PER_MOL_PER_EV
            f = np.stack([a.get_forces() for a in frames]) * units.KJ_PER_MOL_PER_EV * units.ANGSTROM_PER_NM
        except Exception as err:
            raise ConfigError(f"loss.force_matching.data: {path.name} has no energies/forces "
                              f"({err})") from err
        x = np.stack([a.get_positions() for a in frames]) * units.NM_PER_ANGSTROM
    if x.ndim != 3 or x.shape[1] != system.n_atoms or f.shape != x.shape or e.shape != x.shape[:1]:
        raise ConfigError(f"loss.force_matching.data: frames of shape {x.shape} with forces {f.shape} and "
                          f"energies {e.shape} do not fit the system's {system.n_atoms} atoms")
    n = min(fm.max_frames, x.shape[0])
    return ReferenceData(x[:n], f[:n], e[:n])


def rdf_target(cfg: RefineConfig, system: systems.System) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges (nm) and the target g(r) at the bin centres (linear interpolation of the file)."""
    rdf = cfg.loss.rdf
    path = cfg.path(rdf.target)
    try:
        table = np.loadtxt(path, comments="#", delimiter=None if path.suffix != ".csv" else ",")
    except (OSError, ValueError) as err:
        raise ConfigError(f"loss.rdf.target: cannot read {path}: {err}") from err
    if table.ndim != 2 or table.shape[1] < 2:
        raise ConfigError(f"loss.rdf.target: {path.name} needs two columns r (nm), g(r)")
    for element in rdf.pair:
        if element not in system.symbols:
            raise ConfigError(f"loss.rdf.pair: no {element!r} atoms in the system")
    r_max = rdf.r_max_nm or 0.5 * float(np.min(system.box))
    if r_max > 0.5 * float(np.min(system.box)) + 1e-12:
        raise ConfigError(f"loss.rdf.r_max_nm: must be ≤ half the box ({0.5 * np.min(system.box):.4f} nm)")
    edges = np.linspace(0.0, r_max, rdf.n_bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return edges, np.interp(centres, table[:, 0], table[:, 1])
