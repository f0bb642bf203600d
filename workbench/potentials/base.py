"""The contract every workbench potential follows.

A potential is a *pure* energy function plus its parameters:

    energy_fn(params, positions, box, pairs) -> E   [kJ/mol, scalar]

- ``params``: any JAX pytree (differentiable: the refinement takes gradients w.r.t. it).
- ``positions``: (N, 3) array in nm, wrapped or unwrapped (the function applies minimum image).
- ``box``: (3,) array, edge lengths of the orthorhombic periodic cell in nm.
- ``pairs``: (2, P) int array of atom-index pairs i < j (each unordered pair once), padded with the
  value N for unused rows (jax-md's ``OrderedSparse`` neighbour-list format).  It must contain every
  pair closer than ``Potential.cutoff``; the function masks pairs that are farther away, so a list
  built with a skin (or all pairs) gives the same energy.  Potentials with ``cutoff = None`` ignore it.

Forces are ``-jax.grad(energy_fn, argnums=1)``; nothing else is needed by the integrators, the
adjoint or the trainer.  The dtype of ``positions`` decides the precision (float32 or float64).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from workbench.system import pair_displacements

EnergyFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Potential:
    """An energy function with its parameters and what MD needs to run it.

    Attributes:
      name: human-readable name (shown in the UI and in files).
      energy_fn: pure ``(params, positions_nm, box_nm, pairs) -> kJ/mol``.
      params: parameter pytree (arrays).
      cutoff: pair cutoff in nm that ``pairs`` must cover, or ``None`` for no pair list.
      metadata: free-form description (units, provenance, architecture) for model cards.
    """

    name: str
    energy_fn: EnergyFn
    params: Any
    cutoff: float | None
    metadata: dict = dataclasses.field(default_factory=dict)

    def energy(self, positions, box, pairs=None, params=None):
        """Energy in kJ/mol (``params`` defaults to the potential's own)."""
        p = self.params if params is None else params
        if pairs is None:
            pairs = all_pairs(positions.shape[0])
        return self.energy_fn(p, positions, box, pairs)

    def forces(self, positions, box, pairs=None, params=None):
        """Forces −∂E/∂r in kJ/mol/nm, shape (N, 3)."""
        p = self.params if params is None else params
        if pairs is None:
            pairs = all_pairs(positions.shape[0])
        return -jax.grad(self.energy_fn, argnums=1)(p, positions, box, pairs)

    def replace(self, **changes) -> Potential:
        return dataclasses.replace(self, **changes)


def all_pairs(n_atoms: int) -> jax.Array:
    """Every unordered pair i < j as a (2, n(n−1)/2) int32 array: the O(N²) reference list."""
    i, j = np.triu_indices(n_atoms, k=1)
    return jnp.asarray(np.stack([i, j]).astype(np.int32))


def pairs_within(positions, box, cutoff: float, capacity: int | None = None) -> np.ndarray:
    """Every pair i < j within ``cutoff`` (minimum image), by brute force in NumPy, as a
    (2, capacity) OrderedSparse list padded with N, or (2, P) unpadded with ``capacity`` None
    (any length unit, the same for all arguments)."""
    n = len(positions)
    i, j, dr = pair_displacements(np.asarray(positions, float), box)
    close = np.linalg.norm(dr, axis=1) <= cutoff
    capacity = int(close.sum()) if capacity is None else capacity
    if close.sum() > capacity:
        raise ValueError(f"{close.sum()} pairs within {cutoff} exceed the capacity {capacity}")
    out = np.full((2, capacity), n, np.int32)
    out[:, : close.sum()] = np.stack([i[close], j[close]])
    return out


def minimum_image(dr, box):
    """Minimum-image displacement in an orthorhombic box (dr and box in the same units)."""
    return dr - box * jnp.round(dr / box)


def pair_geometry(positions, box, pairs):
    """Displacements r_j − r_i (minimum image), distances and a validity mask for a padded pair list.

    Returns ``(dr (P,3), d (P,), valid (P,) bool)``; padded rows (index == N) get a safe dummy
    distance of 1 (so that 1/d and its gradient stay finite) and ``valid = False``.
    """
    n = positions.shape[0]
    i, j = pairs[0], pairs[1]
    valid = (i < n) & (j < n)
    ic = jnp.where(valid, i, 0)
    jc = jnp.where(valid, j, 0)
    dr = minimum_image(positions[jc] - positions[ic], box)
    d2 = jnp.sum(dr * dr, axis=-1)
    d2 = jnp.where(valid, d2, 1.0)
    return dr, jnp.sqrt(d2), valid
