"""Loss terms against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workbench.observables.structure import rdf
from workbench.refine import losses
from workbench.refine.parameters import ParameterGroup, leaf_names, with_values

GRID = np.array([100.0, 500.0, 1500.0, 3000.0, 5000.0])
RANGES = [[0.0, 1000.0], [1000.0, 4000.0]]
SIM = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
TGT = jnp.array([0.0, 2.0, 1.0, 1.0, 9.0])


def test_range_index_first_range_wins_and_outside_is_minus_one():
    np.testing.assert_array_equal(losses.range_index(GRID, RANGES), [0, 0, 1, 1, -1])
    np.testing.assert_array_equal(losses.range_index([5.0, 10.0], [[0, 10], [5, 20]]), [0, 1])


def test_ir_loss_absolute_by_hand():
    idx = losses.range_index(GRID, RANGES)
    # 10·[(1−0)² + (2−2)²] + 1·[(3−1)² + (4−1)²]; the point at 5000 cm⁻¹ is outside every range
    assert float(losses.ir_loss(SIM, TGT, idx, [10, 1], "absolute", normalise=False)) == pytest.approx(23.0)
    # normalised by 10·(0² + 2²) + (1² + 1²) = 42
    assert float(losses.ir_loss(SIM, TGT, idx, [10, 1], "absolute")) == pytest.approx(23 / 42)
    assert float(losses.ir_loss(TGT, TGT, idx, [10, 1])) == 0.0


def test_ir_loss_shape_by_hand():
    idx = losses.range_index(GRID, RANGES)
    # range means: simulated 1.5 and 3.5, target 1 and 1
    # → Ĩ_sim = (2/3, 4/3 | 6/7, 8/7), Ĩ_tgt = (0, 2 | 1, 1)
    expected = 10 * ((2 / 3) ** 2 + (4 / 3 - 2) ** 2) + ((6 / 7 - 1) ** 2 + (8 / 7 - 1) ** 2)
    assert float(losses.ir_loss(SIM, TGT, idx, [10, 1], "shape", normalise=False)) == pytest.approx(expected)
    assert float(losses.ir_loss(SIM, TGT, idx, [10, 1], "shape")) == pytest.approx(expected / (10 * 4 + 2))
    # shape-only: scaling a range of the simulated spectrum changes nothing
    scaled = SIM * jnp.array([3.0, 3.0, 0.5, 0.5, 1.0])
    assert float(losses.ir_loss(scaled, TGT, idx, [10, 1], "shape")) == pytest.approx(
        float(losses.ir_loss(SIM, TGT, idx, [10, 1], "shape")))


def test_diffusion_terms_by_hand():
    assert float(losses.green_kubo_from_vacf(jnp.array([3.0, 2.0, 1.0]), 0.5)) == pytest.approx(2 / 3)
    assert float(losses.relative_error_loss(0.003, 0.002)) == pytest.approx(0.25)


def test_force_matching_by_hand():
    def energy(k, x, box, pairs):  # harmonic wells: E = ½ k Σ x², F = −k x
        return 0.5 * k * jnp.sum(x**2)

    x = jnp.array([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])  # Σx² = 5, 4
    forces_ref = -x  # k = 1
    e_ref = jnp.array([2.5 + 5.0, 2.0 + 5.0])
    pairs = jnp.zeros((2, 1), int)
    # at k = 2: F − F_ref = −x, so the relative force error is exactly 1
    value = losses.force_matching_loss(energy, 2.0, x, None, pairs, e_ref, forces_ref)
    assert float(value) == pytest.approx(1.0)
    # ΔE = (5 − 7.5, 4 − 7) = (−2.5, −3); per atom (N = 2), mean removed: ±0.125 → mean square 0.015625
    value = losses.force_matching_loss(energy, 2.0, x, None, pairs, e_ref, forces_ref, energy_weight=4.0)
    assert float(value) == pytest.approx(1.0 + 4.0 * 0.015625)


def test_smooth_rdf_tends_to_the_histogram_and_l2():
    rng = np.random.default_rng(1)
    box = np.array([1.2, 1.2, 1.2])
    x = rng.uniform(0, 1.2, size=(30, 3))
    a, b = np.arange(10), np.arange(10, 30)
    edges = np.linspace(0.0, 0.6, 31)
    r, g_sharp = rdf(x, box, a, b, r_max=0.6, n_bins=30)
    g_smooth = losses.smooth_rdf(jnp.asarray(x), jnp.asarray(box), a, b, edges, 1e-7)
    np.testing.assert_allclose(g_smooth, g_sharp, atol=1e-9)
    g_like = losses.smooth_rdf(jnp.asarray(x), jnp.asarray(box), a, a, edges, 1e-7)
    np.testing.assert_allclose(g_like, rdf(x, box, a, r_max=0.6, n_bins=30)[1], atol=1e-9)
    assert float(losses.rdf_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]))) == pytest.approx(0.5)
    assert float(losses.l2_penalty({"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(3.0)}})) == 14.0


def test_parameter_groups_relative_and_absolute():
    base = {"sigma": jnp.array(0.34), "epsilon": jnp.array(1.0), "w": jnp.array([1.0, -2.0])}
    assert leaf_names(base) == ["epsilon", "sigma", "w"]
    rel = ParameterGroup.select("potential", base, ["sig*", "w"], relative=True)
    assert rel.names == ("sigma", "w") and rel.size == 3
    u = {"sigma": jnp.array(0.1), "w": jnp.array([0.5, 0.5])}
    out = rel.apply(u)
    np.testing.assert_allclose([out["sigma"], *out["w"], out["epsilon"]], [0.374, 1.5, -3.0, 1.0])
    out = ParameterGroup.select("potential", base, ["w"], relative=False).apply({"w": jnp.array([0.5, 0.5])})
    np.testing.assert_allclose(out["w"], [1.5, -1.5])
    g = jax.grad(lambda uu: rel.apply(uu)["sigma"] ** 2)(rel.zeros())  # d(θ0²(1+u)²)/du = 2θ0²
    assert float(g["sigma"]) == pytest.approx(2 * 0.34**2)
    assert float(with_values(base, {"epsilon": 2.0})["epsilon"]) == 2.0
    with pytest.raises(ValueError, match="'eps' does not exist"):
        with_values(base, {"eps": 2.0})
    with pytest.raises(ValueError, match=r"train.potential.params: \['x\*'\] matches none"):
        ParameterGroup.select("potential", base, ["x*"], relative=True)
