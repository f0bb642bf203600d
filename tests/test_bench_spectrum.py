"""``workbench bench spectrum``: the real code path at a tiny size returns the contract's keys."""

import json

import pytest

import workbench  # noqa: F401
from workbench import bench
from workbench import protocol as P


def test_spectrum_benchmark_returns_the_contract_keys(monkeypatch):
    # the "quick" preset shrunk further (one NVT state, two 0.06 ps windows) to keep the test short
    monkeypatch.setitem(P.PRESETS, "quick", P.PRESETS["quick"].replace(nvt_ps=0.01, window_ps=0.06,
                                                                       tcf_ps=0.04))
    result = bench.run("spectrum", quick=True)
    json.dumps(result)  # JSON-ready
    assert result["benchmark"] == "spectrum" and result["protocol"]["window_ps"] == 0.06
    assert set(result["peaks_cm-1"]) == {"stretch", "bend", "libration"}
    assert result["peaks_cm-1"]["bend"] == result["bands"]["charge_flux"]["bend"]["position_cm-1"]
    assert set(result["bands"]) == {"charge_flux", "fixed_charges"}
    assert result["sum_rule_rel_err"] < 1e-10
    assert result["fft_vs_direct_max_abs_err"] < 1e-9 * result["tcf_c0"]
    d = result["D_m2_s"]
    for method in ("green_kubo", "einstein"):
        assert set(d[method]) == {"raw", "yeh_hummer", "err"}
        assert d[method]["yeh_hummer"] == pytest.approx(d[method]["raw"] + d["yeh_hummer_shift"])
    assert "environment" in result and result["nve_max_abs_drift_kT_per_atom_ps"] < 0.05
