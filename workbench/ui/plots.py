"""HoloViews views of the dashboard's data (pure functions of plain data, no state, no physics).

Each ``*_view(data)`` turns what a state object pushes into an ``hv.streams.Pipe`` into an element;
``*_plot(pipe)`` wraps it in a ``DynamicMap``.  The callbacks are module-level functions (not bound
methods or partials of session objects): stream subscribers of that kind keep closed sessions alive.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd

SIM_COLOR, EXP_COLOR = "#d62728", "#1f77b4"


def empty_spectrum() -> dict:
    """Overlay data with nothing in it."""
    return {"experiment": None, "simulated": None, "label": "", "ranges": [], "bands": {}}


def spectrum_view(data: dict):
    """Simulated vs experimental n·α(ν̃) (cm⁻¹); the loss ranges shaded by weight; band maxima marked.

    ``data``: experiment/simulated = (wavenumber, values) or None; label (str); ranges =
    [(low, high, weight)]; bands = {name: (position, height)} of the simulated spectrum.
    """
    layers = []
    weights = [w for _, _, w in data.get("ranges", [])]
    top = max(weights, default=1.0) or 1.0
    for low, high, weight in data.get("ranges", []):
        layers.append(hv.VSpan(low, high).opts(color="#999999", alpha=0.08 + 0.25 * weight / top,
                                                line_width=0))
    curves = []
    if data.get("experiment") is not None:
        x, y = data["experiment"]
        curves.append(hv.Curve((np.asarray(x), np.asarray(y)), "wavenumber", "n_alpha",
                               label="experiment").opts(color=EXP_COLOR, line_width=2))
    if data.get("simulated") is not None:
        x, y = data["simulated"]
        curves.append(hv.Curve((np.asarray(x), np.asarray(y)), "wavenumber", "n_alpha",
                               label=data.get("label") or "simulated").opts(color=SIM_COLOR, line_width=2))
    if not curves:
        curves.append(hv.Curve([], "wavenumber", "n_alpha"))
    bands = data.get("bands") or {}
    points = hv.Points([(p, h) for p, h in bands.values()], ["wavenumber", "n_alpha"],
                       label="band maxima").opts(color="black", marker="triangle", size=9)
    labels = hv.Labels([(p, h, n) for n, (p, h) in bands.items()], ["wavenumber", "n_alpha"], "band").opts(
        text_font_size="9pt", yoffset=600, text_color="black")
    return hv.Overlay([*layers, *curves, points, labels]).opts(
        hv.opts.Curve(xlabel="wavenumber (cm⁻¹)", ylabel="n·α (cm⁻¹)", tools=["hover"], framewise=True),
        hv.opts.Overlay(legend_position="top_left", responsive=True, height=340, xlim=(0, 4200),
                        framewise=True, title="IR spectrum: simulated vs experiment"))


def spectrum_plot(pipe: hv.streams.Pipe) -> hv.DynamicMap:
    return hv.DynamicMap(spectrum_view, streams=[pipe])


def _history_view(data: pd.DataFrame, prefix: str, label: str, title: str, key: str):
    """One curve per column other than ``iteration`` against the iteration, log axis; the columns are
    plotted as ``<prefix><name>`` so each plot's data sources have their own names."""
    data = data.rename(columns={c: f"{prefix}{c}" for c in data.columns if c != "iteration"})
    names = [c[len(prefix):] for c in data.columns if c != "iteration"]
    curves = {n: hv.Curve(data, "iteration", (f"{prefix}{n}", label), label=n) for n in names}
    return hv.NdOverlay(curves, kdims=key).opts(
        hv.opts.Curve(logy=True, ylabel=label, xlabel="iteration", line_width=2, framewise=True,
                      tools=["hover"]),
        hv.opts.NdOverlay(responsive=True, height=260, title=title, legend_position="top_right"))


def grad_norm_view(data: pd.DataFrame):
    """‖g‖ per iteration: total and each parameter group (columns ``gradnorm_<name>``)."""
    return _history_view(data, "gradnorm_", "gradient norm", "Gradient norm", "group")


def loss_view(data: pd.DataFrame):
    """Each loss term and the total per iteration (columns ``loss_<term>``)."""
    return _history_view(data, "loss_", "loss", "Loss terms", "term")


def table_plot(pipe: hv.streams.Pipe, view) -> hv.DynamicMap:
    return hv.DynamicMap(view, streams=[pipe])


def truncation_view(data: dict):
    """Gradient norm against window length τ (fs) on a log axis, the suggested τ as a dashed line."""
    tau, norm = data.get("tau_fs", []), data.get("grad_norm", [])
    curve = hv.Curve((tau, norm), "tau_fs", "grad_norm", label="‖dC(τ)/dθ‖").opts(
        logy=True, xlabel="window length τ (fs)", ylabel="gradient norm", line_width=2, tools=["hover"],
        framewise=True)
    layers = [curve, hv.Scatter((tau, norm), "tau_fs", "grad_norm").opts(size=7, logy=True)]
    if data.get("suggested_fs"):
        layers.append(hv.VLine(data["suggested_fs"], label="suggested").opts(color=SIM_COLOR,
                                                                             line_dash="dashed"))
    return hv.Overlay(layers).opts(responsive=True, height=300, framewise=True,
                                   title="Gradient health: norm vs truncation")


def trace_frame(columns) -> pd.DataFrame:
    """An empty frame with ``iteration`` and ``columns``."""
    return pd.DataFrame({c: pd.Series(dtype=float) for c in ["iteration", *columns]})
