"""Build the shipped 64-water box: random packing, then q-TIP4P/F Langevin equilibration at 298.15 K.

    python scripts/build_water_box.py [--out assets/structures/water64_298K.extxyz]

Steps: ``workbench.system.water_box(64, 0.997 g/cm³, seed=0)`` (random orientations, O–O ≥ 0.23 nm)
→ 1 ps BAOAB Langevin at 0.25 fs with strong friction (γ = 50/ps) to relax the packing
→ 10 ps at 0.5 fs, γ = 5/ps.  The final positions and velocities are written as extxyz (Å, ASE
velocity units).  Deterministic for a given jax/jaxlib build (seeded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench import system as systems
from workbench.md import MDConfig, simulate
from workbench.potentials.qtip4pf import qtip4pf
from workbench.progress import console_progress

ROOT = Path(__file__).resolve().parents[1]


def build(n_molecules: int = 64, equilibration_ps: float = 10.0) -> systems.System:
    box = systems.water_box(n_molecules, density_g_cm3=0.997, seed=0)
    pot = qtip4pf(box)
    relax = simulate(pot, box, 4000, MDConfig(ensemble="nvt", dt=0.00025, gamma=50.0, sample_every=100,
                                               seed=1), progress=console_progress())
    cfg = MDConfig(ensemble="nvt", dt=0.0005, gamma=5.0, sample_every=100, seed=2)
    eq = simulate(pot, relax.to_system(), int(equilibration_ps / cfg.dt), cfg, progress=console_progress())
    print(f"mean T over the last half: {eq.temperature[eq.n_frames // 2:].mean():.1f} K")
    return eq.to_system()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "assets" / "structures" / "water64_298K.extxyz"))
    parser.add_argument("--equilibration-ps", type=float, default=10.0)
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    systems.write(out, build(equilibration_ps=args.equilibration_ps))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
