"""Dashboard state for a refinement: controls → a ``RefineConfig``, the trainer in a background job,
its events → live plots, band table, progress/ETA and log; stop, resume and export.

The trainer (``workbench.refine``) knows nothing about the UI: it gets ``emit`` (the job queue's
``put``) as its only subscriber.  Everything shown is taken from its events (see
``workbench.refine.events``); the config starts from ``refine.presets.quick_demo``.
"""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import param

from workbench.refine import refinement_job, to_toml
from workbench.refine.presets import potential_group, quick_demo, quick_demo_dict
from workbench.ui.inputs import InputsState
from workbench.ui.jobs import BackgroundJob
from workbench.ui.plots import empty_spectrum, trace_frame

LOG_LINES = 300
_DEMO = quick_demo_dict()


class RefineRunState(param.Parameterized):
    """Controls, live data and files of one session's refinement."""

    iterations = param.Integer(_DEMO["run"]["iterations"], bounds=(1, 10_000))
    truncation_fs = param.Number(_DEMO["md"]["truncation_fs"], bounds=(5.0, 2000.0),
                                 doc="window length τ: TCF length and gradient truncation (fs)")
    n_windows = param.Integer(_DEMO["md"]["n_windows"], bounds=(1, 512),
                              doc="starting frames per iteration (×2 windows with time reversal)")
    estimator = param.Selector(objects=["adjoint", "checkpoint", "direct"], default=_DEMO["md"]["estimator"])
    precision = param.Selector(objects=["float32", "float64"], default=_DEMO["run"]["precision"])
    ir_mode = param.Selector(objects=["absolute", "shape"], default="absolute",
                             doc="compare n·α, or each range normalised by its area")
    ir_weight = param.Number(1.0, bounds=(0.0, None))
    weight_below_1000 = param.Number(10.0, bounds=(0.0, None), doc="IR range 0–1000 cm⁻¹")
    weight_above_1000 = param.Number(1.0, bounds=(0.0, None), doc="IR range 1000–4000 cm⁻¹")
    diffusion_weight = param.Number(0.0, bounds=(0.0, None))
    diffusion_target = param.Number(2.30, bounds=(0.01, 100.0), doc="target D (1e-9 m²/s)")
    rdf_weight = param.Number(0.0, bounds=(0.0, None), doc="O–O g(r) by reweighting (needs an RDF target)")
    force_matching_weight = param.Number(0.0, bounds=(0.0, None),
                                         doc="force-matching regulariser (needs reference frames)")
    l2_weight = param.Number(_DEMO["loss"]["l2"]["weight"], bounds=(0.0, None),
                             doc="L2 regulariser on the parameter change")
    learning_rate = param.Number(_DEMO["train"]["potential"]["lr"], bounds=(0.0, None),
                                 doc="potential group (per iteration, optimiser units)")
    train_dipole = param.Boolean(True, doc="also train the charge-flux dipole model (intensities)")
    dipole_learning_rate = param.Number(_DEMO["train"]["dipole"]["lr"], bounds=(0.0, None))

    status = param.String("ready: quick CPU demo settings")
    progress = param.Integer(0, bounds=(0, 100))
    running = param.Boolean(False)
    can_resume = param.Boolean(False)
    has_results = param.Boolean(False)
    event_log = param.String("")
    bands = param.DataFrame(pd.DataFrame())

    def __init__(self, inputs: InputsState, runs_root, **params):
        super().__init__(**params)
        self.inputs = inputs
        self.runs_root = Path(runs_root)
        self.run_dir: Path | None = None
        self.grad_norms = hv.streams.Pipe(data=trace_frame(["total"]))
        self.losses = hv.streams.Pipe(data=trace_frame(["total"]))
        self.spectrum = hv.streams.Pipe(data=empty_spectrum())
        self._job: BackgroundJob | None = None
        self._target = None
        self._ranges: list = []
        self._grad_rows: list[dict] = []
        self._loss_rows: list[dict] = []
        self._last_spectrum = None
        self._iteration_times: list[float] = []  # trainer-reported wall time of each iteration (s)
        self._total = self.iterations
        self._log: list[str] = []
        self.inputs.param.watch(lambda _e: self.preview(), ["revision"])
        self.inputs.param.watch(lambda _e: self._model_changed(), ["model"])
        self.param.watch(lambda _e: self.preview(), ["weight_below_1000", "weight_above_1000"])
        self.preview()

    def preview(self) -> None:
        """Before a run: show the target spectrum and the loss ranges the controls would use."""
        if self.running or self.has_results:
            return
        exp = self.inputs.experiment
        self._target = (exp.wavenumber, exp.values)
        try:
            self._ranges = _loss_ranges(self.config())
        except ValueError:  # an invalid control: start() reports it
            pass
        self._send_spectrum()

    def _model_changed(self) -> None:
        """A new model brings its own learning-rate scale (force-field factors vs network weights)."""
        self.learning_rate = potential_group(self.inputs.model_spec)["lr"]

    # -- configuration -------------------------------------------------------------------------
    def quick_demo_preset(self) -> None:
        """Reset every control to the quick CPU demo."""
        for name in _CONTROLS:
            setattr(self, name, self.param[name].default)
        self._model_changed()

    def config(self):
        """The ``RefineConfig`` the controls describe (validated; ``ConfigError`` on a bad value)."""
        spec = self.inputs.model_spec
        group = potential_group(spec)
        group["lr"] = self.learning_rate
        return quick_demo(spec, **{
            "run.iterations": self.iterations, "run.precision": self.precision,
            "system.temperature_K": self.inputs.temperature,
            "md.truncation_fs": self.truncation_fs, "md.n_windows": self.n_windows,
            "md.sampling_ps": max(0.05, 0.1 * self.n_windows), "md.estimator": self.estimator,
            "loss.ir.weight": self.ir_weight, "loss.ir.mode": self.ir_mode,
            "loss.ir.target": self.inputs.ir_target,
            "loss.ir.range_weights": [self.weight_below_1000, self.weight_above_1000],
            "loss.diffusion.weight": self.diffusion_weight,
            "loss.diffusion.target_nm2_per_ps": self.diffusion_target * 1e-9 * 1e6,
            "loss.rdf.weight": self.rdf_weight,
            "loss.rdf.target": str(self.inputs.rdf_target or ""),
            "loss.force_matching.weight": self.force_matching_weight,
            "loss.force_matching.data": str(self.inputs.reference_frames or ""),
            "loss.l2.weight": self.l2_weight,
            "train.potential": group,
            "train.dipole.enabled": self.train_dipole, "train.dipole.lr": self.dipole_learning_rate,
        })

    def config_toml(self) -> str:
        """A TOML file that reproduces the run from the CLI (``workbench refine FILE``)."""
        return to_toml(self.config().replace(**{"run.dir": None}))

    # -- actions --------------------------------------------------------------------------------
    def start(self) -> None:
        """Launch a new refinement with the current controls (in a fresh run directory)."""
        if self.running:
            return
        try:
            config = self.config()
        except ValueError as err:
            self.status = f"error: {err}"
            return
        self.run_dir = self.runs_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._reset(config.run.iterations)
        self._ranges = _loss_ranges(config)
        self._launch(refinement_job(config, self.run_dir), f"refinement started in {self.run_dir}")

    def resume(self) -> None:
        """Continue the last run from its newest checkpoint (exactly, as ``workbench refine --resume``)."""
        if self.running or self.run_dir is None:
            return
        self._launch(refinement_job(run_dir=self.run_dir, resume=True), f"resuming {self.run_dir}")

    def stop(self) -> None:
        if self._job is not None and self.running:
            self._job.stop()
            self.status = "stopping after the current window …"

    def _reset(self, total: int) -> None:
        self._grad_rows, self._loss_rows, self._iteration_times, self._log = [], [], [], []
        self._total, self._last_spectrum, self.has_results = total, None, False
        self.grad_norms.send(trace_frame(["total"]))
        self.losses.send(trace_frame(["total"]))
        self.bands, self.progress, self.event_log = pd.DataFrame(), 0, ""

    def _launch(self, job, message: str) -> None:
        self.running, self.can_resume = True, False
        self._append_log(message)
        self.status = message
        self._job = BackgroundJob(job, name="refine").start()

    # -- events ---------------------------------------------------------------------------------
    def poll(self) -> None:
        """Apply pending trainer events (call on the server's event loop only)."""
        if self._job is None:
            return
        for event in self._job.drain():
            handler = getattr(self, f"_on_{event['kind']}", None)
            if handler is not None:
                handler(event)

    def _on_queued(self, event):
        self.status = event["message"]
        self._append_log(event["message"])

    def _on_start(self, event):
        self._total = event["iterations"]
        if event.get("target_spectrum"):
            t = event["target_spectrum"]
            self._target = (np.asarray(t["wavenumber"]), np.asarray(t["values"]))
        sizes = ", ".join(f"{g}: {n}" for g, n in event["n_params"].items())
        how = "resumed at" if event["resumed"] else "start,"
        self._append_log(f"{how} iteration {event['iteration']} of {event['iterations']}; "
                         f"trained parameters {sizes}")
        self._send_spectrum()

    def _on_stage(self, event):
        done_iters = max(0, event["iteration"] - 1)
        fraction = event["done"] / max(event["total"], 1)
        self.progress = int(100 * min(1.0, (done_iters + fraction) / max(self._total, 1)))
        self.status = (f"iteration {event['iteration']}/{self._total}: {event['stage']} "
                       f"{event['done']}/{event['total']}{self._eta(event['iteration'])}")

    def _on_iteration(self, event):
        it = event["iteration"]
        self._grad_rows.append({"iteration": it, **event["grad_norm"]})
        self._loss_rows.append({"iteration": it, **event["loss"]})
        self.grad_norms.send(pd.DataFrame(self._grad_rows))
        self.losses.send(pd.DataFrame(self._loss_rows))
        self._iteration_times.append(event["wall_time_s"])
        if event.get("spectrum"):
            s = event["spectrum"]
            self._last_spectrum = (np.asarray(s["wavenumber"]), np.asarray(s["simulated"]))
        self.bands = _band_frame(event.get("bands") or {})
        self._send_spectrum(event.get("bands") or {}, it)
        self.progress = int(100 * it / max(self._total, 1))
        self.has_results = True
        losses = ", ".join(f"{k} {v:.4g}" for k, v in event["loss"].items() if v is not None)
        warnings = "".join(f"; ⚠ {w}" for w in event.get("warnings", []))
        self._append_log(f"iteration {it}: {losses}; ‖g‖ {event['grad_norm']['total']:.3g}; "
                         f"{event['wall_time_s']:.1f} s{warnings}")
        self.status = f"iteration {it}/{self._total} done{self._eta(it + 1)}"

    def _on_rollback(self, event):
        self._append_log(f"rollback at iteration {event['iteration']}: {event['reason']} (back to "
                         f"{event['restored_iteration']}, learning rate × {event['lr_factor']:g})")

    def _on_run_end(self, event):
        self._append_log(f"run {event['status']}: {event['message']}")

    def _on_finished(self, _event):
        self._end(f"finished: {len(self._grad_rows)} iterations; files in {self.run_dir}")

    def _on_stopped(self, _event):
        self._end("stopped: press Resume to continue from the last checkpoint")

    def _on_error(self, event):
        self._end(f"error: {event['message']}")

    def _end(self, message: str) -> None:
        self.running = False
        self.can_resume = self.run_dir is not None and (self.run_dir / "checkpoints").exists()
        self.status = message
        self._append_log(message)

    def _eta(self, next_iteration: int) -> str:
        if len(self._iteration_times) < 1:
            return ""
        recent = self._iteration_times[-3:]
        left = max(0, self._total - next_iteration + 1) * float(np.mean(recent))
        return f" — about {left:.0f} s left" if left else ""

    def _send_spectrum(self, bands: dict | None = None, iteration: int | None = None) -> None:
        data = empty_spectrum()
        data["experiment"] = self._target
        data["ranges"] = self._ranges
        if self._last_spectrum is not None:
            data["simulated"] = self._last_spectrum
            data["label"] = f"simulated, iteration {iteration}"
            data["bands"] = {n: (b["position_sim"], b["height_sim"]) for n, b in (bands or {}).items()}
        self.spectrum.send(data)

    def _append_log(self, line: str) -> None:
        self._log = (self._log + [f"{time.strftime('%H:%M:%S')}  {line}"])[-LOG_LINES:]
        self.event_log = "\n".join(self._log)

    # -- export ---------------------------------------------------------------------------------
    def model_bytes(self) -> io.BytesIO:
        """The refined model: ``model.npz`` (EANN) or ``params.json`` + ``dipole.json``, zipped with the
        run's ``config.toml`` and ``summary.json``."""
        return self._zip(["model.npz", "params.json", "dipole.json", "config.toml", "summary.json"])

    def plots_bytes(self) -> io.BytesIO:
        """The run's PNG plots (loss, gradient norm, spectra), zipped."""
        return self._zip(["loss.png", "grad_norm.png", "spectrum.png"])

    def spectrum_csv_bytes(self) -> io.BytesIO:
        """The last simulated spectrum (n·α, cm⁻¹) as CSV."""
        from workbench.observables.spectrum_io import Spectrum, write_spectrum_csv

        if self._last_spectrum is None or self.run_dir is None:
            raise ValueError("no refinement spectrum yet")
        path = self.run_dir / "last_spectrum.csv"
        spectrum = Spectrum(*self._last_spectrum, "n_alpha", source=f"workbench refine {self.run_dir}")
        write_spectrum_csv(spectrum, path, comments=[f"after iteration {len(self._grad_rows)}"])
        return io.BytesIO(path.read_bytes())

    @property
    def iteration_times(self) -> list[float]:
        """Wall time (s) of each iteration of the current run, as the trainer reported it."""
        return list(self._iteration_times)

    def config_bytes(self) -> io.BytesIO:
        return io.BytesIO(self.config_toml().encode())

    def _zip(self, names) -> io.BytesIO:
        if self.run_dir is None:
            raise ValueError("no refinement run yet")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                if (self.run_dir / name).exists():
                    zf.write(self.run_dir / name, name)
        buf.seek(0)
        return buf

    def shutdown(self) -> None:
        if self._job is not None:
            self._job.stop()


#: The user controls (reset by the quick-demo preset; passed to ``config``).
_CONTROLS = ("iterations", "truncation_fs", "n_windows", "estimator", "precision", "ir_mode", "ir_weight",
             "weight_below_1000", "weight_above_1000", "diffusion_weight", "diffusion_target", "rdf_weight",
             "force_matching_weight", "l2_weight",
             "learning_rate", "train_dipole", "dipole_learning_rate")


def _loss_ranges(config) -> list[tuple[float, float, float]]:
    """(low, high, weight) of each IR loss range (cm⁻¹)."""
    ir = config.loss.ir
    return [(lo, hi, w) for (lo, hi), w in zip(ir.ranges_cm, ir.range_weights, strict=True)]


def _band_frame(bands: dict) -> pd.DataFrame:
    """Band metrics of an iteration event as a table (cm⁻¹)."""
    rows = [{"band": n, "position sim": b["position_sim"], "position target": b["position_target"],
             "FWHM sim": b["fwhm_sim"], "FWHM target": b["fwhm_target"], "height sim": b["height_sim"],
             "height target": b["height_target"]} for n, b in bands.items()]
    return pd.DataFrame(rows)
