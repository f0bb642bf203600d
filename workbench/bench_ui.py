"""``workbench bench ui``: how long the dashboard makes a user wait, through its own state objects.

- ``first_spectrum_s``: from pressing "Compute spectrum" (``SpectrumState.start``) to the simulated
  spectrum being in the overlay, default model, fresh process (compilation included);
- ``iteration_s``: the quick CPU demo refinement (``RefineRunState`` defaults, launched as the
  "Launch refinement" button does): wall time of each iteration as the trainer reports it; the
  first includes compilation.  ``iteration_s`` is the slowest one, ``iteration_s_steady`` the mean
  of the others.

The same code path as the served page minus the browser (the page only polls these states).
Quick: 2 refinement iterations; full: 5.  Goals (issue 8, 2 CPU cores): first spectrum ≤ 60 s, a
quick iteration ≤ 30 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def run(quick: bool) -> dict:
    from workbench.ui.inputs import InputsState
    from workbench.ui.jobs import wait_until_done
    from workbench.ui.refine_run import RefineRunState
    from workbench.ui.spectrum import SpectrumState

    workdir = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    inputs = InputsState(workdir)
    spectrum = SpectrumState(inputs)
    t0 = time.perf_counter()
    spectrum.start()
    wait_until_done(spectrum, 1800.0)
    first_spectrum_s = time.perf_counter() - t0
    if spectrum.result is None:
        raise RuntimeError(f"the spectrum did not finish: {spectrum.status}")

    refine = RefineRunState(inputs, workdir / "refine", iterations=2 if quick else 5)
    t0 = time.perf_counter()
    refine.start()
    wait_until_done(refine, 1800.0)
    total_s = time.perf_counter() - t0
    if not refine.status.startswith("finished"):
        raise RuntimeError(f"the refinement did not finish: {refine.status}")
    times = refine.iteration_times
    bands = {n: round(b["position_cm-1"], 1) for n, b in spectrum.result["bands"].items()}
    return {
        "first_spectrum_s": round(first_spectrum_s, 1),
        "iteration_s": round(max(times), 1),
        "iteration_s_first": round(times[0], 1),
        "iteration_s_steady": round(sum(times[1:]) / max(len(times) - 1, 1), 1),
        "refinement_total_s": round(total_s, 1),
        "iterations": len(times),
        "spectrum_protocol": str(spectrum.settings()),
        "spectrum_band_maxima_cm-1": bands,
        "refine_config": {"truncation_fs": refine.truncation_fs, "n_windows": refine.n_windows,
                          "estimator": refine.estimator, "precision": refine.precision,
                          "model": inputs.model_spec},
        "goals": {"first_spectrum_s": 60.0, "iteration_s": 30.0},
    }
