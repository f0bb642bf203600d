"""Energy functions following the contract of ``potentials.base`` (nm, kJ/mol), models and importers.

Public names are imported lazily, so ``import workbench.potentials`` stays light (no ASE import)::

    from workbench.potentials import Potential, load_model, eann_potential, WorkbenchCalculator
"""

from __future__ import annotations

import importlib

from workbench.potentials.base import Potential, all_pairs, pair_geometry

_LAZY = {
    "eann_potential": "eann",
    "init_eann_params": "eann",
    "cast_params": "eann",
    "WATER_SPECIES_ORDER": "eann",
    "ModelFile": "model_io",
    "ModelFormatError": "model_io",
    "UntrustedPickleError": "model_io",
    "load_model": "model_io",
    "load_potential": "model_io",
    "save_model": "model_io",
    "WorkbenchCalculator": "ase_calculator",
    "qtip4pf": "qtip4pf",
}

__all__ = ["Potential", "all_pairs", "pair_geometry", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
