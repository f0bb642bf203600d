"""Layout of the served dashboard: binds widgets to the per-session state objects; holds no physics.

One :class:`Dashboard` per browser session owns its inputs, its jobs (spectrum, refinement,
gradient scan, MD) and its work directory under ``WORKBENCH_RUNS`` (default ``runs/dashboard``).
A periodic callback on the server's loop drains the jobs' event queues into the states; when the
session closes its jobs are stopped and the callback removed.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
import weakref
from pathlib import Path

import holoviews as hv
import panel as pn
from panel.io.resources import get_dist_path

from workbench.ui import plots
from workbench.ui.health import GradientHealthState
from workbench.ui.inputs import InputsState
from workbench.ui.jobs import MAX_CONCURRENT_JOBS, running_jobs
from workbench.ui.md_run import MDRunState
from workbench.ui.refine_run import RefineRunState
from workbench.ui.spectrum import SpectrumState
from workbench.ui.viewer import StructureViewer

POLL_MS = 300
SPECTRUM_FILES = ".csv,.tsv,.txt,.dat,.jdx,.dx,.jcamp"
MODEL_FILES = ".npz,.pickle,.pkl"


_DASHBOARDS: weakref.WeakSet = weakref.WeakSet()


def server_status(collect: bool = False) -> str:
    """One line on the whole server: live sessions (dashboards not yet garbage) and running jobs."""
    if collect:
        gc.collect()
    return (
        f"server: {len(_DASHBOARDS)} live session(s), {running_jobs()} job(s) running "
        f"(at most {MAX_CONCURRENT_JOBS} compute at once)"
    )


def runs_root() -> Path:
    return Path(os.environ.get("WORKBENCH_RUNS", "runs/dashboard"))


class Dashboard:
    """The states of one browser session and the widgets bound to them."""

    def __init__(self, workdir: Path | None = None):
        self.workdir = (
            workdir or runs_root() / f"session-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        )
        self.inputs = InputsState(self.workdir)
        self.spectrum = SpectrumState(self.inputs)
        self.refine = RefineRunState(self.inputs, self.workdir / "refine")
        self.health = GradientHealthState(self.inputs)
        self.md = MDRunState()
        self.states = (self.spectrum, self.refine, self.health, self.md)
        self.server_line = pn.pane.Markdown(
            server_status(), css_classes=["server-status"], sizing_mode="stretch_width"
        )
        _DASHBOARDS.add(self)

    def poll(self) -> None:
        with pn.io.hold():
            for state in self.states:
                state.poll()
            line = server_status()
            if line != self.server_line.object:
                self.server_line.object = line

    def shutdown(self) -> None:
        for state in self.states:
            state.shutdown()

    # -- panels ---------------------------------------------------------------------------------
    def sidebar(self) -> list:
        inputs = self.inputs
        model_upload = pn.widgets.FileInput(accept=MODEL_FILES, name="model file")
        model_upload.param.watch(
            lambda e: e.new and inputs.upload_model(model_upload.filename, e.new), "value"
        )
        spectrum_upload = pn.widgets.FileInput(accept=SPECTRUM_FILES, name="experimental spectrum")
        spectrum_upload.param.watch(
            lambda e: e.new and inputs.upload_spectrum(spectrum_upload.filename, e.new), "value"
        )
        shipped = pn.widgets.Button(name="Use the shipped spectrum", button_type="light")
        shipped.on_click(lambda _e: inputs.use_shipped_experiment())
        return [
            _md("### Model"),
            pn.widgets.Select.from_param(inputs.param.model, name="model"),
            _md("Upload a model (project npz, DMFF npz, or a DMFF pickle):"),
            model_upload,
            pn.widgets.Checkbox.from_param(
                inputs.param.trust_pickles, name="trust this file (pickles run code)"
            ),
            _alert(
                inputs.param.model_message, alert_type="info", visible=inputs.param.model_message.rx.bool()
            ),
            _md(inputs.param.model_card),
            _md("### Experimental spectrum"),
            _md(inputs.param.experiment_name.rx.pipe(lambda n: f"In use: **{n}**")),
            spectrum_upload,
            _alert(
                inputs.param.experiment_message,
                alert_type="warning",
                css_classes=["experiment-message"],
                visible=inputs.param.experiment_message.rx.bool(),
            ),
            shipped,
            _md("### Optional refinement data"),
            _md("RDF target (columns r in nm, g) and force-matching frames (npz or extxyz with forces):"),
            self._reference_upload("rdf", ".csv,.txt,.dat"),
            self._reference_upload("forces", ".npz,.extxyz,.xyz,.traj,.db"),
            _alert(
                inputs.param.reference_message,
                alert_type="info",
                visible=inputs.param.reference_message.rx.bool(),
            ),
            _md("### System"),
            _md(_system_text(inputs.system)),
            pn.widgets.FloatInput.from_param(inputs.param.temperature, name="temperature (K)"),
            self.server_line,
        ]

    def _reference_upload(self, kind: str, accept: str) -> pn.widgets.FileInput:
        upload = pn.widgets.FileInput(
            accept=accept, name="RDF target" if kind == "rdf" else "reference frames"
        )
        inputs = self.inputs
        upload.param.watch(lambda e: e.new and inputs.upload_reference(kind, upload.filename, e.new), "value")
        return upload

    def spectrum_tab(self):
        s = self.spectrum
        compute = _button("Compute spectrum", "primary", s.start, disabled=s.param.running)
        stop = _button("Stop", "warning", s.stop, disabled=s.param.running.rx.not_())
        download = pn.widgets.FileDownload(
            callback=s.csv_bytes, filename="simulated_spectrum.csv", label="Spectrum CSV", button_type="light"
        )
        return pn.Column(
            pn.Row(compute, stop, download),
            pn.indicators.Progress(value=s.param.progress, max=100, sizing_mode="stretch_width"),
            pn.pane.Str(s.param.status, css_classes=["spectrum-status"]),
            pn.pane.HoloViews(plots.spectrum_plot(s.overlay), sizing_mode="stretch_width"),
            pn.pane.DataFrame(
                s.param.bands, index=False, float_format="{:.0f}".format, sizing_mode="stretch_width"
            ),
            name="Spectrum",
        )

    def refine_tab(self):
        r = self.refine
        numeric = {
            "iterations": pn.widgets.IntInput,
            "n_windows": pn.widgets.IntInput,
            "truncation_fs": pn.widgets.FloatInput,
            "diffusion_target": pn.widgets.FloatInput,
        }
        controls = pn.Param(
            r,
            parameters=list(_CONTROL_LABELS),
            show_name=False,
            widgets={
                name: {"name": label, **({"type": numeric[name]} if name in numeric else {})}
                for name, label in _CONTROL_LABELS.items()
            },
        )
        preset = _button("Quick CPU demo", "light", r.quick_demo_preset)
        launch = _button("Launch refinement", "primary", r.start, disabled=r.param.running)
        stop = _button("Stop", "warning", r.stop, disabled=r.param.running.rx.not_())
        resume = _button("Resume", "success", r.resume, disabled=r.param.can_resume.rx.not_())
        downloads = pn.Row(
            *[
                pn.widgets.FileDownload(callback=cb, filename=fn, label=label, button_type="light")
                for cb, fn, label in (
                    (r.model_bytes, "refined_model.zip", "Refined model"),
                    (r.spectrum_csv_bytes, "refined_spectrum.csv", "Spectrum CSV"),
                    (r.plots_bytes, "plots.zip", "Plots PNG"),
                    (r.config_bytes, "refine.toml", "Config (CLI)"),
                )
            ]
        )
        live = pn.Column(
            pn.Row(launch, stop, resume),
            pn.indicators.Progress(value=r.param.progress, max=100, sizing_mode="stretch_width"),
            pn.pane.Str(r.param.status, css_classes=["refine-status"]),
            pn.Row(
                pn.pane.HoloViews(
                    plots.table_plot(r.grad_norms, plots.grad_norm_view),
                    sizing_mode="stretch_width",
                    css_classes=["grad-norm-plot"],
                ),
                pn.pane.HoloViews(plots.table_plot(r.losses, plots.loss_view), sizing_mode="stretch_width"),
            ),
            pn.pane.HoloViews(plots.spectrum_plot(r.spectrum), sizing_mode="stretch_width"),
            pn.pane.DataFrame(
                r.param.bands, index=False, float_format="{:.0f}".format, sizing_mode="stretch_width"
            ),
            pn.pane.Markdown("**Export**"),
            downloads,
            pn.pane.Markdown("**Event log**"),
            pn.pane.Str(
                r.param.event_log,
                styles={"max-height": "240px", "overflow-y": "auto", "font-size": "11px"},
                sizing_mode="stretch_width",
                css_classes=["refine-log"],
            ),
            sizing_mode="stretch_width",
        )
        return pn.Row(pn.Column(preset, controls, width=320), live, name="Refine")

    def health_tab(self):
        h = self.health
        scan = _button("Scan gradient norm vs τ", "primary", h.start, disabled=h.param.running)
        stop = _button("Stop", "warning", h.stop, disabled=h.param.running.rx.not_())
        use = _button(
            "Use suggested τ for the refinement",
            "success",
            self._use_suggested,
            disabled=h.param.suggested_fs.rx.is_(None),
        )
        return pn.Column(
            pn.pane.Markdown(
                "Gradients through chaotic MD grow exponentially with the window length. This "
                "scan runs windows of each length from the same frames and suggests the longest τ "
                "before exponential growth (about a minute per length on 2 CPU cores)."
            ),
            pn.widgets.LiteralInput.from_param(h.param.taus_fs, name="window lengths τ (fs)"),
            pn.Row(scan, stop, use),
            pn.indicators.Progress(value=h.param.progress, max=100, sizing_mode="stretch_width"),
            pn.pane.Str(h.param.status),
            pn.pane.HoloViews(
                hv.DynamicMap(plots.truncation_view, streams=[h.scan]), sizing_mode="stretch_width"
            ),
            name="Gradient health",
        )

    def _use_suggested(self) -> None:
        if self.health.suggested_fs:
            self.refine.truncation_fs = float(self.health.suggested_fs)

    def structure_tab(self):
        return pn.Column(
            pn.pane.Markdown("The shipped 64-water box (298 K); drag to rotate, scroll to zoom."),
            StructureViewer.from_system(self.inputs.system, height=480),
            name="Structure",
        )

    def md_tab(self):
        m = self.md
        run = _button("Run MD", "primary", m.start, disabled=m.param.running)
        stop = _button("Stop", "warning", m.stop, disabled=m.param.running.rx.not_())
        controls = pn.Param(
            m,
            parameters=["model", "temperature", "time_ps", "dt_fs", "ensemble"],
            show_name=False,
            widgets={"temperature": pn.widgets.FloatInput, "time_ps": pn.widgets.FloatInput},
        )
        return pn.Row(
            pn.Column(controls, pn.Row(run, stop), width=300),
            pn.Column(
                pn.indicators.Progress(value=m.param.progress, max=100, sizing_mode="stretch_width"),
                pn.pane.Str(m.param.status),
                pn.Row(m.temperature_plot(), m.energy_plot(), sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            name="MD",
        )


_CONTROL_LABELS = {
    "iterations": "iterations",
    "truncation_fs": "truncation τ (fs)",
    "n_windows": "starting frames",
    "estimator": "gradient estimator",
    "precision": "precision",
    "ir_mode": "IR loss",
    "ir_weight": "weight: IR",
    "weight_below_1000": "weight: 0–1000 cm⁻¹",
    "weight_above_1000": "weight: 1000–4000 cm⁻¹",
    "diffusion_weight": "weight: diffusion",
    "diffusion_target": "target D (1e-9 m²/s)",
    "rdf_weight": "weight: O–O RDF",
    "force_matching_weight": "weight: force matching",
    "l2_weight": "weight: L2 regulariser",
    "learning_rate": "learning rate (potential)",
    "train_dipole": "train the dipole model",
    "dipole_learning_rate": "learning rate (dipole)",
}


def _md(text, **kw) -> pn.pane.Markdown:
    return pn.pane.Markdown(text, sizing_mode="stretch_width", **kw)


def _alert(text, **kw) -> pn.pane.Alert:
    return pn.pane.Alert(text, sizing_mode="stretch_width", **kw)


def _button(label: str, kind: str, action, disabled=False) -> pn.widgets.Button:
    button = pn.widgets.Button(name=label, button_type=kind, disabled=disabled)
    button.on_click(lambda _e: action())
    return button


def _system_text(system) -> str:
    return (
        f"{system.n_atoms // 3} waters, cubic box {system.box[0] * 10:.3f} Å, "
        f"{system.density_g_cm3:.3f} g/cm³ (shipped, equilibrated at 298 K)"
    )


def pin_local_css() -> None:
    """Make Panel resolve the stylesheets of this session's components to this server, never to its CDN.

    Panel 1.9.4 gives each component's stylesheets CDN URLs and rewrites them to the server's
    ``static/extensions/panel/`` only via ``doc.template_variables["dist_url"]``, which it sets when it
    renders the HTML page of a session (``server_html_page_for_session``); without it the rewrite
    falls back to ``CDN_DIST`` (``Syncable._get_properties``, ``Design._apply_modifiers``) and even
    turns the local ``loading.css`` into a CDN URL.  Bokeh also builds sessions without a page: its
    websocket handler calls ``create_session_if_needed``, and recreates the page's session when that
    was discarded as unused before the socket opened (a slow page load on a busy server) — such a
    session loaded ``loading.css``, ``listpanel.css`` and ``bootstrap.css`` from cdn.holoviz.org.
    Setting ``dist_url`` (as the page render would: ``get_dist_path(cdn=False)``) before any model
    is built makes both paths agree.  Does nothing outside a served session.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return
    doc.template_variables["dist_url"] = get_dist_path(cdn=False)


def build_app() -> pn.template.BaseTemplate:
    """The page of one session (``panel serve app.py`` calls this per browser session)."""
    pin_local_css()
    hv.extension("bokeh", logo=False)
    dash = Dashboard()
    main = pn.Tabs(
        dash.spectrum_tab(),
        dash.refine_tab(),
        dash.health_tab(),
        dash.structure_tab(),
        dash.md_tab(),
        dynamic=False,
        sizing_mode="stretch_width",
    )
    template = pn.template.BootstrapTemplate(
        title="Workbench — refine ML potentials against IR spectra",
        sidebar=dash.sidebar(),
        main=[main],
        sidebar_width=330,
    )

    def on_load():
        dash.server_line.object = server_status(collect=True)
        callback = pn.state.add_periodic_callback(dash.poll, period=POLL_MS)
        pn.state.on_session_destroyed(lambda _ctx: (callback.stop(), dash.shutdown()))

    pn.state.onload(on_load)
    return template
