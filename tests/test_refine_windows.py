"""The two-pass window gradient (forward → cotangents → VJP) equals plain AD of the whole loss."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from workbench.grad import tree_relative_error
from workbench.md.integrators import maxwell_boltzmann
from workbench.potentials.lennard_jones import lennard_jones
from workbench.refine import from_dict
from workbench.refine.losses import green_kubo_from_vacf
from workbench.refine.windows import Frames, WindowEngine
from workbench.system import System


def test_two_pass_gradient_equals_direct_ad_of_the_window_loss():
    spacing = (39.948 / (1.374 / 1.66053906660e-3)) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    rng = np.random.default_rng(4)
    x = np.stack([grid + rng.normal(scale=0.01, size=grid.shape) for _ in range(2)])
    system = System(("Ar",) * 27, x[0], np.full(3, 3 * spacing), np.arange(27)[:, None])
    v = np.stack([np.asarray(maxwell_boltzmann(jax.random.PRNGKey(k), system.masses, 94.4)) for k in (1, 2)])
    md = from_dict({"md": {"dt_fs": 4.0, "truncation_fs": 160.0, "n_windows": 2, "window_batch": 2}}).md
    pot = lennard_jones()
    params = {"sigma": jnp.asarray(0.35), "epsilon": jnp.asarray(1.1)}
    engines = {e: WindowEngine(pot, system, None, dataclasses.replace(md, estimator=e), 94.4, "float64",
                               ["vacf"]) for e in ("adjoint", "direct")}
    xs, vs, pairs = engines["adjoint"].starts(Frames(x, v, x[0], v[0], 94.4))
    assert pairs.ndim == 2 and xs.shape == (4, 27, 3)  # small box: one all-pairs list, time-reversed copies

    def loss(signals):
        d = green_kubo_from_vacf(jnp.mean(signals["vacf"], axis=0), md.dt_ps)
        return ((d - 0.002) / 0.002) ** 2

    sig, diag = engines["adjoint"].forward(params, {}, xs, vs, pairs)
    assert diag["finite"] and diag["energy_drift_kT_per_atom"] < 0.05
    cot = jax.grad(loss)(sig)
    g_two_pass, _, reversal = engines["adjoint"].gradient(params, {}, xs, vs, pairs, cot)
    direct = engines["direct"]
    g_ref = jax.grad(lambda p: loss(direct._forward_batch(p, {}, xs, vs, pairs)[0]))(params)
    assert float(tree_relative_error(g_two_pass, g_ref)) < 1e-7
    assert reversal[0] < 1e-9
    # md.anchor_fs: the reverse pass restarts from states kept every 10 steps, same gradient
    md_anchored = dataclasses.replace(md, anchor_fs=40.0)
    anchored = WindowEngine(pot, system, None, md_anchored, 94.4, "float64", ["vacf"])
    assert anchored.replays and md.window_steps == 40 and md_anchored.anchor_every == 10
    anchored.forward(params, {}, xs, vs, pairs)
    g_anchored, _, reversal = anchored.gradient(params, {}, xs, vs, pairs, cot)
    assert float(tree_relative_error(g_anchored, g_ref)) < 1e-7
    assert reversal[0] < 1e-9
