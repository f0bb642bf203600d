"""Which devices, which precision, how many windows at once: the device-aware defaults.

- ``initialize_distributed``: join a multi-process (multi-host) JAX run with
  ``jax.distributed.initialize`` — before anything else touches JAX's devices.  Afterwards
  ``jax.devices()`` lists every process's devices and a mesh over them spans all hosts.
- ``default_precision``: the MD state dtype for ``precision = "auto"``: float32 on accelerators
  (GPU/TPU, where float64 runs at 1/2 … 1/64 of the float32 rate), float64 on CPU (no speed gap).
  Sums over many windows (TCF averages, gradients) are accumulated in float64 either way
  (``grad.sharding.window_total``).
- ``windows_per_batch``: windows evaluated together, from one window's compiled peak memory
  (XLA's ``memory_analysis``, see ``peak_bytes``) and a device's memory.
"""

from __future__ import annotations

import math

import jax

#: Fraction of a device's memory a window batch may plan to use (the rest: XLA's workspace,
#: fragmentation, the arrays kept between batches).
MEMORY_FRACTION = 0.7

ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, local_device_ids=None,
                           timeout_s: int = 300) -> dict:
    """``jax.distributed.initialize`` with the given settings; None lets JAX detect them from the
    cluster environment (SLURM, Open MPI, Kubernetes ...).  Returns {process_index, process_count,
    devices, local_devices} once connected."""
    kwargs = {"coordinator_address": coordinator_address or None, "num_processes": num_processes,
              "process_id": process_id, "initialization_timeout": int(timeout_s)}
    if local_device_ids:
        kwargs["local_device_ids"] = list(local_device_ids)
    jax.distributed.initialize(**kwargs)
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "devices": jax.device_count(), "local_devices": jax.local_device_count()}


def default_precision(backend: str | None = None) -> str:
    """"float32" on an accelerator backend, "float64" on CPU (``backend`` defaults to JAX's)."""
    return "float32" if (backend or jax.default_backend()) in ACCELERATORS else "float64"


def resolve_precision(precision: str) -> str:
    """``precision`` with "auto" replaced by ``default_precision()``."""
    return default_precision() if precision == "auto" else precision


def device_memory_bytes(device=None) -> int | None:
    """Memory of ``device`` (default: the first) in bytes, or None where JAX does not report it (CPU)."""
    stats = (device or jax.devices()[0]).memory_stats()
    return None if not stats or "bytes_limit" not in stats else int(stats["bytes_limit"])


def peak_bytes(stats) -> int:
    """Peak memory of a compiled program: temp + argument + output − alias bytes of
    ``jax.jit(f).lower(...).compile().memory_analysis()`` (XLA's static buffer assignment, per device)."""
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
               - stats.alias_size_in_bytes)


def windows_per_batch(bytes_per_window: int, n_windows: int, n_devices: int, memory_bytes: int,
                      fraction: float = MEMORY_FRACTION) -> int:
    """The largest divisor b of ``n_windows`` whose ⌈b / n_devices⌉ windows per device fit in
    ``fraction × memory_bytes`` at ``bytes_per_window`` each (peak of one window's compiled
    gradient).  Divisors keep every batch the same shape (one compilation)."""
    per_device = int(fraction * memory_bytes) // max(int(bytes_per_window), 1)
    if per_device < 1:
        raise ValueError(f"one window's gradient needs {bytes_per_window / 2**30:.2f} GiB but a device has "
                         f"{memory_bytes / 2**30:.2f} GiB ({fraction:.0%} usable): shorten the window or "
                         f"use the adjoint estimator")
    fits = [b for b in range(1, n_windows + 1)
            if n_windows % b == 0 and math.ceil(b / n_devices) <= per_device]
    return max(fits)
