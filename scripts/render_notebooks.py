"""Execute the teaching notebooks and export them as HTML pages into docs/notebooks/.

    python scripts/render_notebooks.py            # quick mode (WORKBENCH_QUICK=1), all notebooks
    python scripts/render_notebooks.py --full     # realistic settings (tens of minutes on a CPU)
    python scripts/render_notebooks.py 01 03 --out /tmp/html   # notebooks whose names start so

The notebooks in notebooks/ stay without outputs; only the HTML pages hold them.  Each runs in a
kernel started from this interpreter, with notebooks/ as working directory.  Needs nbclient and
nbconvert (``nbconvert`` renders the HTML).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
KERNEL_NAME = "workbench-render-python"


def _kernelspec_dir() -> Path:
    """A JUPYTER_PATH folder holding a kernelspec that runs ``sys.executable``."""
    root = Path(tempfile.mkdtemp(prefix="workbench_jupyter_"))
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "workbench", "language": "python"}))
    return root


def render(path: Path, out_dir: Path, timeout_s: int) -> tuple[Path, float]:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout_s, kernel_name=KERNEL_NAME,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    wall = time.perf_counter() - t0
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}
    html, _ = HTMLExporter().from_notebook_node(nb)
    out = out_dir / (path.stem + ".html")
    out.write_text(html, encoding="utf-8")
    return out, wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--full", action="store_true", help="realistic settings instead of quick mode")
    parser.add_argument("--out", default=str(ROOT / "docs" / "notebooks"), help="output folder")
    parser.add_argument("--timeout", type=int, default=3600, help="per-cell timeout (s)")
    args = parser.parse_args(argv)

    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if any(p.name.startswith(n) for n in args.names)]
    if not paths:
        parser.error(f"no notebook in {NOTEBOOK_DIR} matches {args.names}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["JUPYTER_PATH"] = str(_kernelspec_dir())
    if args.full:
        os.environ.pop("WORKBENCH_QUICK", None)
    else:
        os.environ["WORKBENCH_QUICK"] = "1"
    failed = []
    for path in paths:
        try:
            out, wall = render(path, out_dir, args.timeout)
            print(f"{path.name}: {wall:.0f} s → {out}", flush=True)
        except Exception as err:  # report every notebook, then fail
            failed.append(path.name)
            print(f"{path.name}: FAILED: {str(err)[-2000:]}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
