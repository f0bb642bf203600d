"""Dashboard state for "compute spectrum": the session's model through the IR protocol, overlaid on the
experimental spectrum.  The physics is ``workbench.protocol.simulated_spectrum`` with the
"interactive" preset (about 5000 MD steps in float32) at the session's temperature.
"""

from __future__ import annotations

import io

import holoviews as hv
import numpy as np
import pandas as pd
import param

from workbench import protocol
from workbench.observables.spectrum_io import Spectrum, write_spectrum_csv
from workbench.ui.inputs import InputsState
from workbench.ui.jobs import JobState, stopping_progress
from workbench.ui.plots import empty_spectrum

DIPOLE = "charge-flux"


def band_table(bands: dict) -> pd.DataFrame:
    """Rows per band from ``protocol.simulated_spectrum`` bands (cm⁻¹)."""
    rows = []
    for name, b in bands.items():
        rows.append({"band": name, "position sim": b["position_cm-1"], "± (jackknife)": b["position_err"],
                     "position exp": b.get("experiment_position_cm-1"), "FWHM sim": b["fwhm_cm-1"],
                     "height sim": b["height_cm-1"], "height exp": b.get("experiment_height_cm-1")})
    return pd.DataFrame(rows)


class SpectrumState(JobState):
    """One session's simulated spectrum and its overlay on the experiment."""

    status = param.String("press 'Compute spectrum' to simulate the IR spectrum of the chosen model")
    bands = param.DataFrame(pd.DataFrame())

    def __init__(self, inputs: InputsState, **params):
        super().__init__(**params)
        self.inputs = inputs
        self.overlay = hv.streams.Pipe(data=empty_spectrum())
        self.result: dict | None = None
        self.inputs.param.watch(lambda _e: self.refresh(), ["revision"])
        self.refresh()

    def settings(self) -> protocol.IRProtocol:
        return protocol.PRESETS["interactive"].replace(temperature_K=self.inputs.temperature)

    def start(self) -> None:
        if self.running:
            return
        settings, inputs = self.settings(), self.inputs
        spec, system, experiment = inputs.model_spec, inputs.system, inputs.experiment

        def work(emit, stop_requested):
            emit({"kind": "status", "message": f"loading {spec} and compiling the MD …"})
            from workbench import models

            potential = models.load_potential(spec, system)
            result = protocol.simulated_spectrum(potential, system, settings, DIPOLE, experiment,
                                                 stopping_progress(emit, stop_requested))
            emit({"kind": "spectrum", "grid": result.grid, "values": result.values, "bands": result.bands,
                  "model": spec, "diffusion": result.diffusion})

        self.launch(work, "spectrum",
                    f"simulating {inputs.model}: {settings.md_steps} MD steps ({settings.precision})")

    def on_event(self, event: dict) -> None:
        if event["kind"] != "spectrum":
            super().on_event(event)
            return
        self.result = event
        self.bands = band_table(event["bands"])
        self.refresh()
        d = event["diffusion"]["green_kubo"]
        self.status = (f"done: {event['model']}; D (Green–Kubo, Yeh–Hummer) = "
                       f"{d['yeh_hummer'] * 1e9:.2f}e-9 m²/s from short windows")

    def on_end(self, kind: str, event: dict) -> None:
        super().on_end(kind, event)
        if kind == "finished":
            self.progress = 100

    def refresh(self) -> None:
        """Send the current experiment (and simulated spectrum, if any) to the overlay."""
        data = empty_spectrum()
        exp = self.inputs.experiment
        data["experiment"] = (exp.wavenumber, exp.values)
        if self.result is not None:
            data["simulated"] = (self.result["grid"], self.result["values"])
            data["label"] = f"simulated ({self.result['model']})"
            data["bands"] = {n: (b["position_cm-1"], b["height_cm-1"])
                             for n, b in self.result["bands"].items()}
        self.overlay.send(data)

    def csv_bytes(self) -> io.BytesIO:
        """The simulated spectrum as CSV (wavenumber cm⁻¹, n·α cm⁻¹)."""
        if self.result is None:
            raise ValueError("no simulated spectrum yet")
        path = self.inputs.workdir / "simulated_spectrum.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_spectrum_csv(Spectrum(np.asarray(self.result["grid"]), np.asarray(self.result["values"]),
                                    "n_alpha", source=f"workbench dashboard: {self.result['model']}"), path,
                           comments=[f"protocol: {self.settings()}", f"dipole: {DIPOLE}"])
        return io.BytesIO(path.read_bytes())
