"""The "twin truth" water model of the known-answer (twin) experiments: q-TIP4P/F with changed parameters.

A twin experiment refines a model against data *simulated* with a known potential, so the answer is
known.  The truth here is q-TIP4P/F (``workbench.potentials.qtip4pf``) with three parameters changed
by documented factors, each aimed at one band of the IR spectrum:

    α_r     × 0.98    (2.287 → 2.241 Å⁻¹): the O–H stretch frequency of the quartic Morse bond is
                      ∝ α_r √D_r, so −2 % ≈ −70 cm⁻¹ at 3600 cm⁻¹ (the equilibrium length r_eq
                      would barely move it)
    k_θ     × 0.85    (87.85 → 74.67 kcal/mol/rad²): ω_bend ∝ √k_θ, −8 % ≈ −130 cm⁻¹ in the gas
                      phase, less in the liquid
    q_H     × 1.03    (0.5564 → 0.5731 e; q_M = −2 q_H follows): stronger hydrogen bonds stiffen
                      the librations (blue shift) and red-shift the stretch a little more

Its dipole model is the q-TIP4P/F point-charge dipole with the same q_H (the truth's intensities
follow its charges).  Only the settings ship, never a spectrum: the target is simulated at run time.
"""

from __future__ import annotations

from types import MappingProxyType

from workbench.observables.dipole import QTIP4PF_Q_H, DipoleModel, qtip4pf_dipole
from workbench.potentials.base import Potential
from workbench.potentials.qtip4pf import QTIP4PFParams, qtip4pf, qtip4pf_params

#: Multiplicative changes of the q-TIP4P/F parameters that make the twin truth.
TWIN_FACTORS = MappingProxyType({"alpha_r": 0.98, "k_theta": 0.85, "q_H": 1.03})


def twin_params(dtype=None) -> QTIP4PFParams:
    """The twin truth's parameters: the published q-TIP4P/F ones scaled by ``TWIN_FACTORS``."""
    p = qtip4pf_params(dtype)
    return p._replace(**{name: getattr(p, name) * factor for name, factor in TWIN_FACTORS.items()})


def twin_qtip4pf(system_or_molecules, box=None, **settings) -> Potential:
    """The twin-truth potential for a water system (same arguments as ``qtip4pf`` minus ``params``)."""
    pot = qtip4pf(system_or_molecules, box, params=twin_params(), **settings)
    return pot.replace(name="q-TIP4P/F twin truth",
                       metadata={**pot.metadata, "twin_factors": dict(TWIN_FACTORS)})


def twin_dipole() -> DipoleModel:
    """The twin truth's dipole: q-TIP4P/F point charges with q_H × 1.03."""
    model = qtip4pf_dipole(q_h=QTIP4PF_Q_H * TWIN_FACTORS["q_H"])
    return model.replace(name="q-TIP4P/F twin-truth charges")
