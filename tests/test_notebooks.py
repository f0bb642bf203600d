"""The teaching notebooks (notebooks/*.ipynb) are committed without outputs and run top to bottom.

Each notebook is executed in quick mode (``WORKBENCH_QUICK=1``) with its folder as working directory,
in a kernel started from this interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``, so
the venv's Python runs it wherever the repository was cloned).  Every notebook ends with a cell of
``assert`` statements on the physics it computed (band positions, diffusion coefficients, gradient
growth, memory scaling ...), so a wrong number fails the test like an exception does.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600
KERNEL_NAME = "workbench-test-python"


def _ids(paths):
    return [p.stem for p in paths]


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 5, f"expected the five teaching notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    """Outputs make diffs unreadable and the repository heavy: commit notebooks cleared."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {k} has outputs; clear them before committing"
        assert cell.get("execution_count") is None, f"{path.name} cell {k} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_quick_mode_flag_in_first_code_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert 'WORKBENCH_QUICK = os.environ.get("WORKBENCH_QUICK") == "1"' in source


@pytest.fixture(scope="module")
def venv_kernel(tmp_path_factory):
    """A kernelspec running ``sys.executable`` (this venv's Python), found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "workbench (test)", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        yield KERNEL_NAME


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_quick_mode(path, venv_kernel, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("WORKBENCH_QUICK", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=venv_kernel,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    t0 = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - t0
    print(f"{path.name}: {wall:.0f} s in quick mode")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert "all checks passed" in text, f"{path.name}: the final checks cell did not report success"
