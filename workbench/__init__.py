"""Workbench: refine machine-learned interatomic potentials against dynamical experimental data.

Importing the package enables 64-bit types in JAX (``jax_enable_x64``): the dtype of the state
arrays then chooses the precision of a run (float32 or float64), as in jax-md.  It also asks for
full-precision float32 matrix products (``jax_default_matmul_precision = "highest"``) unless the
environment sets ``JAX_DEFAULT_MATMUL_PRECISION``.  XLA's default on recent NVIDIA GPUs is TF32,
a 10-bit mantissa: one TF32 product carrying the seed EANN's Gaussian centres and exponents changed
its outputs by 1e-2 relative on an H200, and the float32 adjoint's reversed 400-step windows
strayed up to 0.011 nm from the forward ones with TF32 products but only 2.4e-4 nm with full
ones, at 22 % more time per paper-size update (benchmarks/results/paper_gpu.json): TF32 is too
coarse for forces that must conserve energy and for an adjoint that integrates backwards.  CPUs
compute float32 products in full precision either way.
"""

import os

import jax

jax.config.update("jax_enable_x64", True)
if not os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"):
    jax.config.update("jax_default_matmul_precision", "highest")

__version__ = "0.1.0"
