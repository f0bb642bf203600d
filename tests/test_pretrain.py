"""Force-matching pretraining (workbench.pretrain); the shipped model: tests/test_shipped_model.py."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workbench import units
from workbench.errors import UserInputError
from workbench.potentials.model_io import load_model
from workbench.pretrain import (
    Dataset,
    PretrainConfigError,
    load_config,
    parse_config,
    read_dataset,
    run_pretrain,
    write_dataset,
)


def synthetic_water(n_frames: int = 8, seed: int = 0) -> Dataset:
    """Two waters in a 1.3 nm box, jittered; E = Σ_{i<j} ½ k (d_ij − 0.2 nm)² with k = 500 kJ/mol/nm²."""
    rng = np.random.default_rng(seed)
    base = np.array([[0.3, 0.3, 0.3], [0.3957, 0.3, 0.3], [0.276, 0.393, 0.3],
                     [0.6, 0.6, 0.6], [0.6957, 0.6, 0.6], [0.576, 0.693, 0.6]])
    box = np.full(3, 1.3)

    def energy(x):
        i, j = np.triu_indices(6, k=1)
        dr = x[j] - x[i]
        dr = dr - box * jnp.round(dr / box)
        return jnp.sum(0.5 * 500.0 * (jnp.linalg.norm(dr, axis=1) - 0.2) ** 2)

    x = base + rng.normal(scale=0.01, size=(n_frames, 6, 3))
    e = np.array([float(energy(xi)) for xi in x])
    f = np.stack([-np.asarray(jax.grad(energy)(jnp.asarray(xi))) for xi in x])
    return Dataset(x, np.tile(box, (n_frames, 1)), e, f, ("O", "H", "H") * 2, 2)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(PretrainConfigError, match=r"training\.batch_size"):
        parse_config({"training": {"batch_size": "four"}})
    with pytest.raises(PretrainConfigError, match=r"training\.epochs: must be > 0"):
        parse_config({"training": {"epochs": 0}})
    with pytest.raises(PretrainConfigError, match=r"model\.hiden: unknown key"):
        parse_config({"model": {"hiden": [8]}})
    with pytest.raises(PretrainConfigError, match=r"reference\.temperatures_K\[1\]"):
        parse_config({"reference": {"temperatures_K": [290.0, "hot"]}})
    with pytest.raises(PretrainConfigError, match=r"^data: .*does not exist"):
        parse_config({"data": "missing.extxyz"}, tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text("[training\n")
    with pytest.raises(PretrainConfigError, match="invalid TOML"):
        load_config(path)


def test_extxyz_roundtrip_in_ase_units(tmp_path):
    data = synthetic_water(3)
    path = write_dataset(tmp_path / "ref.extxyz", data)
    import ase.io

    atoms = ase.io.read(path, index=0)
    np.testing.assert_allclose(atoms.get_forces(), data.forces[0] / (units.KJ_PER_MOL_PER_EV * 10), rtol=1e-6)
    back = read_dataset(path)
    np.testing.assert_allclose(back.energies, data.energies, rtol=1e-6)
    np.testing.assert_allclose(back.forces, data.forces, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.positions, data.positions, atol=1e-9)
    assert back.n_molecules == 2 and back.symbols == data.symbols


def test_training_from_user_extxyz_reduces_the_loss(tmp_path):
    write_dataset(tmp_path / "user.extxyz", synthetic_water(12))
    (tmp_path / "cfg.toml").write_text(
        'data = "user.extxyz"\noutput = "model.npz"\n'
        '[model]\nn_radial = 4\nhidden = [8]\n'
        '[training]\nepochs = 6\nbatch_size = 2\nlearning_rate = 1e-2\nvalidation_fraction = 0.25\n'
        'patience = 6\nprecision = "float32"\n')
    cfg = load_config(tmp_path / "cfg.toml")
    summary = run_pretrain(cfg, tmp_path / "run", "test", show_progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    assert len(log) == summary["epochs"] >= 2
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    model = load_model(tmp_path / "model.npz")
    assert model.metadata["training"]["data"]["frames"] == 12
    assert model.metadata["architecture"]["hidden"] == [8]


def test_input_standardisation_refuses_a_frame_denser_than_the_neighbour_table():
    """A frame (here the 64-water box squeezed to 0.6 of its edge: ~4.6× liquid density) whose atoms
    have more neighbours within r_c than the EANN's table holds gets a clear error, not features
    silently missing neighbours."""
    from workbench import models
    from workbench.potentials import eann
    from workbench.pretrain import pair_lists, standardise_inputs

    system = models.default_system()
    x, box = np.asarray(system.positions)[None] * 0.6, np.asarray(system.box)[None] * 0.6
    data = Dataset(x, box, np.zeros(1), np.zeros_like(x), system.symbols, 64)
    species = system.species_index(("H", "O"))
    params = eann.init_eann_params(jax.random.PRNGKey(0), n_species=2, n_radial=8, hidden=(8,),
                                   cutoff_angstrom=6.0, initpot=0.0, dtype=jnp.float64)
    pairs = pair_lists(x, box, 0.6)
    with pytest.raises(UserInputError, match="training frame 0: an atom has more than 136 neighbours"):
        standardise_inputs(params, species, data, pairs, 6.0)
    # the same box at its real density passes
    real = Dataset(x / 0.6, box / 0.6, np.zeros(1), np.zeros_like(x), system.symbols, 64)
    standardise_inputs(params, species, real, pair_lists(x / 0.6, box / 0.6, 0.6), 6.0)
