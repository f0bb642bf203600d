"""Static structure: radial distribution functions and mass density.

Radial distribution function of species B around species A (orthorhombic box, minimum image):

    g_AB(r) = ⟨n_AB(r, r+Δr)⟩ / [ N_pairs / V · 4π/3 ((r+Δr)³ − r³) ],

where n_AB counts ordered pairs (i ∈ A, j ∈ B, i ≠ j) at distance in the shell per frame and
N_pairs = N_A·N_B − |A ∩ B| is the number of such pairs, so an ideal gas gives g = 1 for both
like (A = B) and unlike pairs.  Optional exclusion of intramolecular pairs (``molecules``) removes
those pairs from the count but keeps the normalisation.  r runs up to at most half the shortest box
edge.  NumPy (not differentiable); frames are processed one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench import units
from workbench.system import KNOWN_ELEMENTS, minimum_image

__all__ = ["rdf", "rdf_by_species", "mass_density", "mass_density_from_symbols", "block_average"]


def rdf(positions, box, index_a, index_b=None, r_max: float | None = None, n_bins: int = 200,
        molecules=None) -> tuple[np.ndarray, np.ndarray]:
    """Radial distribution function g_AB(r).

    Args:
      positions: (N, 3) or (F, N, 3) nm (wrapped or not).
      box: (3,) nm orthorhombic cell (fixed).
      index_a, index_b: atom indices of species A and B (``index_b`` default: A).
      r_max: largest distance (nm), at most (and by default) half the shortest box edge.
      n_bins: number of shells of width r_max/n_bins.
      molecules: optional (n_mol, k) atom indices; pairs within a molecule are then not counted.

    Returns:
      ``(r, g)``: shell centres (nm) and g(r), both (n_bins,).
    """
    pos = np.asarray(positions, dtype=float)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must be (N, 3) or (F, N, 3), got {np.shape(positions)}")
    box = np.asarray(box, dtype=float).reshape(3)
    a = np.asarray(index_a, dtype=int).ravel()
    b = a if index_b is None else np.asarray(index_b, dtype=int).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("both species need at least one atom")
    half = 0.5 * float(box.min())
    if r_max is None:
        r_max = half
    if not 0 < r_max <= half * (1 + 1e-12):
        raise ValueError(f"r_max must be in (0, L/2 = {half:.4f}] nm for the minimum image, got {r_max}")
    edges = np.linspace(0.0, r_max, n_bins + 1)

    keep = a[:, None] != b[None, :]
    if molecules is not None:
        mol_of = np.full(pos.shape[1], -1)
        for m, atoms in enumerate(np.asarray(molecules)):
            mol_of[atoms] = m
        keep &= mol_of[a][:, None] != mol_of[b][None, :]
    n_pairs = a.size * b.size - np.intersect1d(a, b).size

    counts = np.zeros(n_bins)
    for frame in pos:
        d = minimum_image(frame[b][None, :, :] - frame[a][:, None, :], box)
        r = np.sqrt(np.sum(d * d, axis=-1))[keep]
        counts += np.histogram(r, bins=edges)[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    ideal = pos.shape[0] * n_pairs / np.prod(box) * shell
    return 0.5 * (edges[1:] + edges[:-1]), counts / ideal


def rdf_by_species(positions, box, symbols: Sequence[str],
                   pairs: Sequence[tuple[str, str]] | None = None, r_max: float | None = None,
                   n_bins: int = 200, molecules=None) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """g(r) for each species pair (default: every unordered pair of the elements present)."""
    symbols = np.asarray(symbols)
    elements = sorted(set(symbols.tolist()))
    if pairs is None:
        pairs = [(x, y) for i, x in enumerate(elements) for y in elements[i:]]
    out = {}
    for x, y in pairs:
        ia, ib = np.nonzero(symbols == x)[0], np.nonzero(symbols == y)[0]
        if ia.size == 0 or ib.size == 0:
            raise ValueError(f"no atoms of element {x if ia.size == 0 else y!r} in the system")
        out[(x, y)] = rdf(positions, box, ia, ib, r_max, n_bins, molecules)
    return out


def mass_density(masses, box) -> np.ndarray | float:
    """Mass density in g/cm³: Σm [amu] / V [nm³] × 1.66054 (``box`` (3,) or per frame (F, 3))."""
    box = np.asarray(box, dtype=float)
    volume = np.prod(box, axis=-1)
    rho = float(np.sum(masses)) / volume * units.G_PER_CM3_PER_AMU_PER_NM3
    return float(rho) if np.ndim(rho) == 0 else rho


def mass_density_from_symbols(symbols: Sequence[str], box) -> np.ndarray | float:
    """Mass density (g/cm³) from element symbols (masses of ``workbench.system.KNOWN_ELEMENTS``)."""
    unknown = sorted(set(symbols) - set(KNOWN_ELEMENTS))
    if unknown:
        raise ValueError(f"no mass known for element(s) {unknown}")
    return mass_density([KNOWN_ELEMENTS[s] for s in symbols], box)


def block_average(values, n_blocks: int = 5) -> tuple[float, float]:
    """Mean of a time series and its standard error from ``n_blocks`` contiguous blocks:
    σ = std(block means, ddof=1) / √n_blocks (blocks longer than the correlation time make it honest;
    a trailing remainder shorter than one block is dropped)."""
    x = np.asarray(values, dtype=float).ravel()
    n = x.size // n_blocks
    if n_blocks < 2 or n < 1:
        raise ValueError(f"need ≥ 2 blocks of ≥ 1 value, got {x.size} values in {n_blocks} blocks")
    means = x[: n * n_blocks].reshape(n_blocks, n).mean(axis=1)
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(n_blocks))
