"""IR protocol (workbench.protocol): settings, presets, analysis of windows (synthetic data, no MD)."""

import numpy as np
import pytest

import workbench  # noqa: F401
from workbench import protocol as P
from workbench import units
from workbench.observables.diffusion import yeh_hummer_correction
from workbench.system import water_box

DT = 0.002


def _windows(mdot, start, d_gk=None, d_e=None):
    n = len(start)
    zeros = np.zeros(n)
    return P.Windows({"m": np.asarray(mdot)}, np.asarray(start), np.arange(n) % 2 == 1,
                     zeros if d_gk is None else np.asarray(d_gk), zeros if d_e is None else np.asarray(d_e),
                     np.full(n, 298.0), zeros, DT, np.full(3, 1.24296), 298.15, {})


def test_presets_and_step_counts():
    paper = P.PRESETS["paper"]
    assert (paper.nvt_ps, paper.n_windows, paper.window_ps, paper.tcf_ps) == (160.0, 320, 5.0, 2.0)
    assert (paper.gamma, paper.dt_fs, paper.sigma_ps, paper.time_reversal) == (5.0, 0.5, 1 / 3, True)
    # 10 ps equilibration + 160 ps NVT = 340,000 steps; 640 windows × 10,000 steps
    assert paper.md_steps == 340_000 + 640 * 10_000
    default = P.PRESETS["default"]
    assert default.md_steps < 40_000  # a few minutes at 150-500 steps/s
    assert default.sample_every == 4 and default.n_lags == 501 and default.window_frames == 750
    assert default.spacing_steps == 1000 and default.equilibration_intervals == 1


@pytest.mark.parametrize("changes, message", [
    ({"tcf_ps": 2.0, "window_ps": 1.0}, "must be at most window_ps"),
    ({"sample_fs": 5.0}, "resolve only up to"),
    ({"sample_fs": 0.7}, "multiple of dt_fs"),
    ({"n_windows": 0}, "positive integer"),
    ({"window_ps": -1.0}, "window_ps must be > 0"),
    ({"equilibrate_ps": -1.0}, "equilibrate_ps"),
    ({"precision": "float16"}, "precision"),
])
def test_bad_settings_are_user_errors(changes, message):
    with pytest.raises(P.ProtocolError, match=message):
        P.PRESETS["default"].replace(**changes)


def test_protocol_needs_a_cubic_water_box(argon_lattice):
    with pytest.raises(P.ProtocolError, match="water"):
        P.sample_starts(None, argon_lattice, P.PRESETS["quick"])
    box = water_box(8, seed=0)
    with pytest.raises(P.ProtocolError, match="cubic"):
        P.sample_starts(None, box.replace(box=box.box * np.array([1.0, 1.0, 1.2])), P.PRESETS["quick"])
    with pytest.raises(P.ProtocolError, match="unknown dipole"):
        P.dipole_model("wannier")


def _band_series(rng, n_frames, noise=0.3):
    """Ṁ-like (F, 3): unit-amplitude oscillations at 618, 1642 and 3393 cm⁻¹, random phases, noise."""
    t = DT * np.arange(n_frames)[:, None]
    out = sum(a * np.cos(units.wavenumber_to_angular_frequency(nu) * t + rng.uniform(0, 2 * np.pi, 3))
              for nu, a in ((618.0, 2.0), (1642.0, 1.0), (3393.0, 3.0)))
    return out + noise * rng.normal(size=(n_frames, 3))


def test_jackknife_bands_find_the_bands_with_errors():
    rng = np.random.default_rng(0)
    start = np.repeat(np.arange(4), 2)
    mdot = np.stack([_band_series(rng, 700) for _ in start])
    protocol = P.PRESETS["default"]
    windows = _windows(mdot, start)
    tcfs = P.window_tcfs(mdot, protocol.n_lags)
    assert tcfs.shape == (8, protocol.n_lags)
    by_start = P.start_tcfs(tcfs, start)
    np.testing.assert_allclose(by_start[1], tcfs[2:4].mean(axis=0))
    bands = P.jackknife_bands(by_start, windows, protocol, P.spectrum_grid())
    for name, nu in (("libration", 618.0), ("bend", 1642.0), ("stretch", 3393.0)):
        assert bands[name]["position_cm-1"] == pytest.approx(nu, abs=4.0)
        assert 0.0 <= bands[name]["position_err"] < 10.0
        assert 0.0 < bands[name]["height_err"] < 0.5 * bands[name]["height_cm-1"]
    one = P.jackknife_bands(by_start[:1], windows, protocol, P.spectrum_grid())
    assert one["bend"]["position_err"] is None and one["bend"]["height_err"] is None


def test_diffusion_summary_averages_pairs_and_adds_yeh_hummer():
    start = np.repeat(np.arange(3), 2)
    d_gk = np.array([2.0, 2.2, 1.8, 1.8, 2.5, 2.3]) * 1e-3  # nm²/ps
    windows = _windows(np.zeros((6, 10, 3)), start, d_gk=d_gk, d_e=d_gk * 1.1)
    out = P.diffusion_summary(windows)
    per_start = np.array([2.1, 1.8, 2.4]) * 1e-3
    assert out["green_kubo"]["raw"] == pytest.approx(per_start.mean() * 1e-6)
    assert out["green_kubo"]["err"] == pytest.approx(np.std(per_start, ddof=1) / np.sqrt(3) * 1e-6)
    shift = yeh_hummer_correction(1.24296, 298.15)
    assert out["yeh_hummer_shift"] == pytest.approx(shift * 1e-6)
    assert out["yeh_hummer_shift"] == pytest.approx(0.56e-9, rel=0.01)
    assert out["einstein"]["yeh_hummer"] == pytest.approx((1.1 * per_start.mean() + shift) * 1e-6)


def test_sum_rule_and_fft_checks_on_random_series():
    rng = np.random.default_rng(1)
    protocol = P.PRESETS["quick"]
    mdot = rng.normal(size=(2, 150, 3))
    windows = _windows(mdot, [0, 0])
    rule = P.sum_rule_check(mdot, windows, protocol)
    assert rule["rel_err"] < 1e-10
    assert rule["expected_cm-2"] == pytest.approx(
        rule["prefactor_cm-1"] * np.mean(np.sum(mdot**2, axis=-1)) / (2 * units.SPEED_OF_LIGHT_CM_PER_PS
                                                                      * windows.volume_nm3))
    fft = P.fft_vs_direct_error(mdot, protocol.n_lags)
    assert fft["max_abs_err"] < 1e-12 * fft["c0"] * 150
