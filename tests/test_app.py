"""The served page: state logic without a browser, then the real `panel serve app.py` in chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.ui.md_run import MDRunState

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _wait(state, timeout=240):
    t0 = time.time()
    while state.running and time.time() - t0 < timeout:
        time.sleep(0.2)
        state.poll()
    state.poll()


def test_md_run_streams_frames_and_finishes():
    state = MDRunState(time_ps=0.1, ensemble="nve")
    state.start()
    _wait(state)
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
    _wait(state)
    assert state.status.startswith("stopped"), state.status
    assert len(state.trace.data) < 500

    state.system = state.system.replace(box=state.system.box * 0.5)  # cutoff > half box: refused
    state.start()
    _wait(state)
    assert state.status.startswith("error: "), state.status
    assert "\n" not in state.status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve") / "panel.log", "w+b")  # a file, not a pipe that can fill
    env = {**os.environ, "BOKEH_RESOURCES": "server"}
    command = [sys.executable, "-m", "panel", "serve", str(ROOT / "app.py"), "--port", str(port),
               "--address", "localhost", "--allow-websocket-origin", f"localhost:{port}"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}/app"
    for _ in range(120):
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        log.seek(0)
        pytest.fail("panel serve app.py did not come up: " + log.read().decode()[-2000:])
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.mark.ui
def test_served_page_runs_md_offline(served_app):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served_app, wait_until="networkidle", timeout=120_000)
        page.get_by_text("Workbench — water MD").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Run MD").click()
        page.get_by_text("finished: qtip4pf", exact=False).first.wait_for(timeout=240_000)
        page.screenshot(path=str(ROOT / ".pytest_cache" / "app.png"))
        browser.close()
    local = ("http://localhost", "ws://localhost", "blob:http://localhost", "data:")
    foreign = [u for u in requests if not u.startswith(local)]
    assert not foreign, f"page fetched resources from outside the server: {foreign[:5]}"
    assert not errors, errors
