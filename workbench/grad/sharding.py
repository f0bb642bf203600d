r"""Windows over a device mesh: each device integrates its share, gradients are all-reduced.

The mesh is one-dimensional, axis ``"windows"``, over D devices — with ``jax.distributed`` the
devices of every process (host).  A batch of W windows (start states, their pair lists, the loss
cotangents) is split along its window axis with ``jax.shard_map``: device d integrates windows
w ∈ S_d, |S_d| = W'/D, where W' = D⌈W/D⌉ (the last window is repeated to pad W to W'; padded
windows get zero cotangents and are cut from per-window outputs, so they change nothing).
The window gradient of the two-pass scheme (``grad.trajectory``),

    dL/dθ = Σ_d Σ_{w∈S_d} (do^w/dθ)ᵀ g_w,    g_w = ∂L/∂o^w,

is summed on each device, then over devices by one all-reduce (``psum``), accumulated in float64
when JAX has x64 enabled (``window_total``).  On one device the same code runs with D = 1.

Inputs and outputs of the jitted programs are replicated over the mesh (``replicated_jit``): every
process passes the same host data (the window starts are cheap) and can read every result.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "windows"
#: Specs: split along the window axis (axis 0), or the same on every device.
WINDOWED = P(AXIS)
REPLICATED = P()


def window_mesh(n_devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``n_devices`` of ``jax.devices()`` (0: all, across processes)."""
    devices = jax.devices()
    n = n_devices or len(devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"asked for {n} devices but JAX sees {len(devices)} ({devices[0].platform}, "
                         f"{jax.process_count()} process(es)); on CPU, XLA_FLAGS="
                         f"--xla_force_host_platform_device_count=N must be set before JAX is imported")
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(f"a multi-process run must use every device ({len(devices)}), got {n}")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def replicated_jit(mesh: Mesh, fn):
    """``jax.jit(fn)`` whose arguments and results are replicated over ``mesh``."""
    everywhere = NamedSharding(mesh, REPLICATED)
    return jax.jit(fn, in_shardings=everywhere, out_shardings=everywhere)


def over_windows(fn, mesh: Mesh, windowed, out_specs, zero_padded=()):
    """``fn`` run by every device of ``mesh`` on its share of the windows (inside a jit).

    Args:
      fn: per-device function of the positional arguments; reductions over devices are its job
        (``window_total``, ``jax.lax.pmax``).
      windowed: one bool per argument: True when its leaves' axis 0 is the window axis (split over
        the devices), False when every device gets all of it.
      out_specs: pytree prefix of ``fn``'s result: ``WINDOWED`` (per-window, gathered along axis 0)
        or ``REPLICATED`` (already reduced).
      zero_padded: indices of windowed arguments padded with zeros (loss cotangents), the others
        repeat their last window.
    """
    in_specs = tuple(WINDOWED if w else REPLICATED for w in windowed)
    # check_vma=False: the MD scans start from constants and carry per-window values; tracking
    # which values vary over devices would need a pcast in every scan of the MD code.  Nothing
    # here is differentiated through the shard_map, whose transpose is what needs that tracking.
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    def run(*args):
        n_windows = next(jax.tree.leaves(a)[0].shape[0] for a, w in zip(args, windowed, strict=True) if w)
        pad = -n_windows % mesh.size
        args = [_pad(a, pad, k in zero_padded) if w else a
                for k, (a, w) in enumerate(zip(args, windowed, strict=True))]
        out = mapped(*args)
        return jax.tree.map(lambda spec, sub: jax.tree.map(lambda a: a[:n_windows], sub)
                            if spec == WINDOWED else sub, out_specs, out, is_leaf=lambda s: isinstance(s, P))

    return run


def _pad(tree, pad: int, zeros: bool):
    if pad == 0:
        return tree

    def one(a):
        fill = jnp.zeros_like(a[-1:]) if zeros else a[-1:]
        return jnp.concatenate([a, jnp.repeat(fill, pad, axis=0)])

    return jax.tree.map(one, tree)


def accumulation_dtype():
    """float64 when JAX has x64 enabled, else float32."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def window_total(tree, axis: int | None = 0):
    """Σ over ``axis`` of this device's windows (None: already summed) and over all devices of the
    mesh (``psum``), accumulated in ``accumulation_dtype()``; call inside ``over_windows``."""
    acc = accumulation_dtype()

    def one(a):
        a = a.astype(acc) if jnp.issubdtype(a.dtype, jnp.floating) else a
        return jax.lax.psum(a if axis is None else jnp.sum(a, axis=axis), AXIS)

    return jax.tree.map(one, tree)


def in_dtype_of(like, tree):
    """``tree`` cast leaf by leaf to the dtypes of ``like`` (a float64 sum back to the parameters')."""
    return jax.tree.map(lambda a, ref: jnp.asarray(a, jnp.result_type(ref)), tree, like)


__all__ = ["AXIS", "REPLICATED", "WINDOWED", "accumulation_dtype", "in_dtype_of", "over_windows",
           "replicated_jit", "window_mesh", "window_total"]
