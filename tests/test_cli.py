"""The command line: info, md, bench dispatch and one-line errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from workbench import system as systems
from workbench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_info_reports_versions_and_devices(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["jax"] == "0.10.1"
    assert info["packages"]["jax_md"] == "0.2.29"
    assert info["x64_enabled"] is True
    assert info["jax_devices"]


def test_md_writes_trajectory(tmp_path, capsys):
    out = tmp_path / "traj.extxyz"
    structure = ROOT / "assets" / "structures" / "water64_298K.extxyz"
    assert main(["md", str(structure), "--model", "qtip4pf", "--time-ps", "0.02", "--sample-every", "10",
                 "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 4
    frames = systems.read(out, index=-1)
    assert frames.n_atoms == 192
    assert 200 < summary["mean_temperature_K"] < 400
    assert np.all(np.isfinite(frames.positions))


def test_bad_structure_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("1\n\nXe 0 0 0\n")
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "md", str(bad)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["workbench: error: bad.xyz: unknown element(s) ['Xe']; "
                                                "the workbench knows ['Ar', 'C', 'H', 'N', 'O']"]


def test_unknown_benchmark_and_model_are_named(capsys, tmp_path):
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    structure = ROOT / "assets" / "structures" / "water64_298K.extxyz"
    assert main(["md", str(structure), "--model", str(tmp_path / "missing.npz")]) == 2
    assert "neither a shipped model" in capsys.readouterr().err
