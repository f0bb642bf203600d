"""Shared fixtures: locations of ../shared/data and small systems.

JAX's persistent compilation cache is switched on for the run (and, through the environment, for the
notebook kernels and `panel serve` subprocesses the tests start), in ``.pytest_cache/jax``: many
tests compile the same MD steps and gradients, and reusing them changes no number, only wall time.
"""

import os
from pathlib import Path

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import workbench  # noqa: E402, F401  (enables float64 in JAX before any test builds arrays)
from workbench.system import System  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, skipping the test with the reason when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data is only present on project machines)")
    return path


@pytest.fixture
def argon_lattice():
    """216 argon atoms on a simple cubic lattice (0.53 nm spacing, density ≈ 1.4 g/cm³ → liquid)."""
    n, a = 6, 0.53
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a + 0.1
    return System(("Ar",) * len(grid), grid, np.full(3, n * a), np.arange(len(grid))[:, None])


def wait_for_page(url: str, proc, timeout_s: float = 600.0) -> str | None:
    """Wait until the server process ``proc`` answers GET ``url``; None when it did, else why not.

    A refused connection (not listening yet) is retried every 0.5 s; once the server accepts, the
    one request in flight is given the rest of ``timeout_s`` instead of being abandoned and resent:
    every abandoned page request still builds a session on the server, so short timeouts on a busy
    machine pile up work faster than the server clears it."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if proc.poll() is not None:
            return f"the server exited with code {proc.returncode}"
        if left <= 0:
            return f"no answer from {url} in {timeout_s:.0f} s"
        try:
            urllib.request.urlopen(url, timeout=left)
            return None
        except urllib.error.URLError as err:
            if not isinstance(err.reason, ConnectionRefusedError):
                return f"{url}: {err.reason}"
            time.sleep(0.5)
        except TimeoutError:
            return f"no answer from {url} in {timeout_s:.0f} s"
