"""A tiny twin experiment: refining q-TIP4P/F (and its dipole charge) against the IR spectrum of the
twin-truth model lowers the IR loss; the benchmark's JSON keys."""

import pytest

from workbench.bench_twin import TwinSize, run_twin


@pytest.mark.slow
def test_tiny_twin_experiment_lowers_the_ir_loss(tmp_path):
    size = TwinSize(iterations=2, n_windows=1, truncation_fs=60.0, sampling_ps=0.1, equilibrate_ps=0.05,
                    lr=0.01, repeats=2)
    out = run_twin(size, tmp_path / "run")
    assert out["ir_loss_final"] < out["ir_loss_initial"]
    assert 0 < out["ir_loss_reduction"] == pytest.approx(1 - out["ir_loss_final"] / out["ir_loss_initial"])
    for key in ("band_err_cm-1_initial", "band_err_cm-1_final"):
        assert out[key] >= 0
    assert set(out["bands_cm-1"]["truth"]) == {"stretch", "bend", "libration"}
    assert out["start_model"].startswith("qtip4pf") and out["iterations"] == 2
    assert set(out["params"]["final"]) == {"potential", "dipole"}  # both groups trained
    assert out["params"]["truth"]["potential"]["k_theta"] == pytest.approx(
        0.85 * out["params"]["start"]["potential"]["k_theta"])
