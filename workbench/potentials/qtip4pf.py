"""q-TIP4P/F flexible water (Habershon, Markland & Manolopoulos, J. Chem. Phys. 131, 024501 (2009)).

Units: nm, kJ/mol, e, rad.  Water molecules are consecutive (O, H, H) atoms in the topology.

    E = Σ_mol [ V_OH(r_1) + V_OH(r_2) + ½ k_θ (θ − θ_eq)² ]                       (intramolecular)
      + Σ_{O–O pairs, r < r_c} 4ε[(σ/r)¹² − (σ/r)⁶] S(r)                          (Lennard-Jones)
      + Ewald electrostatics of the charges q_H on H and q_M = −2 q_H on the massless M sites

    V_OH(r) = D_r [α² Δr² − α³ Δr³ + (7/12) α⁴ Δr⁴],  Δr = r − r_eq  (quartic expansion of a Morse bond)
    r_M     = γ r_O + (1 − γ)(r_H1 + r_H2)/2
    S(r)    = 1 − 10x³ + 15x⁴ − 6x⁵,  x = (r − r_s)/(r_c − r_s) for r_s < r < r_c (OpenMM's switch),
              S = 1 below r_s, 0 beyond r_c; no switch (plain truncation) when ``switch_distance=None``.

Intramolecular pairs (O, H1, H2, M of one molecule) are excluded from LJ and real-space Coulomb and
their reciprocal-space erf part is subtracted (see ``workbench.potentials.ewald``).  The O atom
itself carries no charge: in the electrostatics each O index stands for its molecule's M site, so
the atom pair list maps one to one onto charge-site pairs.  Real-space Coulomb pairs are cut on the
*site* distance (M–M, M–H, H–H) and LJ pairs on the O–O distance, so the energy does not depend on
which extra pairs a neighbour list holds; because an M site sits ≈0.015 nm from its O, the atom pair
list must cover ``cutoff + PAIR_MARGIN`` (this is ``Potential.cutoff``).

No long-range dispersion correction is added (it is a constant at fixed volume and density).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.potentials import ewald
from workbench.potentials.base import Potential, minimum_image

REFERENCE = "S. Habershon, T. E. Markland, D. E. Manolopoulos, J. Chem. Phys. 131, 024501 (2009)"

#: Extra pair-list reach (nm) beyond the site cutoff: two M sites can each be displaced from
#: their O by (1 − γ)·|r_OH| cos(θ/2) ≈ 0.015 nm (≈ 0.02 nm for strongly stretched bonds).
PAIR_MARGIN = 0.04

DEFAULT_CUTOFF = 0.6
#: Default LJ switching width: the switch runs from cutoff − 0.1 nm to the cutoff (0.5 → 0.6 nm).
DEFAULT_SWITCH_WIDTH = 0.1
#: Ewald relative error target δ.  1e-8 rather than OpenMM's customary 5e-4..1e-6: the real-space
#: erfc term is truncated at the cutoff, and each pair crossing it kicks the energy by ~δ·q_i q_j/r_c.
#: Measured NVE drift of the shipped 64-water box (float64, 0.5 fs, 8 ps): 1.2e-4 kT/atom/ps at
#: δ = 1e-6 and 3.4e-5 at δ = 1e-8, for 30 % more time per force call (4192 vs 1871 k-vectors).
DEFAULT_EWALD_TOLERANCE = 1e-8


class QTIP4PFParams(NamedTuple):
    """Differentiable q-TIP4P/F parameters (a JAX pytree), internal units.

    Attributes:
      q_H: hydrogen charge, e (q_M = −2 q_H).
      gamma: M-site weight γ (dimensionless).
      D_r: Morse well depth, kJ/mol.
      alpha_r: Morse range parameter, nm⁻¹.
      r_eq: O–H equilibrium distance, nm.
      k_theta: H–O–H bend force constant, kJ/mol/rad².
      theta_eq: equilibrium H–O–H angle, rad.
      epsilon_OO: O–O Lennard-Jones well depth, kJ/mol.
      sigma_OO: O–O Lennard-Jones diameter, nm.
    """

    q_H: jax.Array
    gamma: jax.Array
    D_r: jax.Array
    alpha_r: jax.Array
    r_eq: jax.Array
    k_theta: jax.Array
    theta_eq: jax.Array
    epsilon_OO: jax.Array
    sigma_OO: jax.Array


#: Published values in the paper's units (kcal/mol, Å, degrees).
PUBLISHED = {
    "q_H": 0.5564, "gamma": 0.73612, "D_r_kcal": 116.09, "alpha_r_per_A": 2.287, "r_eq_A": 0.9419,
    "k_theta_kcal": 87.85, "theta_eq_deg": 107.4, "epsilon_OO_kcal": 0.1852, "sigma_OO_A": 3.1589,
}


def qtip4pf_params(dtype=None) -> QTIP4PFParams:
    """The published q-TIP4P/F parameters converted to nm, kJ/mol, rad (kcal → kJ ×4.184, Å → nm ×0.1).

    ``dtype`` defaults to JAX's default float (float64 when x64 is enabled).
    """
    p = PUBLISHED
    values = QTIP4PFParams(
        q_H=p["q_H"],
        gamma=p["gamma"],
        D_r=p["D_r_kcal"] * units.KJ_PER_KCAL,
        alpha_r=p["alpha_r_per_A"] * units.ANGSTROM_PER_NM,
        r_eq=p["r_eq_A"] * units.NM_PER_ANGSTROM,
        k_theta=p["k_theta_kcal"] * units.KJ_PER_KCAL,
        theta_eq=math.radians(p["theta_eq_deg"]),
        epsilon_OO=p["epsilon_OO_kcal"] * units.KJ_PER_KCAL,
        sigma_OO=p["sigma_OO_A"] * units.NM_PER_ANGSTROM,
    )
    return QTIP4PFParams(*(jnp.asarray(v, dtype=dtype) for v in values))


@dataclasses.dataclass(frozen=True)
class QTIP4PFConfig:
    """Static (non-differentiable) settings.

    Attributes:
      cutoff: site cutoff r_c for LJ (O–O) and real-space Coulomb (M/H sites), nm.
      switch_distance: LJ switching start r_s in nm, or None for a plain LJ truncation.
      ewald: Ewald α, k vectors and real-space cutoff.
    """

    cutoff: float
    switch_distance: float | None
    ewald: ewald.EwaldParameters


# ----------------------------------------------------------------------------------------------
# topology


class TopologyError(ValueError):
    """The system is not a set of (O, H, H) water molecules."""


def water_topology(molecules, symbols=None, n_atoms: int | None = None) -> np.ndarray:
    """Validate a water topology and return it as an (M, 3) int array of (O, H1, H2) indices.

    Every atom must belong to exactly one molecule; with ``symbols`` each row must be O, H, H.
    """
    mol = np.asarray(molecules)
    if mol.ndim != 2 or mol.shape[1] != 3 or mol.shape[0] == 0:
        raise TopologyError(
            f"q-TIP4P/F needs water molecules as (O, H, H) index triples; got molecules of shape "
            f"{mol.shape} (a non-water system or atoms not grouped into molecules)")
    if not np.issubdtype(mol.dtype, np.integer):
        raise TopologyError(f"molecule indices must be integers, got dtype {mol.dtype}")
    n = mol.size if n_atoms is None else n_atoms
    flat = np.sort(mol.ravel())
    if n != mol.size or not np.array_equal(flat, np.arange(n)):
        raise TopologyError(
            f"every atom must be in exactly one water: {mol.shape[0]} molecules cover indices "
            f"{flat.min()}..{flat.max()} ({len(np.unique(flat))} distinct) for {n} atoms")
    if symbols is not None:
        if len(symbols) != n:
            raise TopologyError(f"{len(symbols)} symbols for {n} atoms")
        for k, (o, h1, h2) in enumerate(mol):
            found = (symbols[o], symbols[h1], symbols[h2])
            if found != ("O", "H", "H"):
                raise TopologyError(
                    f"molecule {k} (atoms {o}, {h1}, {h2}) is {'-'.join(found)}, expected O-H-H; "
                    "q-TIP4P/F is a model of pure water")
    return mol.astype(np.int32)


# ----------------------------------------------------------------------------------------------
# energy terms (pure)


def quartic_morse(r, D_r, alpha_r, r_eq):
    """V(r) = D_r [α²Δr² − α³Δr³ + (7/12) α⁴Δr⁴], Δr = r − r_eq  (kJ/mol)."""
    x = alpha_r * (r - r_eq)
    return D_r * x * x * (1.0 - x + (7.0 / 12.0) * x * x)


def harmonic_angle(theta, k_theta, theta_eq):
    """V(θ) = ½ k_θ (θ − θ_eq)²  (kJ/mol)."""
    return 0.5 * k_theta * (theta - theta_eq) ** 2


def lennard_jones(r, epsilon, sigma):
    """V(r) = 4ε[(σ/r)¹² − (σ/r)⁶]  (kJ/mol)."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * s6 * (s6 - 1.0)


def switch(r, r_switch, r_cut):
    """OpenMM's switching function S = 1 − 10x³ + 15x⁴ − 6x⁵, x = (r − r_s)/(r_c − r_s) clipped to [0, 1].

    S and its first and second derivatives go smoothly from (1, 0, 0) at r_s to (0, 0, 0) at r_c.
    """
    x = jnp.clip((r - r_switch) / (r_cut - r_switch), 0.0, 1.0)
    return 1.0 + x**3 * (-10.0 + x * (15.0 - 6.0 * x))


def _oh_vectors(positions, box, mol):
    """Minimum-image O→H1 and O→H2 vectors, (M, 3) each."""
    o = positions[mol[:, 0]]
    d1 = minimum_image(positions[mol[:, 1]] - o, box)
    d2 = minimum_image(positions[mol[:, 2]] - o, box)
    return o, d1, d2


def intramolecular_energy(p: QTIP4PFParams, positions, box, mol):
    """Σ quartic-Morse O–H bonds + harmonic H–O–H bends (kJ/mol)."""
    _, d1, d2 = _oh_vectors(positions, box, mol)
    r1 = jnp.linalg.norm(d1, axis=-1)
    r2 = jnp.linalg.norm(d2, axis=-1)
    # θ = atan2(|d1 × d2|, d1·d2): well conditioned for all angles (unlike arccos near 0 and π).
    theta = jnp.arctan2(jnp.linalg.norm(jnp.cross(d1, d2), axis=-1), jnp.sum(d1 * d2, axis=-1))
    bonds = quartic_morse(r1, p.D_r, p.alpha_r, p.r_eq) + quartic_morse(r2, p.D_r, p.alpha_r, p.r_eq)
    return jnp.sum(bonds + harmonic_angle(theta, p.k_theta, p.theta_eq))


def charge_sites(p: QTIP4PFParams, positions, box, mol):
    """Charge-site positions (N, 3) and charges (N,): O rows hold the M site and q_M = −2 q_H.

    r_M = r_O + (1 − γ)(d_OH1 + d_OH2)/2 with minimum-image O–H vectors (molecules may be split
    by the cell boundary).
    """
    o, d1, d2 = _oh_vectors(positions, box, mol)
    m_site = o + (1.0 - p.gamma) * 0.5 * (d1 + d2)
    sites = positions.at[mol[:, 0]].set(m_site)
    n = positions.shape[0]
    is_o = jnp.zeros(n, dtype=bool).at[mol[:, 0]].set(True)
    charges = jnp.where(is_o, -2.0 * p.q_H, p.q_H).astype(positions.dtype)
    return sites, charges


def _gather_pairs(pairs, n):
    """Valid mask and clipped indices for a pair list padded with ``n``."""
    i, j = pairs[0], pairs[1]
    valid = (i < n) & (j < n) & (i != j)
    return valid, jnp.where(valid, i, 0), jnp.where(valid, j, 0)


def _pair_distances(x, box, i, j, valid):
    """Minimum-image |x_j − x_i|, with 1.0 on invalid rows (keeps 1/r and its gradient finite)."""
    dr = minimum_image(x[j] - x[i], box)
    d2 = jnp.where(valid, jnp.sum(dr * dr, axis=-1), 1.0)
    return jnp.sqrt(d2)


def lennard_jones_energy(p: QTIP4PFParams, positions, box, i, j, inter, is_o, cutoff, switch_distance):
    """Σ over intermolecular O–O pairs with r_OO < r_c of 4ε[(σ/r)¹² − (σ/r)⁶]·S(r)  (kJ/mol)."""
    r = _pair_distances(positions, box, i, j, inter)
    mask = inter & is_o[i] & is_o[j] & (r < cutoff)
    r = jnp.where(mask, r, 1.0)
    e = lennard_jones(r, p.epsilon_OO, p.sigma_OO)
    if switch_distance is not None:
        e = e * switch(r, switch_distance, cutoff)
    return jnp.sum(jnp.where(mask, e, 0.0))


def electrostatic_energy(p: QTIP4PFParams, positions, box, i, j, inter, mol, excluded,
                         ew: ewald.EwaldParameters):
    """Ewald energy of the H and M charges (kJ/mol): real space over intermolecular site pairs with
    r_site < r_c, reciprocal space, self term and the erf correction of the ``excluded`` (2, X)
    intramolecular site pairs."""
    sites, q = charge_sites(p, positions, box, mol)
    r = _pair_distances(sites, box, i, j, inter)
    mask = inter & (r < ew.cutoff)
    e_real = ewald.real_space_energy(q[i] * q[j], jnp.where(mask, r, 1.0), mask, ew.alpha)
    e_recip = ewald.reciprocal_energy(q, sites, box, ew.multiplicity, ew.alpha)
    a, b = excluded[0], excluded[1]
    r_ex = _pair_distances(sites, box, a, b, True)
    e_excl = ewald.excluded_correction(q[a] * q[b], r_ex, ew.alpha)
    return e_real + e_recip + ewald.self_energy(q, ew.alpha) + e_excl


def _make_terms_fn(mol: np.ndarray, config: QTIP4PFConfig):
    """Build the pure ``terms_fn(params, positions, box, pairs) -> {term: kJ/mol}`` for a topology."""
    n_atoms = mol.size
    mol_id = np.empty(n_atoms, dtype=np.int32)
    mol_id[mol.ravel()] = np.repeat(np.arange(mol.shape[0], dtype=np.int32), 3)
    is_o = np.zeros(n_atoms, dtype=bool)
    is_o[mol[:, 0]] = True
    # Excluded charge-site pairs per molecule: (M, H1), (M, H2), (H1, H2).
    excluded = jnp.asarray(np.concatenate([mol[:, [0, 1]], mol[:, [0, 2]], mol[:, [1, 2]]]).T)
    mol_id, is_o, mol = jnp.asarray(mol_id), jnp.asarray(is_o), jnp.asarray(mol)

    def terms_fn(params, positions, box, pairs):
        dtype = positions.dtype
        p = QTIP4PFParams(*(jnp.asarray(v, dtype=dtype) for v in params))
        box = jnp.asarray(box, dtype=dtype)
        valid, i, j = _gather_pairs(pairs, n_atoms)
        inter = valid & (mol_id[i] != mol_id[j])
        return {
            "intramolecular": intramolecular_energy(p, positions, box, mol),
            "lennard_jones": lennard_jones_energy(p, positions, box, i, j, inter, is_o, config.cutoff,
                                                  config.switch_distance),
            "electrostatic": electrostatic_energy(p, positions, box, i, j, inter, mol, excluded,
                                                  config.ewald),
        }

    return terms_fn


def _make_energy_fn(mol: np.ndarray, config: QTIP4PFConfig):
    """The total energy ``energy_fn(params, positions, box, pairs)`` in kJ/mol."""
    terms_fn = _make_terms_fn(mol, config)

    def energy_fn(params, positions, box, pairs):
        return sum(terms_fn(params, positions, box, pairs).values())

    return energy_fn


# ----------------------------------------------------------------------------------------------
# factory


def qtip4pf(system_or_molecules, box=None, *, cutoff: float = DEFAULT_CUTOFF,
            switch_distance: float | str | None = "auto",
            ewald_tolerance: float = DEFAULT_EWALD_TOLERANCE, ewald_alpha: float | None = None,
            ewald_kmax: float | None = None, params: QTIP4PFParams | None = None,
            symbols=None) -> Potential:
    """The q-TIP4P/F potential for a fixed water topology.

    Args:
      system_or_molecules: a ``workbench.system.System`` of water (symbols, molecules and box are
        taken from it), or an (M, 3) array of (O, H1, H2) atom indices.
      box: (3,) cell edges in nm; required with a molecules array, defaults to the system's box.
        It fixes the reciprocal-lattice grid; the energy function forms k from the box it is
        called with.
      cutoff: site cutoff in nm for LJ and real-space Coulomb (≤ half the smallest box edge).
      switch_distance: LJ switching start in nm (OpenMM's polynomial switch), None for a plain
        truncation, "auto" for cutoff − DEFAULT_SWITCH_WIDTH (0.5 nm with the default cutoff).
      ewald_tolerance: relative Ewald error target δ (see ``ewald.ewald_parameters``).
      ewald_alpha, ewald_kmax: explicit α (nm⁻¹) and reciprocal cutoff |k| (nm⁻¹), overriding δ.
      params: ``QTIP4PFParams``; the published values by default.
      symbols: element symbols to validate O, H, H ordering when passing a molecules array.

    Returns:
      a ``Potential`` whose ``cutoff`` (= cutoff + PAIR_MARGIN) is what the atom pair list must cover.

    Raises:
      TopologyError: the atoms are not (O, H, H) waters;  ValueError: inconsistent settings.
    """
    mol, config = qtip4pf_config(system_or_molecules, box, cutoff=cutoff,
                                 switch_distance=switch_distance, ewald_tolerance=ewald_tolerance,
                                 ewald_alpha=ewald_alpha, ewald_kmax=ewald_kmax, symbols=symbols)
    ew = config.ewald
    return Potential(
        name="q-TIP4P/F",
        energy_fn=_make_energy_fn(mol, config),
        params=qtip4pf_params() if params is None else params,
        cutoff=config.cutoff + PAIR_MARGIN,
        metadata={
            "model": "q-TIP4P/F flexible water",
            "reference": REFERENCE,
            "units": "nm, kJ/mol, e, rad",
            "site_cutoff_nm": config.cutoff,
            "pair_list_margin_nm": PAIR_MARGIN,
            "switch_distance_nm": config.switch_distance,
            "electrostatics": "Ewald",
            "ewald_alpha_per_nm": ew.alpha,
            "ewald_kmax_per_nm": ew.kmax,
            "ewald_n_kvectors": ew.n_kvectors,
            "ewald_tolerance": ew.tolerance,
            "n_molecules": int(mol.shape[0]),
        },
    )


def qtip4pf_terms(system_or_molecules, box=None, **settings):
    """``terms_fn(params, positions, box, pairs) -> {"intramolecular", "lennard_jones",
    "electrostatic": kJ/mol}``: the energy split by term (same arguments as ``qtip4pf``, minus
    ``params``), for diagnostics and tests."""
    return _make_terms_fn(*qtip4pf_config(system_or_molecules, box, **settings))


def qtip4pf_config(system_or_molecules, box=None, *, cutoff: float = DEFAULT_CUTOFF,
                   switch_distance: float | str | None = "auto",
                   ewald_tolerance: float = DEFAULT_EWALD_TOLERANCE, ewald_alpha: float | None = None,
                   ewald_kmax: float | None = None, symbols=None) -> tuple[np.ndarray, QTIP4PFConfig]:
    """Validated (M, 3) topology and static ``QTIP4PFConfig`` (see ``qtip4pf`` for the arguments)."""
    if hasattr(system_or_molecules, "molecules"):
        system = system_or_molecules
        symbols = system.symbols if symbols is None else symbols
        box = system.box if box is None else box
        mol = water_topology(system.molecules, symbols, system.n_atoms)
    else:
        if box is None:
            raise ValueError("qtip4pf(molecules, box): the box (nm) is required with a molecules array")
        mol = water_topology(system_or_molecules, symbols)
    box = np.asarray(box, dtype=float)
    if box.shape != (3,) or np.any(box <= 0):
        raise ValueError(f"box must be three positive edge lengths in nm, got {box}")
    if isinstance(switch_distance, str):
        if switch_distance != "auto":
            raise ValueError(
                f"switch_distance must be a distance in nm, None or 'auto', got {switch_distance!r}")
        switch_distance = cutoff - DEFAULT_SWITCH_WIDTH
    if switch_distance is not None and not 0.0 < switch_distance < cutoff:
        raise ValueError(f"switch_distance {switch_distance} must lie in (0, cutoff={cutoff})")
    ew = ewald.ewald_parameters(box, cutoff, ewald_tolerance, alpha=ewald_alpha, kmax=ewald_kmax)
    switch_distance = None if switch_distance is None else float(switch_distance)
    return mol, QTIP4PFConfig(cutoff=float(cutoff), switch_distance=switch_distance, ewald=ew)
