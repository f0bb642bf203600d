"""The served dashboard (`panel serve app.py`) driven in Debian's chromium with Playwright.

One server for the module (it inherits the suite's JAX compilation cache from tests/conftest.py, so
relaunches reuse compiled code); each test opens its own browser page(s) = sessions.  Screenshots go to
tests/artifacts/.  Every test checks that the page fetched nothing from outside localhost.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for_page

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
LOCAL = ("http://localhost", "ws://localhost", "blob:http://localhost", "data:")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

NO_CHROMIUM = "Debian chromium not installed (.ci/run installs it)"
pytestmark = [pytest.mark.ui, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=NO_CHROMIUM)]

#: Lengths of the plotted gradient-norm series (``gradnorm_total`` columns of the page's data sources).
GRAD_POINTS_JS = """() => {
  const out = [];
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      const d = m.data;
      if (d === undefined || d === null) continue;
      const cols = d instanceof Map ? d : new Map(Object.entries(d));
      if (cols.has("gradnorm_total")) out.push(cols.get("gradnorm_total").length);
    }
  }
  return out;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, pid) of `panel serve app.py`.  (Bokeh's --unused-session-lifetime/--check-unused-sessions
    flags are left at their defaults.  A page whose session is discarded before its websocket opens gets
    a session built without a page, which Panel 1.9.4 alone links to its CDN's CSS: see
    workbench.ui.app.pin_local_css and tests/test_ui_resources.py.)"""
    work = tmp_path_factory.mktemp("serve")
    port = _free_port()
    log = open(work / "panel.log", "w+b")  # a file, not a pipe that can fill
    env = {**os.environ, "BOKEH_RESOURCES": "server", "WORKBENCH_RUNS": str(work / "runs"),
           "WORKBENCH_MAX_JOBS": "2"}
    command = [sys.executable, "-m", "panel", "serve", str(ROOT / "app.py"), "--port", str(port),
               "--address", "localhost", "--allow-websocket-origin", f"localhost:{port}"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}/app"
    problem = wait_for_page(url, proc)
    if problem is not None:
        proc.kill()
        log.seek(0)
        pytest.fail(f"panel serve app.py did not come up ({problem}): " + log.read().decode()[-2000:])
    yield url, proc.pid
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:  # a job still inside a compiled XLA call does not see SIGTERM
        proc.kill()
        proc.wait(10)
    log.seek(0)
    text = log.read().decode(errors="replace")
    log.close()
    # tornado logs closed-websocket noise with tracebacks; none may come from the workbench's own code
    ours = [line for line in text.splitlines() if "/workbench/" in line and line.strip().startswith("File ")]
    assert not ours, text[-3000:]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Session:
    """One browser page on the dashboard, recording its requests and errors."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1500, "height": 1100})
        self.requests, self.errors = [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url, wait_until="networkidle", timeout=120_000)
        self.page.get_by_role("button", name="Compute spectrum").wait_for(timeout=60_000)

    def text(self, pattern: str, timeout_s: float = 240):
        self.page.get_by_text(re.compile(pattern)).first.wait_for(timeout=timeout_s * 1000)

    def tab(self, name: str):
        self.page.locator(".bk-tab", has_text=name).first.click()

    def close(self):
        foreign = [u for u in self.requests if not u.startswith(LOCAL)]
        assert not foreign, f"page fetched resources from outside the server: {foreign[:5]}"
        assert not self.errors, self.errors
        self.page.close()


def _screenshot(session: Session, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    session.page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_compute_demo_spectrum_shows_both_curves(server, browser):
    s = Session(browser, server[0])
    t0 = time.time()
    s.page.get_by_role("button", name="Compute spectrum").click()
    s.text(r"^done: qtip4pf")
    elapsed = time.time() - t0
    legend = s.page.locator(".bk-Legend, .bk-legend")
    # the overlay's legend names both curves (drawn on a canvas, so read the models instead)
    names = s.page.evaluate("""() => {
      const out = [];
      for (const doc of window.Bokeh.documents)
        for (const m of doc.all_models)
          if (m.type === "LegendItem" || (m.constructor && m.constructor.name === "LegendItem"))
            out.push(String(m.label && (m.label.value ?? m.label)));
      return out;
    }""")
    assert any(n == "experiment" for n in names), names
    assert any(n.startswith("simulated (qtip4pf)") for n in names), names
    assert legend is not None
    # the band table has the three water bands with simulated positions in their ranges
    table = s.page.locator("table").filter(has_text="libration").first.inner_text()
    for band in ("stretch", "bend", "libration"):
        assert band in table
    _screenshot(s, "dashboard_spectrum.png")
    print(f"first spectrum after {elapsed:.0f} s (contended test machine; see `workbench bench ui`)")
    s.close()


def test_quick_refinement_two_iterations_then_stop_and_resume(server, browser):
    s = Session(browser, server[0])
    s.tab("Refine")
    iterations = s.page.locator(".bk-input-group", has_text="iterations").locator("input").first
    iterations.fill("2")
    iterations.press("Enter")
    s.page.get_by_role("button", name="Launch refinement").click()
    s.text(r"^finished: 2 iterations", timeout_s=400)
    points = s.page.evaluate(GRAD_POINTS_JS)
    assert 2 in points, points
    _screenshot(s, "dashboard_refine.png")

    # a longer run, stopped in its first iteration, then resumed from its checkpoint and stopped again
    iterations.fill("50")
    iterations.press("Enter")
    s.page.get_by_role("button", name="Launch refinement").click()
    s.text(r"^iteration 1/50: ", timeout_s=300)
    s.page.get_by_role("button", name="Stop", exact=True).click()  # the only visible one
    s.text(r"^stopped: press Resume", timeout_s=300)
    resume = s.page.get_by_role("button", name="Resume")
    assert resume.is_enabled()
    resume.click()
    s.text(r"resumed at iteration \d+ of 50", timeout_s=300)
    s.page.get_by_role("button", name="Stop", exact=True).click()  # the only visible one
    s.text(r"^stopped: press Resume", timeout_s=300)
    s.close()


def test_malformed_spectrum_upload_shows_the_reason_and_keeps_the_old_one(server, browser, tmp_path):
    s = Session(browser, server[0])
    bad = tmp_path / "broken.csv"
    bad.write_text("wavenumber,n_alpha\n1000,12\n1100,abc\n")
    s.page.locator("input[type=file][accept*='.jdx']").set_input_files(str(bad))
    s.text(r"broken\.csv not loaded \(kept Bertie & Lan", timeout_s=30)
    s.text(r"In use: Bertie & Lan", timeout_s=5)
    _screenshot(s, "dashboard_bad_upload.png")
    s.close()


def test_two_sessions_do_not_see_each_others_runs(server, browser):
    a, b = Session(browser, server[0]), Session(browser, server[0])
    a.tab("MD")
    b.tab("MD")
    a.page.get_by_role("button", name="Run MD").click()
    a.text(r"^finished: qtip4pf", timeout_s=300)
    assert b.page.get_by_text("ready", exact=True).count() == 1
    assert b.page.get_by_text(re.compile("^finished: qtip4pf")).count() == 0
    a.close()
    b.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _server_line(session: Session) -> tuple[int, int]:
    line = session.page.get_by_text(re.compile(r"server: \d+ live session")).first
    line.wait_for(timeout=30_000)
    text = line.inner_text()
    m = re.search(r"server: (\d+) live session\(s\), (\d+) job\(s\) running", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def test_closed_sessions_stop_their_workers_and_free_memory(server, browser):
    url, pid = server

    def open_close(long_md: bool):
        s = Session(browser, url)
        if long_md:  # 20 ps: minutes of MD, so a job that is gone by the probe was stopped
            s.tab("MD")
            time_input = s.page.locator(".bk-input-group", has_text="Time ps").locator("input").first
            time_input.fill("20")
            time_input.press("Enter")
            s.page.get_by_role("button", name="Run MD").click()
            s.text(r"running qtip4pf|compiling qtip4pf|queued", timeout_s=60)
        s.close()

    for _ in range(3):  # sessions whose MD jobs must be stopped when their page closes
        open_close(long_md=True)
    time.sleep(3)
    before = _rss_mb(pid)
    for _ in range(10):  # sessions opened and closed: Panel/HoloViews subscribers must not keep them
        open_close(long_md=False)
    # Bokeh discards a session ~15-32 s after its page closed (unused-session lifetime + check period);
    # each probe is a session too, so probe only after everything closed has had time to go
    for _ in range(4):
        time.sleep(40)
        probe = Session(browser, url)
        live, jobs = _server_line(probe)
        probe.close()
        if live <= 1 and jobs == 0:
            break
    after = _rss_mb(pid)
    assert jobs == 0, f"{jobs} job(s) still running after their sessions closed"
    assert live <= 1, f"{live} sessions still alive (only the probe should be)"
    assert after - before < 60, f"server memory grew {after - before:.0f} MB over 10 closed sessions"
    print(f"server RSS {before:.0f} MB → {after:.0f} MB over 10 sessions")
