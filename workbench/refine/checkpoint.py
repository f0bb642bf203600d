"""Checkpoints: atomic, self-describing files of a refinement's complete state.

A checkpoint is one ``.npz`` (read with ``allow_pickle=False``): named arrays (parameters in
optimiser coordinates, optimiser state leaves, the PRNG key, the NVT state, ...) plus
``__meta__``, a JSON object (iteration, learning-rate factor, event history, ...).  It is written
to a temporary file in the same folder, flushed and fsync'ed, then renamed over the final name
(atomic on POSIX), and the folder is fsync'ed: a kill at any moment leaves either the previous
complete file or the new complete file, never a torn one.

Files are ``checkpoints/iter_NNNNNN.npz``, NNNNNN the number of completed iterations.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

META_KEY = "__meta__"
_NAME = re.compile(r"^iter_(\d{6})\.npz$")


def checkpoint_path(directory, iteration: int) -> Path:
    return Path(directory) / f"iter_{iteration:06d}.npz"


def atomic_write_bytes(path, write) -> Path:
    """Call ``write(file_object)`` on a temporary file and rename it to ``path`` (see module doc)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


def save_checkpoint(path, arrays: dict, meta: dict) -> Path:
    """Write arrays (name → array) and JSON ``meta`` atomically."""
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(meta))
    return atomic_write_bytes(path, lambda fh: np.savez(fh, **payload))


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a checkpoint file."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != META_KEY}
        meta = json.loads(str(data[META_KEY]))
    return arrays, meta


def list_checkpoints(directory) -> list[tuple[int, Path]]:
    """(iteration, path) of the checkpoints in ``directory``, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), directory / name) for name in os.listdir(directory)
             if (m := _NAME.match(name))]
    return sorted(found)


def prune_checkpoints(directory, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for _, path in list_checkpoints(directory)[:-keep]:
        path.unlink(missing_ok=True)
