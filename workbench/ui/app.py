"""Layout of the served page.  Binds widgets to the state objects; holds no physics."""

from __future__ import annotations

import holoviews as hv
import panel as pn

from workbench import models
from workbench.ui.md_run import MDRunState

POLL_MS = 300


def build_app() -> pn.template.BaseTemplate:
    hv.extension("bokeh", logo=False)
    state = MDRunState()
    run_button = pn.widgets.Button(name="Run MD", button_type="primary")
    stop_button = pn.widgets.Button(name="Stop", button_type="warning")
    run_button.on_click(lambda _event: state.start())
    stop_button.on_click(lambda _event: state.stop())
    run_button.disabled = state.param.running
    stop_button.disabled = state.param.running.rx.not_()

    controls = pn.Param(state, parameters=["model", "temperature", "time_ps", "dt_fs", "ensemble"],
                        show_name=False, widgets={"temperature": pn.widgets.FloatInput,
                                                  "time_ps": pn.widgets.FloatInput})
    system = state.system
    card = pn.pane.Markdown(
        f"**System:** {system.n_atoms // 3} waters, box {system.box[0] * 10:.3f} Å, "
        f"{system.density_g_cm3:.3f} g/cm³  \n**Models:** "
        + "; ".join(f"`{k}`: {v}" for k, v in models.MODEL_CHOICES.items()))
    sidebar = [controls, pn.Row(run_button, stop_button),
               pn.widgets.Progress(value=state.param.progress, max=100, sizing_mode="stretch_width"),
               pn.pane.Str(state.param.status, name="status"), card]
    main = [pn.Row(state.temperature_plot(), state.energy_plot(), sizing_mode="stretch_width")]
    template = pn.template.BootstrapTemplate(title="Workbench — water MD", sidebar=sidebar, main=main)

    def on_load():
        callback = pn.state.add_periodic_callback(state.poll, period=POLL_MS)
        pn.state.on_session_destroyed(lambda _ctx: (callback.stop(), state.shutdown()))

    pn.state.onload(on_load)
    return template
