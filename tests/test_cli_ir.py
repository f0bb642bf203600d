"""``workbench ir``: a tiny run on the shipped box writes CSV + PNG and a JSON summary; bad input → exit 2."""

import json

import numpy as np
import pytest

import workbench  # noqa: F401
from workbench.cli import main
from workbench.observables.spectrum_io import read_spectrum

TINY = ["--model", "qtip4pf", "--preset", "quick", "--nvt-ps", "0.01", "--window-ps", "0.06",
        "--tcf-ps", "0.04"]


def test_ir_writes_spectrum_csv_png_and_summary(tmp_path, capsys):
    prefix = tmp_path / "out" / "water"
    assert main(["ir", *TINY, "-o", str(prefix)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    spectrum = read_spectrum(summary["outputs"]["csv"])
    assert summary["outputs"] == {"csv": str(prefix) + ".csv", "png": str(prefix) + ".png"}
    assert spectrum.quantity == "n_alpha" and spectrum.wavenumber[-1] == 4500.0
    assert np.all(np.isfinite(spectrum.values)) and spectrum.values.max() > 0
    assert (tmp_path / "out" / "water.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["dipole"] == "charge-flux" and summary["nve_windows"] == 2
    assert summary["protocol"]["window_ps"] == 0.06 and summary["protocol"]["n_windows"] == 1
    for band in ("stretch", "bend", "libration"):
        b = summary["bands"][band]
        assert b["height_cm-1"] > 0 and b["position_err"] is None  # one starting state: no jackknife
        assert b["experiment_position_cm-1"] == pytest.approx({"stretch": 3391, "bend": 1640,
                                                               "libration": 614}[band], abs=5)
    assert set(summary["D_m2_s"]) == {"green_kubo", "einstein", "yeh_hummer_shift", "note"}
    assert 250 < summary["mean_window_temperature_K"] < 350


@pytest.mark.parametrize("args, message", [
    (["--structure", "no/such/file.pdb"], "does not exist"),
    (["--structure", "{bad}"], "cannot read"),
    (["--exp", "no/such/spectrum.csv"], "does not exist"),
    (["--tcf-ps", "5"], "must be at most window_ps"),
    (["--model", "no/such/model.npz"], "neither a shipped model"),
])
def test_ir_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    bad = tmp_path / "bad.xyz"
    bad.write_text("not a structure\n")
    args = [str(bad) if a == "{bad}" else a for a in args]
    assert main(["ir", *TINY, *args, "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_ir_refuses_a_structure_that_is_not_water(tmp_path, capsys, argon_lattice):
    from workbench import system as systems

    path = tmp_path / "argon.extxyz"
    systems.write(path, argon_lattice)
    assert main(["ir", *TINY, "--structure", str(path), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error:") and "water" in err and "\n" not in err


def test_ir_ps_is_the_nvt_length():
    """``--ps`` (the issue's name) and ``--nvt-ps`` set the same NVT sampling length."""
    from workbench.cli import build_parser

    parser = build_parser()
    short, long = parser.parse_args(["ir", "--ps", "7.5"]), parser.parse_args(["ir", "--nvt-ps", "7.5"])
    assert short.nvt_ps == long.nvt_ps == 7.5
