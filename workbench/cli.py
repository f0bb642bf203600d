"""The ``workbench`` command line.

    workbench info                       versions, JAX devices, precision
    workbench md STRUCTURE ...           run MD and write a trajectory
    workbench bench NAME [--quick]       run a benchmark; last stdout line is one JSON object

Errors in user input end with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _info(args) -> int:
    import platform
    from importlib import metadata

    import jax

    import workbench

    packages = {}
    for name in ("jax", "jaxlib", "jax-md", "numpy", "scipy", "optax", "ase", "panel", "bokeh",
                 "holoviews", "param"):
        try:
            packages[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name.replace("-", "_")] = "not installed"
    info = {
        "workbench": workbench.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "packages": packages,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "x64_enabled": bool(jax.config.read("jax_enable_x64")),
        "default_precision": "float64 (state dtype chooses: --precision float32|float64)",
    }
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            if isinstance(v, dict):
                print(f"{k}:")
                for kk, vv in v.items():
                    print(f"  {kk:12s} {vv}")
            else:
                print(f"{k:18s} {v}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _md(args) -> int:
    from workbench import system as systems
    from workbench.md import MDConfig, simulate
    from workbench.models import load_potential
    from workbench.progress import console_progress

    sys_ = systems.read(args.structure)
    pot = load_potential(args.model, sys_, trusted=args.trust)
    cfg = MDConfig(ensemble=args.ensemble, temperature_K=args.temperature, dt=args.dt_fs * 1e-3,
                   sample_every=args.sample_every, precision=args.precision, seed=args.seed)
    n_steps = int(round(args.time_ps / cfg.dt))
    traj = simulate(pot, sys_, n_steps, cfg, equilibration_steps=int(round(args.equilibrate_ps / cfg.dt)),
                    progress=console_progress())
    frames = [traj.to_system(i) for i in range(traj.n_frames)]
    systems.write(args.output, frames)
    print(json.dumps({"frames": traj.n_frames, "mean_temperature_K": float(traj.temperature.mean()),
                      "output": str(args.output), "wall_time_s": round(traj.wall_time_s, 2)}))
    return 0


def _bench(args) -> int:
    from workbench import bench

    result = bench.run(args.name, quick=args.quick)
    line = json.dumps(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, JAX devices, precision")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_info)

    p = sub.add_parser("md", help="run MD on a structure and write the trajectory (extxyz/traj/pdb)")
    p.add_argument("structure", help="structure file with a periodic orthorhombic cell (pdb, extxyz, ...)")
    p.add_argument("--model", default="default",
                   help="'default' (shipped EANN water), 'qtip4pf', or a model file")
    p.add_argument("--trust", action="store_true", help="allow loading a pickle model file")
    p.add_argument("--ensemble", choices=["nvt", "nve"], default="nvt")
    p.add_argument("--temperature", type=float, default=298.15, help="K")
    p.add_argument("--time-ps", type=float, default=1.0, help="sampled length, ps")
    p.add_argument("--equilibrate-ps", type=float, default=0.0, help="unsaved equilibration, ps")
    p.add_argument("--dt-fs", type=float, default=0.5, help="time step, fs")
    p.add_argument("--sample-every", type=int, default=20, help="steps between saved frames")
    p.add_argument("--precision", choices=["float32", "float64"], default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="trajectory.extxyz")
    p.set_defaults(func=_md)

    p = sub.add_parser("bench", help="run a benchmark (JSON on the last stdout line)")
    p.add_argument("name", help="benchmark name (workbench bench list)")
    p.add_argument("--quick", action="store_true", help="small size, < 60 s on 2 CPU cores")
    p.add_argument("--json", metavar="FILE", help="also write the JSON result to FILE")
    p.set_defaults(func=_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from workbench.errors import UserInputError

    try:
        return args.func(args)
    except UserInputError as err:
        print(f"workbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
