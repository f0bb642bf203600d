"""Molecular dynamics: pair lists, integrators, Monte Carlo barostat, sampling (jax-md underneath)."""

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
from workbench.md.simulate import (
    MDConfig,
    MDRunner,
    NPTRunner,
    ReplicaRunner,
    Trajectory,
    energy_drift,
    make_runner,
    simulate,
)

__all__ = [
    "MDConfig", "MDRunner", "MDState", "NPTRunner", "PairListBuilder", "ReplicaRunner", "Trajectory",
    "baoab_langevin", "energy_and_forces_fn", "energy_drift", "kinetic_energy", "make_runner",
    "maxwell_boltzmann", "overflowed", "remove_com_velocity", "simulate", "temperature", "velocity_verlet",
]
