"""Refinement events and their subscribers.

The trainer reports everything as plain JSON-ready dicts with a ``"kind"``; any number of
subscribers (callables taking one event) receive them in order.  Kinds and keys:

``start``      iteration (completed so far; > 0 on resume), iterations (total), resumed (bool),
               run_dir, n_params {group: count}, target_spectrum {wavenumber, values} (IR only),
               param_names {group: [names]}
``stage``      iteration, stage ("equilibrate" | "sampling" | "windows" | "gradient"), done, total
``iteration``  iteration, loss {term: value, ..., "total": value}, grad_norm {"total", group: value},
               lr {group: effective learning rate}, params {group: {name: value}} (trained leaves
               after this iteration's update; groups of ≤ 64 numbers),
               spectrum {wavenumber, simulated} (IR only), bands {name: {position_sim,
               position_target, fwhm_sim, fwhm_target, height_sim, height_target}} (IR, cm⁻¹),
               diffusion_nm2_per_ps (finite-size corrected when configured; diffusion only),
               reversal_error [nm, nm/ps], max_displacement_nm, energy_drift_kT_per_atom,
               temperature_K (NVT mean), ess {"rdf" | "density": N_eff/S} (reweighting only),
               density_g_cm3 (reweighted ⟨ρ⟩_θ; density loss only),
               warnings [str], wall_time_s
``rollback``   iteration (that failed), reason, restored_iteration, lr_factor (after halving), attempt
``run_end``    status ("completed" | "stopped" | "gave_up"), iteration, message

Subscribers here: :class:`JSONLWriter` (one JSON object per line, flushed per event) and
:class:`ConsoleProgress` (a tqdm bar over iterations).  A UI passes e.g. ``queue.put``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

Subscriber = Callable[[dict], None]


def jsonable(value):
    """Event values as JSON-ready Python objects (numpy/JAX arrays → lists, NaN → None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EventBus:
    """Delivers each event (made JSON-ready) to every subscriber, in order."""

    def __init__(self, subscribers: Iterable[Subscriber] = ()):
        self.subscribers = list(subscribers)

    def emit(self, event: dict) -> None:
        event = jsonable(event)
        for subscriber in self.subscribers:
            subscriber(event)


class JSONLWriter:
    """Appends events to a JSON-lines file (``metrics.jsonl``), flushing after each."""

    def __init__(self, path, kinds: Iterable[str] | None = ("start", "iteration", "rollback", "run_end")):
        self.path = Path(path)
        self.kinds = None if kinds is None else set(kinds)

    def __call__(self, event: dict) -> None:
        if self.kinds is not None and event.get("kind") not in self.kinds:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")


def read_jsonl(path) -> list[dict]:
    """The events of a JSON-lines file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class ConsoleProgress:
    """A tqdm bar over iterations (stderr) showing the stage, the total loss and ‖g‖; rollbacks and
    the end are printed as lines."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm

        kind = event.get("kind")
        if kind == "start":
            self.bar = tqdm(total=event["iterations"], initial=event["iteration"], desc="refine",
                            unit="it", file=self.stream, dynamic_ncols=True)
        elif self.bar is None:
            return
        elif kind == "stage":
            self.bar.set_description(
                f"it {event['iteration']} {event['stage']} {event['done']}/{event['total']}")
        elif kind == "iteration":
            self.bar.set_postfix(loss=f"{event['loss']['total']:.4g}",
                                 grad=f"{event['grad_norm']['total']:.3g}")
            self.bar.update(event["iteration"] - self.bar.n)
        elif kind == "rollback":
            self.bar.write(f"rollback at iteration {event['iteration']}: {event['reason']} "
                           f"(restored iteration {event['restored_iteration']}, lr × {event['lr_factor']:g})")
        elif kind == "run_end":
            self.bar.close()
            print(f"refine {event['status']}: {event['message']}", file=self.stream)
