"""``workbench bench scale``: truncated-window gradients split over 1, 2, 4 … devices.

The objective is ``TrajectoryLoss`` with a device mesh (``grad.sharding``): W windows split over
n devices, the two-pass gradient all-reduced.  Each device count runs in its own subprocess (the
number of CPU devices is fixed when JAX starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=n``;
on a GPU machine the counts are 1, 2, 4 … up to the GPUs present).  Reported:

- ``sharded_vs_single_rel_err``: max over n of ‖g_n − g_1‖ / ‖g_1‖, g_1 the gradient of the plain
  single-device ``TrajectoryLoss`` (no mesh, one-pass AD), float64;
- ``throughput_windows_per_s``: {n: W / t_n}, t_n the best wall time of loss + gradient after JIT;
- ``efficiency``: {n: throughput_n / (n × throughput_1)} (1 is perfect scaling).

System (both sizes): 64 Lennard-Jones argon atoms (``bench_grad``'s quick case: 4 fs steps, a ±1 e
charge-current TCF loss through a spectrum-like transform), adjoint estimator, K frames → 2K
windows (time-reversed partners).  Quick: 4 frames (8 windows) × 50 steps; full: 16 frames
(32 windows) × 200 steps.

Forced host devices are threads of one CPU: on a machine with c cores, n devices cannot beat
min(n, c) × one device, so efficiency is bounded by about c/n there — a test of the code path and
of the overheads, not a GPU figure.

``python -m workbench.bench_scale worker FRAMES STEPS REPEATS [--devices N] [--reference]
[--coordinator ADDR --num-processes P --process-id I]`` is one measurement on the first N devices
it sees (default all; one JSON line; ``start_worker`` sets its number of host devices); with
``--coordinator`` it joins a ``jax.distributed`` run and splits the windows over every process's
devices.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

TEMPERATURE_K = 120.0


def lj_windows(n_frames: int, n_steps: int):
    """(dynamics, params, positions, velocities, pairs, obs, loss, description) for 2·n_frames
    windows of ``n_steps`` of 64 LJ argon atoms (frames: the jittered lattice, Maxwell–Boltzmann
    velocities at 120 K, one seed per frame)."""
    import jax

    from workbench.bench_grad import _lj_case
    from workbench.grad import window_starts
    from workbench.md.integrators import maxwell_boltzmann

    dyn, params, x2, _, pairs, obs, loss, _ = _lj_case(n_steps)
    rng = np.random.default_rng(1)
    x = np.stack([x2[k % 2] + rng.normal(scale=0.005, size=x2.shape[1:]) for k in range(n_frames)])
    v = np.stack([np.asarray(maxwell_boltzmann(jax.random.PRNGKey(100 + k), dyn.masses, TEMPERATURE_K))
                  for k in range(n_frames)])
    xs, vs = window_starts(x, v)
    desc = (f"64 LJ argon atoms, {2 * n_frames} windows × {n_steps} steps (dt 4 fs), adjoint, "
            f"charge-current TCF loss")
    return dyn, params, np.asarray(xs), np.asarray(vs), pairs, obs, loss, desc


def measure(n_devices: int, n_frames: int, n_steps: int, repeats: int, reference: bool = False,
            before_timing=None) -> dict:
    """Loss, gradient and timing of the sharded objective on ``n_devices`` (0: all, every process);
    ``before_timing()`` is called between the compiling call and the timed ones."""
    import jax

    from workbench.bench import best_time
    from workbench.grad import TrajectoryLoss
    from workbench.grad.sharding import window_mesh

    dyn, params, x, v, pairs, obs, loss, desc = lj_windows(n_frames, n_steps)
    mesh = window_mesh(n_devices)
    objective = TrajectoryLoss(dyn, n_steps, obs, loss, mesh=mesh)
    args = (params, x, v, pairs)
    res = jax.block_until_ready(objective.loss_and_grad(*args))
    if before_timing is not None:
        before_timing()
    seconds = best_time(objective.loss_and_grad, args, repeats)
    out = {"devices": mesh.size, "processes": jax.process_count(), "windows": int(x.shape[0]),
           "loss": float(res.loss), "grad": _flat(res.grad), "loss_and_grad_s": seconds,
           "windows_per_s": x.shape[0] / seconds, "device_kind": jax.devices()[0].device_kind,
           "platform": jax.devices()[0].platform, "system": desc}
    if reference:
        single = TrajectoryLoss(dyn, n_steps, obs, loss).loss_and_grad(*args)
        out["reference_grad"] = _flat(single.grad)
        out["reference_loss"] = float(single.loss)
    return out


def _flat(tree) -> list[float]:
    import jax

    return [float(a) for leaf in jax.tree.leaves(tree) for a in np.ravel(np.asarray(leaf))]


def rel_err(a, b) -> float:
    """‖a − b‖ / ‖b‖ of two flat gradients."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def host_devices_env(n: int) -> dict:
    """The environment of a subprocess whose CPU backend has ``n`` devices."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    return {**os.environ, "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={n}"])}


def start_worker(n_devices: int, n_frames: int, n_steps: int, repeats: int, *extra: str) -> subprocess.Popen:
    """``measure`` in a subprocess with ``n_devices`` host devices, all in its mesh — in a
    ``jax.distributed`` run (``--coordinator`` in ``extra``) per process (read it with ``worker_result``)."""
    command = [sys.executable, "-m", "workbench.bench_scale", "worker", str(n_frames), str(n_steps),
               str(repeats), *extra]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, env=host_devices_env(n_devices), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    proc.error_log = log
    return proc


def worker_line(proc: subprocess.Popen, marker: str = "ready") -> str:
    """Read a worker's stdout up to the line ``marker`` (``"{"``: its JSON result, the line
    returned); RuntimeError with its stderr when it exits first.  Other lines (e.g. Gloo's
    connection messages in a ``jax.distributed`` run) are skipped."""
    for line in proc.stdout:
        if line.startswith(marker):
            return line
    proc.wait()
    proc.error_log.seek(0)
    err = proc.error_log.read().decode(errors="replace")[-3000:]
    raise RuntimeError(f"scale worker exited with status {proc.returncode}:\n{err}")


def worker_result(proc: subprocess.Popen) -> dict:
    """The JSON result of a worker (waits for it)."""
    result = json.loads(worker_line(proc, "{"))
    proc.wait()
    return result


def _probe_devices() -> tuple[str, int]:
    """(platform, device count) of JAX's default backend, asked in a subprocess: this process must
    not start a GPU backend (and take its memory) while the workers run."""
    code = "import jax; print(jax.default_backend(), jax.device_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    platform, count = out.split()[-2:]
    return platform, int(count)


def device_counts(max_devices: int) -> list[int]:
    """1, 2, 4 … up to ``max_devices``."""
    return [2**k for k in range(max_devices.bit_length()) if 2**k <= max_devices]


def run(quick: bool = False) -> dict:
    """The scale benchmark (see module docstring); returns a JSON-ready dict."""
    from workbench.bench import _cores

    n_frames, n_steps, repeats = (4, 50, 3) if quick else (16, 200, 3)
    platform, n_available = _probe_devices()
    accelerator = platform != "cpu"
    counts = device_counts(n_available) if accelerator else [1, 2, 4]
    # all workers import and compile at once, then each is timed alone (the others wait on stdin)
    procs = {n: start_worker(n, n_frames, n_steps, repeats, "--wait", "--devices", str(n),
                             *(["--reference"] if n == 1 else [])) for n in counts}
    for proc in procs.values():
        worker_line(proc, "ready")
    runs = {}
    for n, proc in procs.items():
        proc.stdin.write("go\n")
        proc.stdin.flush()
        runs[n] = worker_result(proc)
    single = runs[1]
    throughput = {str(n): r["windows_per_s"] for n, r in runs.items()}
    if accelerator:
        note = f"{n_available} {platform} devices ({single['device_kind']})"
    else:
        cores = _cores()
        note = (f"no GPU was available: forced host devices (XLA_FLAGS=--xla_force_host_platform_device_"
                f"count=n) share this machine's {cores} CPU cores, so efficiency is bounded near {cores}/n; "
                f"these are not GPU figures")
    return {
        "system": single["system"],
        "precision": "float64",
        "devices": counts,
        "device_kind": single["device_kind"],
        "platform": single["platform"],
        "windows": single["windows"],
        "n_steps": n_steps,
        "sharded_vs_single_rel_err": max(rel_err(r["grad"], single["reference_grad"]) for r in runs.values()),
        "rel_err_per_device_count": {str(n): rel_err(r["grad"], single["reference_grad"])
                                     for n, r in runs.items()},
        "throughput_windows_per_s": throughput,
        "efficiency": {str(n): throughput[str(n)] / (n * throughput["1"]) for n in counts},
        "loss_and_grad_s": {str(n): r["loss_and_grad_s"] for n, r in runs.items()},
        "note": note,
        "load_average_1min": os.getloadavg()[0],  # other work on the machine slows the timings
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench_scale")
    parser.add_argument("mode", choices=["worker"])
    parser.add_argument("frames", type=int)
    parser.add_argument("steps", type=int)
    parser.add_argument("repeats", type=int)
    parser.add_argument("--devices", type=int, default=0, help="devices of the mesh (0: all, every process)")
    parser.add_argument("--reference", action="store_true", help="also the unsharded single-device gradient")
    parser.add_argument("--wait", action="store_true",
                        help="after compiling, print 'ready' and wait for a line on stdin before timing")
    parser.add_argument("--coordinator", help="join a jax.distributed run: process 0's HOST:PORT")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args(argv)
    if args.coordinator:
        from workbench.devices import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout_s=120)

    def wait():
        print("ready", flush=True)
        sys.stdin.readline()

    result = measure(args.devices, args.frames, args.steps, args.repeats, args.reference,
                     wait if args.wait else None)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
