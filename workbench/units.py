"""Units of the workbench and conversions at its edges.

Internal units are the GROMACS/OpenMM set: length nm, time ps, mass amu (g/mol), energy kJ/mol,
charge e, temperature K.  They are consistent: 1 amu·nm²/ps² = 1 kJ/mol exactly, so integrators
need no conversion factors (F [kJ/mol/nm] / m [amu] = a [nm/ps²]).

Only code at the boundaries (ASE, file readers, spectra, diffusion display) converts, with the
factors below.  Every factor is written as "internal value = external value × FACTOR".
"""

from __future__ import annotations

import math

# --- exact physical constants (CODATA 2018, SI) ---
AVOGADRO = 6.02214076e23  # 1/mol
BOLTZMANN_SI = 1.380649e-23  # J/K
ELEMENTARY_CHARGE_SI = 1.602176634e-19  # C
SPEED_OF_LIGHT_SI = 299792458.0  # m/s
VACUUM_PERMITTIVITY_SI = 8.8541878128e-12  # F/m

#: Boltzmann constant in kJ/mol/K.
KB = BOLTZMANN_SI * AVOGADRO / 1000.0  # 0.00831446261815324

#: Coulomb constant 1/(4π ε0) in kJ/mol·nm/e² (138.935...).
COULOMB = ELEMENTARY_CHARGE_SI**2 * AVOGADRO / (4 * math.pi * VACUUM_PERMITTIVITY_SI) / 1e3 * 1e9

#: Speed of light in cm/ps (for wavenumber ↔ angular frequency).
SPEED_OF_LIGHT_CM_PER_PS = SPEED_OF_LIGHT_SI * 100.0 * 1e-12  # 0.0299792458

# --- length ---
NM_PER_ANGSTROM = 0.1
ANGSTROM_PER_NM = 10.0

# --- energy ---
KJ_PER_MOL_PER_EV = 96.48533212331002  # 1 eV = 96.485 kJ/mol
KJ_PER_KCAL = 4.184

# --- time ---
PS_PER_FS = 1e-3

# --- pressure: 1 bar = 1e5 Pa = 1e5 J/m³ → 1e-22 J per nm³ → × N_A / 1000 ≈ 0.0602214 kJ/mol/nm³ ---
KJ_PER_MOL_PER_NM3_PER_BAR = 1e5 * 1e-27 * AVOGADRO / 1e3

# --- mass density: 1 amu/nm³ = (1/N_A g)/(1e-21 cm³) ≈ 1.66054e-3 g/cm³ ---
G_PER_CM3_PER_AMU_PER_NM3 = 1e21 / AVOGADRO

# --- diffusion: 1 nm²/ps = 1e-6 m²/s ---
M2_PER_S_PER_NM2_PER_PS = 1e-6

# --- viscosity: 1 mPa·s = 1e-3 kg/(m·s) = N_A·1e-21 amu/(nm·ps) ≈ 602.2 amu/(nm·ps) ---
AMU_PER_NM_PS_PER_MPA_S = AVOGADRO * 1e-21


def wavenumber_to_angular_frequency(nu_cm: float):
    """ω [rad/ps] = 2π c ν̃, c in cm/ps; 1 cm⁻¹ ↔ 0.188365 rad/ps."""
    return 2.0 * math.pi * SPEED_OF_LIGHT_CM_PER_PS * nu_cm


def angular_frequency_to_wavenumber(omega):
    """ν̃ [cm⁻¹] = ω [rad/ps] / (2π c)."""
    return omega / (2.0 * math.pi * SPEED_OF_LIGHT_CM_PER_PS)


def kT(temperature_K: float) -> float:
    """Thermal energy in kJ/mol."""
    return KB * temperature_K
