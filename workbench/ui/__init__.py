"""The Panel dashboard: per-session state classes (no physics), worker-thread jobs, HoloViews views.

Importing it switches on JAX's persistent compilation cache (``$WORKBENCH_JAX_CACHE``, default
``~/.cache/workbench/jax``) unless ``JAX_COMPILATION_CACHE_DIR`` is already set: a served dashboard
then compiles the MD steps and adjoints of a model once per machine, not once per session and run.
"""

import os
from pathlib import Path

import jax

if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", os.environ.get(
        "WORKBENCH_JAX_CACHE", str(Path.home() / ".cache" / "workbench" / "jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
