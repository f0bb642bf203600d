"""Molecular dynamics: pair lists, integrators and trajectory sampling (jax-md underneath)."""

from workbench.md.integrators import (
    MDState,
    baoab_langevin,
    energy_and_forces_fn,
    kinetic_energy,
    maxwell_boltzmann,
    remove_com_velocity,
    temperature,
    velocity_verlet,
)
from workbench.md.neighbor import PairListBuilder, overflowed
from workbench.md.simulate import MDConfig, MDRunner, Trajectory, energy_drift, simulate

__all__ = [
    "MDConfig", "MDRunner", "MDState", "PairListBuilder", "Trajectory", "baoab_langevin",
    "energy_and_forces_fn", "energy_drift", "kinetic_energy", "maxwell_boltzmann", "overflowed",
    "remove_com_velocity", "simulate", "temperature", "velocity_verlet",
]
