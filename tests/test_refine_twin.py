"""The twin experiment: the truth in the trainer's coordinates (no MD), and a tiny run that lowers
the IR loss of q-TIP4P/F (and its dipole charge) against the twin truth's spectrum, and its budget."""

import dataclasses

import jax
import numpy as np
import pytest

from workbench.bench_twin import SIZES, run_twin, truth_coordinates, twin_config
from workbench.potentials.twin import TWIN_FACTORS, twin_params
from workbench.refine import Trainer, from_dict
from workbench.refine.parameters import named_leaves


def test_truth_is_the_twin_model_in_the_start_types(tmp_path):
    trainer = Trainer(from_dict(twin_config(SIZES["quick"], tmp_path)), tmp_path)
    u = truth_coordinates(trainer)
    assert u["potential"] == pytest.approx({"alpha_r": -0.02, "k_theta": -0.15, "q_H": 0.03})
    assert u["dipole"] == pytest.approx({"q_h": 0.03})
    truth = trainer.params(u)
    start = trainer.params({n: g.zeros() for n, g in trainer.groups.items()})
    assert float(named_leaves(truth[0])["k_theta"]) == pytest.approx(float(twin_params().k_theta), rel=1e-12)
    assert float(named_leaves(truth[0])["k_theta"]) == pytest.approx(
        TWIN_FACTORS["k_theta"] * float(named_leaves(start[0])["k_theta"]), rel=1e-12)
    # same shapes, dtypes and weak types: truth and start share every compiled program
    assert jax.tree.map(jax.typeof, truth) == jax.tree.map(jax.typeof, start)


@pytest.mark.slow
def test_quick_twin_experiment_lowers_the_ir_loss(tmp_path):
    size = SIZES["quick"]
    out = run_twin(size, tmp_path / "run")
    assert out["ir_loss_final"] < out["ir_loss_initial"]
    assert 0 < out["ir_loss_reduction"] == pytest.approx(1 - out["ir_loss_final"] / out["ir_loss_initial"])
    assert 0 <= out["band_err_cm-1_final"] < out["band_err_cm-1_initial"]  # maxima moved toward the truth
    assert set(out["bands_cm-1"]["truth"]) == {"stretch", "bend", "libration"}
    assert out["iterations"] == size.iterations and out["rollbacks"] == 0
    start, truth = out["params"]["start"], out["params"]["truth"]
    assert truth["potential"]["k_theta"] == pytest.approx(0.85 * start["potential"]["k_theta"])
    assert truth["dipole"]["q_h"] == pytest.approx(1.03 * start["dipole"]["q_h"])
    # Adam's first step moves every trained parameter by lr (relative), in the direction of −∂L/∂u
    for group, values in out["params"]["final"].items():
        for name, value in values.items():
            assert abs(value / start[group][name] - 1) == pytest.approx(size.lr, rel=1e-3)
    assert np.isfinite(out["train_loss_by_iteration"]).all()


@pytest.mark.slow
def test_twin_budget_stops_the_refinement_but_not_the_evaluations(tmp_path):
    """A budget spent during the initial NVT: no state, no iteration, and the start evaluated in full
    (its own NVT included) as the 'refined' model, which with common random numbers reproduces the
    start's loss exactly."""
    size = dataclasses.replace(SIZES["quick"], iterations=3, equilibrate_ps=0.05, budget_s=1e-9)
    out = run_twin(size, tmp_path / "run")
    assert (out["status"], out["iterations"], out["train_loss_by_iteration"]) == ("stopped", 0, [])
    assert not (tmp_path / "run" / "params.json").exists()  # stopped before the trainer had a state
    assert out["params"]["final"] == out["params"]["start"]
    assert np.isfinite(out["ir_loss_initial"]) and out["ir_loss_final"] == out["ir_loss_initial"]
    assert out["band_err_cm-1_final"] == out["band_err_cm-1_initial"] > 0
