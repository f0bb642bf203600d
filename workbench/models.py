"""Shipped models and structures, and loading a potential from a name or a file.

A *model spec* is one of the names in ``MODEL_CHOICES`` or a path to a model file (the project's
EANN format, or the DMFF/EANN npz/pickle layouts — pickles only with ``trusted=True``).
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench import system as systems
from workbench.errors import UserInputError
from workbench.potentials.base import Potential

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_STRUCTURE = ASSETS / "structures" / "water64_298K.extxyz"
#: The project's reference data for tests and benchmarks (never shipped): ../shared/data beside the
#: checkout, or the folder named by WORKBENCH_SHARED_DATA (e.g. a copy on a GPU machine).
SHARED_DATA = Path(os.environ.get("WORKBENCH_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")

MODEL_CHOICES = {
    "qtip4pf": "q-TIP4P/F flexible water, Ewald electrostatics (Habershon et al. 2009)",
    "eann-water": "EANN water MLP force-matched to q-TIP4P/F, 250-450 K "
                  "(assets/models/eann_water_qtip4pf.md)",
}
#: Model files of the shipped MLPs, built by ``workbench pretrain examples/pretrain_water.toml``;
#: their model cards lie next to them.
SHIPPED_MODEL_FILES = {"eann-water": ASSETS / "models" / "eann_water_qtip4pf.npz"}
DEFAULT_MODEL = "qtip4pf"


def default_system() -> systems.System:
    """The shipped 64-water box equilibrated at 298.15 K (scripts/build_water_box.py)."""
    return systems.read(DEFAULT_STRUCTURE)


def load_potential(spec: str, system: systems.System, trusted: bool = False) -> Potential:
    """The potential named by ``spec`` (see module docstring) for ``system``'s atoms and box."""
    if spec == "default":
        spec = DEFAULT_MODEL
    if spec == "qtip4pf":
        from workbench.potentials.qtip4pf import qtip4pf

        return qtip4pf(system)
    path = SHIPPED_MODEL_FILES.get(spec, Path(spec))
    if not path.exists():
        raise UserInputError(f"model {spec!r} is neither a shipped model ({', '.join(MODEL_CHOICES)}) "
                             f"nor an existing file")
    from workbench.potentials.model_io import load_model

    return load_model(path, trusted=trusted).potential(system)


def benchmark_water() -> tuple[systems.System, Potential, str]:
    """The benchmark system: water64.pdb with the seed paper's starting EANN from ../shared/data
    when present, else the shipped box with the default model."""
    pdb, npz = SHARED_DATA / "water64.pdb", SHARED_DATA / "eann_water_dft_start.npz"
    if pdb.exists() and npz.exists():
        system = systems.read(pdb)
        return system, load_potential(str(npz), system), "EANN (seed DFT start, ../shared/data)"
    system = default_system()
    return system, load_potential(DEFAULT_MODEL, system), DEFAULT_MODEL
