"""Build assets/structures/argon346.extxyz: 346 argon atoms at the liquid density of Rahman's argon.

346 sites are drawn at random (seed 0) from an 8 × 8 × 8 simple-cubic lattice filling a cubic box
that holds 346 atoms at 1.374 g/cm³ (Rahman 1964, 94.4 K); each atom is displaced by 0.01 nm
Gaussian noise.  The lattice start is not equilibrated: configs using it equilibrate first
(``md.equilibrate_ps``).  Usage: ``python scripts/build_argon_box.py [OUT]``.
"""

import sys
from pathlib import Path

import numpy as np

from workbench import units
from workbench.system import KNOWN_ELEMENTS, System, write

N_ATOMS = 346
DENSITY_G_CM3 = 1.374


def argon_box(n_atoms: int = N_ATOMS, density_g_cm3: float = DENSITY_G_CM3, seed: int = 0) -> System:
    volume = n_atoms * KNOWN_ELEMENTS["Ar"] / (density_g_cm3 / units.G_PER_CM3_PER_AMU_PER_NM3)
    edge = volume ** (1.0 / 3.0)
    n = int(np.ceil(n_atoms ** (1.0 / 3.0)))
    lattice = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * (edge / n)
    rng = np.random.default_rng(seed)
    sites = lattice[np.sort(rng.choice(len(lattice), n_atoms, replace=False))]
    positions = sites + rng.normal(scale=0.01, size=sites.shape)
    return System(("Ar",) * n_atoms, positions, np.full(3, edge), np.arange(n_atoms)[:, None])


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "assets" / \
        "structures" / "argon346.extxyz"
    write(out, argon_box())
    print(out)
