"""The DeePMD DeepDipole model in JAX against the original graph's outputs (../shared/data).

Measured on the 3 reference frames (float64): max |w − w_ref| = 1.6e-14 Å, ‖∂Σw/∂x − ref‖_max /
max|ref| = 1.7e-14; float32 (parameters and positions): max |w − w_ref| = 5.4e-6 Å, asserted < 2e-5 Å.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import shared_file

from workbench.observables import deepmd_dipole as dd
from workbench.observables.dipole import dipole_and_derivative


@pytest.fixture(scope="module")
def model():
    return dd.load_deepdipole(shared_file("deepdipole_water.npz"))


@pytest.fixture(scope="module")
def ref():
    with np.load(shared_file("deepdipole_reference.npz")) as z:
        data = {k: z[k] for k in z.files}
    assert np.all(data["atype"].reshape(-1, 3) == [0, 1, 1])  # O, H, H per molecule
    return data


@pytest.fixture(scope="module")
def wannier_jit(model, ref):
    species = ref["atype"]
    return jax.jit(lambda p, x, box: dd.wannier_centroids(model, x, box, species, params=p))


@pytest.fixture(scope="module")
def dipole_model(model):
    return dd.deepmd_dipole_model(model)


MOLECULES = np.arange(192).reshape(64, 3)


def _frame_nm(ref, i, dtype=np.float64):
    return (jnp.asarray(ref["coords"][i] / 10.0, dtype), jnp.asarray(np.diag(ref["cell"][i]) / 10.0, dtype))


def test_wannier_vectors_match_graph_float64(model, ref, wannier_jit):
    oxygen = ref["atype"] == 0
    for i in range(3):
        x, box = _frame_nm(ref, i)
        w = np.asarray(wannier_jit(model.params, x, box))
        assert w.shape == (64, 3)
        assert np.max(np.abs(w - ref["wannier"][i][oxygen])) <= 1e-6
        assert np.allclose(w.sum(0), ref["global_dipole"][i], atol=1e-6, rtol=0)


def test_wannier_vectors_float32(model, ref, wannier_jit):
    oxygen = ref["atype"] == 0
    p32 = {k: np.asarray(v, np.float32) for k, v in model.params.items()}
    errors = []
    for i in range(3):
        x, box = _frame_nm(ref, i, np.float32)
        w = wannier_jit(p32, x, box)
        assert w.dtype == jnp.float32
        errors.append(np.max(np.abs(np.asarray(w, float) - ref["wannier"][i][oxygen])))
    assert max(errors) < 2e-5  # measured 5.4e-6 Å (|w| ≈ 3.06 Å)


@pytest.fixture(scope="module")
def frame0_fns(dipole_model, ref):
    """(M, Ṁ) by jvp and ∂M/∂x by jacrev of the DipoleModel on frame 0, each jitted once."""
    x, box = _frame_nm(ref, 0)
    mol = jnp.asarray(MOLECULES)

    def m_fn(y):
        return dipole_model.dipole_fn(dipole_model.params, y, box, mol)

    m_and_mdot = jax.jit(lambda y, w: dipole_and_derivative(dipole_model.dipole_fn, dipole_model.params, y, w,
                                                            box, mol))
    return x, box, m_and_mdot, np.asarray(jax.jit(jax.jacrev(m_fn))(x))  # jac (3, 192, 3), e·nm/nm


def test_dipole_model_value(frame0_fns, ref):
    x, box, m_and_mdot, _ = frame0_fns
    # M = Σ_mol (d1 + d2) − 0.02 Σ w [e·nm], d of whole molecules
    r = ref["coords"][0].reshape(64, 3, 3) / 10.0
    d = r[:, 1:] - r[:, :1]
    d -= np.asarray(box) * np.round(d / np.asarray(box))
    want = d.sum((0, 1)) - 0.02 * ref["global_dipole"][0]
    assert np.allclose(np.asarray(m_and_mdot(x, x)[0]), want, atol=1e-10, rtol=0)


def test_dipole_derivative_matches_graph(frame0_fns, ref):
    # ∂M/∂x_nm = ∂(ionic)/∂x − 0.2 ∂Σw/∂x_Å, ∂(ionic)_d/∂x_ac = δ_dc (+1 on H, −2 on O)
    *_, jac = frame0_fns
    charge = np.where(ref["atype"] == 0, -2.0, 1.0)
    ionic = np.einsum("dc,a->dac", np.eye(3), charge)
    dw_dx = (ionic - jac) / 0.2
    want = ref["dglobal_dx"][0]
    assert np.max(np.abs(dw_dx - want)) <= 1e-6 * np.max(np.abs(want))  # measured 1.7e-14


def test_dipole_derivative_matches_finite_differences(frame0_fns):
    x, _, m_and_mdot, jac = frame0_fns

    def m(y):
        return np.asarray(m_and_mdot(y, x)[0])

    # h = 1e-6 nm: the O(h²) truncation error is ~1e-8 here (the switch 5.8–6 Å is steep), round-off ~1e-9
    h = 1e-6
    for atom, comp in [(0, 0), (1, 2), (2, 1), (90, 1), (91, 0), (189, 2)]:
        e = jnp.zeros_like(x).at[atom, comp].set(h)
        fd = (m(x + e) - m(x - e)) / (2 * h)
        assert np.allclose(jac[:, atom, comp], fd, atol=1e-6, rtol=1e-6)
    u = np.random.default_rng(0).normal(size=x.shape)
    u /= np.linalg.norm(u)
    fd = (m(x + h * u) - m(x - h * u)) / (2 * h)
    assert np.allclose(np.einsum("dij,ij->d", jac, u), fd, atol=1e-6, rtol=1e-6)


def test_mdot_by_jvp_matches_finite_differences(frame0_fns):
    x, _, m_and_mdot, jac = frame0_fns
    v = jnp.asarray(np.random.default_rng(1).normal(scale=0.5, size=x.shape))  # nm/ps
    mdot = np.asarray(m_and_mdot(x, v)[1])
    dt = 1e-7  # ps: x(t) = x + v t
    fd = (np.asarray(m_and_mdot(x + dt * v, v)[0]) - np.asarray(m_and_mdot(x - dt * v, v)[0])) / (2 * dt)
    assert np.allclose(mdot, fd, atol=1e-5, rtol=1e-6)
    assert np.allclose(mdot, np.einsum("dij,ij->d", jac, np.asarray(v)), atol=1e-10)


def test_seed_derivative_variant(dipole_model, frame0_fns):
    """Same M; the electronic part of every derivative is −1/10 of the exact one; seed_mdot has the
    exact Ṁ value (the seed's finite differences) with the seed's gradient."""
    x, box, m_and_mdot, _ = frame0_fns
    mol = jnp.asarray(MOLECULES)
    v = jnp.asarray(np.random.default_rng(2).normal(scale=0.5, size=x.shape))
    seed = dd.seed_derivative_variant(dipole_model)
    seed_jvp = jax.jit(lambda y, w: dipole_and_derivative(seed.dipole_fn, seed.params, y, w, box, mol))
    m_s, mdot_s = seed_jvp(x, v)
    m, mdot = (np.asarray(a) for a in m_and_mdot(x, v))
    vm = np.asarray(v).reshape(64, 3, 3)
    ionic = np.sum(vm[:, 1:] - vm[:, :1], axis=(0, 1))
    assert np.allclose(np.asarray(m_s), m, atol=1e-12)
    assert np.allclose(np.asarray(mdot_s) - ionic, -0.1 * (mdot - ionic), atol=1e-9)
    assert not np.allclose(np.asarray(mdot_s), mdot, atol=1e-3)


def test_misshaped_or_incomplete_file_gives_clear_error(model, tmp_path):
    source = shared_file("deepdipole_water.npz")
    with np.load(source) as z:
        arrays = {k: z[k] for k in z.files}
    bad = dict(arrays)
    bad["layer_1_type_0/idt"] = np.zeros(99)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(dd.DeepDipoleFormatError, match=r"layer_1_type_0/idt.*\(99,\).*expected \(100,\)"):
        dd.load_deepdipole(tmp_path / "bad.npz")
    missing = {k: v for k, v in arrays.items() if k != "filter_type_0/matrix_2_1"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(dd.DeepDipoleFormatError, match="missing.*filter_type_0/matrix_2_1"):
        dd.load_deepdipole(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(dd.DeepDipoleFormatError, match="neither"):
        dd.load_deepdipole(tmp_path / "other.npz")


def test_own_format_round_trip(model, tmp_path):
    path = dd.save_deepdipole(tmp_path / "dipole.npz", model, {"name": "seed DeepDipole"})
    again = dd.load_deepdipole(path)
    assert again.config == model.config
    assert again.config.rcut_smth == 5.800000190734863
    assert again.metadata["name"] == "seed DeepDipole" and again.metadata["format"] == "workbench-deepdipole"
    assert set(again.params) == set(model.params)
    for k, v in model.params.items():
        np.testing.assert_array_equal(again.params[k], v)


def test_small_box_raises_minimum_image_error(model, dipole_model, ref):
    x, _ = _frame_nm(ref, 0)
    with pytest.raises(dd.DeepDipoleBoxError, match="minimum image"):
        dd.wannier_centroids(model, x, jnp.full(3, 1.1), ref["atype"])
    with pytest.raises(dd.DeepDipoleBoxError, match="minimum image"):
        dipole_model.dipole(x, np.full(3, 1.0), MOLECULES)


def test_protocol_takes_a_dipole_file_by_path(tmp_path):
    """`workbench ir --dipole FILE` resolves through protocol.dipole_model; unknown names are refused."""
    from workbench import protocol

    dipole = protocol.dipole_model(str(shared_file("deepdipole_water.npz")))
    assert dipole.metadata.get("trajectory_batch_size")
    with pytest.raises(protocol.ProtocolError, match="DeepDipole .npz"):
        protocol.dipole_model(str(tmp_path / "missing.npz"))
