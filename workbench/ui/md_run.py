"""Dashboard state for running MD on the shipped demo and watching energy and temperature live.

``MDRunState`` (param.Parameterized) holds the choices and the run status and is testable without
a browser: ``start()`` launches the run in a ``BackgroundJob``; ``poll()`` (called periodically on
the server's event loop) applies the job's events to ``hv.streams.Buffer`` streams.  No physics
lives here: the run is ``workbench.md.simulate`` with the chosen model.
"""

from __future__ import annotations

import holoviews as hv
import pandas as pd
import param

from workbench import models
from workbench.md import MDConfig, simulate
from workbench.ui.jobs import JobState

TRACE_COLUMNS = ["time_ps", "temperature_K", "potential_energy", "total_energy"]


class MDRunState(JobState):
    """Choices and status of one MD run (one instance per browser session)."""

    model = param.Selector(objects=list(models.MODEL_CHOICES), default=models.DEFAULT_MODEL,
                           doc="potential to run")
    temperature = param.Number(298.15, bounds=(200.0, 400.0), doc="K")
    time_ps = param.Number(0.5, bounds=(0.05, 20.0), doc="simulated time, ps")
    dt_fs = param.Number(0.5, bounds=(0.1, 1.0), doc="time step, fs")
    ensemble = param.Selector(objects=["nvt", "nve"], default="nvt")

    stopping_message = "stopping after the current chunk …"

    def __init__(self, **params):
        super().__init__(**params)
        self.trace = hv.streams.Buffer(pd.DataFrame({c: [] for c in TRACE_COLUMNS}), length=100_000,
                                       index=False)
        self.system = models.default_system()

    # -- actions --------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.trace.clear()
        self.progress = 0
        config = MDConfig(ensemble=self.ensemble, temperature_K=self.temperature, dt=self.dt_fs * 1e-3,
                          sample_every=20, chunk_frames=5)
        n_steps = max(config.sample_every, int(round(self.time_ps / config.dt)))
        model, system = self.model, self.system

        def work(emit, stop_requested):
            emit({"kind": "status", "message": f"compiling {model} …"})
            potential = models.load_potential(model, system)
            simulate(potential, system, n_steps, config,
                     progress=lambda done, total, stage: emit(
                         {"kind": "progress", "percent": int(100 * done / total)}),
                     on_chunk=lambda summary: emit({"kind": "frames", **summary}),
                     stop_requested=stop_requested)

        self.launch(work, "md-run", f"running {model}, {self.time_ps} ps at {self.temperature} K")

    def on_event(self, event: dict) -> None:
        if event["kind"] != "frames":
            super().on_event(event)
            return
        self.trace.send(pd.DataFrame({c: event[c] for c in TRACE_COLUMNS}))

    def on_end(self, kind: str, event: dict) -> None:
        if kind == "error":
            super().on_end(kind, event)
        else:
            self.status = f"{kind}: {self.model}, last T = {self._last('temperature_K'):.1f} K"

    def _last(self, column: str) -> float:
        data = self.trace.data
        return float(data[column].iloc[-1]) if len(data) else float("nan")

    # -- plots ------------------------------------------------------------------------------------
    def temperature_plot(self):
        return hv.DynamicMap(lambda data: hv.Curve(data, "time_ps", "temperature_K"),
                             streams=[self.trace]).opts(
            responsive=True, height=260, xlabel="t (ps)", ylabel="T (K)", title="Temperature",
            framewise=True)

    def energy_plot(self):
        def curves(data):
            return (hv.Curve(data, "time_ps", "potential_energy", label="potential")
                    * hv.Curve(data, "time_ps", "total_energy", label="total"))

        return hv.DynamicMap(curves, streams=[self.trace]).opts(
            hv.opts.Curve(responsive=True, height=260, xlabel="t (ps)", ylabel="E (kJ/mol)",
                          framewise=True),
            hv.opts.Overlay(title="Energy", legend_position="bottom_right"))
