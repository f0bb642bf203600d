"""Ready-made refinement configs: the dashboard's "quick CPU demo" and the trainable group of a model.

``quick_demo(**overrides)`` is the config the dashboard starts from (also a sensible first CLI run):
the shipped 64-water box at 298.15 K, float32, one NVT start per iteration (two NVE windows with time
reversal) of τ = 100 fs, the absolute IR loss against Bertie & Lan (1996) with the paper's weights
(10 below 1000 cm⁻¹, 1 above), an L2 penalty, and both the potential and the charge-flux dipole
trained.  About 30 s for the first iteration (compilation) and a few seconds per further iteration
on 2 CPU cores.  ``overrides`` are ``"section.key"`` values as in ``RefineConfig.replace``.
"""

from __future__ import annotations

from workbench.refine.config import RefineConfig, from_dict

#: Named scalar parameters of the force fields trained in relative units θ = θ0(1 + u).
NAMED_POTENTIAL_PARAMS = {
    "qtip4pf": ["alpha_r", "k_theta", "q_H", "r_eq"],
    "qtip4pf-twin": ["alpha_r", "k_theta", "q_H", "r_eq"],
    "lennard-jones": ["epsilon", "sigma"],
}


def potential_group(model: str) -> dict:
    """The ``[train.potential]`` table suited to ``model``: the named force-field parameters in relative
    units (lr 5e-3 per iteration), or every weight of a network model (EANN files and shipped MLPs) in
    absolute units with a small learning rate (1e-4), so one step moves the energies by a fraction of kT."""
    if model in NAMED_POTENTIAL_PARAMS:
        return {"enabled": True, "params": NAMED_POTENTIAL_PARAMS[model], "parameterisation": "relative",
                "lr": 5e-3}
    return {"enabled": True, "params": ["*"], "parameterisation": "absolute", "lr": 1e-4}


def quick_demo_dict(model: str = "qtip4pf") -> dict:
    """The quick CPU demo as a plain dict (the TOML tables)."""
    return {
        "run": {"iterations": 5, "seed": 0, "precision": "float32", "plots": True},
        "system": {"structure": "default", "model": model, "temperature_K": 298.15},
        "dipole": {"model": "charge_flux"},
        "md": {"dt_fs": 0.5, "equilibrate_ps": 0.1, "sampling_ps": 0.1, "n_windows": 1,
               "truncation_fs": 100.0, "estimator": "adjoint"},
        "loss": {"ir": {"weight": 1.0, "target": "experiment", "mode": "absolute", "grid_step_cm": 8.339,
                        "ranges_cm": [[0.0, 1000.0], [1000.0, 4000.0]], "range_weights": [10.0, 1.0]},
                 "l2": {"weight": 1.0}},
        "train": {"potential": potential_group(model),
                  "dipole": {"enabled": True, "params": ["q_h0", "a_r", "a_theta"],
                             "parameterisation": "relative", "lr": 0.02}},
        "optimizer": {"name": "adam"},
    }


def quick_demo(model: str = "qtip4pf", base_dir: str = ".", **overrides) -> RefineConfig:
    """The quick CPU demo config for ``model`` with ``overrides`` ("section.key" → value) applied."""
    config = from_dict(quick_demo_dict(model), base_dir)
    return config.replace(**overrides) if overrides else config


__all__ = ["NAMED_POTENTIAL_PARAMS", "potential_group", "quick_demo", "quick_demo_dict"]
