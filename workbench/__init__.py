"""Workbench: refine machine-learned interatomic potentials against dynamical experimental data.

Importing the package enables 64-bit types in JAX (``jax_enable_x64``): the dtype of the state
arrays then chooses the precision of a run (float32 or float64), as in jax-md.
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
