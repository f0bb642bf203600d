"""Dashboard state for the gradient-health scan: ‖dC(τ)/dθ‖ against the window length τ before a long
refinement (``workbench.protocol.truncation_scan``), with the suggested truncation length — the
longest τ before the norm grows exponentially — ready to copy into the refinement's τ.
"""

from __future__ import annotations

import holoviews as hv
import param

from workbench import protocol
from workbench.ui.inputs import InputsState
from workbench.ui.jobs import JobState, stopping_progress

#: Window lengths of the quick scan (fs): each length compiles its own adjoint, ≈ 1 min each on 2 cores.
QUICK_TAUS_FS = (25.0, 50.0, 100.0, 200.0, 400.0)


class GradientHealthState(JobState):
    """One session's truncation scan."""

    taus_fs = param.List(list(QUICK_TAUS_FS), item_type=float, doc="window lengths scanned (fs)")
    suggested_fs = param.Number(None, allow_None=True, doc="suggested truncation length (fs)")
    status = param.String("scan the gradient norm against the window length before a long refinement")

    def __init__(self, inputs: InputsState, **params):
        super().__init__(**params)
        self.inputs = inputs
        self.scan = hv.streams.Pipe(data={"tau_fs": [], "grad_norm": [], "suggested_fs": None})

    def settings(self) -> protocol.IRProtocol:
        """One NVT start (two windows with its time-reversed partner) after 0.1 ps, float32."""
        return protocol.PRESETS["interactive"].replace(
            n_windows=1, nvt_ps=0.1, equilibrate_ps=0.0, temperature_K=self.inputs.temperature
        )

    def start(self) -> None:
        if self.running:
            return
        spec, system, taus, settings = (
            self.inputs.model_spec,
            self.inputs.system,
            list(self.taus_fs),
            self.settings(),
        )

        def work(emit, stop_requested):
            from workbench import models

            potential = models.load_potential(spec, system)
            study = protocol.truncation_scan(
                potential, system, taus, settings, progress=stopping_progress(emit, stop_requested)
            )
            emit(
                {
                    "kind": "scan",
                    "tau_fs": [t * 1e3 for t in study["tau_ps"]],
                    "grad_norm": study["grad_norm"],
                    "suggested_fs": study["suggested_truncation_fs"],
                }
            )

        self.suggested_fs = None
        self.launch(work, "truncation-scan",
                    f"scanning τ = {', '.join(f'{t:g}' for t in taus)} fs with {spec} …")

    def on_event(self, event: dict) -> None:
        if event["kind"] != "scan":
            super().on_event(event)
            return
        self.suggested_fs = event["suggested_fs"]
        self.scan.send({k: event[k] for k in ("tau_fs", "grad_norm", "suggested_fs")})
        self.status = f"suggested truncation: {event['suggested_fs']:g} fs"
