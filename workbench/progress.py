"""Progress reporting for long work (console bar; the UI subscribes through events instead)."""

from __future__ import annotations

import sys


def console_progress(stream=None):
    """A ``progress(done, total, stage)`` callback drawing a tqdm bar per stage on stderr."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(done: int, total: int, stage: str) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="step", file=stream or sys.stderr,
                                     leave=True, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress
