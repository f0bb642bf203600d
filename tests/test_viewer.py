"""The offline 3Dmol.js structure viewer: XYZ text, bundle contents, and a real render in chromium."""

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_for_page

from workbench import models
from workbench.system import System
from workbench.ui.viewer import BUNDLE, THREEDMOL_VERSION, StructureViewer, structure_xyz, system_xyz

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"

# Headless chromium has no GPU here: WebGL (which 3Dmol.js needs) comes from SwiftShader, the
# software rasterizer shipped with chromium, through ANGLE.  Recent chromium offers it to WebGL only
# with --enable-unsafe-swiftshader; playwright 1.65 already adds that flag to every launch (so the
# test also passes with plain --no-sandbox, even with --disable-gpu); it is repeated here, with
# --use-angle=swiftshader, so that the test does not depend on playwright's defaults.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
]


@pytest.fixture(scope="module")
def water():
    return models.default_system()


# ----------------------------------------------------------------------------------------------
# without a browser


def test_system_xyz_is_angstrom_extended_xyz(water):
    text = system_xyz(water)
    lines = text.splitlines()
    assert int(lines[0]) == water.n_atoms == 192
    atom_lines = lines[2:]
    assert len(atom_lines) == 192
    symbols = [line.split()[0] for line in atom_lines]
    coords = np.array([[float(x) for x in line.split()[1:4]] for line in atom_lines])
    assert tuple(symbols) == tuple(water.symbols)
    np.testing.assert_allclose(coords, 10.0 * np.asarray(water.positions), atol=1e-7)  # nm → Å
    lattice = re.search(r'Lattice="([^"]+)"', lines[1]).group(1).split()
    np.testing.assert_allclose(np.array(lattice, float).reshape(3, 3), np.diag(10.0 * water.box), atol=1e-5)
    assert 'pbc="T T T"' in lines[1]


def test_system_xyz_wraps_whole_molecules(water):
    wrapped = np.array([[float(x) for x in line.split()[1:4]]
                        for line in system_xyz(water, wrap=True).splitlines()[2:]]) / 10.0
    oxygens = wrapped[water.molecules[:, 0]]
    assert (oxygens >= 0).all() and (oxygens < water.box).all()
    shift = wrapped - np.asarray(water.positions)  # whole box vectors, the same for a molecule's atoms
    np.testing.assert_allclose(shift / water.box, np.round(shift / water.box), atol=1e-6)
    for members in water.molecules:
        np.testing.assert_allclose(shift[members], shift[members[0]][None].repeat(3, 0), atol=1e-6)


def test_structure_xyz_plain_and_refusals():
    text = structure_xyz(["Ar", "Ar"], [[0.0, 0.0, 0.0], [0.1, 0.2, 0.35]], comment="two\natoms")
    lines = text.splitlines()
    assert lines[0] == "2" and "Lattice" not in lines[1] and lines[1].endswith("two atoms")
    assert [float(x) for x in lines[3].split()[1:]] == pytest.approx([1.0, 2.0, 3.5])
    with pytest.raises(ValueError, match="shape"):
        structure_xyz(["Ar"], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="symbols"):
        structure_xyz(["Ar", "Ar"], [[0.0, 0.0, 0.0]])


def test_component_constructs(water):
    viewer = StructureViewer(xyz=system_xyz(water))
    assert viewer.xyz.startswith("192\n") and viewer.style == "ball-and-stick"
    viewer = StructureViewer.from_system(water, style="spheres", height=300)
    assert viewer.box_nm == pytest.approx(list(water.box)) and viewer.height == 300
    argon = System(("Ar",), np.zeros((1, 3)), np.full(3, 1.0), np.zeros((1, 1), int))
    viewer.show_system(argon)
    assert viewer.xyz.startswith("1\n") and viewer.box_nm == [1.0, 1.0, 1.0]
    # the served component points at the committed bundle, not at the CDN import map
    assert Path(StructureViewer._bundle_path) == BUNDLE
    assert StructureViewer._esm_path(compiled=True) == BUNDLE


# Hosts that appear in the bundle as plain strings, none of them loaded by this viewer:
# - files.rcsb.org, models.rcsb.org, pubchem.ncbi.nlm.nih.gov: 3Dmol's optional "download a PDB/CID"
#   helpers ($3Dmol.download, and the autoloader for <div class="viewer_3Dmoljs" data-pdb=...>);
#   they run only when called with a structure id or when such a div exists, never here;
# - github.com, mrl.nyu.edu, stackoverflow.com: citations inside shader source strings and
#   license comments.
# A new host after a 3Dmol upgrade fails this test on purpose: look at what it is used for.
KNOWN_STRING_HOSTS = {"files.rcsb.org", "models.rcsb.org", "pubchem.ncbi.nlm.nih.gov", "github.com",
                      "mrl.nyu.edu", "stackoverflow.com"}


def test_bundle_is_self_contained():
    assert BUNDLE.is_file(), "run scripts/build_viewer_bundle.sh"
    size = BUNDLE.stat().st_size
    assert 100_000 < size < 2_000_000, size
    code = BUNDLE.read_text(encoding="utf-8")
    assert f"3dmol v{THREEDMOL_VERSION}" in code  # the pinned release was compiled in
    assert "StructureViewer" in code  # panel's export of the component
    # a string of viewer.js survives minification: a bundle built before it was added is stale
    assert "workbench-structure-viewer" in code, "bundle is stale: run scripts/build_viewer_bundle.sh"
    # What would make the browser fetch code at run time: a static or dynamic ES import of a URL,
    # a <script src=...> or importScripts(...) of a URL, or any reference to a CDN host.
    assert not re.search(r"""\bfrom\s*["']https?:""", code)
    assert not re.search(r"""\bimport\s*\(\s*["']https?:""", code)
    assert not re.search(r"""\bimportScripts\s*\(\s*["']https?:""", code)
    assert not re.search(r"""<script[^>]*src\s*=\s*\\?["']https?:""", code)
    assert not re.search(r"cdn\.|unpkg|jsdelivr|esm\.sh|skypack|cdnjs", code, re.IGNORECASE)
    # Every other absolute URL is an inert string (see KNOWN_STRING_HOSTS).
    hosts = set(re.findall(r"https?://([A-Za-z0-9.-]+)", code))
    assert hosts <= KNOWN_STRING_HOSTS, hosts - KNOWN_STRING_HOSTS


# ----------------------------------------------------------------------------------------------
# served page in chromium

APP = """\
import panel as pn

from workbench import models
from workbench.ui.viewer import StructureViewer, system_xyz

system = models.default_system()
viewer = StructureViewer(xyz=system_xyz(system), box_nm=list(system.box), width=640, height=480)
first_ten = system.replace(symbols=system.symbols[:30], positions=system.positions[:30],
                           molecules=system.molecules[:10], velocities=None)
button = pn.widgets.Button(name="ten waters")
button.on_click(lambda event: viewer.show_system(first_ten))
pn.Column(button, viewer).servable()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_viewer(tmp_path_factory):
    work = tmp_path_factory.mktemp("viewer_app")
    script = work / "viewer_app.py"
    script.write_text(APP)
    port = _free_port()
    log = open(work / "panel.log", "w+b")  # a file, not a pipe that can fill
    env = {**os.environ, "BOKEH_RESOURCES": "server"}
    command = [sys.executable, "-m", "panel", "serve", str(script), "--port", str(port),
               "--address", "localhost", "--allow-websocket-origin", f"localhost:{port}"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}/viewer_app"
    try:
        problem = wait_for_page(url, proc)
        if problem is not None:
            log.seek(0)
            pytest.fail(f"panel serve did not come up ({problem}): " + log.read().decode()[-2000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# True once the viewer's container reports `n` atoms drawn on a canvas of non-zero size.
SHOWS_ATOMS = """(n) => {
    const find = (root) => {
        for (const el of root.querySelectorAll('*')) {
            if (el.classList?.contains('workbench-structure-viewer')) return el;
            if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; }
        }
        return null;
    };
    const c = find(document);
    const canvas = c && c.querySelector('canvas');
    return Boolean(c && c.dataset.atoms === String(n) && canvas && canvas.width > 0 && canvas.height > 0);
}"""


@pytest.mark.ui
def test_viewer_renders_offline(served_viewer):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM} (.ci/run installs it)")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(served_viewer, wait_until="networkidle", timeout=60_000)
            # playwright's CSS locators pierce the shadow root panel renders the component into
            container = page.locator("div.workbench-structure-viewer")
            container.wait_for(timeout=30_000)
            page.wait_for_function(SHOWS_ATOMS, arg=192, timeout=30_000)
            canvas = container.locator("canvas").first
            box = canvas.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 100, box
            time.sleep(0.5)  # let the first WebGL frame reach the compositor
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "viewer.png"))
            png = canvas.screenshot()
            # a new configuration from Python replaces the model in the same canvas
            page.get_by_role("button", name="ten waters").click()
            page.wait_for_function(SHOWS_ATOMS, arg=30, timeout=30_000)
            assert container.locator("canvas").count() == 1
        finally:
            browser.close()

    local = ("http://localhost", "ws://localhost", "http://127.0.0.1", "ws://127.0.0.1",
             "blob:http://localhost", "blob:http://127.0.0.1", "data:")
    foreign = [u for u in requests if not u.startswith(local)]
    assert not foreign, f"page fetched resources from outside the server: {foreign[:5]}"
    assert not errors, errors
    # the canvas shows atoms, not just the white background: oxygens are drawn red
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    not_white = (pixels < 235).any(axis=-1)
    assert not_white.mean() > 0.05, f"canvas is (nearly) blank: {not_white.mean():.3f} non-white"
    assert red.mean() > 0.002, f"no oxygen-red pixels ({red.mean():.4f})"
