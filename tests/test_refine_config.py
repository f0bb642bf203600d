"""Refinement config validation: every error names the offending key; TOML round trip."""

import tomllib

import pytest

from workbench.refine import ConfigError, from_dict, load_config, to_toml


@pytest.mark.parametrize("data, message", [
    ({"md": {"dt": 1.0}}, r"^md\.dt: unknown key; known keys in \[md\]: dt_fs, "),
    ({"loss": {"ir": {"wieght": 1.0}}}, r"^loss\.ir\.wieght: unknown key"),
    ({"colour": "blue"}, r"^colour: unknown key"),
    ({"md": {"n_windows": "four"}}, r"^md\.n_windows: must be an integer, got a string 'four'"),
    ({"md": {"n_windows": 2.5}}, r"^md\.n_windows: must be an integer, got a number 2\.5"),
    ({"md": {"dt_fs": True}}, r"^md\.dt_fs: must be a number, got a boolean True"),
    ({"md": {"time_reversal": 1}}, r"^md\.time_reversal: must be a boolean"),
    ({"md": "fast"}, r"^md: must be a table, got a string"),
    ({"loss": {"ir": {"range_weights": [1.0, "x"]}}}, r"^loss\.ir\.range_weights\[1\]: must be a number"),
    ({"system": {"params": {"epsilon": "big"}}}, r"^system\.params\.epsilon: must be a number"),
    ({"md": {"dt_fs": -1}}, r"^md\.dt_fs: must be > 0\.0, got -1\.0"),
    ({"run": {"iterations": 0}}, r"^run\.iterations: must be ≥ 1, got 0"),
    ({"optimizer": {"b2": 1.5}}, r"^optimizer\.b2: must be ≤ 1\.0, got 1\.5"),
    ({"md": {"estimator": "magic"}}, r"^md\.estimator: must be one of 'adjoint', 'checkpoint', 'direct'"),
    ({"md": {"truncation_fs": 200.3}}, r"^md\.truncation_fs: must be a multiple"),
    ({"md": {"anchor_fs": 50.0, "estimator": "direct"}}, r"^md\.anchor_fs: applies to the adjoint"),
    ({"md": {"anchor_fs": 0.7}}, r"^md\.anchor_fs: applies to the adjoint estimator, as a multiple"),
    ({"md": {"anchor_fs": 200.0}}, r"^md\.anchor_fs: .* shorter than md\.truncation_fs \(200\.0\)"),
    ({"md": {"n_windows": 3, "window_batch": 4}},
     r"^md\.window_batch: must divide the number of windows \(6\)"),
    ({"loss": {"ir": {"ranges_cm": [[0, 1200], [1000, 4000]]}}},
     r"^loss\.ir\.ranges_cm: ranges must not overlap"),
    ({"loss": {"ir": {"ranges_cm": [[0, 1000]]}}}, r"^loss\.ir\.range_weights: needs one weight per range"),
    ({"loss": {"ir": {"weight": 0.0}}}, r"^loss: every loss weight is 0"),
    ({"dipole": {"model": "none"}}, r"^dipole\.model: the IR loss needs a dipole model"),
    ({"loss": {"force_matching": {"weight": 1.0}}}, r"^loss\.force_matching\.data: required"),
    ({"train": {"potential": {"enabled": False}}}, r"^train: no trainable group"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_defaults_and_round_trip(tmp_path):
    cfg = from_dict({"md": {"n_windows": 8}, "system": {"params": {"r_eq": 0.095}},
                     "train": {"dipole": {"enabled": True, "lr": 0.01, "params": ["q_h"]}}})
    assert cfg.md.dt_fs == 0.5 and cfg.md.window_steps == 400 and cfg.md.n_runs == 16 and cfg.md.batch == 16
    assert cfg.loss.ir.range_weights == [10.0, 1.0] and cfg.loss.window_terms == ("ir",)
    assert list(cfg.train.groups) == ["potential", "dipole"]
    text = to_toml(cfg)
    assert "[loss.ir]" in text and "params = {r_eq = 0.095}" in text
    assert from_dict(tomllib.loads(text)) == cfg
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(path) == cfg
    assert cfg.replace(**{"md.dt_fs": 0.25}).md.window_steps == 800


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[md\ndt_fs = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text('[system]\nstructure = "box.extxyz"\n[loss.ir]\ntarget = "../spec.csv"\n')
    cfg = load_config(path)
    assert cfg.path(cfg.system.structure) == tmp_path / "sub" / "box.extxyz"
    resolved = cfg.resolved(tmp_path / "run")
    assert resolved.loss.ir.target == str((tmp_path / "spec.csv").resolve())
    assert resolved.run.dir == str((tmp_path / "run").resolve()) and resolved.system.model == "qtip4pf"


@pytest.mark.parametrize("name", ["water_ir_quick", "water_ir_mlp_quick", "water_ir_mlp_paper",
                                  "argon_diffusion"])
def test_example_configs_build(name, tmp_path):
    """Every example's model, structure, dipole, targets and trainable groups resolve (no MD is run)."""
    from pathlib import Path

    from workbench.refine import Trainer

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.toml"
    trainer = Trainer(load_config(path), tmp_path / "run")
    assert all(g.size > 0 for g in trainer.groups.values())
    if trainer.problem.ir is not None:
        assert trainer.problem.ir.grid.min() >= 0 and trainer.problem.ir.grid.max() < 4000


def test_paper_config_is_the_seed_protocol(tmp_path):
    """examples/water_ir_paper.toml holds the seed paper's protocol number for number (issue #11);
    with ../shared/data present its EANN and DeepDipole load and the loss grid is the 8.339 cm⁻¹ one."""
    from pathlib import Path

    import numpy as np
    from conftest import shared_file

    path = Path(__file__).resolve().parents[1] / "examples" / "water_ir_paper.toml"
    cfg = load_config(path)
    md, ir, pot = cfg.md, cfg.loss.ir, cfg.train.potential
    assert cfg.system.structure == "default" and cfg.system.temperature_K == 298.15
    assert Path(cfg.system.model).name == "eann_water_dft_start.npz"
    assert Path(cfg.dipole.model).name == "deepdipole_water.npz"
    assert (md.dt_fs, md.gamma_per_ps, md.n_windows, md.time_reversal) == (0.5, 5.0, 320, True)
    assert md.window_steps == 400 and md.truncation_fs == 200.0 and md.n_runs == 640
    assert md.spacing_steps * md.dt_ps == pytest.approx(0.5)
    assert (ir.weight, ir.mode, ir.normalise, ir.window) == (1.0, "absolute", False, "gaussian")
    assert ir.sigma_ps == pytest.approx(1 / 3) and ir.grid_step_cm == 8.339
    assert ir.ranges_cm == [[0.0, 1000.0], [1000.0, 4000.0]] and ir.range_weights == [10.0, 1.0]
    opt = cfg.optimizer
    assert (opt.name, opt.schedule, opt.clip_norm, opt.b1, opt.b2) == ("adam", "constant", 0.0, 0.9, 0.999)
    assert (pot.lr, pot.parameterisation, pot.params) == (5e-5, "absolute", ["*"])
    assert not cfg.train.dipole.enabled
    assert to_toml(from_dict(tomllib.loads(to_toml(cfg)), cfg.base_dir)) == to_toml(cfg)

    shared_file("eann_water_dft_start.npz")
    shared_file("deepdipole_water.npz")
    from workbench.refine import Trainer

    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.problem.system.n_atoms == 192 and trainer.groups["potential"].size == 14283
    assert trainer.problem.dipole.name == "DeePMD DeepDipole"
    grid = trainer.problem.ir.grid
    np.testing.assert_allclose(np.diff(grid), 8.339, rtol=1e-9)
    assert grid.max() < 4000


@pytest.mark.parametrize("data, message", [
    ({"loss": {"density": {"wieght": 1.0}}},
     r"^loss\.density\.wieght: unknown key; known keys in \[loss\.density\]: weight, target_g_cm3"),
    ({"loss": {"density": {"weight": -1.0}}}, r"^loss\.density\.weight: must be ≥ 0\.0, got -1\.0"),
    ({"loss": {"density": {"target_g_cm3": 0}}}, r"^loss\.density\.target_g_cm3: must be > 0\.0"),
    ({"loss": {"density": {"n_samples": 1}}}, r"^loss\.density\.n_samples: must be ≥ 2, got 1"),
    ({"loss": {"density": {"min_ess_fraction": 1.5}}}, r"^loss\.density\.min_ess_fraction: must be ≤ 1\.0"),
    ({"loss": {"density": {"pressure_bar": "1 bar"}}}, r"^loss\.density\.pressure_bar: must be a number"),
    ({"loss": {"density": {"weight": 1.0, "sampling_ps": 0.001, "n_samples": 10}}},
     r"^loss\.density\.sampling_ps: 0\.001 ps is shorter than one time step per sample"),
    ({"dipole": {"model": "wannier"}},
     r"^dipole\.model: must be one of 'qtip4pf'.* or a DeepDipole \.npz file, got 'wannier'"),
])
def test_density_and_dipole_keys_are_validated(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


def test_density_loss_alone_is_a_valid_config():
    cfg = from_dict({"loss": {"ir": {"weight": 0.0}, "density": {"weight": 1.0, "target_g_cm3": 0.997}}})
    assert cfg.loss.density.weight == 1.0 and cfg.loss.density.pressure_bar == 1.0
