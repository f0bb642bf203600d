"""Dashboard state classes without a browser: inputs, refinement controls and events, jobs, gradient scan."""

import pickle
import threading
import time

import jax
import numpy as np
import pytest

from workbench.potentials import eann
from workbench.potentials.model_io import save_model
from workbench.refine import load_config
from workbench.ui import jobs
from workbench.ui.health import GradientHealthState
from workbench.ui.inputs import SHIPPED_EXPERIMENT, UPLOADED_MODEL, InputsState
from workbench.ui.jobs import wait_until_done
from workbench.ui.refine_run import RefineRunState


@pytest.fixture
def inputs(tmp_path):
    return InputsState(tmp_path)


# -- inputs -------------------------------------------------------------------------------------

def test_spectrum_upload_errors_keep_the_previous_spectrum(inputs):
    before = inputs.experiment
    assert not inputs.upload_spectrum("../../evil name.csv", b"wavenumber,n_alpha\n1000,1\n1100,oops\n")
    assert "not loaded" in inputs.experiment_message and "oops" in inputs.experiment_message
    assert inputs.experiment is before and inputs.experiment_name == SHIPPED_EXPERIMENT
    assert inputs.ir_target == "experiment"
    # written inside the session folder under a sanitised name, never outside it
    assert sorted(p.name for p in (inputs.workdir / "uploads").iterdir()) == ["evil_name.csv"]
    # absorbance cannot become n·α without a path length: refused with that reason
    assert not inputs.upload_spectrum("a.csv", b"wavenumber_cm-1,absorbance\n1000,0.1\n2000,0.2\n3000,0.1\n")
    assert "path length" in inputs.experiment_message


def test_good_spectrum_upload_becomes_the_target(inputs):
    grid = np.arange(500.0, 4001.0, 10.0)
    rows = "\n".join(f"{x},{1000 + x / 10}" for x in grid)
    assert inputs.upload_spectrum("mine.csv", ("wavenumber_cm-1,n_alpha_cm-1\n" + rows).encode())
    assert inputs.revision == 1 and inputs.experiment_name == "mine.csv"
    np.testing.assert_allclose(inputs.experiment.values, 1000 + grid / 10)
    assert inputs.ir_target.endswith("mine.csv")
    inputs.use_shipped_experiment()
    assert inputs.ir_target == "experiment" and inputs.revision == 2


def test_model_upload_own_format_and_pickle_trust(inputs, tmp_path):
    params = eann.init_eann_params(jax.random.key(0), n_radial=4, hidden=(8, 8))
    path = save_model(tmp_path / "tiny.npz", params, {"name": "tiny", "model_card": "a random EANN"})
    assert inputs.upload_model("tiny.npz", path.read_bytes())
    assert inputs.model == UPLOADED_MODEL and inputs.model_spec.endswith("tiny.npz")
    assert "tiny" in inputs.model_card and "a random EANN" in inputs.model_card
    assert inputs.potential().metadata.get("model") == "EANN"

    # a pickle is refused until the user trusts it; refusing keeps the uploaded model
    blob = pickle.dumps({"not": "a model"})
    assert not inputs.upload_model("model.pickle", blob)
    assert "trust this file" in inputs.model_message and inputs.model_spec.endswith("tiny.npz")
    inputs.trust_pickles = True
    assert not inputs.upload_model("model.pickle", blob)  # trusted but not an EANN: a clear refusal
    assert "model not loaded" in inputs.model_message


# -- refinement controls and events --------------------------------------------------------------

def test_controls_become_a_config_that_round_trips_through_toml(inputs, tmp_path):
    state = RefineRunState(inputs, tmp_path / "runs", truncation_fs=150.0, n_windows=3, weight_below_1000=4.0,
                           diffusion_weight=0.5, diffusion_target=2.0, train_dipole=False, learning_rate=0.01)
    cfg = state.config()
    assert cfg.md.truncation_fs == 150.0 and cfg.md.n_windows == 3 and cfg.md.window_steps == 300
    assert cfg.loss.ir.range_weights == [4.0, 1.0]
    assert cfg.loss.diffusion.weight == 0.5
    assert cfg.loss.diffusion.target_nm2_per_ps == pytest.approx(2.0e-3)  # 2.0e-9 m²/s
    assert cfg.train.potential.lr == 0.01 and "dipole" not in cfg.train.groups
    toml = tmp_path / "refine.toml"
    toml.write_text(state.config_toml())
    assert load_config(toml) == cfg.replace(**{"run.dir": None})

    state.quick_demo_preset()
    assert state.truncation_fs == 100.0 and state.n_windows == 1 and state.train_dipole
    assert state.config().loss.ir.range_weights == [10.0, 1.0]
    # the shipped MLP: every network weight, absolute steps with a learning rate for weights
    inputs.model = "eann-water"
    cfg = state.config()
    assert state.learning_rate == 1e-4 and cfg.train.potential.params == ["*"]
    assert cfg.train.potential.parameterisation == "absolute"


def test_trainer_events_feed_plots_table_progress_and_log(inputs, tmp_path):
    state = RefineRunState(inputs, tmp_path / "runs", iterations=4)
    grid = np.linspace(0, 4000, 50)
    state._on_start({"iteration": 0, "iterations": 4, "resumed": False, "n_params": {"potential": 4},
                     "target_spectrum": {"wavenumber": grid, "values": grid * 0 + 1}})
    assert state.spectrum.data["experiment"] is not None
    state._on_stage({"iteration": 1, "stage": "windows", "done": 1, "total": 2})
    assert state.progress == 12  # (0 + 1/2) / 4 iterations
    bands = {"bend": {"position_sim": 1600, "position_target": 1640, "fwhm_sim": 80, "fwhm_target": 75,
                      "height_sim": 3000, "height_target": 3700}}
    for it, g in ((1, 10.0), (2, 30.0)):
        state._on_iteration({"iteration": it, "loss": {"ir": 0.5 / it, "l2": 0.0, "total": 0.5 / it},
                             "grad_norm": {"total": g, "potential": g}, "wall_time_s": 10.0,
                             "spectrum": {"wavenumber": grid, "simulated": grid * 0 + 2}, "bands": bands})
    assert list(state.grad_norms.data["total"]) == [10.0, 30.0]
    assert list(state.losses.data["ir"]) == [0.5, 0.25]
    assert state.bands.loc[0, "position target"] == 1640
    assert state.progress == 50 and "about 20 s left" in state.status
    assert state.spectrum.data["bands"] == {"bend": (1600, 3000)}
    state._on_rollback({"iteration": 3, "reason": "temperature 700 K", "restored_iteration": 2,
                        "lr_factor": 0.5, "attempt": 1})
    assert "rollback at iteration 3: temperature 700 K" in state.event_log
    with pytest.raises(ValueError, match="no refinement run"):
        state.model_bytes()


# -- jobs ---------------------------------------------------------------------------------------

def test_server_wide_cap_queues_jobs_and_stop_releases_them():
    release = threading.Event()

    def blocking(emit, stop_requested):
        while not (release.is_set() or stop_requested()):
            time.sleep(0.02)

    running = [jobs.BackgroundJob(blocking).start() for _ in range(jobs.MAX_CONCURRENT_JOBS)]
    time.sleep(0.2)
    waiting = jobs.BackgroundJob(blocking).start()
    time.sleep(0.5)
    assert jobs.running_jobs() >= jobs.MAX_CONCURRENT_JOBS + 1
    assert [e["kind"] for e in waiting.drain()] == ["queued"]
    waiting.stop()
    waiting.join(5)
    assert [e["kind"] for e in waiting.drain()] == ["stopped"]
    release.set()
    for job in running:
        job.join(5)
        assert [e["kind"] for e in job.drain()] == ["finished"]
    assert jobs.running_jobs() == 0


def test_progress_callback_stops_a_job():
    def work(emit, stop_requested):
        progress = jobs.stopping_progress(emit, stop_requested)
        for i in range(1000):
            progress(i, 1000, "steps")
            time.sleep(0.01)

    job = jobs.BackgroundJob(work).start()
    time.sleep(0.1)
    job.stop()
    job.join(5)
    kinds = [e["kind"] for e in job.drain()]
    assert kinds[-1] == "stopped" and 1 < kinds.count("progress") < 900


# -- gradient health ----------------------------------------------------------------------------

def test_gradient_scan_reports_norms_and_a_suggested_truncation(inputs):
    state = GradientHealthState(inputs, taus_fs=[2.5, 5.0])
    state.start()
    wait_until_done(state, 600)
    data = state.scan.data
    assert state.status.startswith("suggested truncation"), state.status
    assert data["tau_fs"] == pytest.approx([2.5, 5.0])
    assert all(np.isfinite(g) and g > 0 for g in data["grad_norm"])
    assert state.suggested_fs in data["tau_fs"]


def test_rdf_target_and_reference_frames_feed_their_loss_terms(inputs, tmp_path):
    state = RefineRunState(inputs, tmp_path / "runs", rdf_weight=0.5)
    with pytest.raises(ValueError, match="loss.rdf.target"):  # a weight without a target: refused
        state.config()
    assert not inputs.upload_reference("rdf", "g.csv", b"r,g\n0.1,abc\n")
    assert "not loaded as RDF target" in inputs.reference_message
    r = np.linspace(0.0, 0.62, 63)
    table = "\n".join(f"{x} {1.0 + np.exp(-((x - 0.28) / 0.03) ** 2)}" for x in r)
    assert inputs.upload_reference("rdf", "g_oo.txt", table.encode())
    cfg = state.config()
    assert cfg.loss.rdf.weight == 0.5 and cfg.loss.rdf.target.endswith("g_oo.txt")
    # force-matching frames must fit the system's atoms
    frames = tmp_path / "bad.npz"
    np.savez(frames, positions=np.zeros((2, 3, 3)), forces=np.zeros((2, 3, 3)), energies=np.zeros(2))
    assert not inputs.upload_reference("forces", "bad.npz", frames.read_bytes())
    assert "do not fit the system's 192 atoms" in inputs.reference_message
    x = np.stack([inputs.system.positions] * 2)
    np.savez(frames, positions=x, forces=np.zeros_like(x), energies=np.zeros(2))
    assert inputs.upload_reference("forces", "good.npz", frames.read_bytes())
    state.force_matching_weight = 1.0
    assert state.config().loss.force_matching.data.endswith("good.npz")
