"""Gradients of MD observables w.r.t. potential parameters.

- ``trajectory``: one interface, ``TrajectoryLoss`` / ``trajectory_loss_and_grad``, over the
  estimators ``"direct"`` (AD through the scan, O(T) memory), ``"checkpoint"`` (``jax.checkpoint``
  segments, O(√T)) and ``"adjoint"`` (reverse-time velocity Verlet, O(1)).
- ``windows``: truncated-window gradients of TCF losses from sampled frames (seed paper's scheme).
- ``reweighting``: static averages at θ from samples of θ₀ with effective sample size.
- ``checks``: finite-difference and cross-estimator checks; ``study``: gradient norm vs window length.
"""

from workbench.grad.checks import FDCheck, compare_estimators, fd_check
from workbench.grad.core import ESTIMATORS, Estimator, Rollout, VerletDynamics, tree_norm, tree_relative_error
from workbench.grad.reweighting import (
    ReferenceSamples,
    ReweightedAverage,
    effective_sample_size,
    reweighted_average,
    reweighted_density,
    reweighting_loss_and_grad,
    reweighting_weights,
)
from workbench.grad.study import divergence_study, plot_divergence, suggest_truncation, tcf_endpoint_loss
from workbench.grad.trajectory import (
    GradDiagnostics,
    GradResult,
    TrajectoryLoss,
    rollout_fn,
    trajectory_loss_and_grad,
)
from workbench.grad.windows import (
    mdot_observable,
    sample_frames,
    start_origin_tcf,
    window_loss_and_grad,
    window_pairs,
    window_starts,
)

__all__ = [
    "ESTIMATORS", "Estimator", "FDCheck", "GradDiagnostics", "GradResult", "ReferenceSamples",
    "ReweightedAverage", "Rollout", "TrajectoryLoss", "VerletDynamics", "compare_estimators",
    "divergence_study", "effective_sample_size", "fd_check", "mdot_observable", "plot_divergence",
    "reweighted_average", "reweighted_density", "reweighting_loss_and_grad", "reweighting_weights",
    "rollout_fn",
    "sample_frames", "start_origin_tcf", "suggest_truncation", "tcf_endpoint_loss",
    "trajectory_loss_and_grad", "tree_norm", "tree_relative_error", "window_loss_and_grad",
    "window_pairs", "window_starts",
]
