"""Structure: g(r) of an ideal gas is 1; density of the 64-water box ≈ 1 g/cm³."""

from pathlib import Path

import numpy as np
import pytest

import workbench  # noqa: F401
from workbench.observables.structure import mass_density, mass_density_from_symbols, rdf, rdf_by_species
from workbench.system import read

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WATER64 = SHARED / "water64.pdb"


def test_ideal_gas_rdf_is_one():
    rng = np.random.default_rng(0)
    box = np.array([2.0, 2.5, 3.0])
    pos = rng.uniform(size=(20, 300, 3)) * box
    a, b = np.arange(100), np.arange(100, 300)
    for index_b in (None, b):
        r, g = rdf(pos, box, a, index_b, n_bins=50)
        assert r.shape == g.shape == (50,) and r[-1] < 1.0
        good = r > 0.2  # the first shells hold few pairs
        assert abs(np.mean(g[good]) - 1.0) < 0.01
        assert np.max(np.abs(g[good] - 1.0)) < 0.15
    # the same normalisation for overlapping species sets
    r, g = rdf(pos, box, np.arange(200), np.arange(100, 300), n_bins=50)
    assert abs(np.mean(g[r > 0.2]) - 1.0) < 0.01


def test_rdf_rejects_r_max_beyond_half_box():
    with pytest.raises(ValueError, match="L/2"):
        rdf(np.zeros((4, 3)), np.ones(3), [0, 1], r_max=0.6)


@pytest.mark.skipif(not WATER64.exists(), reason=f"shared data {WATER64} not available")
def test_water64_density_and_oo_peak():
    system = read(WATER64)
    assert system.box[0] == pytest.approx(1.2385, abs=1e-4)
    rho = mass_density(system.masses, system.box)
    assert rho == pytest.approx(1.0, abs=0.02)
    assert mass_density_from_symbols(system.symbols, system.box) == pytest.approx(rho, rel=1e-12)
    assert rho == pytest.approx(system.density_g_cm3, rel=1e-12)
    g = rdf_by_species(system.positions, system.box, system.symbols, n_bins=60,
                       molecules=system.molecules)
    assert set(g) == {("H", "H"), ("H", "O"), ("O", "O")}
    r, g_oo = g[("O", "O")]
    assert 0.25 < r[np.argmax(g_oo)] < 0.31  # hydrogen-bonded neighbours at ≈ 0.28 nm


def test_density_per_frame():
    boxes = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    rho = mass_density(np.full(10, 60.2214076), boxes)  # 602.2 amu in 1 nm³ → 1.0 g/cm³
    np.testing.assert_allclose(rho, [1.0, 0.5], rtol=1e-9)
