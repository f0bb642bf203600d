"""``workbench bench paper``: option parsing, the stage clock's split of an update, and the CLI's
refusal of options a benchmark does not take.  (The run itself is the paper's protocol: hours on a
CPU; its quick form is exercised by hand and on GPU machines, see benchmarks/results/paper_gpu.json.)"""

import pytest

from workbench import bench, bench_paper
from workbench.errors import UserInputError


def test_settings_parse_toml_values_and_reject_malformed_items():
    got = bench.parse_set_options(["md.sampling_ps=16", "run.precision=float32", "md.time_reversal=false",
                                   "loss.ir.ranges_cm=[[0.0, 1000.0]]"], "paper")
    assert got == {"md.sampling_ps": 16, "run.precision": "float32", "md.time_reversal": False,
                   "loss.ir.ranges_cm": [[0.0, 1000.0]]}
    with pytest.raises(UserInputError, match="bench paper: --set 'md.sampling_ps': expected KEY=VALUE"):
        bench.parse_set_options(["md.sampling_ps"], "paper")


def test_pretrained_lengths_take_typed_overrides_and_name_bad_ones():
    from workbench import bench_pretrained

    got = bench_pretrained.parse_settings(["stability_ps=20", "ir=false", "ir_n_windows=8"], quick=False)
    assert (got["stability_ps"], got["ir"], got["ir_n_windows"]) == (20.0, False, 8)
    for item, message in (("ir=yes", "ir must be true or false"), ("ir_n_windows=2.5", "must be an integer"),
                          ("stability_ps=long", "stability_ps must be a number"),
                          ("steps=3", "KEY one of stability_ps")):
        with pytest.raises(UserInputError, match=message):
            bench_pretrained.parse_settings([item], quick=True)


def test_twin_size_overrides_are_typed():
    import dataclasses

    from workbench import bench_twin
    from workbench.bench import override

    full = dataclasses.asdict(bench_twin.SIZES["full"])
    got = override(full, ["n_windows=32", "lr=1", "schedule='constant'"], "twin")
    assert (got["n_windows"], got["lr"], got["schedule"], got["iterations"]) == (32, 1.0, "constant", 24)
    assert isinstance(got["lr"], float)
    for item, message in (("n_windows=true", "n_windows must be an integer"),
                          ("schedule=3", "must be a string"), ("windows=3", "KEY one of iterations")):
        with pytest.raises(UserInputError, match=f"bench twin: .*{message}"):
            override(full, [item], "twin")


def _events(clock, times, n_batches=3):
    """Feed one update's stage events at the given clock times (seconds after the clock's start)."""
    stamps = iter(times)

    def at(event):
        clock.t0 = bench_paper.time.perf_counter() - next(stamps)
        clock(event)

    at({"kind": "stage", "iteration": 1, "stage": "sampling", "done": 0, "total": 1})
    at({"kind": "stage", "iteration": 1, "stage": "sampling", "done": 1, "total": 1})
    for stage in ("windows", "gradient"):
        for k in range(n_batches):
            at({"kind": "stage", "iteration": 1, "stage": stage, "done": k + 1, "total": n_batches})
    at({"kind": "iteration", "iteration": 1, "wall_time_s": 31.0, "loss": {"ir": 5.0, "total": 5.0},
        "grad_norm": {"total": 2.0}, "temperature_K": 300.0, "reversal_error": [0.0, 0.0], "bands": {}})


def test_stage_clock_splits_an_update_and_estimates_its_steady_cost():
    clock = bench_paper.StageClock()
    # sampling 10 → 12 s; windows batches end at 20 (compiling), 21, 22; gradient at 35, 37, 39; done 40
    _events(clock, [10, 12, 20, 21, 22, 35, 37, 39, 40])
    (u,) = clock.updates
    near = pytest.approx  # the clock reads perf_counter: allow a few ms
    assert (u["sampling_s"], u["windows_s"], u["gradient_s"]) == near((2.0, 10.0, 17.0), abs=0.01)
    assert (u["batch_s"]["windows"], u["batch_s"]["gradient"]) == near((1.0, 2.0), abs=0.01)
    steady = bench_paper.steady_estimate(clock.updates)
    assert steady["wall_s"] == near(2.0 + 3 * 1.0 + 3 * 2.0, abs=0.05)
    assert clock.partial() is None


def test_an_update_cut_short_is_reported_as_partial():
    clock = bench_paper.StageClock()
    _events(clock, [10, 12, 20, 21, 22, 35, 37, 39, 40])
    stamps = iter([41, 43, 50])
    for stage, done in (("sampling", 0), ("sampling", 1), ("windows", 1)):
        clock.t0 = bench_paper.time.perf_counter() - next(stamps)
        clock({"kind": "stage", "iteration": 2, "stage": stage, "done": done, "total": 3})
    part = clock.partial()
    assert part["iteration"] == 2 and part["batch_ends_s"]["windows"] == [pytest.approx(9.0, abs=0.01)]


def test_benchmarks_refuse_options_they_do_not_take():
    with pytest.raises(UserInputError, match="takes no --precision"):
        bench.run("md", quick=True, precision="float32")
    with pytest.raises(UserInputError, match="takes no --set option"):
        bench.run("md", quick=True, settings=["x=1"])


def test_stage_clock_adds_up_compilation_per_program_from_jax_monitoring():
    import jax
    import jax.numpy as jnp

    clock = bench_paper.StageClock()
    clock({"kind": "stage", "iteration": 1, "stage": "sampling", "done": 0, "total": 1})
    clock.compiled(bench_paper.COMPILE_EVENT, 12.0, fun_name="_sharded_vjp")
    clock.compiled(bench_paper.COMPILE_EVENT, 0.1, fun_name="_where")
    clock.compiled("/jax/some/other/event", 99.0, fun_name="_sharded_vjp")
    jax.monitoring.register_event_duration_secs_listener(clock.compiled)
    try:  # a real compilation reaches the clock under JAX's event name
        jax.jit(lambda x: jnp.sin(x) * 3.25 + 0.5)(jnp.arange(7.0)).block_until_ready()
    finally:
        jax.monitoring.unregister_event_duration_listener(clock.compiled)
    assert clock.partial()["compile_s"]["_sharded_vjp"] == 12.0
    assert clock.partial()["compile_s"]["other"] > 0.1


def test_profile_traces_the_last_updates_gradient_pass_and_names_its_xla_ops(tmp_path):
    import jax
    import jax.numpy as jnp

    clock = bench_paper.StageClock(tmp_path, profile_update=2)
    square = jax.jit(lambda x: jnp.sin(x) @ x)
    x = jnp.ones((64, 64))
    square(x).block_until_ready()
    for k in (1, 2):  # update 1 is not traced, update 2's gradient pass is
        clock({"kind": "stage", "iteration": k, "stage": "sampling", "done": 0, "total": 1})
        clock({"kind": "stage", "iteration": k, "stage": "sampling", "done": 1, "total": 1})
        clock({"kind": "stage", "iteration": k, "stage": "windows", "done": 1, "total": 1})
        assert clock._tracing == (k == 2)
        square(x).block_until_ready()
        clock({"kind": "stage", "iteration": k, "stage": "gradient", "done": 1, "total": 1})
    assert not clock._tracing
    (host,) = [p for name, p in clock.profile["processes"].items() if "CPU" in name]
    ops = [row[0] for row in host["top_xla_ops"]]
    assert host["xla_calls"] >= 1 and any("fusion" in op or "dot" in op or "sin" in op for op in ops), ops
    assert bench_paper.trace_summary(tmp_path / "empty") == {"error": f"no perfetto_trace.json.gz under "
                                                                      f"{tmp_path / 'empty'}"}
