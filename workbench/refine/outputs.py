"""What a finished (or stopped) refinement leaves in its run directory besides checkpoints and metrics.

    model.npz        EANN potentials: the refined model in the project's own format
                     (``workbench.potentials.model_io.save_model``), with provenance in its card
    params.json      other potentials (q-TIP4P/F, Lennard-Jones): every parameter by name, refined
    dipole.json      the dipole model's parameters (when there is a dipole model)
    summary.json     status, iterations, first and last loss terms, run directory
    loss.png, grad_norm.png, spectrum.png (IR only: first and last simulated spectra vs the target)
"""

from __future__ import annotations

import json

import jax
import numpy as np

from workbench.refine.checkpoint import atomic_write_text
from workbench.refine.parameters import leaf_names


def named_values(tree) -> dict:
    """name → value (float or nested list) of every leaf."""
    return {n: np.asarray(v).tolist() for n, v in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True)}


def write_outputs(trainer, state, theta, phi) -> None:
    run_dir, problem = trainer.run_dir, trainer.problem
    pot = problem.potential
    if pot.metadata.get("model") == "EANN":
        from workbench.potentials.model_io import save_model

        save_model(run_dir / "model.npz", pot.replace(params=theta),
                   {"provenance": f"refined by `workbench refine` ({state.iteration} iterations, "
                                  f"run {run_dir})"})
    else:
        atomic_write_text(run_dir / "params.json", json.dumps(
            {"model": pot.name, "units": pot.metadata.get("units", ""), "params": named_values(theta),
             "initial": named_values(pot.params)}, indent=1))
    if problem.dipole is not None:
        atomic_write_text(run_dir / "dipole.json", json.dumps(
            {"model": problem.dipole.name, "params": named_values(phi),
             "initial": named_values(problem.dipole.params)}, indent=1))
    iterations = [e for e in state.history if e["kind"] == "iteration"]
    summary = {"iterations": state.iteration, "run_dir": str(run_dir),
               "first": iterations[0]["loss"] if iterations else None,
               "last": iterations[-1]["loss"] if iterations else None,
               "rollbacks": sum(e["kind"] == "rollback" for e in state.history)}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    if trainer.config.run.plots and iterations:
        write_plots(run_dir, iterations, problem.ir)


def _figure(size=(7, 4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def write_plots(run_dir, iterations: list[dict], ir_target) -> None:
    """loss.png (each term and the total vs iteration), grad_norm.png, spectrum.png (IR)."""
    it = [e["iteration"] for e in iterations]
    for name, key, ylabel in (("loss.png", "loss", "loss"), ("grad_norm.png", "grad_norm", "‖dL/du‖")):
        fig, ax = _figure()
        for term in iterations[0][key]:
            values = np.array([e[key].get(term) or np.nan for e in iterations], float)
            if np.any(values > 0):
                ax.semilogy(it, values, "o-", ms=3, label=term, lw=2 if term == "total" else 1)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=110)
    if ir_target is not None and "spectrum" in iterations[0]:
        fig, ax = _figure((8, 4.5))
        ax.plot(ir_target.grid, ir_target.values, "k", lw=1.2, label="target")
        for e, style in ((iterations[0], "C1--"), (iterations[-1], "C0-")):
            ax.plot(e["spectrum"]["wavenumber"], e["spectrum"]["simulated"], style,
                    label=f"iteration {e['iteration']}")
        ax.set_xlabel("wavenumber (cm⁻¹)")
        ax.set_ylabel("n α (cm⁻¹)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run_dir / "spectrum.png", dpi=110)
