"""Neighbour (pair) lists for MD, on top of jax-md's ``partition.neighbor_list``.

The lists are in jax-md's ``OrderedSparse`` format: a (2, capacity) int array of pairs i < j,
each unordered pair once, padded with N — exactly the ``pairs`` argument of every workbench
potential (see ``workbench.potentials.base``).  A list is built with a cutoff of
``potential.cutoff + skin`` and only rebuilt (inside jit) when some atom has moved more than
skin/2 since the last build.

Capacity is static under jit.  When a rebuild inside jit needs more rows than allocated, jax-md
sets an overflow flag; callers check ``overflowed(nbrs)`` *outside* jit, reallocate with
``allocate`` and redo the steps that used the overflowing list — never silently wrong.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax.numpy as jnp
from jax_md import partition, space

# jax-md 0.2.29 scatters int64 indices into its int32 list when x64 is on; harmless, but JAX warns
# on every trace.  Silence exactly that message.
warnings.filterwarnings("ignore", message="scatter inputs have incompatible types", category=FutureWarning)


@dataclasses.dataclass(frozen=True)
class PairListBuilder:
    """Builds and updates padded pair lists for an orthorhombic box.

    Attributes:
      box: (3,) cell edges, nm.
      cutoff: interaction cutoff, nm (the potential's ``cutoff``).
      skin: extra distance, nm; the list holds every pair within cutoff + skin.
      capacity_multiplier: spare capacity at allocation (1.25 = 25 % more rows than needed).
    """

    box: tuple[float, float, float]
    cutoff: float
    skin: float = 0.1
    capacity_multiplier: float = 1.25

    def _fns(self, dtype):
        """jax-md's list functions with the box in the positions' dtype (a float64 box would turn
        the list's float32 reference positions into float64 inside its update)."""
        box = jnp.asarray(self.box, dtype)
        displacement, _ = space.periodic(box)
        return partition.neighbor_list(
            displacement, box, self.cutoff, dr_threshold=self.skin,
            capacity_multiplier=self.capacity_multiplier,
            format=partition.NeighborListFormat.OrderedSparse)

    def allocate(self, positions, extra_capacity: int = 0):
        """A fresh list for ``positions`` (not jit-able: the capacity is chosen here)."""
        return self._fns(positions.dtype).allocate(self.wrap(positions), extra_capacity=extra_capacity)

    def update(self, positions, nbrs):
        """Rebuild if needed (jit-able); sets the overflow flag when the capacity is exceeded."""
        return nbrs.update(self.wrap(positions))

    def wrap(self, positions):
        """Positions folded into [0, L) (the lists work on wrapped copies; MD keeps unwrapped ones)."""
        box = jnp.asarray(self.box, dtype=positions.dtype)
        return jnp.mod(positions, box)


def overflowed(nbrs) -> bool:
    """True when an update inside jit needed more rows than the list's capacity."""
    return bool(nbrs.did_buffer_overflow)
