"""Dipole models: the total dipole M of a periodic box and its time derivative Ṁ.

The interface every dipole model follows (fixed charges, charge flux, learned Wannier-centroid
networks later):

    dipole_fn(params, positions_nm (N, 3), box_nm (3,), molecules (n_mol, k)) -> M (3,)  [e·nm]

- ``params``: a JAX pytree (refinable: gradients w.r.t. it are taken like for potentials).
- ``positions``: nm, wrapped or unwrapped.  Each molecule is first made whole by the minimum image
  of its atoms relative to its first atom (:func:`whole_molecules`), so for neutral molecules M
  is continuous in time whatever the wrapping.  (A charged molecule's contribution depends on the
  position of its first atom: pass unwrapped positions for ions.)
- ``molecules``: atom indices per molecule (water: O, H, H), as ``System.molecules``.

The time derivative needs no model-specific code: Ṁ = Σ_i (∂M/∂r_i)·v_i is the Jacobian-vector
product of M with the velocities (``jax.jvp``), exact for every differentiable model and equal to
Σ_i q_i v_i for fixed charges.  :func:`dipole_trajectory` maps it over frames (``jax.vmap``, or
``jax.lax.map`` in batches to bound memory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from workbench.potentials.base import minimum_image

__all__ = [
    "DipoleFn", "DipoleModel", "whole_molecules", "dipole_and_derivative", "dipole_trajectory",
    "point_charge_dipole", "qtip4pf_dipole", "charge_flux_dipole", "water_geometry",
    "charge_flux_charges", "charge_flux_basis", "CHARGE_FLUX_DEFAULTS", "CHARGE_FLUX_LINEAR",
    "QTIP4PF_Q_H", "QTIP4PF_GAMMA", "QTIP4PF_R_EQ", "QTIP4PF_THETA_EQ",
]

DipoleFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]

#: q-TIP4P/F (Habershon, Markland & Manolopoulos 2009) H charge (e) and M-site parameter γ.
QTIP4PF_Q_H = 0.5564
QTIP4PF_GAMMA = 0.73612
#: q-TIP4P/F equilibrium O–H length (nm) and H–O–H angle (rad): the charge-flux reference geometry.
QTIP4PF_R_EQ = 0.09419
QTIP4PF_THETA_EQ = 1.8744836166  # 107.4°


@dataclasses.dataclass(frozen=True)
class DipoleModel:
    """A dipole function with its parameters.

    Attributes:
      name: human-readable name.
      dipole_fn: pure ``(params, positions_nm, box_nm, molecules) -> M [e·nm]``.
      params: parameter pytree.
      metadata: free-form description (units, provenance) for model cards.
    """

    name: str
    dipole_fn: DipoleFn
    params: Any
    metadata: dict = dataclasses.field(default_factory=dict)

    def dipole(self, positions, box, molecules, params=None):
        """Total dipole M (3,) in e·nm of one frame."""
        p = self.params if params is None else params
        return self.dipole_fn(p, jnp.asarray(positions), jnp.asarray(box), jnp.asarray(molecules))

    def dipole_derivative(self, positions, velocities, box, molecules, params=None):
        """Ṁ (3,) in e·nm/ps of one frame (Jacobian-vector product with the velocities)."""
        p = self.params if params is None else params
        return dipole_and_derivative(self.dipole_fn, p, positions, velocities, box, molecules)[1]

    def trajectory(self, positions, velocities, box, molecules, params=None, batch_size=None):
        """(M (F, 3), Ṁ (F, 3)) for a trajectory; see :func:`dipole_trajectory`."""
        p = self.params if params is None else params
        return dipole_trajectory(self.dipole_fn, p, positions, velocities, box, molecules, batch_size)

    def replace(self, **changes) -> DipoleModel:
        return dataclasses.replace(self, **changes)


def whole_molecules(positions, box, molecules):
    """Atom positions per molecule (n_mol, k, 3), each molecule made whole.

    r'_a = r_first + mic(r_a − r_first): every atom is placed at the minimum image of its molecule's
    first atom (valid while molecules are smaller than half the box).
    """
    positions = jnp.asarray(positions)
    molecules = jnp.asarray(molecules)
    r = positions[molecules]  # (n_mol, k, 3)
    first = r[:, :1, :]
    return first + minimum_image(r - first, jnp.asarray(box))


def dipole_and_derivative(dipole_fn: DipoleFn, params, positions, velocities, box, molecules):
    """(M, Ṁ) of one frame: Ṁ = J_M(r)·v by ``jax.jvp`` (e·nm, e·nm/ps)."""
    box = jnp.asarray(box)
    molecules = jnp.asarray(molecules)
    positions = jnp.asarray(positions)
    velocities = jnp.asarray(velocities, dtype=positions.dtype)
    return jax.jvp(lambda x: dipole_fn(params, x, box, molecules), (positions,), (velocities,))


def dipole_trajectory(dipole_fn: DipoleFn, params, positions, velocities, box, molecules,
                      batch_size: int | None = None):
    """Dipole and its time derivative along a trajectory.

    Args:
      dipole_fn, params: the dipole model.
      positions: (F, N, 3) nm; velocities: (F, N, 3) nm/ps; box: (3,) nm (fixed cell);
      molecules: (n_mol, k) atom indices.
      batch_size: frames evaluated together (``jax.lax.map``); ``None`` vmaps all frames at once.

    Returns:
      ``(M, Mdot)``, each (F, 3), in e·nm and e·nm/ps.
    """
    positions = jnp.asarray(positions)
    velocities = jnp.asarray(velocities, dtype=positions.dtype)
    if positions.ndim != 3 or positions.shape != velocities.shape:
        raise ValueError(f"positions and velocities must both be (F, N, 3), got {positions.shape} "
                         f"and {velocities.shape}")
    box = jnp.asarray(box)
    molecules = jnp.asarray(molecules)

    def one(frame):
        x, v = frame
        return dipole_and_derivative(dipole_fn, params, x, v, box, molecules)

    if batch_size is None:
        return jax.vmap(one)((positions, velocities))
    return jax.lax.map(one, (positions, velocities), batch_size=int(batch_size))


# ----------------------------------------------------------------------------------------------
# fixed point charges (with optional massless sites)


def _point_charge_fn(params, positions, box, molecules):
    """M = Σ_mol [Σ_a q_a r_a + Σ_s Q_s Σ_a W_sa r_a], r_a of the whole molecule.

    Computed relative to each molecule's first atom plus (net charge) × r_first, which is the same
    sum with less round-off.
    """
    r = whole_molecules(positions, box, molecules)  # (n_mol, k, 3)
    first = r[:, 0, :]
    rel = r - first[:, None, :]
    q = jnp.asarray(params["charges"])
    w = jnp.asarray(params["site_weights"])  # (s, k)
    qs = jnp.asarray(params["site_charges"])  # (s,)
    # effective charge on each atom after distributing the sites' charges by their weights
    q_eff = q + qs @ w  # (k,)
    net = jnp.sum(q_eff)
    return jnp.einsum("a,mad->d", q_eff, rel) + net * jnp.sum(first, axis=0)


def point_charge_dipole(charges: Sequence[float] | Mapping[str, float],
                        site_symbols: Sequence[str] | None = None,
                        sites: Sequence[tuple[Sequence[float], float]] = (),
                        name: str = "point charges") -> DipoleModel:
    """Fixed point charges on the atoms of each molecule, plus optional massless sites.

    M = Σ_mol [Σ_a q_a r_a + Σ_s Q_s r_s],   r_s = Σ_a W_sa r_a (a site is a fixed linear
    combination of its molecule's atoms, e.g. the TIP4P M site).

    Args:
      charges: charge (e) of each atom of a molecule in the order of the ``molecules`` columns, or
        a mapping element → charge together with ``site_symbols`` (the elements of those columns).
      site_symbols: element of each molecule column when ``charges`` is a mapping.
      sites: ``(weights (k,), charge)`` per massless site.
      name: model name.

    Params pytree: ``{"charges": (k,), "site_weights": (s, k), "site_charges": (s,)}``; every leaf is
    refinable.  The model is linear in positions, so Ṁ = Σ q_a v_a + Σ Q_s Σ W_sa v_a exactly.
    """
    if isinstance(charges, Mapping):
        if site_symbols is None:
            raise ValueError("charges given per element need site_symbols (the element of each "
                             "molecule column, e.g. ('O', 'H', 'H'))")
        missing = sorted(set(site_symbols) - set(charges))
        if missing:
            raise ValueError(f"no charge given for element(s) {missing}")
        charges = [charges[s] for s in site_symbols]
    q = jnp.asarray(charges, dtype=float)
    k = q.shape[0]
    weights = jnp.asarray([w for w, _ in sites], dtype=float).reshape(len(sites), k)
    site_q = jnp.asarray([c for _, c in sites], dtype=float).reshape(len(sites))
    params = {"charges": q, "site_weights": weights, "site_charges": site_q}
    return DipoleModel(name, _point_charge_fn, params,
                       {"units": "e, e·nm", "kind": "fixed point charges", "n_sites": len(sites)})


def _qtip4pf_fn(params, positions, box, molecules):
    """Σ_mol q_H [(r_H1 − r_M) + (r_H2 − r_M)] = q_H γ Σ_mol (d1 + d2),  d = r_H − r_O."""
    r = whole_molecules(positions, box, molecules)
    d = r[:, 1:3, :] - r[:, :1, :]  # (n_mol, 2, 3)
    return params["q_h"] * params["gamma"] * jnp.sum(d, axis=(0, 1))


def qtip4pf_dipole(q_h: float = QTIP4PF_Q_H, gamma: float = QTIP4PF_GAMMA) -> DipoleModel:
    """q-TIP4P/F fixed charges: q_H on each H, q_M = −2 q_H on the M site, none on O.

    r_M = γ r_O + (1−γ)(r_H1 + r_H2)/2, so the molecular dipole is
    μ = q_H (r_H1 + r_H2 − 2 r_M) = q_H γ (d1 + d2), d_i = r_Hi − r_O
    (defaults q_H = 0.5564 e, γ = 0.73612; molecules must be ordered O, H, H).
    Params ``{"q_h": e, "gamma": 1}``; neutrality holds for any value.
    """
    params = {"q_h": jnp.asarray(q_h, dtype=float), "gamma": jnp.asarray(gamma, dtype=float)}
    return DipoleModel("q-TIP4P/F charges", _qtip4pf_fn, params,
                       {"units": "e, e·nm", "kind": "fixed point charges + M site",
                        "reference": "Habershon, Markland & Manolopoulos, J. Chem. Phys. 131, 024501 (2009)"})


# ----------------------------------------------------------------------------------------------
# charge flux


def water_geometry(positions, box, molecules):
    """Per-water O–H vectors and internal coordinates of whole molecules (O, H, H order).

    Returns ``(d (n_mol, 2, 3) nm, r (n_mol, 2) nm, theta (n_mol,) rad)`` with d_i = r_Hi − r_O,
    r_i = |d_i| and θ = atan2(|d1 × d2|, d1·d2) (smooth, unlike arccos near 0 and π).
    """
    w = whole_molecules(positions, box, molecules)
    d = w[:, 1:3, :] - w[:, :1, :]
    r = jnp.linalg.norm(d, axis=-1)
    cross = jnp.cross(d[:, 0], d[:, 1])
    theta = jnp.arctan2(jnp.linalg.norm(cross, axis=-1), jnp.sum(d[:, 0] * d[:, 1], axis=-1))
    return d, r, theta


def charge_flux_charges(params, r, theta):
    """H charges (n_mol, 2) of the charge-flux model from bond lengths r (n_mol, 2) and angles θ."""
    dr = r - params["r0"]
    dth = (theta - params["theta0"])[:, None]
    other = dr[:, ::-1]
    return params["q_h0"] + params["a_r"] * dr + params["b_r"] * other + params["a_theta"] * dth


def _charge_flux_fn(params, positions, box, molecules):
    """μ = q_H1 d1 + q_H2 d2 + q_M (r_M − r_O), q_M = −(q_H1 + q_H2), r_M − r_O = (1−γ)(d1+d2)/2."""
    d, r, theta = water_geometry(positions, box, molecules)
    q = charge_flux_charges(params, r, theta)  # (n_mol, 2)
    q_m = -jnp.sum(q, axis=1)
    r_m = 0.5 * (1.0 - params["gamma"]) * jnp.sum(d, axis=1)  # (n_mol, 3), relative to O
    mu = jnp.einsum("mi,mid->md", q, d) + q_m[:, None] * r_m
    return jnp.sum(mu, axis=0)


#: Default charge-flux coefficients (see :func:`charge_flux_dipole` for how they were chosen).
CHARGE_FLUX_DEFAULTS = {"a_r": 2.66, "b_r": 0.0, "a_theta": 0.129}


def charge_flux_dipole(q_h0: float = QTIP4PF_Q_H, a_r: float = CHARGE_FLUX_DEFAULTS["a_r"],
                       b_r: float = CHARGE_FLUX_DEFAULTS["b_r"],
                       a_theta: float = CHARGE_FLUX_DEFAULTS["a_theta"], r0: float = QTIP4PF_R_EQ,
                       theta0: float = QTIP4PF_THETA_EQ, gamma: float = QTIP4PF_GAMMA) -> DipoleModel:
    """Water point charges with charge flux: the charges follow the internal coordinates.

        q_H1 = q_H0 + a_r (r1 − r0) + b_r (r2 − r0) + a_θ (θ − θ0)
        q_H2 = q_H0 + a_r (r2 − r0) + b_r (r1 − r0) + a_θ (θ − θ0)
        q_M  = −(q_H1 + q_H2)   on the q-TIP4P/F M site r_M = γ r_O + (1−γ)(r_H1 + r_H2)/2,

    r_i = |r_Hi − r_O| (nm), θ = H–O–H angle (rad).  Fixed charges give the wrong relative IR
    intensities of q-TIP4P/F water: in classical liquid MD at 298 K the stretch maximum of n α is
    7,560 ± 300 cm⁻¹ (17,401 measured) and the bend 8,800 ± 400 (3,724 measured;
    benchmarks/results/spectrum.md); intensities scale as |∂M/∂Q|², which the flux terms change per
    mode.

    Defaults: q_H0, r0, θ0, γ of q-TIP4P/F; b_r = 0; a_r = 2.66 ± 0.32 e/nm and a_θ = 0.129 ± 0.009
    e/rad, fitted so that the stretch and bend maxima of n α reach Bertie & Lan's 17,401 and
    3,724 cm⁻¹ on liquid q-TIP4P/F MD (``scripts/fit_charge_flux.py``: the shipped 64-water box,
    298.15 K, 8 NVT states × 2 NVE windows × 2.5 ps, 1.5 ps TCF, σ = 1/3 ps; errors: jackknife over
    the 8 states).  Ṁ is linear in (q_H0, a_r, b_r, a_θ) at fixed geometry (:func:`charge_flux_basis`),
    so the fit needs one MD run.  On the independent benchmark run the stretch comes out at
    18,200 ± 1,000 and the bend at 3,470 ± 150.  The libration (a rigid rotation, untouched by the
    flux terms) stays too strong: 6,000–7,400 vs 4,622 measured.  The earlier isolated-molecule
    estimate (a_r = 2.27, a_θ = 0.115, from assumed liquid heights of 8,000 and 7,700) gave a
    stretch 10 % too low and a bend 14 % too high on the fit run.  For an isolated molecule at
    equilibrium the defaults scale |∂μ/∂r1|² by 2.42 and |∂μ/∂θ|² by 0.435 relative to fixed charges
    (``tests/test_dipole.py``).  With a_r = b_r = a_θ = 0 this is exactly :func:`qtip4pf_dipole`.

    Params ``{"q_h0" e, "a_r" e/nm, "b_r" e/nm, "a_theta" e/rad, "r0" nm, "theta0" rad, "gamma" 1}``.
    """
    values = dict(q_h0=q_h0, a_r=a_r, b_r=b_r, a_theta=a_theta, r0=r0, theta0=theta0, gamma=gamma)
    params = {k: jnp.asarray(v, dtype=float) for k, v in values.items()}
    return DipoleModel("q-TIP4P/F charges + charge flux", _charge_flux_fn, params,
                       {"units": "e, e/nm, e/rad, nm, rad", "kind": "point charges with charge flux"})


#: The charge-flux coefficients M is linear in (for fixed r0, θ0, γ).
CHARGE_FLUX_LINEAR = ("q_h0", "a_r", "b_r", "a_theta")


def charge_flux_basis(r0: float = QTIP4PF_R_EQ, theta0: float = QTIP4PF_THETA_EQ,
                      gamma: float = QTIP4PF_GAMMA) -> dict[str, DipoleModel]:
    """The unit models of the charge-flux dipole: name c → model with coefficient c = 1, the others 0.

    M is linear in c = (q_H0, a_r, b_r, a_θ) at fixed geometry, so for any trajectory
    Ṁ(t; c) = Σ_j c_j B_j(t) with B_j the Ṁ of unit model j: spectra for any coefficients follow from
    the cross-correlations of the B_j without rerunning MD (``workbench.observables.charge_flux_fit``).
    """
    zero = dict.fromkeys(CHARGE_FLUX_LINEAR, 0.0)
    return {c: charge_flux_dipole(**{**zero, c: 1.0}, r0=r0, theta0=theta0, gamma=gamma)
            for c in CHARGE_FLUX_LINEAR}
