"""Refinement of potentials (and dipole models) against dynamical data by differentiable MD.

- ``config``: the TOML config as validated frozen dataclasses (``load_config``, ``ConfigError``).
- ``losses``: IR (absolute / shape), diffusion, force matching, RDF by reweighting, L2.
- ``parameters``: trainable groups and their optimiser coordinates.
- ``windows``: NVT sampling, NVE windows and their two-pass gradients.
- ``trainer``: the optax loop with checkpoints, rollback and resume (``Trainer``).
- ``events``: event schema and subscribers (JSON lines, console progress).
- ``checkpoint``: atomic checkpoint files; ``outputs``: final model, summary and plots.
"""

from workbench.refine.config import ConfigError, RefineConfig, from_dict, load_config, to_toml
from workbench.refine.events import ConsoleProgress, EventBus, JSONLWriter, read_jsonl

_TRAINER_NAMES = ("RefinementFailed", "RefineResult", "Trainer", "TrainState", "refinement_job")


def __getattr__(name):
    """The trainer's names are imported on first use: reading a config must not import jax-md, whose
    import starts JAX's backends — ``jax.distributed.initialize`` has to come before that."""
    if name in _TRAINER_NAMES:
        from workbench.refine import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError", "ConsoleProgress", "EventBus", "JSONLWriter", "RefineConfig", "RefineResult",
    "RefinementFailed", "TrainState", "Trainer", "from_dict", "load_config", "read_jsonl", "refinement_job",
    "to_toml",
]
