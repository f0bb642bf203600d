r"""Chaotic divergence of trajectory gradients: gradient norm versus window length τ.

Two trajectories of a liquid that start δ apart separate as δ e^{λt} (λ the largest Lyapunov
exponent, several ps⁻¹ for water), so the sensitivity do(t)/dθ of an observable at time t, and with
it the gradient of any loss of a window of length τ, grows like e^{λτ} once τ ≳ 1/λ.  Before that it
grows like a power of τ: a parameter change δθ changes the force by δF, the velocity by δF t/m and
the position by δF t²/2m.  A gradient from windows in the exponential regime is dominated by the
few most unstable directions of phase space and is useless for optimisation; the truncated-window
estimator (``grad.windows``) therefore uses τ below the crossover.

``divergence_study`` measures ‖dL/dθ‖ for a set of window lengths with the same start frames;
``suggest_truncation`` picks the longest τ before exponential growth.  The full run for 64
q-TIP4P/F waters (``workbench.bench_grad.divergence_study_water``) is recorded in
``benchmarks/results/divergence_study.{json,png}``.
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np

from workbench.grad.core import Estimator, ObservableFn, VerletDynamics
from workbench.grad.trajectory import LossFn, TrajectoryLoss
from workbench.grad.windows import start_origin_tcf, window_pairs, window_starts
from workbench.md.neighbor import PairListBuilder

#: Default largest power-law exponent p accepted as "not yet exponential" by suggest_truncation.
DEFAULT_MAX_POWER = 3.0


def tcf_endpoint_loss(observables):
    """L = C(τ) = (1/W) Σ_w o_w(0)·o_w(τ): the window TCF at its last lag (units of o²).

    The quantity whose sensitivity sets how long a TCF can be differentiated.
    """
    return start_origin_tcf(observables)[-1]


def divergence_study(dynamics: VerletDynamics, params, positions, velocities, steps, obs_fn: ObservableFn,
                     loss_fn: LossFn = tcf_endpoint_loss, *, builder: PairListBuilder | None = None,
                     time_reversed: bool = True, estimator: str | Estimator = "adjoint",
                     batch_size: int | None = None, progress=None) -> dict:
    """‖dL/dθ‖ for windows of each length in ``steps`` (integers n, τ = n Δt) from the same frames.

    ``progress(done, total, stage)``, if given, is called after each window length with the MD steps
    done so far (all window lengths together are ``total``).

    Returns a dict of lists (JSON-ready): ``tau_ps``, ``n_steps``, ``loss``, ``grad_norm``,
    ``max_displacement_nm``, ``reversal_error_nm``, ``wall_s``; plus ``suggested_tau_ps``.
    """
    x, v = window_starts(positions, velocities, time_reversed)
    pairs = window_pairs(x, builder)
    out = {k: [] for k in ("tau_ps", "n_steps", "loss", "grad_norm", "max_displacement_nm",
                           "reversal_error_nm", "wall_s")}
    steps = sorted(int(s) for s in steps)
    for i, n in enumerate(steps):
        t0 = time.perf_counter()
        res = TrajectoryLoss(dynamics, n, obs_fn, loss_fn, estimator, batch_size).loss_and_grad(
            params, x, v, pairs)
        diag = jax.device_get(res.diagnostics)
        out["wall_s"].append(time.perf_counter() - t0)
        out["tau_ps"].append(n * dynamics.dt)
        out["n_steps"].append(n)
        out["loss"].append(float(res.loss))
        out["grad_norm"].append(float(diag.grad_norm))
        out["max_displacement_nm"].append(float(diag.max_displacement))
        out["reversal_error_nm"].append(float(diag.reversal_error[0]))
        if progress is not None:
            progress(sum(steps[: i + 1]), sum(steps), "gradient scan")
    out["suggested_tau_ps"] = suggest_truncation(out["tau_ps"], out["grad_norm"])
    return out


def suggest_truncation(taus, norms, max_power: float = DEFAULT_MAX_POWER) -> float:
    """The longest τ before the gradient norm starts to grow exponentially.

    Criterion: between consecutive points the local power-law exponent
    p_i = ln(N_{i+1}/N_i) / ln(τ_{i+1}/τ_i) stays bounded while the growth is polynomial
    (p ≈ 1–2: δv ∝ t, δx ∝ t²), but increases without bound under exponential growth (for
    N ∝ e^{λτ}, p = λτ).  Exponential growth, once started, does not stop, whereas at short τ a
    gradient of an oscillating TCF can jump up and down; so the answer is τ_i where i starts the
    final run of intervals that all have p > ``max_power`` (or a non-finite norm), and the last τ
    when the last interval is not such.  ``taus`` must be increasing and positive.
    """
    t = np.asarray(taus, float)
    g = np.asarray(norms, float)
    if t.ndim != 1 or t.shape != g.shape or t.size < 1:
        raise ValueError(f"taus and norms must be 1-D of equal non-zero length, got {t.shape}, {g.shape}")
    if np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError("taus must be positive and strictly increasing")
    if not np.isfinite(g[0]) or g[0] <= 0:
        raise ValueError(f"the gradient norm at the shortest window must be finite and > 0, got {g[0]}")
    start = t.size - 1
    for i in range(t.size - 2, -1, -1):
        finite = np.isfinite(g[i]) and g[i] > 0
        if finite and np.isfinite(g[i + 1]) and g[i + 1] > 0:
            exploding = math.log(g[i + 1] / g[i]) / math.log(t[i + 1] / t[i]) > max_power
        else:
            exploding = True
        if not exploding:
            break
        start = i
    return float(t[start])


def plot_divergence(study: dict, path, title: str = "Gradient norm vs window length") -> None:
    """Save ‖dL/dθ‖ against τ (log scale) with the suggested truncation marked (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    tau_fs = np.asarray(study["tau_ps"]) * 1e3
    ax.semilogy(tau_fs, study["grad_norm"], "o-", label="‖dL/dθ‖")
    ax.axvline(study["suggested_tau_ps"] * 1e3, color="tab:red", ls="--",
               label=f"suggested truncation {study['suggested_tau_ps'] * 1e3:.0f} fs")
    ax.set_xlabel("window length τ (fs)")
    ax.set_ylabel("gradient norm")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
