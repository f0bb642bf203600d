"""Observables: time-correlation functions, dipole models, IR spectra, diffusion, structure, and
spectrum files.  Every function takes plain arrays (nm, ps, e, amu) plus scalars — no MD internals.

Modules:
  tcf          ⟨a(0)·b(t)⟩ by zero-padded FFT (jax.numpy, differentiable)
  dipole       dipole models ``dipole_fn(params, positions, box, molecules) -> M`` and Ṁ by jvp
  charge_flux_fit  charge-flux coefficients fitted to band heights (Ṁ is linear in them)
  ir           n(ω)α(ω) from Ṁ, windows, quantum corrections, band analysis
  diffusion    Green–Kubo / Einstein D with block errors, COM removal, Yeh–Hummer correction
  structure    g(r) per species pair, mass density
  spectrum_io  Spectrum dataclass, table / JCAMP-DX readers, CSV writer
"""

from workbench.observables.diffusion import (
    DiffusionResult,
    einstein_diffusion,
    green_kubo_diffusion,
    msd,
    to_m2_per_s,
    vacf,
    yeh_hummer_correction,
)
from workbench.observables.dipole import (
    DipoleModel,
    charge_flux_dipole,
    dipole_trajectory,
    point_charge_dipole,
    qtip4pf_dipole,
)
from workbench.observables.ir import (
    WATER_BANDS,
    Band,
    band_analysis,
    ir_from_tcf,
    ir_prefactor,
    ir_spectrum,
    wavenumber_grid,
)
from workbench.observables.spectrum_io import (
    Spectrum,
    SpectrumConversionError,
    SpectrumFileError,
    read_spectrum,
    reference_water_ir,
    write_spectrum_csv,
)
from workbench.observables.structure import mass_density, rdf, rdf_by_species
from workbench.observables.tcf import tcf

__all__ = [
    "Band", "DiffusionResult", "DipoleModel", "Spectrum", "SpectrumConversionError",
    "SpectrumFileError", "WATER_BANDS", "band_analysis", "charge_flux_dipole", "dipole_trajectory",
    "einstein_diffusion", "green_kubo_diffusion", "ir_from_tcf", "ir_prefactor", "ir_spectrum",
    "mass_density", "msd", "point_charge_dipole", "qtip4pf_dipole", "rdf", "rdf_by_species",
    "read_spectrum", "reference_water_ir", "tcf", "to_m2_per_s", "vacf", "wavenumber_grid",
    "write_spectrum_csv", "yeh_hummer_correction",
]
