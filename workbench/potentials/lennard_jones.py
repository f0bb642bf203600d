"""Lennard-Jones pair potential (argon and other simple liquids).

    V(r) = 4ε[(σ/r)¹² − (σ/r)⁶] − V_shift   for r < r_c, 0 beyond,

with V_shift = V(r_c) so the energy is continuous at the cutoff (the force has a small jump,
|F(r_c)| ≈ 0.04 ε/σ at r_c = 2.5σ).  Units: σ, r_c in nm; ε in kJ/mol.  Argon defaults
(σ = 0.3405 nm, ε = 0.99774 kJ/mol = 120 K·k_B) follow Rahman (1964).
"""

from __future__ import annotations

import jax.numpy as jnp

from workbench.potentials.base import Potential, pair_geometry

ARGON_SIGMA_NM = 0.3405
ARGON_EPSILON_KJ_MOL = 0.99774


def lj_params(sigma: float = ARGON_SIGMA_NM, epsilon: float = ARGON_EPSILON_KJ_MOL) -> dict:
    """Parameter pytree {"sigma": nm, "epsilon": kJ/mol}."""
    return {"sigma": jnp.asarray(sigma), "epsilon": jnp.asarray(epsilon)}


def lj_energy_fn(cutoff: float):
    """Pure ``energy_fn(params, positions_nm, box_nm, pairs) -> kJ/mol`` with a shifted cutoff."""

    def energy(params, positions, box, pairs):
        _, d, valid = pair_geometry(positions, box, pairs)
        sigma = params["sigma"].astype(positions.dtype)
        eps = params["epsilon"].astype(positions.dtype)

        def v(r):
            s6 = (sigma / r) ** 6
            return 4.0 * eps * (s6 * s6 - s6)

        inside = valid & (d < cutoff)
        return jnp.sum(jnp.where(inside, v(d) - v(jnp.asarray(cutoff, positions.dtype)), 0.0))

    return energy


def lennard_jones(sigma: float = ARGON_SIGMA_NM, epsilon: float = ARGON_EPSILON_KJ_MOL,
                  cutoff: float | None = None) -> Potential:
    """A Lennard-Jones ``Potential``; cutoff defaults to 2.5σ."""
    cutoff = 2.5 * sigma if cutoff is None else cutoff
    return Potential(name=f"Lennard-Jones (σ={sigma} nm, ε={epsilon} kJ/mol)",
                     energy_fn=lj_energy_fn(cutoff), params=lj_params(sigma, epsilon), cutoff=cutoff,
                     metadata={"units": "nm, kJ/mol", "cutoff_nm": cutoff, "shifted": True})
