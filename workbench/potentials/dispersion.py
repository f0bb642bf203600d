r"""Long-range dispersion (Lennard-Jones tail) correction of q-TIP4P/F for a homogeneous liquid.

The potential counts the O–O Lennard-Jones energy u(r) = 4ε[(σ/r)¹² − (σ/r)⁶] only up to the cutoff
r_c, switched off by S(r) between r_s and r_c.  With g_OO(r) = 1 beyond r_s (a uniform liquid) the
missing energy of N oxygens in a volume V is

    E_tail(V) = (2π N² / V) ∫_{r_s}^{∞} r² [1 − S(r)] u(r) dr
              = (2π N² / V) { ∫_{r_s}^{r_c} r² [1 − S(r)] u(r) dr + 4εσ³ [(σ/r_c)⁹/9 − (σ/r_c)³/3] }

(the first integral by the trapezoid rule on 2001 points; without switching it is 0).  It does not
depend on the positions — no forces — but on V: p_tail = −∂E_tail/∂V = E_tail/V, a few hundred bar
at r_c = 0.6 nm, so NPT densities need it (OpenMM's ``useDispersionCorrection``; the published
q-TIP4P/F density 0.998 g/cm³ includes long-range dispersion).  Units: nm, kJ/mol.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from workbench.potentials.base import Potential
from workbench.potentials.qtip4pf import switch


def qtip4pf_tail_energy(params, box, n_oxygens: int, cutoff: float, switch_distance: float | None):
    """E_tail(V) of the module docstring in kJ/mol (differentiable in ε_OO, σ_OO and the box)."""
    eps, sigma = params.epsilon_OO, params.sigma_OO
    x = sigma / cutoff
    integral = 4.0 * eps * sigma**3 * (x**9 / 9.0 - x**3 / 3.0)
    if switch_distance is not None:
        r = jnp.linspace(switch_distance, cutoff, 2001)
        s6 = (sigma / r) ** 6
        f = r**2 * (1.0 - switch(r, switch_distance, cutoff)) * 4.0 * eps * (s6 * s6 - s6)
        integral = integral + jnp.sum(0.5 * (f[1:] + f[:-1]) * jnp.diff(r))
    return 2.0 * math.pi * n_oxygens**2 * integral / jnp.prod(box)


def with_dispersion_correction(potential: Potential) -> Potential:
    """The q-TIP4P/F ``potential`` with E_tail(V) added to its energy."""
    meta = potential.metadata
    if "site_cutoff_nm" not in meta or "n_molecules" not in meta:
        raise ValueError(f"the dispersion correction is defined for q-TIP4P/F, not {potential.name!r}")
    n, cutoff, rs = int(meta["n_molecules"]), float(meta["site_cutoff_nm"]), meta.get("switch_distance_nm")

    def energy(params, positions, box, pairs):
        tail = qtip4pf_tail_energy(params, jnp.asarray(box, positions.dtype), n, cutoff, rs)
        return potential.energy_fn(params, positions, box, pairs) + tail

    return potential.replace(name=f"{potential.name} + dispersion correction", energy_fn=energy,
                             metadata={**meta, "dispersion_correction": True})
