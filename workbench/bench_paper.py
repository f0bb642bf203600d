"""``workbench bench paper``: the seed paper's IR refinement protocol, timed update by update.

Runs :data:`CONFIG` (``examples/water_ir_paper.toml``: Han & Yu's protocol — 64 H2O at 298.15 K,
their DFT-trained EANN with the DeePMD DeepDipole fixed, 320 NVT starting frames, each run forward
and time-reversed for 400 × 0.5 fs (640 NVE windows, τ = 0.2 ps), adjoint gradients, the weighted
(cm⁻¹)² loss against the experimental spectrum, Adam 5e-5) with the ordinary :class:`Trainer`,
for ``--iterations`` updates or until ``--budget-s`` seconds have passed (the stop is honoured
between window batches, as a user's stop is).  The models are read from the shared data folder
(``models.SHARED_DATA``).

Reported per completed update (from the trainer's events, time-stamped as they arrive):

- ``wall_s`` (the trainer's own ``wall_time_s``) and its parts ``sampling_s`` (NVT for the
  starting frames), ``windows_s`` (pair lists of the starts + pass 1: all windows forward),
  ``gradient_s`` (the loss's cotangents + pass 2: the adjoint VJP of every batch);
- ``loss`` (the IR term, (cm⁻¹)²), ``grad_norm``, NVT temperature, reversal error;
- ``bands``: maxima (cm⁻¹) of the simulated and experimental stretch, bend and libration bands;
- ``compile_s``: XLA compilation inside the update, seconds per compiled program (JAX's own
  backend-compile durations; programs under 0.5 s are summed as ``"other"``), also logged as each
  compilation ends, so a run cut short still shows what it was compiling.

The first update includes JIT compilation; ``steady`` is the mean over the later updates and, when
there is only one, an estimate from its window batches after the first (the first batch of each
pass compiles): ``sampling_s + n_batches × (median later batch of each pass)``.  An update cut
short by the budget is reported as ``partial`` (the stages it finished).

Options (``workbench bench paper ...``): ``--precision`` (run.precision), ``--iterations``,
``--budget-s``, ``--set SECTION.KEY=VALUE`` (any config key, TOML value syntax, e.g.
``--set md.sampling_ps=16``), ``--profile DIR``: a JAX profiler trace (XPlane + Perfetto JSON, for
TensorBoard/Perfetto) of the **last** update's gradient pass in DIR — with ``--iterations`` ≥ 2 it
holds execution only, no compilation — summarised in the result as ``profile``: the busiest XLA
operations per trace process (``trace_summary``: for a GPU the device's kernels, named by HLO op).

Quick (``--quick``): 2 frames → 4 windows of 40 steps, 0.1 ps of
sampling and one update: the code path, not the paper's size; 2–3 minutes on 2 CPU cores, over the
60 s quick budget, because compiling the EANN + DeepDipole adjoint alone takes about a minute there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from workbench.bench import parse_set_options
from workbench.errors import UserInputError

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "water_ir_paper.toml"
QUICK = {"md.n_windows": 2, "md.truncation_fs": 20.0, "md.sampling_ps": 0.1, "md.equilibrate_ps": 0.05,
         "md.window_batch": 0}
MODEL_FILES = {"system.model": "eann_water_dft_start.npz", "dipole.model": "deepdipole_water.npz"}


def paper_config(quick: bool, precision: str, iterations: int, settings: dict, run_dir):
    """The example config with the shared-data models, ``run`` set as given and ``settings`` applied."""
    from workbench.models import SHARED_DATA
    from workbench.refine import load_config

    changes = {}
    for key, name in MODEL_FILES.items():
        path = SHARED_DATA / name
        if not path.exists():
            raise UserInputError(f"the paper benchmark needs {path} (../shared/data, project machines only; "
                                 f"WORKBENCH_SHARED_DATA names another folder)")
        changes[key] = str(path)
    changes.update({"run.precision": precision, "run.iterations": iterations, "run.dir": str(run_dir)})
    changes.update(QUICK if quick else {})
    changes.update(settings)
    return load_config(CONFIG).replace(**changes)


COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch.BACKEND_COMPILE_EVENT


class StageClock:
    """Subscriber that time-stamps the trainer's events and splits each update into its stages; as a
    JAX duration listener (:meth:`compiled`) it also adds up XLA compilation per program."""

    def __init__(self, profile_dir=None, profile_update: int = 0):
        self.t0 = time.perf_counter()
        self.profile_dir, self.profile_update, self.profile = profile_dir, profile_update, None
        self._tracing = False
        self.updates: list[dict] = []
        self.batches = {"windows": [], "gradient": []}
        self._marks: dict = {}
        self._compile: dict[str, float] = {}
        self.equilibrate_s = None

    def compiled(self, event: str, duration_s: float, fun_name: str = "other", **_) -> None:
        """``jax.monitoring`` duration listener: one backend compilation of ``fun_name`` finished."""
        if event != COMPILE_EVENT:
            return
        name = fun_name if duration_s >= 0.5 else "other"
        self._compile[name] = self._compile.get(name, 0.0) + duration_s
        if name != "other":
            print(f"{time.perf_counter() - self.t0:8.1f} s  compiled {fun_name} in {duration_s:.1f} s",
                  file=sys.stderr, flush=True)

    def __call__(self, event: dict) -> None:
        now = time.perf_counter() - self.t0
        kind = event["kind"]
        if kind == "stage":
            print(f"{now:8.1f} s  update {event['iteration']} {event['stage']} "
                  f"{event['done']}/{event['total']}", file=sys.stderr, flush=True)
        if kind == "stage":
            stage, done = event["stage"], event["done"]
            if stage == "equilibrate":
                self._marks["equilibrate" if done == 0 else "equilibrated"] = now
                if done == 1:
                    self.equilibrate_s = now - self._marks["equilibrate"]
                return
            if stage == "sampling" and done == 0:
                self._marks = {"start": now}
                self._compile = {}
                self.batches = {"windows": [], "gradient": []}
            elif stage == "sampling":
                self._marks["sampled"] = now
            else:
                self.batches[stage].append(now)
                self._marks[stage] = now
                if event["iteration"] == self.profile_update and done == event["total"]:
                    self._profile(stage)
        elif kind == "iteration":
            self.updates.append(self._update(event, now))
            u = self.updates[-1]
            print(f"update {u['iteration']}: {u['wall_s']:.1f} s (sampling {u['sampling_s']:.1f}, windows "
                  f"{u['windows_s']:.1f}, gradient {u['gradient_s']:.1f}), loss {u['loss']:.4g}",
                  file=sys.stderr, flush=True)

    def _update(self, event: dict, now: float) -> dict:
        m = self._marks
        loss = event["loss"]
        bands = {name: {"sim_cm-1": b["position_sim"], "exp_cm-1": b["position_target"],
                        "height_sim": b["height_sim"], "height_exp": b["height_target"]}
                 for name, b in (event.get("bands") or {}).items()}
        return {"iteration": event["iteration"], "wall_s": round(event["wall_time_s"], 3),
                "sampling_s": round(m["sampled"] - m["start"], 3),
                "windows_s": round(m["windows"] - m["sampled"], 3),
                "gradient_s": round(m["gradient"] - m["windows"], 3),
                "batches": {s: len(t) for s, t in self.batches.items()},
                "batch_s": {s: _steady_batch(m["sampled"] if s == "windows" else m["windows"], t)
                            for s, t in self.batches.items()},
                "loss": loss.get("ir", loss["total"]), "grad_norm": event["grad_norm"]["total"],
                "temperature_K": event["temperature_K"], "reversal_error": event["reversal_error"],
                "bands": bands, "elapsed_s": round(now, 1),
                "compile_s": {k: round(v, 2) for k, v in sorted(self._compile.items())}}

    def _profile(self, stage: str) -> None:
        """Trace from the end of the windows pass to the end of the gradient pass."""
        import jax

        if stage == "windows" and self.profile_dir is not None:
            jax.profiler.start_trace(str(self.profile_dir), create_perfetto_trace=True)
            self._tracing = True
        elif stage == "gradient":
            self.stop_profile()

    def stop_profile(self) -> None:
        """End a trace under way (the run may stop inside the traced pass) and summarise it."""
        if self._tracing:
            import jax

            jax.profiler.stop_trace()
            self._tracing = False
            self.profile = trace_summary(self.profile_dir)

    def partial(self) -> dict | None:
        """The stages of an update cut short (None if none was under way)."""
        start = self._marks.get("start")
        if start is None or (self.updates and start < self.updates[-1]["elapsed_s"]):
            return None
        return {"iteration": len(self.updates) + 1,
                "compile_s": {k: round(v, 2) for k, v in sorted(self._compile.items())},
                "marks_s": {k: round(v - start, 3) for k, v in self._marks.items()},
                "batch_ends_s": {s: [round(t - start, 3) for t in ts] for s, ts in self.batches.items()}}


def trace_summary(trace_dir, top: int = 12) -> dict:
    """The newest Perfetto trace under ``trace_dir`` summarised: per trace process (host, each
    device), the XLA operations (events carrying an ``hlo_op``) with the largest total time —
    ``[name, calls, total ms, mean µs]`` — their total and count, and the process's busiest events
    of any kind (host-side waits and copies show there)."""
    import gzip
    import json

    traces = sorted(Path(trace_dir).glob("**/perfetto_trace.json.gz"), key=lambda f: f.stat().st_mtime)
    if not traces:
        return {"error": f"no perfetto_trace.json.gz under {trace_dir}"}
    with gzip.open(traces[-1], "rt") as fh:
        events = json.load(fh)["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    per: dict = {}
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        proc = per.setdefault(names.get(e["pid"], str(e["pid"])), {"xla": {}, "any": {}})
        op = (e.get("args") or {}).get("hlo_op")
        for table, key in ((proc["xla"], op), (proc["any"], e["name"])):
            if key is not None:
                n, total = table.get(key, (0, 0.0))
                table[key] = (n + 1, total + float(e["dur"]))

    def rows(table):
        best = sorted(table.items(), key=lambda kv: -kv[1][1])[:top]
        return [[name, n, round(t / 1e3, 3), round(t / n, 2)] for name, (n, t) in best]

    return {"trace": str(traces[-1]),
            "processes": {proc: {"xla_ops_ms": round(sum(t for _, t in d["xla"].values()) / 1e3, 3),
                                 "xla_calls": sum(n for n, _ in d["xla"].values()),
                                 "top_xla_ops": rows(d["xla"]), "top_events": rows(d["any"])}
                          for proc, d in per.items()}}


def _steady_batch(start: float, stamps: list[float]) -> float | None:
    """Median duration of a pass's batches after the first (which compiles); None with one batch."""
    times = np.diff([start, *stamps])
    return round(float(np.median(times[1:])), 4) if len(times) > 1 else None


def steady_estimate(updates: list[dict]) -> dict | None:
    """Per-update time without compilation: mean of updates 2.. if any, else from update 1's later
    batches (module docstring)."""
    if len(updates) > 1:
        later = updates[1:]
        return {"source": f"mean of updates 2..{len(updates)}",
                **{k: round(float(np.mean([u[k] for u in later])), 3)
                   for k in ("wall_s", "sampling_s", "windows_s", "gradient_s")}}
    if not updates or None in updates[0]["batch_s"].values():
        return None
    u = updates[0]
    windows = u["batches"]["windows"] * u["batch_s"]["windows"]
    gradient = u["batches"]["gradient"] * u["batch_s"]["gradient"]
    return {"source": "update 1 without the first batch of each pass (compilation)",
            "wall_s": round(u["sampling_s"] + windows + gradient, 3), "sampling_s": u["sampling_s"],
            "windows_s": round(windows, 3), "gradient_s": round(gradient, 3)}


def run(quick: bool, precision: str = "auto", iterations: int | None = None, budget_s: float | None = None,
        settings=(), profile: str | None = None) -> dict:
    import tempfile

    import jax

    from workbench import devices
    from workbench.refine import Trainer

    iterations = iterations or (1 if quick else 100)
    clock = StageClock(profile, iterations if profile else 0)
    deadline = None if budget_s is None else clock.t0 + float(budget_s)
    jax.monitoring.register_event_duration_secs_listener(clock.compiled)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_paper_") as tmp:
            config = paper_config(quick, precision, iterations, parse_set_options(settings, "paper"),
                                  Path(tmp) / "run")
            trainer = Trainer(config, subscribers=[clock],
                              stop_requested=lambda: deadline is not None and time.perf_counter() > deadline)
            result = trainer.run()
    finally:
        jax.monitoring.unregister_event_duration_listener(clock.compiled)
        clock.stop_profile()
    md = config.md
    return {
        "system": "64 H2O, seed EANN + DeepDipole (examples/water_ir_paper.toml)",
        "device_kind": jax.devices()[0].device_kind, "n_devices": jax.device_count(),
        "precision": devices.resolve_precision(config.run.precision),
        "n_frames": md.n_windows, "n_windows": md.n_runs, "window_steps": md.window_steps,
        "dt_fs": md.dt_fs, "sampling_ps": md.sampling_ps, "equilibrate_ps": md.equilibrate_ps,
        "window_batch": md.window_batch, "budget_s": budget_s, "status": result.status,
        "equilibrate_s": clock.equilibrate_s, "updates": clock.updates,
        "steady": steady_estimate(clock.updates), "partial": clock.partial(), "profile": clock.profile,
    }
