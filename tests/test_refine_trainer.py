"""The refinement loop on a tiny Lennard-Jones argon liquid (fast to compile): SIGKILL + resume gives
the uninterrupted run's results exactly; an unstable setting rolls back with a clear message and
never leaves non-finite parameters on disk; stop requests; outputs."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from workbench.refine import ConfigError, RefinementFailed, Trainer, from_dict, read_jsonl
from workbench.refine.checkpoint import list_checkpoints, load_checkpoint
from workbench.system import System, write

ARGON_MASS = 39.948


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent JAX compilation cache shared by this module's trainers and subprocess: they all
    compile the same programs."""
    path = tmp_path_factory.mktemp("jax_cache")
    old = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir",
                                              "jax_persistent_cache_min_compile_time_secs")}
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield path
    for k, v in old.items():
        jax.config.update(k, v)


@pytest.fixture(scope="module")
def argon_file(tmp_path_factory):
    """64 argon atoms on a jittered simple-cubic lattice at liquid density (1.374 g/cm³)."""
    spacing = (ARGON_MASS / (1.374 / 1.66053906660e-3)) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing + 0.1
    grid += np.random.default_rng(0).normal(scale=0.01, size=grid.shape)
    path = tmp_path_factory.mktemp("argon") / "argon64.extxyz"
    write(path, System(("Ar",) * 64, grid, np.full(3, 4 * spacing), np.arange(64)[:, None]))
    return path


def argon_config(structure, **changes) -> dict:
    cfg = {
        "run": {"iterations": 5, "seed": 3},
        "system": {"structure": str(structure), "model": "lennard-jones", "temperature_K": 94.4,
                   "params": {"epsilon": 1.1}},
        "dipole": {"model": "none"},
        "md": {"dt_fs": 4.0, "equilibrate_ps": 0.4, "sampling_ps": 1.2, "n_windows": 2,
               "truncation_fs": 200.0, "window_batch": 2},
        "loss": {"ir": {"weight": 0.0}, "l2": {"weight": 0.01},
                 "diffusion": {"weight": 1.0, "target_nm2_per_ps": 0.00236, "finite_size_correction": False}},
        "train": {"potential": {"lr": 0.02, "parameterisation": "relative"}},
    }
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return cfg


def iterations(history):
    return [e for e in history if e["kind"] == "iteration"]


def test_sigkill_then_resume_equals_uninterrupted_run(argon_file, tmp_path, compilation_cache):
    cfg = argon_config(argon_file)
    config_path = tmp_path / "argon.toml"
    from workbench.refine.config import to_toml

    config_path.write_text(to_toml(from_dict(cfg)))
    killed_dir = tmp_path / "killed"
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(compilation_cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "refine", str(config_path), "--run-dir",
                             str(killed_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(i >= 2 for i, _ in list_checkpoints(killed_dir / "checkpoints")):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = max(i for i, _ in list_checkpoints(killed_dir / "checkpoints"))
    assert 2 <= done < 5

    resumed = Trainer.resume(killed_dir).run()
    reference = Trainer(from_dict(cfg), tmp_path / "reference").run()

    assert resumed.status == reference.status == "completed"
    got, want = iterations(resumed.history), iterations(reference.history)
    assert [e["iteration"] for e in got] == [1, 2, 3, 4, 5]  # continuous history
    for a, b in zip(got, want, strict=True):
        assert a["loss"] == b["loss"] and a["params"] == b["params"] and a["grad_norm"] == b["grad_norm"]
    for name, value in reference.state.u["potential"].items():
        np.testing.assert_array_equal(resumed.state.u["potential"][name], value)
    np.testing.assert_array_equal(resumed.state.key, reference.state.key)
    # metrics.jsonl: the iterations once each, in order, then the resume's start and the end
    logged = read_jsonl(killed_dir / "metrics.jsonl")
    assert [e["iteration"] for e in logged if e["kind"] == "iteration"] == [1, 2, 3, 4, 5]
    assert [e["resumed"] for e in logged if e["kind"] == "start"] == [False, True]
    assert logged[-1] == {"kind": "run_end", "status": "completed", "iteration": 5, "message": "5 iterations"}
    params = json.loads((killed_dir / "params.json").read_text())["params"]
    assert params == json.loads((tmp_path / "reference" / "params.json").read_text())["params"]
    for png in ("loss.png", "grad_norm.png"):
        assert (killed_dir / png).stat().st_size > 1000


def _all_finite_on_disk(run_dir):
    for _, path in list_checkpoints(run_dir / "checkpoints"):
        arrays, _ = load_checkpoint(path)
        for name, a in arrays.items():
            if np.issubdtype(a.dtype, np.floating):
                assert np.all(np.isfinite(a)), (path, name)


def test_huge_learning_rate_rolls_back_then_gives_up_clearly(argon_file, tmp_path):
    cfg = argon_config(argon_file, **{"train.potential.lr": 5.0, "train.potential.params": ["sigma"],
                                      "safety.max_rollbacks": 2, "run.iterations": 3})
    events = []
    with pytest.raises(RefinementFailed) as err:
        Trainer(from_dict(cfg), tmp_path / "run", [events.append]).run()
    message = str(err.value)
    assert "gave up at iteration 2 after 2 rollbacks" in message and "lower train.*.lr" in message
    rollbacks = [e for e in events if e["kind"] == "rollback"]
    assert [e["lr_factor"] for e in rollbacks] == [0.5, 0.25]
    assert all(e["iteration"] == 2 and e["restored_iteration"] == 0 and e["reason"] for e in rollbacks)
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "gave_up"
    _all_finite_on_disk(tmp_path / "run")
    logged = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [e["kind"] for e in logged].count("rollback") == 2


def test_huge_time_step_fails_at_once_with_a_clear_message(argon_file, tmp_path):
    cfg = argon_config(argon_file, **{"md.dt_fs": 80.0, "md.truncation_fs": 800.0})
    with pytest.raises(RefinementFailed, match="unstable with the starting parameters.*md.dt_fs"):
        Trainer(from_dict(cfg), tmp_path / "run").run()
    _all_finite_on_disk(tmp_path / "run")


def test_stop_request_between_iterations_and_outputs(argon_file, tmp_path):
    cfg = argon_config(argon_file, **{"run.iterations": 4})
    seen = []

    def stop():
        return sum(e["kind"] == "iteration" for e in seen) >= 2

    result = Trainer(from_dict(cfg), tmp_path / "run", [seen.append], stop).run()
    assert result.status == "stopped" and result.state.iteration == 2
    event = iterations(result.history)[-1]
    assert set(event["loss"]) == {"diffusion", "l2", "total"}
    assert math.isclose(event["loss"]["total"], event["loss"]["diffusion"] + 0.01 * event["loss"]["l2"])
    assert event["diffusion_nm2_per_ps"] > 0 and event["temperature_K"] > 50
    assert set(event["grad_norm"]) == {"potential", "total"} and event["lr"] == {"potential": 0.02}
    assert {e["stage"] for e in seen if e["kind"] == "stage"} >= {"sampling", "windows", "gradient"}
    assert (tmp_path / "run" / "summary.json").exists()
    with pytest.raises(Exception, match="already holds checkpoints"):
        Trainer(from_dict(cfg), tmp_path / "run")


def test_static_terms_force_matching_and_rdf_by_reweighting(argon_file, tmp_path):
    """Only static terms (no windows): force matching on frames of the default argon model and an RDF
    target, in a background-job shaped run; ESS is reported."""
    from workbench.potentials.base import all_pairs
    from workbench.potentials.lennard_jones import lennard_jones
    from workbench.refine import refinement_job
    from workbench.system import read

    system = read(argon_file)
    pot = lennard_jones()
    rng = np.random.default_rng(2)
    x = np.stack([system.positions + rng.normal(scale=0.005, size=system.positions.shape) for _ in range(3)])
    pairs = all_pairs(64)
    forces = np.stack([np.asarray(pot.forces(jax.numpy.asarray(f), system.box, pairs)) for f in x])
    energies = np.array([float(pot.energy(jax.numpy.asarray(f), system.box, pairs)) for f in x])
    np.savez(tmp_path / "ref.npz", positions=x, forces=forces, energies=energies)
    r = np.linspace(0.0, 0.8, 50)
    np.savetxt(tmp_path / "rdf.txt", np.stack([r, np.where(r > 0.33, 1.0, 0.0)], 1))
    cfg = argon_config(argon_file, **{
        "run.iterations": 2, "loss.diffusion.weight": 0.0,
        "loss.force_matching": {"weight": 1.0, "data": str(tmp_path / "ref.npz"), "energy_weight": 0.1},
        "loss.rdf": {"weight": 1.0, "target": str(tmp_path / "rdf.txt"), "pair": ["Ar", "Ar"],
                     "n_bins": 20, "smearing_nm": 0.01}})
    events = []
    refinement_job(from_dict(cfg), tmp_path / "run")(events.append, lambda: False)
    its = [e for e in events if e["kind"] == "iteration"]
    assert [e["iteration"] for e in its] == [1, 2]
    assert set(its[0]["loss"]) == {"force_matching", "rdf", "l2", "total"}
    assert its[0]["loss"]["force_matching"] > 0.0 and its[0]["ess"]["rdf"] == pytest.approx(1.0)
    assert 0 < its[1]["ess"]["rdf"] <= 1.0 and its[1]["grad_norm"]["total"] > 0
    assert events[-1]["status"] == "completed"


def test_density_loss_by_reweighting_npt_samples(argon_file, tmp_path):
    """Only the density term: NPT samples of the current model (Monte Carlo barostat) reweighted to θ;
    each event reports ⟨ρ⟩_θ and the ESS; the checkpoint holds the samples with their boxes, and a
    stopped run resumes to the uninterrupted run's numbers."""
    density = {"weight": 1.0, "target_g_cm3": 1.3, "pressure_bar": 300.0, "equilibrate_ps": 0.4,
               "sampling_ps": 0.8, "n_samples": 8, "barostat_every": 5, "min_ess_fraction": 0.5}
    cfg = from_dict(argon_config(argon_file, **{"run.iterations": 2, "loss.diffusion.weight": 0.0,
                                                "loss.density": density}))
    result = Trainer(cfg, tmp_path / "run").run()
    first, second = iterations(result.history)
    assert set(first["loss"]) == {"density", "l2", "total"}
    assert first["ess"]["density"] == pytest.approx(1.0) and 0 < second["ess"]["density"] <= 1.0
    assert 1.0 < first["density_g_cm3"] < 1.8
    assert first["loss"]["density"] == pytest.approx(((first["density_g_cm3"] - 1.3) / 1.3) ** 2)
    assert first["grad_norm"]["total"] > 0
    arrays, _ = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1][1])
    assert arrays["ref/density/boxes"].shape == (8, 3) and arrays["ref/density/positions"].shape == (8, 64, 3)
    assert np.ptp(np.prod(arrays["ref/density/boxes"], axis=1)) > 0  # the volume fluctuates

    stopped = Trainer(cfg, tmp_path / "stopped", stop_requested=lambda: (tmp_path / "stopped" / "checkpoints"
                                                                         / "iter_000001.npz").exists())
    assert stopped.run().status == "stopped"
    resumed = iterations(Trainer.resume(tmp_path / "stopped").run().history)[-1]
    assert resumed["loss"] == second["loss"] and resumed["density_g_cm3"] == second["density_g_cm3"]


def test_replica_chains_carry_their_states_and_resume_exactly(argon_file, tmp_path):
    """md.replicas = 2: the starting frames come from two NVT chains, each carrying its own last state
    (checkpointed, (2, N, 3)); a run stopped after one iteration and resumed equals an uninterrupted one."""
    cfg = argon_config(argon_file, **{"run.iterations": 2, "md.replicas": 2})
    reference = Trainer(from_dict(cfg), tmp_path / "reference").run()
    x = reference.state.md_positions
    assert x.shape == (2, 64, 3) and np.max(np.abs(x[0] - x[1])) > 0.01  # two distinct chains

    seen = []
    stopped = Trainer(from_dict(cfg), tmp_path / "run", [seen.append],
                      lambda: any(e["kind"] == "iteration" for e in seen)).run()
    assert stopped.status == "stopped" and stopped.state.iteration == 1
    resumed = Trainer.resume(tmp_path / "run").run()
    got, want = iterations(resumed.history), iterations(reference.history)
    assert [e["loss"] for e in got] == [e["loss"] for e in want]
    np.testing.assert_array_equal(resumed.state.md_positions, x)
    with pytest.raises(ConfigError, match="md.replicas: must divide md.n_windows"):
        from_dict(argon_config(argon_file, **{"md.replicas": 3}))
