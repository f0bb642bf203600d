"""The ``workbench`` command line.

    workbench info                       versions, JAX devices, precision
    workbench md STRUCTURE ...           run MD and write a trajectory
    workbench ir [--preset P] ...        IR spectrum (NVT → NVE windows): CSV, PNG, JSON summary
    workbench bench NAME [--quick]       run a benchmark; last stdout line is one JSON object
    workbench refine CONFIG              refine a potential (see workbench.refine); --resume RUNDIR
    workbench pretrain CONFIG            force-match an EANN to reference frames (workbench.pretrain)
    workbench serve [--port P]           the dashboard (same page as `panel serve app.py`), offline

Errors in user input end with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
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
    if args.dispersion_correction:
        from workbench.potentials.dispersion import with_dispersion_correction

        pot = with_dispersion_correction(pot)
    cfg = MDConfig(ensemble=args.ensemble, temperature_K=args.temperature, dt=args.dt_fs * 1e-3,
                   sample_every=args.sample_every, precision=args.precision, seed=args.seed,
                   pressure_bar=args.pressure_bar, barostat_every=args.barostat_every)
    n_steps = int(round(args.time_ps / cfg.dt))
    traj = simulate(pot, sys_, n_steps, cfg, equilibration_steps=int(round(args.equilibrate_ps / cfg.dt)),
                    progress=console_progress())
    frames = [traj.to_system(i) for i in range(traj.n_frames)]
    systems.write(args.output, frames)
    summary = {"frames": traj.n_frames, "mean_temperature_K": float(traj.temperature.mean()),
               "output": str(args.output), "wall_time_s": round(traj.wall_time_s, 2)}
    if args.ensemble == "npt":
        summary.update(_npt_summary(traj, args.density_out))
    print(json.dumps(summary))
    return 0


def _npt_summary(traj, density_out) -> dict:
    """⟨ρ⟩ and ⟨V⟩ with 5-block standard errors; the volume/density series to ``density_out`` (CSV)."""
    import numpy as np

    from workbench.observables.structure import block_average

    rho, rho_err = block_average(traj.density_g_cm3)
    volume, volume_err = block_average(traj.volumes)
    if density_out:
        np.savetxt(density_out, np.column_stack([traj.time_ps, traj.volumes, traj.density_g_cm3]),
                   delimiter=",", header="time_ps,volume_nm3,density_g_cm3", comments="")
    return {"density_g_cm3": rho, "density_stderr_g_cm3": rho_err, "volume_nm3": volume,
            "volume_stderr_nm3": volume_err, "barostat_acceptance": traj.barostat_acceptance,
            "density_series": density_out}


#: ``workbench ir`` options that override a field of the chosen preset (dest → IRProtocol field).
_IR_OVERRIDES = {"temperature": "temperature_K", "equilibrate_ps": "equilibrate_ps", "nvt_ps": "nvt_ps",
                 "windows": "n_windows", "window_ps": "window_ps", "tcf_ps": "tcf_ps", "sigma_ps": "sigma_ps",
                 "sample_fs": "sample_fs", "time_reversal": "time_reversal", "precision": "precision",
                 "seed": "seed"}


def _ir(args) -> int:
    from workbench import protocol
    from workbench import system as systems
    from workbench.models import DEFAULT_STRUCTURE, load_potential
    from workbench.observables.spectrum_io import read_spectrum, reference_water_ir
    from workbench.progress import console_progress

    overrides = {field: getattr(args, dest) for dest, field in _IR_OVERRIDES.items()
                 if getattr(args, dest) is not None}
    settings = protocol.PRESETS[args.preset].replace(**overrides)
    protocol.dipole_model(args.dipole)
    experiment = (read_spectrum(args.exp) if args.exp else reference_water_ir()).to_n_alpha()
    structure = args.structure or DEFAULT_STRUCTURE
    sys_ = systems.read(structure)
    protocol.check_system(sys_)
    pot = load_potential(args.model, sys_, trusted=args.trust)
    labels = {"model": args.model, "structure": str(structure)}
    summary = protocol.ir_report(pot, sys_, settings, args.dipole, args.output, experiment,
                                 console_progress(), labels)
    print(json.dumps(summary))
    return 0


def _help_with_presets(parser: argparse.ArgumentParser) -> str:
    """``workbench ir --help`` with the presets as epilog, built only when asked for: importing the
    protocol imports jax-md, which starts JAX's backends (``jax.distributed`` must come first)."""
    parser.epilog = _ir_presets_help()
    return argparse.ArgumentParser.format_help(parser)


def _ir_presets_help() -> str:
    from workbench.protocol import PRESETS

    lines = ["presets (explicit options override their fields):"]
    for name, p in PRESETS.items():
        windows = f"{p.n_windows} states × {2 if p.time_reversal else 1} windows × {p.window_ps:g} ps NVE"
        lines.append(f"  {name:10s} {p.equilibrate_ps:g} ps equilibration + {p.nvt_ps:g} ps NVT, {windows}, "
                     f"{p.tcf_ps:g} ps TCF: {p.md_steps:,} MD steps")
    lines.append("'default' runs in a few minutes on 2 CPU cores (~100-500 steps/s for 64 q-TIP4P/F waters); "
                 "'paper' (Han & Yu's reported spectra) takes hours on a GPU.")
    return "\n".join(lines)


def _bench(args) -> int:
    from workbench import bench

    options = {"precision": args.precision, "iterations": args.iterations, "budget_s": args.budget_s,
               "settings": args.set, "profile": args.profile}
    result = bench.run(args.name, quick=args.quick, **{k: v for k, v in options.items() if v is not None})
    line = json.dumps(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(line)
    return 0


def _serve(args) -> int:
    import os

    os.environ.setdefault("BOKEH_RESOURCES", "server")  # Bokeh/Panel JS from this server, never a CDN
    import panel as pn

    from workbench.ui.app import build_app

    origin = [f"{args.address}:{args.port}", *args.allow_websocket_origin]
    pn.serve({"app": build_app}, port=args.port, address=args.address, websocket_origin=origin,
             show=args.show, title="Workbench")
    return 0


def _refine(args) -> int:
    import signal

    from workbench.errors import UserInputError
    from workbench.refine import ConsoleProgress, load_config  # no JAX backend yet (_join_processes)

    stop = []

    def on_interrupt(signum, frame):  # first Ctrl-C: stop after the current window batch
        stop.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_interrupt)
    subscribers = [ConsoleProgress()]
    if args.resume:
        if args.config or args.run_dir:
            raise UserInputError("--resume RUNDIR continues with the run's own config.toml; give no CONFIG "
                                 "or --run-dir with it")
        rank = _join_processes(load_config(Path(args.resume) / "config.toml"), args)
        from workbench.refine import Trainer

        trainer = Trainer.resume(_process_dir(args.resume, rank), subscribers, lambda: bool(stop))
    elif args.config:
        config = load_config(args.config)
        rank = _join_processes(config, args)
        from workbench.refine import Trainer

        run_dir = args.run_dir or config.run.dir or Path("runs") / Path(args.config).stem
        trainer = Trainer(config, _process_dir(run_dir, rank), subscribers, lambda: bool(stop))
    else:
        raise UserInputError("give a CONFIG file, or --resume RUNDIR")
    result = trainer.run()
    last = result.iterations[-1]["loss"] if result.iterations else None
    print(json.dumps({"status": result.status, "iterations": result.iteration,
                      "run_dir": str(result.run_dir), "loss": last}))
    return 0


#: ``workbench refine`` options that override a ``[distributed]`` key (dest → key).
_DISTRIBUTED_OVERRIDES = {"coordinator": "coordinator_address", "num_processes": "num_processes",
                          "process_id": "process_id"}


def _join_processes(config, args) -> int:
    """Join a multi-process run when ``[distributed]`` (with the command line's overrides) enables
    it; returns this process's index (0 when alone)."""
    changes = {f"distributed.{key}": getattr(args, dest) for dest, key in _DISTRIBUTED_OVERRIDES.items()
               if getattr(args, dest) is not None}
    if changes or args.distributed:
        config = config.replace(**changes, **{"distributed.enabled": True})
    dist = config.distributed
    if not dist.enabled:
        return 0
    from workbench.devices import initialize_distributed

    info = initialize_distributed(dist.coordinator_address, dist.num_processes, dist.process_id,
                                  dist.local_device_ids, dist.timeout_s)
    print(json.dumps({"distributed": info}), file=sys.stderr)
    return info["process_index"]


def _process_dir(run_dir, rank: int) -> Path:
    """Process 0 writes the run directory; process k > 0 its own copy in RUNDIR/process-k."""
    return Path(run_dir) if rank == 0 else Path(run_dir) / f"process-{rank}"


def _pretrain(args) -> int:
    from workbench.pretrain import load_config, run_pretrain

    config = load_config(args.config)
    command = " ".join(["workbench pretrain", args.config]
                       + (["--run-dir", args.run_dir] if args.run_dir else []))
    print(json.dumps(run_pretrain(config, args.run_dir, command)))
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
    p.add_argument("--ensemble", choices=["nvt", "nve", "npt"], default="nvt",
                   help="npt: Langevin + Monte Carlo barostat; prints ⟨ρ⟩ with a block error")
    p.add_argument("--pressure-bar", type=float, default=1.0, help="NPT pressure, bar")
    p.add_argument("--barostat-every", type=int, default=25, help="NPT: steps between volume trials")
    p.add_argument("--density-out", default=None, help="NPT: CSV of time, volume and density per frame")
    p.add_argument("--dispersion-correction", action="store_true",
                   help="q-TIP4P/F: add the LJ tail energy E_tail(V) (workbench.potentials.dispersion)")
    p.add_argument("--temperature", type=float, default=298.15, help="K")
    p.add_argument("--time-ps", type=float, default=1.0, help="sampled length, ps")
    p.add_argument("--equilibrate-ps", type=float, default=0.0, help="unsaved equilibration, ps")
    p.add_argument("--dt-fs", type=float, default=0.5, help="time step, fs")
    p.add_argument("--sample-every", type=int, default=20, help="steps between saved frames")
    p.add_argument("--precision", choices=["float32", "float64"], default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="trajectory.extxyz")
    p.set_defaults(func=_md)

    p = sub.add_parser(
        "ir", help="IR spectrum by Langevin NVT then NVE windows (PREFIX.csv, PREFIX.png, JSON summary)",
        description="IR spectrum n·α(ν̃) of liquid water: Langevin NVT (γ = 5/ps, 0.5 fs) sampling, NVE "
                    "windows from evenly spaced states (and their time-reversed partners), Ṁ by the dipole "
                    "model, the Gaussian-windowed TCF → n·α on 0-4500 cm⁻¹.  Band maxima (with jackknife "
                    "errors over the states) and D are printed as one JSON object.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.format_help = functools.partial(_help_with_presets, p)
    p.add_argument("--model", default="default",
                   help="'default' (the project's default model), 'qtip4pf', or a model file")
    p.add_argument("--trust", action="store_true", help="allow loading a pickle model file")
    p.add_argument("--structure", metavar="FILE",
                   help="water box with a cubic periodic cell (default: the shipped 64-water box at 298 K)")
    p.add_argument("--preset", choices=["default", "paper", "benchmark", "interactive", "quick"],
                   default="default",
                   help="protocol lengths (see below; default: %(default)s)")
    p.add_argument("--dipole", default="charge-flux", metavar="NAME|FILE",
                   help="dipole model: 'charge-flux' (q-TIP4P/F charges with charge flux fitted to the "
                        "experimental band heights; default), 'qtip4pf' (the fixed charges), or a DeePMD "
                        "DeepDipole .npz file (Wannier centroids; box edges > 1.2 nm)")
    p.add_argument("--exp", metavar="FILE",
                   help="experimental spectrum to overlay (table or JCAMP-DX, as n·α; default: the shipped "
                        "Bertie & Lan 1996 water spectrum)")
    p.add_argument("--temperature", type=float, help="K (default 298.15)")
    p.add_argument("--equilibrate-ps", type=float, help="unsaved NVT before sampling, ps")
    p.add_argument("--nvt-ps", "--ps", dest="nvt_ps", type=float, help="NVT sampling length, ps")
    p.add_argument("--windows", type=int,
                   help="number K of NVE starting states (evenly spaced in the NVT run)")
    p.add_argument("--window-ps", type=float, help="length of each NVE window, ps")
    p.add_argument("--tcf-ps", type=float, help="TCF length, ps")
    p.add_argument("--sigma-ps", type=float, help="Gaussian lag-window width σ, ps (paper: 1/3)")
    p.add_argument("--sample-fs", type=float, help="spacing of the stored frames, fs (default 2)")
    p.add_argument("--no-time-reversal", dest="time_reversal", action="store_const", const=False,
                   help="do not add the time-reversed window of each state")
    p.add_argument("--precision", choices=["float32", "float64"])
    p.add_argument("--seed", type=int)
    p.add_argument("-o", "--output", default="ir", metavar="PREFIX",
                   help="writes PREFIX.csv and PREFIX.png (default: %(default)s)")
    p.set_defaults(func=_ir)

    p = sub.add_parser("bench", help="run a benchmark (JSON on the last stdout line)")
    p.add_argument("name", help="benchmark name (workbench bench list)")
    p.add_argument("--quick", action="store_true", help="small size, < 60 s on 2 CPU cores")
    p.add_argument("--json", metavar="FILE", help="also write the JSON result to FILE")
    p.add_argument("--precision", choices=["auto", "float32", "float64"], help="state precision (paper)")
    p.add_argument("--iterations", type=int, help="refinement updates to run (paper)")
    p.add_argument("--budget-s", type=float,
                   help="stop between window batches after this many seconds (paper)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a refinement-config key, TOML value syntax (paper; repeatable); "
                        "pretrained: a run length, e.g. stability_ps=20; "
                        "twin: a size field, e.g. n_windows=64")
    p.add_argument("--profile", metavar="DIR",
                   help="write a JAX profiler trace of the last update's gradient pass to DIR (paper)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("serve", help="serve the dashboard at http://ADDRESS:PORT/app (localhost by default)")
    p.add_argument("--port", type=int, default=5006)
    p.add_argument("--address", default="localhost")
    p.add_argument("--allow-websocket-origin", action="append", default=[], metavar="HOST:PORT",
                   help="extra origin allowed to connect (e.g. when reached through an SSH tunnel)")
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.set_defaults(func=_serve)

    p = sub.add_parser("refine", help="refine a potential against IR spectra / diffusion (TOML config)")
    p.add_argument("config", nargs="?", help="TOML config (see examples/ and workbench/refine/config.py)")
    p.add_argument("--resume", metavar="RUNDIR", help="continue the run in RUNDIR from its last checkpoint")
    p.add_argument("--run-dir", help="run directory (overrides run.dir)")
    p.add_argument("--distributed", action="store_true",
                   help="join a multi-process run (jax.distributed; settings detected under SLURM, see "
                        "docs/scale_out.md); implied by the three options below")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address (distributed.coordinator_address)")
    p.add_argument("--num-processes", type=int, metavar="N",
                   help="processes in the run (distributed.num_processes)")
    p.add_argument("--process-id", type=int, metavar="I",
                   help="this process's index (distributed.process_id)")
    p.set_defaults(func=_refine)

    p = sub.add_parser("pretrain", help="train an EANN by energy + force matching (TOML config)",
                       description="Generate q-TIP4P/F reference frames (or read the config's `data` file: "
                                   "extxyz, ASE .db, ... with energies and forces) and train an EANN on "
                                   "them; writes the model file, its model card and RUNDIR/metrics.jsonl.")
    p.add_argument("config", help="TOML config (see examples/pretrain_*.toml and workbench/pretrain.py)")
    p.add_argument("--run-dir", help="run directory (overrides run_dir)")
    p.set_defaults(func=_pretrain)
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
