"""Time-correlation functions (TCFs) by FFT.

For time series a(t), b(t) sampled at T equally spaced frames, the estimator used throughout the
workbench averages over every available time origin t0:

    C(t_k) = 1/(T − k) · Σ_{t0=0}^{T−1−k} a(t0) · b(t0 + k),        k = 0 … K−1,

where "·" is the dot product over the vector components (last axis) and the result is then
averaged over any axes between time and components (molecules, atoms, independent windows).
The sum over t0 is a linear correlation, computed with real FFTs of the series zero-padded to a
length n ≥ T + K − 1, so the circular correlation of the padded arrays has no wrap-around; the
cost is O(T log T) instead of the O(T K) direct sum, and the two agree to round-off.

Everything is written in ``jax.numpy``: the functions are differentiable w.r.t. the series (the
gradient code differentiates spectra w.r.t. the dipole trajectory) and accept NumPy arrays too.
Lag counts (``max_lag``) must be Python integers (they fix array shapes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["tcf", "tcf_direct", "fft_length"]


def fft_length(n_frames: int, n_lags: int) -> int:
    """Smallest power of two ≥ n_frames + n_lags − 1 (no wrap-around for lags < n_lags)."""
    need = n_frames + n_lags - 1
    return 1 << max(need - 1, 1).bit_length()


def _as_series(x):
    """View a series as (T, B, D): time, batch (averaged), components (dot product).

    (T,) → (T, 1, 1) scalar series; (T, D) → (T, 1, D); (T, ..., D) → (T, prod(...), D).
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("a time series needs a time axis; got a scalar")
    if x.ndim == 1:
        return x[:, None, None]
    if x.ndim == 2:
        return x[:, None, :]
    return x.reshape(x.shape[0], -1, x.shape[-1])


def _check(a, b, max_lag):
    if a.shape != b.shape:
        raise ValueError(f"series a and b must have the same shape, got {a.shape} and {b.shape}")
    n_frames = a.shape[0]
    if n_frames < 1:
        raise ValueError("empty time series")
    if max_lag is None:
        max_lag = n_frames
    max_lag = int(max_lag)
    if not 1 <= max_lag <= n_frames:
        raise ValueError(f"max_lag must be between 1 and the number of frames ({n_frames}), got {max_lag}")
    return n_frames, max_lag


def tcf(a, b=None, max_lag: int | None = None):
    """Time-correlation function ⟨a(0)·b(t)⟩ by zero-padded FFT.

    Args:
      a: series with time on axis 0: (T,) scalar, (T, D) vector, or (T, ..., D) — the last axis is
        dot-multiplied, the axes in between (molecules, atoms, windows) are averaged.
      b: second series of the same shape (default: ``a``, the autocorrelation).
      max_lag: number of lags K returned (lags 0 … K−1 frames); default T.

    Returns:
      (K,) array C(t_k) = 1/(T−k) Σ_{t0=0}^{T−1−k} ⟨a(t0)·b(t0+k)⟩_batch, in units of a × b.
    """
    a = _as_series(a)
    b = a if b is None else _as_series(b)
    n_frames, max_lag = _check(a, b, max_lag)
    n = fft_length(n_frames, max_lag)
    fa = jnp.fft.rfft(a, n=n, axis=0)
    fb = fa if b is a else jnp.fft.rfft(b, n=n, axis=0)
    # Σ_t a(t) b(t+k) = IFFT(conj(A) · B)[k] for the zero-padded series.
    raw = jnp.fft.irfft(jnp.conj(fa) * fb, n=n, axis=0)[:max_lag]
    summed = raw.sum(axis=2).mean(axis=1)
    counts = n_frames - jnp.arange(max_lag)
    return summed / counts


def tcf_direct(a, b=None, max_lag: int | None = None):
    """The same estimator as :func:`tcf` by the direct O(T·K) sum (reference for tests).

    Written with a scan over lags (one compiled loop), differentiable like :func:`tcf`.
    """
    a = _as_series(a)
    b = a if b is None else _as_series(b)
    n_frames, max_lag = _check(a, b, max_lag)
    t = jnp.arange(n_frames)

    def one_lag(k):
        shifted = jnp.roll(b, -k, axis=0)  # b(t0 + k) at index t0 (wrapped rows masked below)
        prod = jnp.sum(a * shifted, axis=2).mean(axis=1)
        return jnp.sum(jnp.where(t < n_frames - k, prod, 0.0)) / (n_frames - k)

    return jax.lax.map(one_lag, jnp.arange(max_lag))
