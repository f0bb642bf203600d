"""Scale-out: windows split over devices (and processes) give the single-device gradient.

The number of CPU devices is fixed when JAX starts, so the multi-device runs are subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=N (``bench_scale.host_devices_env``).
"""

import json
import socket
import subprocess
import sys

import pytest

from workbench import bench_scale, devices
from workbench.refine import ConfigError, from_dict


def _run_with_devices(n: int, case: str) -> dict:
    """``case`` (a function below) in a subprocess whose JAX has ``n`` CPU devices; its JSON result."""
    proc = subprocess.run([sys.executable, __file__, case], env=bench_scale.host_devices_env(n),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sharded_trajectory_loss() -> dict:
    import jax

    from workbench.grad import TrajectoryLoss, tree_relative_error
    from workbench.grad.sharding import window_mesh

    dyn, params, x, v, pairs, obs, loss, _ = bench_scale.lj_windows(3, 40)
    args = (params, x, v, pairs)
    ref = TrajectoryLoss(dyn, 40, obs, loss).loss_and_grad(*args)
    out = {"devices": len(jax.devices()), "windows": int(x.shape[0]),
           "grad_norm": float(ref.diagnostics.grad_norm)}
    for name, n, batch in (("4", 4, None), ("2_batched", 2, 1)):
        res = TrajectoryLoss(dyn, 40, obs, loss, batch_size=batch, mesh=window_mesh(n)).loss_and_grad(*args)
        disp = res.diagnostics.max_displacement - ref.diagnostics.max_displacement
        out[name] = {"rel_err": float(tree_relative_error(res.grad, ref.grad)),
                     "loss_diff": abs(float(res.loss - ref.loss)) / abs(float(ref.loss)),
                     "disp_diff": abs(float(disp)), "reversal": float(res.diagnostics.reversal_error[0])}
    return out


def _sharded_window_engine() -> dict:
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np

    from workbench.grad import tree_norm, tree_relative_error
    from workbench.md.integrators import maxwell_boltzmann
    from workbench.potentials.lennard_jones import lennard_jones
    from workbench.refine.losses import green_kubo_from_vacf
    from workbench.refine.windows import Frames, WindowEngine
    from workbench.system import System

    spacing = (39.948 / (1.374 / 1.66053906660e-3)) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    rng = np.random.default_rng(4)
    x = np.stack([grid + rng.normal(scale=0.01, size=grid.shape) for _ in range(3)])
    system = System(("Ar",) * 27, x[0], np.full(3, 3 * spacing), np.arange(27)[:, None])
    v = np.stack([np.asarray(maxwell_boltzmann(jax.random.PRNGKey(k), system.masses, 94.4))
                  for k in (1, 2, 3)])
    md = from_dict({"md": {"dt_fs": 4.0, "truncation_fs": 160.0, "n_windows": 3}}).md
    params = {"sigma": jnp.asarray(0.35), "epsilon": jnp.asarray(1.1)}

    def loss(signals):
        d = green_kubo_from_vacf(jnp.mean(signals["vacf"], axis=0), md.dt_ps)
        return ((d - 0.002) / 0.002) ** 2

    out, grads, frames = {}, {}, {}
    for n in (1, 4):
        engine = WindowEngine(lennard_jones(), system, None, dataclasses.replace(md, devices=n), 94.4, "auto",
                              ["vacf"])
        xs, vs, pairs = engine.starts(Frames(x, v, x[0], v[0], 94.4))
        sig, diag = engine.forward(params, {}, xs, vs, pairs)
        grads[n], _, reversal = engine.gradient(params, {}, xs, vs, pairs, jax.grad(loss)(sig))
        out[str(n)] = {"mesh": engine.mesh.size, "windows": int(xs.shape[0]), "loss": float(loss(sig)),
                       "dtype": str(sig["vacf"].dtype), "reversal": float(reversal[0]),
                       "drift": diag["energy_drift_kT_per_atom"]}
        # three NVT replica chains (uneven on 4 devices: one padded), one starting frame each
        sampler = WindowEngine(lennard_jones(), system, None, dataclasses.replace(md, devices=n, replicas=3),
                               94.4, "auto", ["vacf"])
        frames[n] = sampler.sample(params, x[0], v[0], jax.random.PRNGKey(7))
    return {"rel_err": float(tree_relative_error(grads[4], grads[1])),
            "grad_norm": float(tree_norm(grads[1])), **out,
            "replica_frames": list(frames[4].positions.shape),
            "replica_diff": float(np.max(np.abs(frames[4].positions - frames[1].positions))),
            "replica_spread": float(np.max(np.abs(frames[1].positions[0] - frames[1].positions[1])))}


def test_sharded_trajectory_loss_equals_single_device_gradient():
    # 3 frames → 6 windows on 4 devices: the padding path; batch_size=1: lax.map on each device
    out = _run_with_devices(4, "_sharded_trajectory_loss")
    assert out["devices"] == 4 and out["windows"] == 6 and out["grad_norm"] > 0.1
    for case in ("4", "2_batched"):
        assert out[case]["rel_err"] <= 1e-6, out
        assert out[case]["loss_diff"] <= 1e-12 and out[case]["disp_diff"] <= 1e-12
        assert out[case]["reversal"] < 1e-9


def test_sharded_window_engine_equals_single_device_gradient():
    # the refinement's engine (forward pass → cotangents → VJP pass) on md.devices = 4 vs 1
    out = _run_with_devices(4, "_sharded_window_engine")
    assert out["1"]["mesh"] == 1 and out["4"]["mesh"] == 4 and out["4"]["windows"] == 6
    assert out["grad_norm"] > 1e-3 and out["rel_err"] <= 1e-6, out
    assert out["4"]["loss"] == pytest.approx(out["1"]["loss"], rel=1e-12)
    assert out["4"]["dtype"] == "float64"  # "auto" on CPU
    assert out["4"]["drift"] == pytest.approx(out["1"]["drift"], rel=1e-9)
    assert out["4"]["reversal"] < 1e-9
    # sampling replicas split over the devices: the same chains as on one device
    assert out["replica_frames"] == [3, 27, 3] and out["replica_spread"] > 1e-3
    assert out["replica_diff"] <= 1e-9, out


def test_two_process_distributed_run_gives_the_single_device_gradient():
    with socket.socket() as s:  # a free local port for the coordinator
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [bench_scale.start_worker(2, 2, 40, 1, *(["--reference"] if rank == 0 else []),
                                      "--coordinator", f"localhost:{port}", "--num-processes", "2",
                                      "--process-id", str(rank)) for rank in range(2)]
    try:
        first, second = (bench_scale.worker_result(p) for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert first["processes"] == second["processes"] == 2
    assert first["devices"] == second["devices"] == 4 and first["windows"] == 4
    assert bench_scale.rel_err(first["grad"], first["reference_grad"]) <= 1e-6
    assert bench_scale.rel_err(second["grad"], first["reference_grad"]) <= 1e-6
    assert first["loss"] == pytest.approx(first["reference_loss"], rel=1e-12)


def test_windows_per_batch_from_memory():
    # 100 B per window, 16 windows, 4 devices
    assert devices.windows_per_batch(100, 16, 4, 10_000, fraction=1.0) == 16
    assert devices.windows_per_batch(100, 16, 4, 250, fraction=1.0) == 8   # 2 per device
    assert devices.windows_per_batch(100, 16, 4, 150, fraction=1.0) == 4   # 1 per device
    assert devices.windows_per_batch(100, 12, 1, 500, fraction=1.0) == 4   # divisor of 12 ≤ 5
    with pytest.raises(ValueError, match="one window's gradient needs"):
        devices.windows_per_batch(100, 16, 4, 99, fraction=1.0)


def test_device_aware_precision():
    assert devices.default_precision("gpu") == "float32"
    assert devices.default_precision("cpu") == "float64"
    assert devices.resolve_precision("float32") == "float32"
    assert from_dict({}).run.precision == "auto"
    assert devices.device_memory_bytes() is None or devices.device_memory_bytes() > 0


def test_more_devices_than_exist_is_a_clear_error():
    import jax

    from workbench.grad.sharding import window_mesh

    n = len(jax.devices()) + 1
    with pytest.raises(ValueError, match=rf"asked for {n} devices but JAX sees {n - 1}.*"
                                         r"xla_force_host_platform_device_count"):
        window_mesh(n)


@pytest.mark.parametrize("table, message", [
    ({"distributed": {"num_processes": 2, "process_id": 2}},
     r"^distributed\.process_id: must be < distributed\.num_processes = 2, got 2"),
    ({"distributed": {"nodes": 2}}, r"^distributed\.nodes: unknown key"),
    ({"distributed": {"process_id": -1}}, r"^distributed\.process_id: must be ≥ 0"),
    ({"md": {"devices": -1}}, r"^md\.devices: must be ≥ 0"),
    ({"run": {"precision": "float16"}}, r"^run\.precision: must be one of 'auto', 'float64', 'float32'"),
])
def test_scale_config_errors(table, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(table)


def test_refine_cli_distributed_flags_reach_the_config(monkeypatch):
    from workbench import cli

    seen = {}
    monkeypatch.setattr(devices, "initialize_distributed",
                        lambda *a: seen.setdefault("args", a) and {"process_index": 1})
    args = cli.build_parser().parse_args(["refine", "c.toml", "--coordinator", "node0:1234",
                                          "--num-processes", "2", "--process-id", "1"])
    assert cli._join_processes(from_dict({}), args) == 1
    assert seen["args"][:3] == ("node0:1234", 2, 1)
    assert cli._process_dir("runs/x", 1).as_posix() == "runs/x/process-1"
    args = cli.build_parser().parse_args(["refine", "c.toml"])
    assert cli._join_processes(from_dict({}), args) == 0  # not distributed: nothing initialised


if __name__ == "__main__":
    import workbench  # noqa: F401  (float64)

    print(json.dumps({"_sharded_trajectory_loss": _sharded_trajectory_loss,
                      "_sharded_window_engine": _sharded_window_engine}[sys.argv[1]]()))
