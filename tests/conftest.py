"""Shared fixtures: locations of ../shared/data and small systems."""

from pathlib import Path

import numpy as np
import pytest

import workbench  # noqa: F401  (enables float64 in JAX before any test builds arrays)
from workbench.system import System

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
