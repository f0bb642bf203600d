"""EANN energy function: reference energies/forces of the seed model, gradients, invariances, init."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench  # noqa: F401  (enables x64)
from workbench.potentials import eann
from workbench.potentials.base import all_pairs, pairs_within

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODEL_NPZ = DATA / "eann_water_dft_start.npz"
REFERENCE = DATA / "eann_reference.npz"
needs_data = pytest.mark.skipif(not (MODEL_NPZ.exists() and REFERENCE.exists()),
                                reason=f"seed EANN model/reference not found in {DATA}")

CAPACITY = 9500  # padded pair-list rows (as in the seed's timing script)


@pytest.fixture(scope="module")
def ref():
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found")
    return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def params():
    if not MODEL_NPZ.exists():
        pytest.skip(f"{MODEL_NPZ} not found")
    from workbench.potentials.model_io import load_model

    return load_model(MODEL_NPZ).params


@pytest.fixture(scope="module")
def value_and_force(params, ref):
    """jit of (E [kJ/mol], F [kJ/mol/Å]) for the reference species, Å in and out."""
    pot = eann.eann_potential(params, ref["species"])
    vg = jax.jit(jax.value_and_grad(pot.energy_fn, argnums=1))

    def run(coords_a, box_a, pairs, dtype, p=None):
        x = jnp.asarray(coords_a / 10.0, dtype)
        box = jnp.asarray(box_a / 10.0, dtype)
        e, g = vg(pot.params if p is None else p, x, box, jnp.asarray(pairs))
        return float(e), -np.asarray(g, np.float64) / 10.0

    return run


def _frame(ref, k):
    box_a = np.diag(ref["box"])
    return ref["coords"][k], box_a, pairs_within(ref["coords"][k], box_a, 6.0, CAPACITY)


@needs_data
@pytest.mark.parametrize("frame", [0, 1, 2])
def test_reference_float64(value_and_force, ref, frame):
    """float32 parameters (as stored) evaluated with float64 positions give the float64 reference."""
    coords, box, pairs = _frame(ref, frame)
    assert (pairs[0] < len(coords)).sum() == ref["npairs"][frame]
    e, f = value_and_force(coords, box, pairs, jnp.float64)
    e_ref, f_ref = ref["energy_start"][frame], ref["forces_start"][frame]
    assert abs(e - e_ref) / abs(e_ref) <= 1e-6
    assert np.max(np.abs(f - f_ref)) / np.max(np.abs(f_ref)) <= 1e-6
    assert np.sqrt(np.mean((f - f_ref) ** 2) / np.mean(f_ref**2)) <= 1e-6
    assert np.allclose(f.sum(axis=0), 0.0, atol=1e-8)


@needs_data
@pytest.mark.parametrize("frame", [0, 1, 2])
def test_reference_float32(value_and_force, ref, frame):
    coords, box, pairs = _frame(ref, frame)
    e, f = value_and_force(coords, box, pairs, jnp.float32)
    e_ref, f_ref = ref["energy_start"][frame], ref["forces_start"][frame]
    assert abs(e - e_ref) / abs(e_ref) <= 1e-5
    assert np.sqrt(np.mean((f - f_ref) ** 2) / np.mean(f_ref**2)) <= 1e-4
    assert np.max(np.abs(f - f_ref)) <= 0.02  # kJ/mol/Å; the seed's own float32 differs by ~0.004


@needs_data
def test_wrong_species_order_is_very_different(params, ref):
    coords, box, pairs = _frame(ref, 0)
    pot = eann.eann_potential(params, 1 - ref["species"])  # O = 0, H = 1
    e = float(jax.jit(pot.energy_fn)(pot.params, jnp.asarray(coords / 10), jnp.asarray(box / 10),
                                     jnp.asarray(pairs)))
    assert abs(e - 15047.0) < 1.0, e


@needs_data
def test_all_pairs_list_gives_same_energy(params, ref):
    """The 6 Å mask makes a list with every pair (N(N−1)/2 rows) equivalent to the cutoff list."""
    coords, box, _ = _frame(ref, 1)
    pot = eann.eann_potential(params, ref["species"])
    e = float(jax.jit(pot.energy_fn)(pot.params, jnp.asarray(coords / 10), jnp.asarray(box / 10),
                                     all_pairs(len(coords))))
    assert abs(e - ref["energy_start"][1]) < 1e-6


@needs_data
def test_forces_match_central_differences(value_and_force, ref):
    coords, box, pairs = _frame(ref, 2)
    _, f = value_and_force(coords, box, pairs, jnp.float64)
    h = 1e-4  # Å
    rng = np.random.default_rng(3)
    for atom, axis in zip(rng.integers(0, len(coords), 6), rng.integers(0, 3, 6), strict=True):
        e = []
        for sign in (1, -1):
            x = coords.copy()
            x[atom, axis] += sign * h
            e.append(value_and_force(x, box, pairs, jnp.float64)[0])
        fd = -(e[0] - e[1]) / (2 * h)
        assert abs(fd - f[atom, axis]) <= 1e-5 * max(abs(f[atom, axis]), 1.0)


@needs_data
def test_permutation_and_translation_invariance(value_and_force, ref):
    """Reordering the molecules and shifting all atoms (unwrapped) changes nothing."""
    coords, box, _ = _frame(ref, 1)
    order = np.random.default_rng(0).permutation(len(coords) // 3)
    atoms = (3 * order[:, None] + np.arange(3)).ravel()
    assert np.array_equal(ref["species"][atoms], ref["species"])
    shifted = coords[atoms] + np.array([3.1, -7.2, 20.0])
    e, f = value_and_force(shifted, box, pairs_within(shifted, box, 6.0, CAPACITY), jnp.float64)
    assert abs(e - ref["energy_start"][1]) < 1e-6
    np.testing.assert_allclose(f, ref["forces_start"][1][atoms], atol=1e-8)


@needs_data
def test_pair_order_and_direction_do_not_matter(params, ref):
    """The neighbour table is built by sorting, so a shuffled list with some pairs written j, i
    (and padding rows in between) gives the same energy and forces as the ordered list."""
    coords, box, pairs = _frame(ref, 0)
    pot = eann.eann_potential(params, ref["species"])
    vg = jax.jit(jax.value_and_grad(pot.energy_fn, argnums=1))
    args = (jnp.asarray(coords / 10), jnp.asarray(box / 10))
    e0, g0 = vg(pot.params, *args, jnp.asarray(pairs))
    rng = np.random.default_rng(5)
    shuffled = pairs[:, rng.permutation(pairs.shape[1])]
    flip = rng.random(shuffled.shape[1]) < 0.5
    shuffled[:, flip] = shuffled[::-1, flip]
    e1, g1 = vg(pot.params, *args, jnp.asarray(shuffled))
    assert abs(float(e1 - e0)) <= 1e-9 * abs(float(e0))
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=0, atol=1e-9)


@needs_data
def test_neighbour_table_capacity(params, ref):
    """Water at 6 Å has at most ~105 neighbours per atom: the default table (136) holds them; a
    table too small for them makes the energy NaN instead of silently dropping neighbours."""
    coords, box, pairs = _frame(ref, 0)
    x, b, p = jnp.asarray(coords / 10), jnp.asarray(box / 10), jnp.asarray(pairs)
    degree = np.bincount(np.concatenate([pairs[0], pairs[1]]), minlength=len(coords) + 1)[:-1]
    assert 80 < degree.max() <= eann.max_neighbors_default(len(coords), 6.0) == 136
    exact = eann.eann_potential(params, ref["species"], metadata={"max_neighbors": int(degree.max())})
    e = float(exact.energy_fn(exact.params, x, b, p))
    assert abs(e - ref["energy_start"][0]) <= 1e-6 * abs(ref["energy_start"][0])
    small = eann.eann_potential(params, ref["species"], metadata={"max_neighbors": int(degree.max()) - 1})
    assert np.isnan(float(small.energy_fn(small.params, x, b, p)))
    assert eann.max_neighbors_default(9, 6.0) == 8  # never more than N − 1
    with pytest.raises(ValueError, match="max_neighbors"):
        eann.make_eann_energy_fn(ref["species"], 6.0, 0)


@needs_data
def test_potential_attributes(params, ref):
    pot = eann.eann_potential(params, ref["species"], name="seed")
    assert pot.name == "seed"
    assert pot.cutoff == pytest.approx(0.6)
    assert pot.metadata["n_atoms"] == 192
    assert eann.architecture(params) == {"n_species": 2, "n_radial": 12, "l_max": 2, "n_features": 36,
                                         "hidden": [64, 64]}
    assert sum(np.size(v) for v in params.values()) == 14283


def test_init_params_and_parameter_gradient():
    """A fresh model (3 hidden layers) is finite, and dE/dθ (what the trainer uses) and dE/dr match
    central differences."""
    params = eann.init_eann_params(jax.random.key(1), n_species=2, n_radial=8, hidden=(16, 24, 8),
                                   initpot=-40.0)
    eann.validate_params(params)
    assert eann.architecture(params)["hidden"] == [16, 24, 8]
    assert params["layer1.w"].shape == (2, 16, 24) and params["radial.rs"].dtype == jnp.float32
    rng = np.random.default_rng(0)
    box = np.full(3, 0.9)
    x = rng.uniform(0, 0.9, (12, 3))
    pot = eann.eann_potential(params, np.array([1, 0, 0] * 4))
    value_and_grads = jax.jit(jax.value_and_grad(pot.energy_fn, argnums=(0, 1)))
    pairs = all_pairs(12)

    # numpy arithmetic below: eager JAX ops would compile one small kernel per parameter shape
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    e, (g64, g64_x) = value_and_grads(p64, x, box, pairs)
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(g64_x)))
    assert abs(float(e) - 12 * -40.0) < 12 * 50.0
    u = {k: rng.normal(size=v.shape) for k, v in p64.items()}
    directional = sum(float(np.vdot(np.asarray(g64[k]), u[k])) for k in p64)
    eps = 1e-6
    plus = value_and_grads({k: p64[k] + eps * u[k] for k in p64}, x, box, pairs)[0]
    minus = value_and_grads({k: p64[k] - eps * u[k] for k in p64}, x, box, pairs)[0]
    assert abs(float(plus - minus) / (2 * eps) - directional) <= 1e-6 * abs(directional)

    dx = rng.normal(size=(12, 3))
    plus = value_and_grads(p64, x + eps * dx, box, pairs)[0]
    minus = value_and_grads(p64, x - eps * dx, box, pairs)[0]
    directional = float(np.vdot(np.asarray(g64_x), dx))
    assert abs(float(plus - minus) / (2 * eps) - directional) <= 1e-6 * abs(directional)


def test_validate_params_errors():
    params = eann.init_eann_params(jax.random.key(0), hidden=(8, 8))
    bad = dict(params)
    del bad["layer1.norm_gain"]
    with pytest.raises(ValueError, match="layer1.norm_gain"):
        eann.validate_params(bad)
    bad = dict(params, **{"layer0.w": jnp.zeros((2, 35, 8))})
    with pytest.raises(ValueError, match=r"'layer0.w' has shape \(2, 35, 8\), expected \(2, 36, 8\)"):
        eann.validate_params(bad)
    with pytest.raises(ValueError, match="unexpected"):
        eann.validate_params(dict(params, extra=jnp.zeros(1)))
    with pytest.raises(ValueError, match="species indices"):
        eann.eann_potential(params, np.array([0, 1, 2]))


def test_features_are_rotation_invariant():
    """ρ (sum of squares per L) does not change when all positions are rotated (open boundaries)."""
    params = eann.init_eann_params(jax.random.key(2), n_radial=6, hidden=(8, 8))
    params = eann.cast_params(params, jnp.float64)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 3)) * 1.5
    species = np.array([1, 0, 0] * 3)
    box = jnp.full(3, 100.0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pairs = all_pairs(9)
    features = jax.jit(
        lambda x: eann.density_features(eann.orbital_sums(params, x, box, pairs, species, 6.0)[0]))
    s1, s2 = features(jnp.asarray(x)), features(jnp.asarray(x @ q.T))
    np.testing.assert_allclose(np.asarray(s1), np.asarray(s2), rtol=1e-10, atol=1e-12)


def test_far_pairs_are_harmless():
    """Pairs far beyond the cutoff (here 300 Å, where a negative Gaussian exponent would overflow
    exp even in float64) are masked without NaN in energy or forces."""
    params = eann.init_eann_params(jax.random.key(3), n_radial=4, hidden=(8, 8))
    params["radial.inta"] = params["radial.inta"].at[0, 1].set(-0.05)
    pot = eann.eann_potential(params, np.array([1, 0, 0, 1, 0, 0]))
    x = np.array([[0, 0, 0], [0.096, 0, 0], [0, 0.096, 0], [30, 0, 0], [30.096, 0, 0], [30, 0.096, 0]])
    e, g = jax.jit(jax.value_and_grad(pot.energy_fn, argnums=1))(
        pot.params, jnp.asarray(x, jnp.float32), jnp.full(3, 100.0, jnp.float32), all_pairs(6))
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(g)))


def test_per_species_rows_by_selection_equal_the_gather():
    """The GPU path of ``per_species`` (selections) gives the gather's rows and parameter cotangent."""
    rng = np.random.default_rng(3)
    table = jnp.asarray(rng.integers(0, 3, size=(7, 5)))
    values = jnp.asarray(rng.standard_normal((3, 4)))
    cotangent = jnp.asarray(rng.standard_normal((7, 5, 4)))
    gathered, vjp_gather = jax.vjp(lambda v: v[table], values)
    selected, vjp_select = jax.vjp(lambda v: eann.rows_by_selection(table, v), values)
    np.testing.assert_array_equal(selected, gathered)
    np.testing.assert_allclose(vjp_select(cotangent)[0], vjp_gather(cotangent)[0], rtol=1e-12)
    np.testing.assert_array_equal(eann.per_species(table, values), gathered)
