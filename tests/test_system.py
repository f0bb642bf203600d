"""Systems: water boxes, structure files, ASE conversion and clear errors for bad input."""

import numpy as np
import pytest
from ase import Atoms
from conftest import shared_file

from workbench import system as systems
from workbench import units
from workbench.system import StructureError


def test_water_box_density_geometry_and_no_overlaps():
    box = systems.water_box(32, density_g_cm3=0.997, seed=3)
    assert box.n_atoms == 96 and box.is_water()
    assert box.density_g_cm3 == pytest.approx(0.997, rel=1e-12)
    pos = box.positions
    for o, h1, h2 in box.molecules:
        r1, r2 = pos[h1] - pos[o], pos[h2] - pos[o]
        assert np.linalg.norm(r1) == pytest.approx(0.09419)
        cos = r1 @ r2 / np.linalg.norm(r1) / np.linalg.norm(r2)
        assert np.degrees(np.arccos(cos)) == pytest.approx(107.4)
    systems.check_no_overlaps(box)
    # seeded: same seed, same box; another seed, another box
    np.testing.assert_array_equal(systems.water_box(32, seed=3).positions, pos)
    assert not np.allclose(systems.water_box(32, seed=4).positions, pos)
    # every atom kept apart, not only the oxygens: this box once had two H 0.0915 nm apart
    systems.check_no_overlaps(systems.water_box(216, density_g_cm3=0.997, seed=0))


def test_water_box_too_dense_is_refused():
    with pytest.raises(StructureError, match="could not place"):
        systems.water_box(64, density_g_cm3=1.9, min_distance=0.3, max_tries=2000)


@pytest.mark.parametrize("suffix", ["extxyz", "pdb", "traj"])
def test_write_read_roundtrip(tmp_path, suffix):
    box = systems.water_box(8, density_g_cm3=0.5, seed=1)
    box = box.replace(velocities=np.random.default_rng(0).normal(size=(24, 3)))
    path = tmp_path / f"w.{suffix}"
    systems.write(path, box)
    back = systems.read(path)
    assert back.symbols == box.symbols
    tol = 1e-3 * units.NM_PER_ANGSTROM if suffix == "pdb" else 1e-10  # PDB keeps 3 decimals in Å
    np.testing.assert_allclose(back.positions, box.positions, atol=tol)
    np.testing.assert_allclose(back.box, box.box, atol=tol)
    np.testing.assert_array_equal(back.molecules, box.molecules)
    if suffix != "pdb":  # extxyz stores momenta with 8 significant digits
        atol = 0 if suffix == "traj" else 1e-7
        np.testing.assert_allclose(back.velocities, box.velocities, rtol=1e-10, atol=atol)


def test_ase_velocity_units():
    """1 nm/ps = 1000 m/s: check through ASE's own unit system."""
    from ase import units as ase_units

    box = systems.water_box(1, density_g_cm3=0.1).replace(velocities=np.full((3, 3), 1.0))
    atoms = systems.to_atoms(box)
    # ASE velocity: Å per ASE time unit, and 1 fs = ase_units.fs ASE time units
    v_m_per_s = atoms.get_velocities()[0, 0] * 1e-10 / (1e-15 / ase_units.fs)
    assert v_m_per_s == pytest.approx(1000.0, rel=1e-9)


def test_read_water64_pdb():
    s = systems.read(shared_file("water64.pdb"))
    assert s.n_atoms == 192 and s.is_water()
    np.testing.assert_allclose(s.box, 1.2385)
    assert s.density_g_cm3 == pytest.approx(1.0077, abs=2e-3)


def test_unknown_element_is_named(tmp_path):
    atoms = Atoms("OHHXe", positions=np.random.default_rng(0).uniform(0, 9, (4, 3)), cell=[10] * 3, pbc=True)
    path = tmp_path / "bad.extxyz"
    atoms.write(path)
    with pytest.raises(StructureError, match=r"bad.extxyz.*unknown element.*Xe"):
        systems.read(path)


def test_missing_cell_is_named(tmp_path):
    path = tmp_path / "nocell.xyz"
    path.write_text("3\n\nO 0 0 0\nH 0.9 0 0\nH -0.3 0.9 0\n")
    with pytest.raises(StructureError, match="missing periodic cell"):
        systems.read(path)


def test_overlapping_atoms_are_named(tmp_path):
    box = systems.water_box(4, density_g_cm3=0.3, seed=0)
    pos = box.positions.copy()
    pos[3] = pos[0] + 0.005  # oxygen of molecule 2 on top of molecule 1's oxygen
    pos[4:6] = pos[3] + (box.positions[1:3] - box.positions[0])
    systems.write(tmp_path / "overlap.extxyz", box.replace(positions=pos))
    message = r"overlapping atoms: O0 and O3 are 0\.087 Å apart \(minimum 0\.50"
    with pytest.raises(StructureError, match=message):
        systems.read(tmp_path / "overlap.extxyz")


def test_skewed_cell_is_refused(tmp_path):
    atoms = Atoms("OHH", positions=[[0, 0, 0], [0.9, 0, 0], [-0.3, 0.9, 0]],
                  cell=[[10, 0, 0], [2, 10, 0], [0, 0, 10]], pbc=True)
    atoms.write(tmp_path / "skew.extxyz")
    with pytest.raises(StructureError, match="orthorhombic"):
        systems.read(tmp_path / "skew.extxyz")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(StructureError, match="does not exist"):
        systems.read(tmp_path / "nope.pdb")
