"""ASE calculator for any workbench potential.

``WorkbenchCalculator`` wraps a ``Potential`` (contract in ``potentials.base``: nm, kJ/mol) so that ASE
(Å, eV) can use it: optimisers, MD, vibrational analysis, ...  At each call it

1. converts positions Å → nm and the orthorhombic cell (diagonal) Å → nm,
2. builds the OrderedSparse pair list (i < j, padded with N) of all pairs within the potential's
   cutoff (plus ``skin``) with ``ase.neighborlist.neighbor_list`` — or all pairs when the potential
   has no cutoff,
3. evaluates a jitted ``value_and_grad`` of the energy (compiled once per pair-list capacity; the
   capacity only grows, in steps of 256 with 20 % headroom, so MD does not recompile each step),
4. returns ``energy`` [eV] = E [kJ/mol] / 96.485... and ``forces`` [eV/Å] = −∂E/∂r [kJ/mol/nm]
   / 96.485... / 10.

Cells: fully periodic orthorhombic cells whose edges are at least twice the cutoff (the contract's
minimum image then sees every neighbour once), or — for potentials with a cutoff — no periodicity at
all, in which case a box larger than twice the extent of the atoms stands in for open boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

from workbench import units
from workbench.potentials.base import Potential, all_pairs

_CAPACITY_STEP = 256
_CAPACITY_HEADROOM = 1.2


class WorkbenchCalculator(Calculator):
    """ASE calculator (energy in eV, forces in eV/Å) around a workbench potential.

    Args:
      potential: a ``Potential`` built for these atoms (fixed number and kinds of atoms), or a
        factory ``species -> Potential`` (e.g. ``ModelFile.potential`` or
        ``functools.partial(eann_potential, params)``) that is called with the atoms' species
        indices whenever the chemical symbols change; a ``ModelFile`` is accepted as its factory.
      species_order: element symbols in species-index order (e.g. ``("H", "O")``).  Needed for a
        factory (a ``ModelFile`` supplies its own); for a ``Potential`` that records
        ``metadata["species_index"]`` it is used to check that the atoms match the potential.
      dtype: float dtype of the evaluation (default float64 when JAX runs with x64, else float32).
      skin: extra distance in Å added to the cutoff when building the pair list (0 is exact).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, potential: Potential | Callable, species_order: Sequence[str] | None = None,
                 dtype=None, skin: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if hasattr(potential, "potential") and hasattr(potential, "species_order"):  # a ModelFile
            species_order = species_order or potential.species_order
            potential = potential.potential
        if isinstance(potential, Potential):
            self._fixed = potential
            self._factory = None
            species_order = species_order or potential.metadata.get("species_order")
        elif callable(potential):
            if species_order is None:
                raise ValueError("a potential factory needs species_order, e.g. ('H', 'O')")
            self._fixed = None
            self._factory = potential
        else:
            raise TypeError(f"expected a Potential or a factory species -> Potential, got "
                            f"{type(potential).__name__}")
        self.species_order = tuple(species_order) if species_order is not None else None
        if dtype is None:
            dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
        if np.dtype(dtype) == np.float64 and not jax.config.read("jax_enable_x64"):
            raise ValueError("float64 needs jax_enable_x64 (import workbench enables it)")
        self.dtype = np.dtype(dtype)
        self.skin = float(skin)
        self._built: dict[tuple[str, ...], tuple[Potential, Callable]] = {}
        self._capacity = 0

    # -- potential for the current atoms --------------------------------------------------------

    def potential_for(self, atoms) -> tuple[Potential, Callable]:
        """The ``Potential`` used for ``atoms`` and its jitted ``value_and_grad`` w.r.t. positions
        (``(params, positions_nm, box_nm, pairs) -> (kJ/mol, kJ/mol/nm)``), built once per symbols."""
        symbols = tuple(atoms.get_chemical_symbols())
        if symbols in self._built:
            return self._built[symbols]
        if self._factory is not None:
            potential = self._factory(_species_index(symbols, self.species_order))
        else:
            potential = self._fixed
            _check_atoms_match(potential, symbols, self.species_order)
        value_and_grad = jax.jit(jax.value_and_grad(potential.energy_fn, argnums=1))
        self._built[symbols] = (potential, value_and_grad)
        return potential, value_and_grad

    # -- ASE entry point ------------------------------------------------------------------------

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        potential, value_and_grad = self.potential_for(atoms)
        cutoff_a = None if potential.cutoff is None else potential.cutoff * units.ANGSTROM_PER_NM
        box_a = _box_angstrom(atoms, cutoff_a)
        if cutoff_a is None:
            pairs = np.asarray(all_pairs(len(atoms)))
        else:
            pairs = self._pair_list(atoms, cutoff_a + self.skin)
        positions = jnp.asarray(atoms.get_positions() * units.NM_PER_ANGSTROM, self.dtype)
        box = jnp.asarray(box_a * units.NM_PER_ANGSTROM, self.dtype)
        energy, grad = value_and_grad(potential.params, positions, box, jnp.asarray(pairs))
        energy_ev = float(energy) / units.KJ_PER_MOL_PER_EV
        forces = -np.asarray(grad, dtype=np.float64) * units.NM_PER_ANGSTROM / units.KJ_PER_MOL_PER_EV
        self.results = {"energy": energy_ev, "free_energy": energy_ev, "forces": forces}

    def _pair_list(self, atoms, cutoff_a: float) -> np.ndarray:
        """(2, capacity) int32 pairs i < j within ``cutoff_a`` Å, padded with N."""
        n = len(atoms)
        i, j = neighbor_list("ij", atoms, cutoff_a, self_interaction=False)
        keep = i < j
        pairs = np.unique(np.stack([i[keep], j[keep]], axis=1), axis=0).T
        count = pairs.shape[1]
        if count > self._capacity:
            self._capacity = _CAPACITY_STEP * math.ceil(count * _CAPACITY_HEADROOM / _CAPACITY_STEP)
        padded = np.full((2, self._capacity), n, dtype=np.int32)
        padded[:, :count] = pairs
        return padded


def _species_index(symbols, order) -> np.ndarray:
    missing = sorted(set(symbols) - set(order))
    if missing:
        raise ValueError(f"element(s) {missing} are not handled by a model with species {tuple(order)}")
    return np.array([order.index(s) for s in symbols], dtype=np.int32)


def _check_atoms_match(potential: Potential, symbols, species_order) -> None:
    n = potential.metadata.get("n_atoms")
    if n is not None and n != len(symbols):
        raise ValueError(f"potential {potential.name!r} was built for {n} atoms, the atoms have "
                         f"{len(symbols)}; pass a factory (e.g. ModelFile) to handle any atoms")
    index = potential.metadata.get("species_index")
    if index is not None and species_order is not None:
        if not np.array_equal(_species_index(symbols, species_order), index):
            raise ValueError(f"the atoms' elements do not match the species potential {potential.name!r} "
                             f"was built for (species order {tuple(species_order)})")


def _box_angstrom(atoms, cutoff_a: float | None) -> np.ndarray:
    """Orthorhombic box edges in Å for the contract's minimum image (see module docstring)."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        cell = np.asarray(atoms.cell.array, dtype=float)
        edges = np.diag(cell)
        if np.max(np.abs(cell - np.diag(edges))) > 1e-8 * max(np.max(np.abs(edges)), 1.0):
            raise ValueError("WorkbenchCalculator supports orthorhombic cells only (the cell has "
                             "off-diagonal components)")
        if np.any(edges <= 0):
            raise ValueError(f"periodic cell edges must be positive, got {edges} Å")
        if cutoff_a is not None and np.any(edges < 2 * cutoff_a):
            raise ValueError(f"cell edges {edges} Å are shorter than twice the cutoff ({cutoff_a:g} Å): "
                             f"the minimum-image convention would miss neighbours; use a larger cell")
        return edges
    if not pbc.any() and cutoff_a is not None:
        extent = np.ptp(atoms.get_positions(), axis=0) if len(atoms) else np.zeros(3)
        return 2.0 * extent + 2.0 * cutoff_a + 10.0
    raise ValueError(f"pbc={atoms.pbc.tolist()}: use a fully periodic orthorhombic cell, or no periodicity "
                     f"with a potential that has a cutoff")
