"""TCFs by FFT: equal to the direct O(T·K) sum, normalised by 1/(T−k), differentiable."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workbench  # noqa: F401  (enables float64)
from workbench.observables.tcf import fft_length, tcf, tcf_direct


@pytest.mark.parametrize("shape", [(37,), (50, 3), (41, 5, 3), (64, 2, 4, 3)])
def test_fft_equals_direct_sum(shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=shape)
    b = rng.normal(size=shape)
    k = shape[0]
    np.testing.assert_allclose(tcf(a, max_lag=k), tcf_direct(a, max_lag=k), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tcf(a, b, max_lag=k // 2), tcf_direct(a, b, max_lag=k // 2),
                               rtol=1e-10, atol=1e-12)


def test_explicit_estimator_on_small_series():
    """C(k) = 1/(T−k) Σ a(t0) b(t0+k), written out by hand for T = 4."""
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([0.5, -1.0, 2.0, 1.0])
    expected = [
        (1 * 0.5 + 2 * -1 + 3 * 2 + 4 * 1) / 4,
        (1 * -1 + 2 * 2 + 3 * 1) / 3,
        (1 * 2 + 2 * 1) / 2,
        (1 * 1) / 1,
    ]
    np.testing.assert_allclose(tcf(a, b), expected, rtol=1e-12)


def test_constant_series_has_no_wraparound_bias():
    """With zero padding and 1/(T−k) every lag of a constant series is exactly its square."""
    a = np.full((100, 3), 2.0)
    np.testing.assert_allclose(tcf(a), 12.0, rtol=1e-12)
    assert fft_length(100, 100) >= 199


def test_vector_and_batch_axes():
    """The last axis is dot-multiplied, the middle axes averaged."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(30, 7, 3))
    per_particle = np.stack([tcf(v[:, i]) for i in range(7)])
    np.testing.assert_allclose(tcf(v), per_particle.mean(axis=0), rtol=1e-12)
    per_component = sum(tcf(v[:, 0, c]) for c in range(3))
    np.testing.assert_allclose(tcf(v[:, 0]), per_component, rtol=1e-12)


def test_gradient_matches_direct_sum():
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.normal(size=(25, 3)))
    weights = jnp.asarray(rng.normal(size=10))

    def loss(fn, x):
        return jnp.sum(weights * fn(x, max_lag=10))

    g_fft = jax.grad(lambda x: loss(tcf, x))(a)
    g_dir = jax.grad(lambda x: loss(tcf_direct, x))(a)
    np.testing.assert_allclose(g_fft, g_dir, rtol=1e-9, atol=1e-12)
    assert jax.jit(lambda x: tcf(x, max_lag=10))(a).shape == (10,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same shape"):
        tcf(np.zeros((10, 3)), np.zeros((9, 3)))
    with pytest.raises(ValueError, match="max_lag"):
        tcf(np.zeros((10, 3)), max_lag=11)
