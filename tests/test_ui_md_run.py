"""The MD tab's state without a browser (the served page: tests/test_dashboard_browser.py)."""

import time

import pytest

from workbench.ui.jobs import wait_until_done
from workbench.ui.md_run import MDRunState


def test_md_run_streams_frames_and_finishes():
    state = MDRunState(time_ps=0.1, ensemble="nve")
    state.start()
    wait_until_done(state, 240)
    data = state.trace.data
    assert state.status.startswith("finished"), state.status
    assert state.progress == 100
    assert len(data) == 10  # 0.1 ps / (20 steps × 0.5 fs)
    assert data["time_ps"].iloc[-1] == pytest.approx(0.1)
    # the shipped box is equilibrated at 298 K: the instantaneous T stays physical
    assert 200 < data["temperature_K"].mean() < 400
    # NVE over 0.1 ps: total energy constant to far better than its kinetic fluctuations
    assert data["total_energy"].std() < 0.05 * data["potential_energy"].std()


def test_md_run_stop_and_error_are_reported():
    state = MDRunState(time_ps=5.0)
    state.start()
    time.sleep(1.0)
    state.stop()
    wait_until_done(state, 240)
    assert state.status.startswith("stopped"), state.status
    assert len(state.trace.data) < 500

    state.system = state.system.replace(box=state.system.box * 0.5)  # cutoff > half box: refused
    state.start()
    wait_until_done(state, 240)
    assert state.status.startswith("error: "), state.status
    assert "\n" not in state.status
