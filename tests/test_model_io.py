"""Model files: own .npz format round trip, DMFF npz and pickle importers, refusals and errors."""

import json
import pickle
from pathlib import Path

import jax
import numpy as np
import pytest

import workbench  # noqa: F401  (enables x64)
from workbench.potentials import eann, model_io
from workbench.potentials.model_io import (
    ModelFile,
    ModelFormatError,
    UntrustedPickleError,
    load_model,
    save_model,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODEL_NPZ = DATA / "eann_water_dft_start.npz"
MODEL_PICKLE = DATA / "eann_water_dft_start.dmff.pickle"
REFERENCE = DATA / "eann_reference.npz"
needs_npz = pytest.mark.skipif(not MODEL_NPZ.exists(), reason=f"{MODEL_NPZ} not found")
needs_pickle = pytest.mark.skipif(not MODEL_PICKLE.exists(), reason=f"{MODEL_PICKLE} not found")


def assert_same_params(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.fixture(scope="module")
def seed_model():
    if not MODEL_NPZ.exists():
        pytest.skip(f"{MODEL_NPZ} not found")
    return load_model(MODEL_NPZ)


@pytest.fixture()
def small_params():
    return eann.init_eann_params(jax.random.key(0), n_radial=4, hidden=(8, 8))


@needs_npz
def test_dmff_npz_import(seed_model):
    assert seed_model.source == "DMFF EANN npz"
    assert seed_model.species_order == ("H", "O")
    assert seed_model.cutoff_angstrom == 6.0
    assert seed_model.metadata["n_parameters"] == 14283
    assert "sha256" in seed_model.metadata["provenance"]
    raw = np.load(MODEL_NPZ)
    np.testing.assert_array_equal(seed_model.params["radial.c"], raw["['c']"])
    np.testing.assert_array_equal(seed_model.params["layer1.act_inner"], raw["['b'][5]"][:, 0, :])
    assert seed_model.params["initpot"].shape == ()
    assert seed_model.params["initpot"] == raw["['initpot']"][0]


@needs_npz
@needs_pickle
def test_pickle_and_npz_importers_agree(seed_model):
    from_pickle = load_model(MODEL_PICKLE, trusted=True)
    assert from_pickle.source == "DMFF EANN pickle"
    assert_same_params(seed_model.params, from_pickle.params)


@needs_pickle
def test_pickle_refused_unless_trusted():
    with pytest.raises(UntrustedPickleError, match=r"trusted=True") as info:
        load_model(MODEL_PICKLE)
    assert "arbitrary code" in str(info.value)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo should-not-run",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"c": _Exploit()}))
    with pytest.raises(UntrustedPickleError):
        load_model(path)
    with pytest.raises(ModelFormatError, match=r"(posix|os)\.system.*not on the allow-list"):
        load_model(path, trusted=True)


def test_pickle_with_non_array_content_refused(tmp_path):
    path = tmp_path / "strings.pkl"
    path.write_bytes(pickle.dumps({"c": "hello"}))
    with pytest.raises(ModelFormatError, match="not a numeric array"):
        load_model(path, trusted=True)


@needs_npz
def test_energy_prefixed_npz_variant(seed_model, tmp_path):
    raw = np.load(MODEL_NPZ)
    path = tmp_path / "refined.npz"
    np.savez(path, **{"['energy']" + k: raw[k] for k in raw.files})
    assert_same_params(seed_model.params, load_model(path).params)


def test_dmff_layout_round_trip(small_params, tmp_path):
    flat = model_io.to_dmff_layout(small_params)
    assert flat["['w'][2]"].shape == (2, 1, 8) and flat["['b'][6]"].shape == (2, 1)
    path = tmp_path / "dmff.npz"
    np.savez(path, **flat)
    assert_same_params({k: np.asarray(v) for k, v in small_params.items()}, load_model(path).params)


def test_own_format_round_trip(small_params, tmp_path):
    path = save_model(tmp_path / "model.npz", small_params,
                      {"provenance": "unit test", "model_card": "tiny random EANN", "name": "tiny"})
    model = load_model(path)
    assert model.source == "workbench-eann v1"
    assert_same_params({k: np.asarray(v) for k, v in small_params.items()}, model.params)
    meta = model.metadata
    assert meta["format"] == "workbench-eann" and meta["format_version"] == 1
    assert meta["species_order"] == ["H", "O"]
    assert meta["cutoff"] == {"value": 6.0, "unit": "angstrom"}
    assert meta["internal_units"]["energy"] == "kJ/mol"
    assert meta["architecture"]["hidden"] == [8, 8] and meta["architecture"]["n_radial"] == 4
    assert meta["provenance"] == "unit test" and meta["model_card"] == "tiny random EANN"
    assert meta["parameters"]["layer0.w"] == {"shape": [2, 12, 8], "dtype": "float32"}
    with np.load(path, allow_pickle=False) as z:  # plain arrays, readable without pickle
        assert model_io.METADATA_KEY in z.files
        assert json.loads(str(z[model_io.METADATA_KEY][()]))["model"] == "EANN"


@needs_npz
def test_seed_model_save_load_same_energies(seed_model, tmp_path):
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found")
    ref = np.load(REFERENCE)
    path = save_model(tmp_path / "seed.npz", seed_model.potential(ref["species"]),
                      {"provenance": "converted from the seed npz"})
    model = load_model(path)
    assert "n_atoms" not in model.metadata and "species_index" not in model.metadata
    assert_same_params(seed_model.params, model.params)
    pot_a, pot_b = seed_model.potential(ref["species"]), model.potential(ref["species"])
    energy = jax.jit(pot_a.energy_fn)  # same species: both potentials share the compiled function
    x, box = ref["coords"][0] / 10, np.diag(ref["box"]) / 10
    pairs = eann_all_pairs_within(x, box)
    e_a = float(energy(pot_a.params, x, box, pairs))
    e_b = float(energy(pot_b.params, x, box, pairs))
    assert e_a == e_b
    assert abs(e_a - ref["energy_start"][0]) < 1e-6


def eann_all_pairs_within(x, box, cutoff=0.6):
    i, j = np.triu_indices(len(x), k=1)
    dr = x[j] - x[i]
    dr -= box * np.round(dr / box)
    keep = np.linalg.norm(dr, axis=1) <= cutoff
    return np.stack([i[keep], j[keep]]).astype(np.int32)


def test_potential_from_system(small_params):
    from workbench.system import water_box

    system = water_box(4, seed=1)
    pot = ModelFile(small_params, {"species_order": ["H", "O"]}).potential(system)
    assert pot.metadata["species_index"] == [1, 0, 0] * 4
    assert pot.cutoff == pytest.approx(0.6)


# -- errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.npz")


def test_unknown_format(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    with pytest.raises(ModelFormatError, match="unknown model file format"):
        load_model(path)
    path = tmp_path / "other.npz"
    np.savez(path, foo=np.zeros(3))
    with pytest.raises(ModelFormatError, match="neither a workbench model"):
        load_model(path)


def test_dmff_wrong_shape_and_missing_key(small_params, tmp_path):
    flat = model_io.to_dmff_layout(small_params)
    bad = dict(flat, **{"['w'][3]": np.zeros((2, 8, 7), np.float32)})
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ModelFormatError, match=r"\['b'\]\[3\] has shape \(2, 8\), expected \(2, 7\)"):
        load_model(tmp_path / "bad.npz")
    missing = {k: v for k, v in flat.items() if k != "['inta']"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ModelFormatError, match=r"miss \['inta'\]"):
        load_model(tmp_path / "missing.npz")
    extra = dict(flat, **{"['foo']": np.zeros(2)})
    np.savez(tmp_path / "extra.npz", **extra)
    with pytest.raises(ModelFormatError, match="unexpected key"):
        load_model(tmp_path / "extra.npz")


def test_own_format_errors(small_params, tmp_path):
    path = save_model(tmp_path / "m.npz", small_params)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays[model_io.METADATA_KEY][()]))

    newer = dict(arrays, **{model_io.METADATA_KEY: np.array(json.dumps(dict(meta, format_version=99)))})
    np.savez(tmp_path / "newer.npz", **newer)
    with pytest.raises(ModelFormatError, match="version 99 is not supported"):
        load_model(tmp_path / "newer.npz")

    missing = {k: v for k, v in arrays.items() if k != "layer1.b"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(ModelFormatError, match=r"\['layer1.b'\] listed in the metadata are missing"):
        load_model(tmp_path / "missing.npz")

    reshaped = dict(arrays, **{"radial.c": np.zeros((2, 5), np.float32)})
    np.savez(tmp_path / "reshaped.npz", **reshaped)
    with pytest.raises(ModelFormatError, match="'radial.c' has shape"):
        load_model(tmp_path / "reshaped.npz")


def test_save_rejects_bad_input(small_params, tmp_path):
    with pytest.raises(TypeError, match="Potential, ModelFile or parameter dict"):
        save_model(tmp_path / "x.npz", [1, 2])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_model(tmp_path / "x.npz", small_params, {"provenance": object()})
    with pytest.raises(ValueError, match="species_order"):
        save_model(tmp_path / "x.npz", small_params, {"species_order": ["H", "O", "C"]})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, **{"['c']": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ModelFormatError, match="cannot read as .npz"):
        load_model(path)
