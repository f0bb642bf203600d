"""Neighbour (pair) lists for MD, on top of jax-md's ``partition.neighbor_list``.

The lists are in jax-md's ``OrderedSparse`` format: a (2, capacity) int array of pairs i < j,
each unordered pair once, padded with N — exactly the ``pairs`` argument of every workbench
potential (see ``workbench.potentials.base``).  A list is built with a cutoff of
``potential.cutoff + skin`` and only rebuilt (inside jit) when some atom has moved more than
skin/2 since the last build.

Capacity is static under jit.  When a rebuild inside jit needs more rows than allocated, jax-md
sets an overflow flag; callers check ``overflowed(nbrs)`` *outside* jit, reallocate with
``allocate`` and redo the steps that used the overflowing list — never silently wrong.

``BoxPairs`` is the same list for a box that changes during the run (NPT): the box is an argument
of every build, and a box change forces a rebuild.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax_md import partition, space

from workbench.potentials.base import minimum_image, pairs_within

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

    @functools.cached_property
    def _jit_update(self):
        return jax.jit(self.update)

    def rebuild(self, positions, like, capacity: int):
        """A list of exactly ``capacity`` rows for ``positions``, built from scratch (not jit-able:
        the capacity is static), in the format of ``like`` (any list of this builder); its overflow
        flag is set when ``capacity`` is too small.  Lists rebuilt to one capacity stack (replicas,
        windows) and depend only on the positions."""
        x = jnp.asarray(positions)
        padded = jnp.full((2, capacity), x.shape[0], dtype=like.idx.dtype)
        # a reference half a box away: every atom "moved" more than skin/2, so the update rebuilds
        stale = dataclasses.replace(like, idx=padded, max_occupancy=capacity,
                                    reference_position=x + 0.5 * jnp.asarray(self.box, x.dtype))
        return self._jit_update(x, stale)

    def fitted(self, frames, like, capacity: int):
        """(lists, capacity): one ``rebuild`` list per frame, all of one capacity, grown by 25 % + 16
        rows until none of them overflows."""
        while True:
            lists = [self.rebuild(x, like, capacity) for x in frames]
            if not any(overflowed(nb) for nb in lists):
                return lists, capacity
            capacity = int(capacity * 1.25) + 16

    def wrap(self, positions):
        """Positions folded into [0, L) (the lists work on wrapped copies; MD keeps unwrapped ones)."""
        box = jnp.asarray(self.box, dtype=positions.dtype)
        return jnp.mod(positions, box)


def overflowed(nbrs) -> bool:
    """True when an update inside jit needed more rows than the list's capacity."""
    return bool(nbrs.did_buffer_overflow)


class BoxPairs(NamedTuple):
    """A pair list for a box that changes during the run (NPT), all of it traced under jit.

    idx: (2, capacity) pairs i < j within ``reach`` at the last build, padded with N (the
    ``pairs`` argument of the potentials); positions, box: the positions (nm) and box (3,) of that
    build; overflow: sticky flag, set when a build found more pairs than ``capacity``.
    """

    idx: jax.Array
    positions: jax.Array
    box: jax.Array
    overflow: jax.Array


def build_box_pairs(positions, box, reach: float, capacity: int) -> BoxPairs:
    """Every pair i < j with minimum-image distance < ``reach`` (nm) in ``box``, O(N²), jit-able.

    For the small cells of liquid MD (a few hundred atoms, fewer than 3 cutoff-sized cells per
    edge) this is what jax-md's list does too; unlike jax-md's, the box is an argument here.
    """
    n = positions.shape[0]
    i, j = np.triu_indices(n, k=1)
    d = minimum_image(positions[j] - positions[i], box)
    inside = jnp.sum(d * d, axis=-1) < reach**2
    (rows,) = jnp.nonzero(inside, size=capacity, fill_value=i.size)
    i_pad, j_pad = (jnp.append(jnp.asarray(a, jnp.int32), jnp.int32(n)) for a in (i, j))
    idx = jnp.stack([i_pad[rows], j_pad[rows]])
    return BoxPairs(idx, positions, box, jnp.sum(inside) > capacity)


def update_box_pairs(pairs: BoxPairs, positions, box, reach: float, skin: float) -> BoxPairs:
    """Rebuild when the box changed or an atom moved more than skin/2 since the last build
    (``reach`` = cutoff + skin); keeps the overflow flag sticky."""
    moved = jnp.max(jnp.sum((positions - pairs.positions) ** 2, axis=-1)) > (0.5 * skin) ** 2
    stale = moved | jnp.any(box != pairs.box)

    def rebuild(_):
        new = build_box_pairs(positions, box, reach, pairs.idx.shape[1])
        return new._replace(overflow=new.overflow | pairs.overflow)

    return jax.lax.cond(stale, rebuild, lambda _: pairs, None)


def box_pairs_capacity(positions, box, reach: float, multiplier: float = 1.25) -> int:
    """Rows for a BoxPairs list: ``multiplier`` × the pairs within ``reach`` now (not jit-able)."""
    count = pairs_within(positions, box, reach).shape[1]
    return max(16, int(np.ceil(multiplier * count)))


def box_pairs_per_frame(positions, boxes, reach: float, multiplier: float = 1.25):
    """(S, 2, P) pair lists of S frames with their own boxes (S, 3) (NPT samples, e.g. for
    reweighting), P = ``multiplier`` × the most pairs within ``reach`` (nm) of any frame."""
    positions, boxes = np.asarray(positions), np.asarray(boxes)
    capacity = max(box_pairs_capacity(x, b, reach, multiplier) for x, b in zip(positions, boxes, strict=True))
    pairs = jax.vmap(lambda x, b: build_box_pairs(x, b, reach, capacity))(jnp.asarray(positions),
                                                                           jnp.asarray(boxes))
    return pairs.idx
