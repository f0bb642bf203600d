"""Trainable parameter groups: which leaves of a parameter pytree are refined, and in what coordinates.

Leaves are named by their path in the pytree, joined with dots: q-TIP4P/F ``r_eq``, ``k_theta``;
Lennard-Jones ``sigma``; EANN ``layer0.w``; dipole models ``q_h``, ``a_r``.  A group trains the
leaves whose names match any of its fnmatch patterns, in optimiser coordinates u (zero at the
start):

    absolute:  θ = θ₀ + u            (u in the parameter's units)
    relative:  θ = θ₀ ⊙ (1 + u)      (u dimensionless: a learning rate of 1e-2 moves every
                                     parameter by about 1 % per step whatever its scale)

so the L2 penalty ‖u‖² is the squared change from the start in those coordinates.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

import jax
import jax.numpy as jnp

from workbench.refine.config import ConfigError


def _key_name(entry) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def leaf_names(tree) -> list[str]:
    """Dotted path names of the leaves of ``tree`` in flatten order."""
    return [".".join(_key_name(e) for e in path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def named_leaves(tree) -> dict[str, Any]:
    """name → leaf."""
    return dict(zip(leaf_names(tree), jax.tree.leaves(tree), strict=True))


def with_values(tree, values: dict[str, Any], what: str = "parameter"):
    """``tree`` with the named leaves replaced (same shape and dtype); unknown names are refused."""
    names = leaf_names(tree)
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{what} {unknown[0]!r} does not exist; known: {', '.join(names)}")
    leaves = jax.tree.leaves(tree)
    new = []
    for name, leaf in zip(names, leaves, strict=True):
        if name in values:
            value = jnp.asarray(values[name], dtype=jnp.asarray(leaf).dtype)
            if value.shape != jnp.shape(leaf):
                value = jnp.broadcast_to(value, jnp.shape(leaf))
            new.append(value)
        else:
            new.append(leaf)
    return jax.tree.unflatten(jax.tree.structure(tree), new)


@dataclasses.dataclass(frozen=True, eq=False)
class ParameterGroup:
    """A trained subset of a parameter pytree.

    Attributes:
      name: "potential" or "dipole".
      base: θ₀, the full parameter pytree at the start of the refinement.
      names: the trained leaves (dotted names).
      relative: relative (θ₀(1 + u)) rather than absolute (θ₀ + u) coordinates.
    """

    name: str
    base: Any
    names: tuple[str, ...]
    relative: bool

    @classmethod
    def select(cls, name: str, base, patterns, relative: bool) -> ParameterGroup:
        all_names = leaf_names(base)
        chosen = tuple(n for n in all_names if any(fnmatch.fnmatchcase(n, p) for p in patterns))
        if not chosen:
            raise ConfigError(f"train.{name}.params: {list(patterns)} matches none of the parameters "
                              f"{', '.join(all_names)}")
        return cls(name, base, chosen, relative)

    def zeros(self) -> dict[str, jax.Array]:
        """u = 0: the start."""
        leaves = named_leaves(self.base)
        return {n: jnp.zeros_like(jnp.asarray(leaves[n], dtype=float)) for n in self.names}

    def apply(self, u: dict) -> Any:
        """θ(u) (differentiable w.r.t. ``u``)."""
        leaves = named_leaves(self.base)
        new = {n: leaves[n] * (1.0 + u[n]) if self.relative else leaves[n] + u[n] for n in self.names}
        names = leaf_names(self.base)
        return jax.tree.unflatten(jax.tree.structure(self.base),
                                  [new.get(n, leaves[n]) for n in names])

    @property
    def size(self) -> int:
        leaves = named_leaves(self.base)
        return int(sum(jnp.size(leaves[n]) for n in self.names))
