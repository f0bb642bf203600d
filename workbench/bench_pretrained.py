"""``workbench bench pretrained``: errors of the shipped EANN water model on fresh q-TIP4P/F frames.

Frames are generated in the run (Langevin NVT of the shipped 64-water box at 298.15 K, seed 1000, not
a seed of the training data), labelled with q-TIP4P/F and compared with the model:

- ``force_rmse_kJ_mol_nm`` = sqrt(⟨(F_MLP − F_ref)²⟩) over all force components;
- ``force_rms_kJ_mol_nm``  = sqrt(⟨F_ref²⟩), so the relative error is their ratio;
- ``energy_rmse_kJ_mol_per_molecule`` = sqrt(⟨((E_MLP − E_ref)/M)²⟩) over frames, M = 64 molecules.

Quick: 0.5 ps equilibration, 8 frames 100 fs apart; full: 2 ps, 50 frames 200 fs apart.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from workbench.errors import UserInputError
from workbench.models import SHIPPED_MODEL_FILES, default_system


def run(quick: bool) -> dict:
    from workbench.potentials import model_io
    from workbench.pretrain import (
        Dataset,
        ReferenceSettings,
        evaluate,
        generate_reference,
        make_predict,
        pair_lists,
    )

    settings = ReferenceSettings(temperatures_K=(298.15,), equilibrate_ps=0.5 if quick else 2.0,
                                 sample_ps=0.8 if quick else 10.0, sample_every_fs=100.0 if quick else 200.0)
    if not SHIPPED_MODEL_FILES["eann-water"].exists():
        raise UserInputError(f"{SHIPPED_MODEL_FILES['eann-water']} does not exist; build it with "
                             f"`workbench pretrain examples/pretrain_water.toml`")
    data: Dataset = generate_reference(settings, default_system(), seed=1000)
    model = model_io.load_model(SHIPPED_MODEL_FILES["eann-water"])
    potential = model.potential(default_system())
    pairs = pair_lists(data.positions, data.boxes, potential.cutoff)
    dtype = jnp.float32
    metrics = evaluate(make_predict(potential.energy_fn), potential.params, data, pairs, dtype)
    relative = metrics["force_rmse_kJ_mol_nm"] / metrics["force_rms_kJ_mol_nm"]
    return {**metrics, "relative_force_error": relative,
            "model": SHIPPED_MODEL_FILES["eann-water"].name, "reference": "qtip4pf",
            "temperature_K": 298.15, "precision": "float32",
            "settings": dataclasses.asdict(settings)}
