"""Atomic systems: water boxes, structure files (via ase.io), ASE conversion, species and topology.

Positions and box edges are in nm, velocities in nm/ps, masses in amu (see ``workbench.units``).
Only orthorhombic periodic cells are supported; a structure file with a skewed or missing cell is
refused with a message naming the problem.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from workbench import units
from workbench.errors import UserInputError

#: Elements the workbench has masses and models for.
KNOWN_ELEMENTS = {"H": 1.00794, "O": 15.9994, "Ar": 39.948, "C": 12.0107, "N": 14.0067}

#: q-TIP4P/F / TIP4P-like rigid-start geometry of one water (nm, rad).
WATER_R_OH = 0.09419
WATER_ANGLE = math.radians(107.4)
WATER_MASS = KNOWN_ELEMENTS["O"] + 2 * KNOWN_ELEMENTS["H"]

#: Smallest distance (nm) accepted between atoms of different molecules in input structures.
MIN_INTERMOLECULAR_DISTANCE = 0.1
#: Smallest distance (nm) accepted between any two atoms (bonded or not).
MIN_ANY_DISTANCE = 0.05


def minimum_image(d, box) -> np.ndarray:
    """Minimum-image displacements d − L·round(d/L) in an orthorhombic box of edges L (numpy, any
    leading shape, d and box in the same units); the host-side twin of
    ``potentials.base.minimum_image``."""
    box = np.asarray(box, float)
    return d - box * np.round(d / box)


def pair_displacements(positions, box):
    """Every pair i < j of the atoms of ``positions`` (..., N, 3): ``(i, j, d)`` with d (..., P, 3)
    = r_j − r_i, minimum image."""
    positions = np.asarray(positions)
    i, j = np.triu_indices(positions.shape[-2], k=1)
    return i, j, minimum_image(positions[..., j, :] - positions[..., i, :], box)


class StructureError(UserInputError):
    """A structure that cannot be used as it is (the message names the problem)."""


@dataclasses.dataclass(frozen=True)
class System:
    """A periodic atomic system.

    Attributes:
      symbols: element symbol per atom.
      positions: (N, 3) nm.
      box: (3,) orthorhombic cell edges, nm.
      molecules: (M, k) atom indices per molecule (water: O, H, H), or shape (N, 1) for atoms.
      velocities: (N, 3) nm/ps, or None.
    """

    symbols: tuple[str, ...]
    positions: np.ndarray
    box: np.ndarray
    molecules: np.ndarray
    velocities: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def masses(self) -> np.ndarray:
        """Atomic masses in amu."""
        return np.array([KNOWN_ELEMENTS[s] for s in self.symbols])

    @property
    def volume(self) -> float:
        """Cell volume in nm³."""
        return float(np.prod(self.box))

    @property
    def density_g_cm3(self) -> float:
        return float(self.masses.sum() / self.volume * units.G_PER_CM3_PER_AMU_PER_NM3)

    def species_index(self, order: tuple[str, ...]) -> np.ndarray:
        """Integer species per atom, numbered by position in ``order`` (e.g. EANN: ("H", "O"))."""
        missing = sorted(set(self.symbols) - set(order))
        if missing:
            raise StructureError(f"element(s) {missing} not handled by a model with species {order}")
        return np.array([order.index(s) for s in self.symbols], dtype=np.int32)

    def replace(self, **changes) -> System:
        return dataclasses.replace(self, **changes)

    def is_water(self) -> bool:
        return self.molecules.shape[1] == 3 and all(
            (self.symbols[o], self.symbols[h1], self.symbols[h2]) == ("O", "H", "H")
            for o, h1, h2 in self.molecules
        )


# ----------------------------------------------------------------------------------------------
# building


def water_box(n_molecules: int, density_g_cm3: float = 0.997, seed: int = 0,
              min_distance: float = 0.23, max_tries: int = 20000) -> System:
    """A cubic box of ``n_molecules`` waters at the given mass density.

    Molecules are placed one at a time at random positions with random orientations (seeded), each
    accepted only if its oxygen is at least ``min_distance`` nm (minimum image) from every other
    oxygen and each of its atoms at least ``MIN_INTERMOLECULAR_DISTANCE`` from every atom of the
    other molecules (what ``check_no_overlaps`` demands of a structure file); geometry
    r_OH = 0.09419 nm, angle 107.4°.  Raises ``StructureError`` when the box is too dense to fill.
    """
    if n_molecules < 1:
        raise StructureError("a water box needs at least one molecule")
    if not 0.1 <= density_g_cm3 <= 2.0:
        raise StructureError(f"density {density_g_cm3} g/cm³ is outside 0.1..2 g/cm³")
    volume = n_molecules * WATER_MASS / (density_g_cm3 / units.G_PER_CM3_PER_AMU_PER_NM3)
    edge = volume ** (1.0 / 3.0)
    box = np.full(3, edge)
    rng = np.random.default_rng(seed)
    local = np.array([
        [0.0, 0.0, 0.0],
        [WATER_R_OH * math.sin(WATER_ANGLE / 2), 0.0, WATER_R_OH * math.cos(WATER_ANGLE / 2)],
        [-WATER_R_OH * math.sin(WATER_ANGLE / 2), 0.0, WATER_R_OH * math.cos(WATER_ANGLE / 2)],
    ])
    positions = np.empty((3 * n_molecules, 3))  # O, H, H of each placed molecule
    placed = tries = 0
    while placed < n_molecules:
        tries += 1
        if tries > max_tries:
            raise StructureError(
                f"could not place {n_molecules} waters at {density_g_cm3} g/cm³ with O–O ≥ "
                f"{min_distance} nm after {max_tries} tries; lower the density or min_distance")
        o = rng.uniform(0, edge, 3)
        done = positions[: 3 * placed]
        if placed and np.min(np.linalg.norm(minimum_image(done[::3] - o, box), axis=1)) < min_distance:
            continue
        atoms = o + local @ _random_rotation(rng).T
        if placed and np.min(np.linalg.norm(minimum_image(done[None, :, :] - atoms[:, None, :], box),
                                            axis=-1)) < MIN_INTERMOLECULAR_DISTANCE:
            continue
        positions[3 * placed: 3 * placed + 3] = atoms
        placed += 1
    symbols = ("O", "H", "H") * n_molecules
    molecules = np.arange(3 * n_molecules).reshape(n_molecules, 3)
    return System(symbols, positions, box, molecules)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


# ----------------------------------------------------------------------------------------------
# ASE conversion and files


def from_atoms(atoms, check_overlaps: bool = True) -> System:
    """Convert an ``ase.Atoms`` (Å, ASE velocity units) to a ``System`` (nm, nm/ps).

    Water molecules are recognised as O followed by two H within 0.13 nm; anything else becomes
    single-atom molecules.  Raises ``StructureError`` for unknown elements, a missing, non-periodic or
    non-orthorhombic cell, and atoms of different molecules closer than 0.1 nm.
    """
    from ase import units as ase_units

    symbols = tuple(atoms.get_chemical_symbols())
    unknown = sorted(set(symbols) - set(KNOWN_ELEMENTS))
    if unknown:
        raise StructureError(
            f"unknown element(s) {unknown}; the workbench knows {sorted(KNOWN_ELEMENTS)}")
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not np.all(atoms.pbc) or np.any(np.linalg.norm(cell, axis=1) == 0):
        raise StructureError(
            "missing periodic cell: the structure needs a 3D box (e.g. a CRYST1 record in PDB, "
            "'Lattice=' in extxyz)")
    off_diagonal = cell - np.diag(np.diag(cell))
    if np.max(np.abs(off_diagonal)) > 1e-6 * np.max(np.abs(cell)):
        raise StructureError("only orthorhombic cells are supported; this cell has non-zero "
                             "off-diagonal components")
    box = np.diag(cell) * units.NM_PER_ANGSTROM
    positions = atoms.get_positions() * units.NM_PER_ANGSTROM
    velocities = None
    if atoms.has("momenta") and np.any(atoms.get_momenta()):
        # ASE velocity unit: Å / (ase time unit); 1 ase time unit = 1/ase_units.fs fs.
        velocities = atoms.get_velocities() * units.NM_PER_ANGSTROM * ase_units.fs / units.PS_PER_FS
    molecules = _find_waters(symbols, positions, box)
    system = System(symbols, positions, box, molecules, velocities)
    if check_overlaps:
        check_no_overlaps(system)
    return system


def to_atoms(system: System):
    """Convert a ``System`` to ``ase.Atoms`` (Å, ASE velocities), periodic in 3D."""
    from ase import Atoms
    from ase import units as ase_units

    atoms = Atoms(symbols=list(system.symbols), positions=system.positions * units.ANGSTROM_PER_NM,
                  cell=np.diag(system.box * units.ANGSTROM_PER_NM), pbc=True)
    if system.velocities is not None:
        atoms.set_velocities(system.velocities * units.ANGSTROM_PER_NM * units.PS_PER_FS / ase_units.fs)
    return atoms


def read(path, index=-1, check_overlaps: bool = True) -> System:
    """Read a structure file with ``ase.io`` (pdb, extxyz, ASE traj, ...) into a ``System``."""
    import ase.io

    path = Path(path)
    if not path.exists():
        raise StructureError(f"structure file {path} does not exist")
    try:
        images = ase.io.read(path, index=":")
    except Exception as err:  # ase raises many types; report the file and the reason
        raise StructureError(f"cannot read {path.name}: {err}") from err
    # ase's PDB reader returns an extra empty image after ENDMDL/END: frames with no atoms are not
    # structures, so they are dropped before indexing.
    images = [a for a in images if len(a)]
    if not images:
        raise StructureError(f"{path.name} holds no atoms")
    try:
        atoms = images[index]
    except IndexError as err:
        raise StructureError(f"{path.name} has {len(images)} frame(s); frame {index} does not exist") from err
    try:
        return from_atoms(atoms, check_overlaps=check_overlaps)
    except StructureError as err:
        raise StructureError(f"{path.name}: {err}") from err


def write(path, system: System | list[System], format: str | None = None) -> None:
    """Write one system or a list (trajectory) with ``ase.io``; the format follows the suffix."""
    import ase.io

    systems = system if isinstance(system, list) else [system]
    ase.io.write(path, [to_atoms(s) for s in systems], format=format)


def check_no_overlaps(system: System, min_distance: float = MIN_INTERMOLECULAR_DISTANCE,
                      min_any: float = MIN_ANY_DISTANCE) -> None:
    """Raise ``StructureError`` naming the first pair of atoms that overlap: first any two atoms
    closer than ``min_any`` nm, then atoms of different molecules (when the molecules are known,
    i.e. multi-atom) closer than ``min_distance`` nm."""
    pos, box = system.positions, system.box
    mol_of = np.empty(system.n_atoms, dtype=int)
    for m, atoms in enumerate(system.molecules):
        mol_of[atoms] = m
    checks = [(min_any, False)]
    if system.molecules.shape[1] > 1:
        checks.append((min_distance, True))
    for limit, intermolecular_only in checks:
        for i in range(system.n_atoms - 1):
            r = np.linalg.norm(minimum_image(pos[i + 1:] - pos[i], box), axis=1)
            close = r < limit
            if intermolecular_only:
                close &= mol_of[i + 1:] != mol_of[i]
            bad = np.nonzero(close)[0]
            if bad.size:
                j = i + 1 + bad[0]
                raise StructureError(
                    f"overlapping atoms: {system.symbols[i]}{i} and {system.symbols[j]}{j} are "
                    f"{r[bad[0]] * 10:.3f} Å apart (minimum {limit * 10:.2f} Å)")


def _find_waters(symbols, positions, box, max_oh: float = 0.13) -> np.ndarray:
    """Group atoms into O-H-H waters when every O has exactly two H within ``max_oh`` nm."""
    n = len(symbols)
    sym = np.asarray(symbols)
    o_idx = np.nonzero(sym == "O")[0]
    h_idx = np.nonzero(sym == "H")[0]
    if len(o_idx) == 0 or len(h_idx) != 2 * len(o_idx) or len(o_idx) * 3 != n:
        return np.arange(n).reshape(n, 1)
    r = np.linalg.norm(minimum_image(positions[h_idx][None, :, :] - positions[o_idx][:, None, :], box),
                       axis=-1)
    owner = np.argmin(r, axis=0)
    mols = []
    for k, o in enumerate(o_idx):
        hs = h_idx[(owner == k) & (r[k] < max_oh)]
        if len(hs) != 2:
            return np.arange(n).reshape(n, 1)
        mols.append([o, *hs])
    return np.asarray(mols, dtype=int)
