"""Embedded atom neural network (EANN) potential for water, as a pure JAX energy function.

The architecture is the one of the seed paper's DFT water model (Han & Yu; EANN of Zhang, Hu & Jiang,
J. Phys. Chem. Lett. 10, 4962 (2019)); ``../shared/data/eann.md`` states it.  Inside, the model works
in **Å and kJ/mol**; the energy function follows the workbench contract (``potentials.base``) and
converts at its boundary::

    energy_fn(params, positions [nm], box [nm], pairs) -> E [kJ/mol]

so ``-jax.grad(energy_fn, argnums=1)`` gives forces in kJ/mol/nm.

Maths, for a centre atom a and each neighbour b with v = r_b − r_a (minimum image, Å), d = |v| ≤ r_c:

* cutoff           f_c(d) = (½ cos(π d / r_c) + ½)²   (r_c = 6 Å, plus a hard d ≤ r_c pair mask)
* radial basis     g_k(d) = exp(−α[Z_b, k] (d − r_s[Z_b, k])²),  k = 0..K−1 (K = 12; neighbour's row)
* orbital sums     S_a[m, k] = Σ_b f_c(d) · A_m(v) · g_k(d) · c[Z_b, k]
  with the Cartesian monomials A(v) = (1 | v_x, v_y, v_z | v_α v_β for all 9 ordered α, β)
* density features ρ_a[L, k] = Σ_{m ∈ L} S_a[m, k]²,  L = 0, 1, 2;  x_a = ρ_a flattened L-major (3K)
* atomic network   (parameters of the centre's element Z_a) for each hidden layer ℓ:
                   h ← w_out · silu(w_in · LayerNorm(h W + b)),  LayerNorm with gain/shift, eps 1e-5;
                   E_a = h · w_o + b_o
* total            E = Σ_a (E_a + E_0),  E_0 = ``initpot``.

Implementation notes (exact reformulations, not approximations):

* The 9 ordered L = 2 monomials hold each off-diagonal product twice, so
  Σ_{αβ} S_{αβ}² = Σ_α S_{αα}² + 2 Σ_{α<β} S_{αβ}²: only 10 monomials (1, 3, 6) are summed over
  neighbours, with weights (1 | 1 1 1 | 1 1 1 2 2 2) in the sum of squares.
* Each unordered pair {i, j} of the OrderedSparse list is used in both directions; the radial part
  uses the neighbour's element in each direction.
* The neighbour sum is a batched matrix product over a dense per-atom table (N, M) of the pairs
  within r_c, built in each call by one integer sort (``neighbor_table``): S_a = A_aᵀ R_a.
  Scattering the 10 × K outer products of every pair with ``segment_sum`` instead made the force
  1.2× and MD 1.8–2× slower (64 waters, 2 CPU cores; benchmarks/results/speed.md), as it
  handled every row of the list, skin included.  M is static (``max_neighbors_default``); an
  atom with more than M neighbours within r_c makes the energy NaN.
* Each slot takes its displacement from the atom positions and its neighbour's radial parameters
  through ``per_species``, so the derivatives scatter into the N atoms only, never into the few
  per-element parameters (on a GPU those scatters made the adjoint's backward step ~400× slower).
* The atomic network of each element runs on the (static) index set of that element's atoms.

Parameters are a flat ``dict`` of arrays with stable names (the same names are used in model
files, see ``model_io``), first axis = element index (H = 0, O = 1 for water):

==========================  =================  ==============================================
key                         shape              meaning
==========================  =================  ==============================================
``radial.rs``               (S, K)             Gaussian centres r_s per neighbour element, Å
``radial.inta``             (S, K)             Gaussian exponents α per neighbour element, Å⁻²
``radial.c``                (S, K)             orbital coefficients c per neighbour element
``layer{l}.w``              (S, F_in, H)       dense weights of hidden layer l (F_in = 3K for l = 0)
``layer{l}.b``              (S, H)             dense bias
``layer{l}.norm_gain``      (S, H)             LayerNorm gain
``layer{l}.norm_shift``     (S, H)             LayerNorm shift
``layer{l}.act_outer``      (S, H)             scaled SiLU: outer scale
``layer{l}.act_inner``      (S, H)             scaled SiLU: inner scale
``output.w``                (S, H)             output weights
``output.b``                (S,)               output bias, kJ/mol
``initpot``                 ()                 energy offset per atom E_0, kJ/mol
==========================  =================  ==============================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.potentials.base import Potential, minimum_image, pair_geometry

#: Element order of the seed's water model: species index H = 0, O = 1.
WATER_SPECIES_ORDER = ("H", "O")
#: Cutoff radius of the seed's model, Å.
DEFAULT_CUTOFF_ANGSTROM = 6.0
#: Epsilon inside the LayerNorm square root.
LAYER_NORM_EPS = 1e-5
#: Highest angular channel (L = 0, 1, 2).
L_MAX = 2
#: Number density (atoms/Å³) that sizes the neighbour table: 1.5 × liquid water's 0.100.
MAX_NUMBER_DENSITY = 0.15

# The 10 unique Cartesian monomials: 1 | x y z | xx yy zz xy xz yz.
_N_MONOMIALS = 10
_L_OF_MONOMIAL = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2, 2])
_SQUARE_WEIGHTS = np.array([1, 1, 1, 1, 1, 1, 1, 2, 2, 2], dtype=np.float64)
_PARITY = np.array([1, -1, -1, -1, 1, 1, 1, 1, 1, 1], dtype=np.float64)

_LAYER_KEYS = ("w", "b", "norm_gain", "norm_shift", "act_outer", "act_inner")
_LAYER_RE = re.compile(r"^layer(\d+)\.(" + "|".join(_LAYER_KEYS) + r")$")


# ----------------------------------------------------------------------------------------------
# building blocks (pure functions, Å inside)


def cutoff_function(d, rc):
    """f_c(d) = (½ cos(π d / r_c) + ½)²: 1 at d = 0, value and two derivatives vanish at r_c.

    Not clipped: callers mask d > r_c themselves.
    """
    return jnp.square(0.5 * jnp.cos(jnp.pi * d / rc) + 0.5)


def radial_basis(d, rs, inta):
    """Gaussians g_k(d) = exp(−α_k (d − r_s,k)²); ``d`` (P,), ``rs``/``inta`` (P, K) → (P, K)."""
    return jnp.exp(-inta * jnp.square(d[:, None] - rs))


def cartesian_monomials(v):
    """The 10 unique monomials of v up to degree 2: (1, x, y, z, xx, yy, zz, xy, xz, yz), (P, 10)."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    one = jnp.ones_like(x)
    return jnp.stack([one, x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], axis=1)


def density_features(orbital_sums):
    """ρ[L, k] = Σ_{m ∈ L} w_m S[m, k]² flattened L-major: (N, 10, K) → (N, 3K).

    ``w_m`` = 2 for the off-diagonal L = 2 monomials, which stand for both (α, β) and (β, α).
    """
    dtype = orbital_sums.dtype
    channel = np.zeros((_N_MONOMIALS, L_MAX + 1))
    channel[np.arange(_N_MONOMIALS), _L_OF_MONOMIAL] = _SQUARE_WEIGHTS
    rho = jnp.einsum("nmk,ml->nlk", jnp.square(orbital_sums), jnp.asarray(channel, dtype))
    return rho.reshape(rho.shape[0], -1)


def layer_norm(h, gain, shift, eps=LAYER_NORM_EPS):
    """(h − mean) / sqrt(var + eps) · gain + shift over the last axis (population variance)."""
    mean = jnp.mean(h, axis=-1, keepdims=True)
    centred = h - mean
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    return centred * jax.lax.rsqrt(var + eps) * gain + shift


def scaled_silu(h, outer, inner):
    """outer · silu(inner · h), silu(t) = t · sigmoid(t) (element-wise scales, no bias)."""
    return outer * jax.nn.silu(inner * h)


def atomic_network(params: Mapping, x, element: int, n_layers: int):
    """Atomic energies E_a (n,) in kJ/mol of atoms of one ``element`` from their features ``x`` (n, F)."""
    h = x
    for layer in range(n_layers):
        p = f"layer{layer}."
        h = h @ params[p + "w"][element] + params[p + "b"][element]
        h = layer_norm(h, params[p + "norm_gain"][element], params[p + "norm_shift"][element])
        h = scaled_silu(h, params[p + "act_outer"][element], params[p + "act_inner"][element])
    return h @ params["output.w"][element] + params["output.b"][element]


def max_neighbors_default(n_atoms: int, rc: float) -> int:
    """Static capacity M of the per-atom neighbour table: atoms within ``rc`` (Å) of one atom.

    M = min(N − 1, ⌈ρ_max · 4/3 π r_c³⌉ rounded up to a multiple of 8) with ρ_max =
    ``MAX_NUMBER_DENSITY`` (1.5 × liquid water's 0.1 atoms/Å³): 136 for r_c = 6 Å, where liquid
    water has at most ≈ 105.  A denser configuration overflows the table, and the energy is then NaN
    (never silently wrong); a model card's ``max_neighbors`` raises the capacity.
    """
    m = math.ceil(MAX_NUMBER_DENSITY * 4.0 / 3.0 * math.pi * rc**3 / 8.0) * 8
    return max(1, min(n_atoms - 1, m))


def neighbor_table(pairs, keep, n_atoms: int, max_neighbors: int):
    """Per-centre table of directed pair rows: (N, M) indices into the 2P directed rows, and overflow.

    Directed row r < P is pair r seen from its first atom i (neighbour j), row P + r the same pair
    seen from j (neighbour i).  Rows with ``keep`` False are left out.  Row ids are sorted by centre
    with one integer sort of the packed key centre · 2P + row (so the order within a centre is the
    row order), each row's slot is its rank within its centre, and empty slots hold 2P (a padding
    row).  ``overflow`` is True when some centre has more than M kept rows (they are dropped).
    """
    n_pairs = pairs.shape[1]
    n_rows = 2 * n_pairs
    centre = jnp.where(jnp.concatenate([keep, keep]), jnp.concatenate([pairs[0], pairs[1]]), n_atoms)
    row = jnp.arange(n_rows, dtype=centre.dtype)
    if (n_atoms + 1) * n_rows < np.iinfo(np.int32).max:
        packed = jnp.sort(centre.astype(jnp.int32) * n_rows + row.astype(jnp.int32))
        centre_sorted, row_sorted = packed // n_rows, packed % n_rows
    else:  # keys too large for int32: a (slower) stable argsort
        order = jnp.argsort(centre, stable=True)
        centre_sorted, row_sorted = centre[order], row[order]
    start = jnp.searchsorted(centre_sorted, jnp.arange(n_atoms + 1, dtype=centre_sorted.dtype))
    slot = jnp.arange(n_rows) - start[jnp.minimum(centre_sorted, n_atoms)]
    table = jnp.full((n_atoms + 1, max_neighbors), n_rows, jnp.int32)
    table = table.at[centre_sorted, slot].set(row_sorted.astype(jnp.int32), mode="drop")[:n_atoms]
    overflow = jnp.max(start[1:] - start[:-1]) > max_neighbors
    return table, overflow


def per_species(table_species, values):
    """``values[table_species]``: the (…, K) rows of the (S, K) per-element table ``values``.

    On a CPU by a gather.  On other devices by S exact selections, whose derivative is a masked
    sum over the slots: the transpose of the gather is a scatter-add of every slot into S·K
    addresses, which a GPU serialises (atomic contention: 26k adds per 64-water frame into 32
    addresses took ~170 ms per scatter on an H200, benchmarks/results/paper_gpu.json), while the
    selections cost a CPU ~25 % more in the second-derivative products of the adjoint.
    """
    return jax.lax.platform_dependent(table_species, values, cpu=lambda z, v: v[z], default=rows_by_selection)


def rows_by_selection(table_species, values):
    """``values[table_species]`` as Σ_s [table_species = s] · values[s] (exact; ``per_species``)."""
    rows = jnp.zeros((*table_species.shape, values.shape[-1]), values.dtype)
    for s in range(values.shape[0]):
        rows = rows + jnp.where((table_species == s)[..., None], values[s], 0.0)
    return rows


def orbital_sums(params: Mapping, positions, box, pairs, species, rc, max_neighbors: int | None = None):
    """S_a[m, k] = Σ_b f_c A_m(v_ab) g_k(d_ab) c[Z_b, k] for every atom, (N, 10, K); Å inside.

    ``pairs`` is the (2, P) OrderedSparse list (i < j, padded with N); each pair contributes to
    centre i and to centre j.  Pairs farther than ``rc`` and padded rows are left out.  The sum over
    neighbours runs on a dense (N, M) table (``neighbor_table``) as a batched matrix product,
    S_a = A_aᵀ R_a with A_a (M, 10) and R_a (M, K), instead of scattering 10 K values per pair.
    Each slot's displacement v_ab = r_b − r_a (minimum image) is taken from the atom positions and
    its neighbour's parameters by ``per_species``, so that the derivatives scatter into the N atoms only.
    Returns ``(S, overflow)``; with ``overflow`` True S misses neighbours.
    """
    n = positions.shape[0]
    if max_neighbors is None:
        max_neighbors = max_neighbors_default(n, rc)
    _, d, valid = pair_geometry(positions, box, pairs)
    table, overflow = neighbor_table(pairs, valid & (d <= rc), n, max_neighbors)
    # the neighbour atom of each directed row (pair seen from i, then from j); empty slots point at
    # the centre itself (v = 0) and see d = rc (f_c = 0), so no far pair reaches exp()
    i, j = pairs[0], pairs[1]
    filled = table < 2 * pairs.shape[1]
    neighbour = jnp.concatenate([j, i, jnp.zeros((1,), i.dtype)])[table]
    neighbour = jnp.where(filled, neighbour, jnp.arange(n, dtype=neighbour.dtype)[:, None])
    v = minimum_image(positions[neighbour] - positions[:, None, :], box)
    d_t = jnp.sqrt(jnp.where(filled, jnp.sum(v * v, axis=-1), rc * rc))
    fc = jnp.where(filled, cutoff_function(d_t, rc), 0.0)
    a = cartesian_monomials(v.reshape(-1, 3)).reshape(n, max_neighbors, -1) * fc[..., None]
    z_t = jnp.asarray(np.asarray(species))[neighbour]
    rs, inta, c = (per_species(z_t, params[f"radial.{k}"]) for k in ("rs", "inta", "c"))
    radial = jnp.exp(-inta * jnp.square(d_t[..., None] - rs)) * c
    return jnp.einsum("nbm,nbk->nmk", a, radial), overflow


def n_hidden_layers(params: Mapping) -> int:
    """Number of hidden layers, from the ``layer{l}.*`` keys."""
    layers = {int(m.group(1)) for k in params if (m := _LAYER_RE.match(k))}
    return len(layers)


def cast_params(params: Mapping, dtype) -> dict:
    """A copy of ``params`` with every array cast to ``dtype`` (e.g. to choose the precision)."""
    return {k: jnp.asarray(v, dtype) for k, v in params.items()}


# ----------------------------------------------------------------------------------------------
# the energy function and the Potential


def eann_energy_angstrom(params: Mapping, positions, box, pairs, species, rc=DEFAULT_CUTOFF_ANGSTROM,
                         max_neighbors: int | None = None):
    """EANN energy in kJ/mol of positions/box in Å (``species`` a static int array, H = 0, O = 1).

    Parameters are cast to the dtype of ``positions``; the gradient w.r.t. the original parameters
    flows through the cast.  NaN when an atom has more than ``max_neighbors`` neighbours within
    ``rc`` (see ``max_neighbors_default``), which MD and the trainer report as a failure.
    """
    species = np.asarray(species)
    dtype = positions.dtype
    params = {k: jnp.asarray(v).astype(dtype) for k, v in params.items()}
    s, overflow = orbital_sums(params, positions, box, pairs, species, rc, max_neighbors)
    x = density_features(s)
    n_layers = n_hidden_layers(params)
    energy = jnp.zeros((), dtype)
    for element in np.unique(species):
        idx = np.nonzero(species == element)[0]
        energy = energy + jnp.sum(atomic_network(params, x[idx], int(element), n_layers))
    energy = energy + species.shape[0] * params["initpot"]
    return jnp.where(overflow, jnp.nan, energy)


def make_eann_energy_fn(species, cutoff_angstrom: float = DEFAULT_CUTOFF_ANGSTROM,
                        max_neighbors: int | None = None):
    """The contract energy function ``(params, positions_nm, box_nm, pairs) -> kJ/mol`` for ``species``.

    ``species`` (N,) int (H = 0, O = 1 for the water model) is fixed, as the network applied to each
    atom depends on it.  ``max_neighbors``: capacity of the neighbour table (default
    ``max_neighbors_default``).
    """
    species = np.asarray(species, dtype=np.int32)
    if species.ndim != 1:
        raise ValueError(f"species must be a 1-D integer array, got shape {species.shape}")
    rc = float(cutoff_angstrom)
    if max_neighbors is None:
        max_neighbors = max_neighbors_default(species.shape[0], rc)
    if int(max_neighbors) < 1:
        raise ValueError(f"max_neighbors must be a positive integer, got {max_neighbors}")
    max_neighbors = int(max_neighbors)

    def energy_fn(params, positions, box, pairs):
        if positions.shape[0] != species.shape[0]:
            raise ValueError(f"EANN potential built for {species.shape[0]} atoms, got positions of "
                             f"shape {positions.shape}")
        scale = units.ANGSTROM_PER_NM
        return eann_energy_angstrom(params, positions * scale, box * scale, pairs, species, rc, max_neighbors)

    return energy_fn


def eann_potential(params: Mapping, species, name: str = "EANN", metadata: Mapping | None = None,
                   cutoff_angstrom: float | None = None) -> Potential:
    """A workbench ``Potential`` for an EANN model with parameters ``params`` on atoms ``species``.

    Args:
      params: parameter dict (see module docstring); validated here.
      species: (N,) int species index per atom, e.g. ``system.species_index(("H", "O"))``.
      name: display name.
      metadata: model card (as in ``model_io``); its ``cutoff`` (Å) and ``max_neighbors`` (neighbour
        table capacity, default ``max_neighbors_default``) are used when given.
      cutoff_angstrom: overrides the cutoff; default 6 Å.

    The potential's ``cutoff`` is in nm (0.6 nm for the water model).
    """
    meta = dict(metadata or {})
    if cutoff_angstrom is None:
        cutoff_angstrom = cutoff_from_metadata(meta)
    species = np.asarray(species, dtype=np.int32)
    validate_params(params)
    n_species = np.asarray(params["radial.rs"]).shape[0]
    if species.size and (species.min() < 0 or species.max() >= n_species):
        raise ValueError(f"species indices must be in 0..{n_species - 1} for this model, got "
                         f"{species.min()}..{species.max()}")
    meta.setdefault("model", "EANN")
    meta["n_atoms"] = int(species.shape[0])
    meta["species_index"] = species.tolist()
    params = {k: jnp.asarray(v) for k, v in params.items()}
    energy_fn = make_eann_energy_fn(species, cutoff_angstrom, meta.get("max_neighbors"))
    return Potential(name=name, energy_fn=energy_fn, params=params,
                     cutoff=cutoff_angstrom * units.NM_PER_ANGSTROM, metadata=meta)


def cutoff_from_metadata(metadata: Mapping) -> float:
    """Cutoff in Å from a model card's ``{"cutoff": {"value": v, "unit": "angstrom"|"nm"}}``."""
    cut = metadata.get("cutoff")
    if cut is None:
        return DEFAULT_CUTOFF_ANGSTROM
    value, unit = float(cut["value"]), str(cut.get("unit", "angstrom")).lower()
    if unit in ("angstrom", "å", "a"):
        return value
    if unit == "nm":
        return value * units.ANGSTROM_PER_NM
    raise ValueError(f"unknown cutoff unit {unit!r} (use 'angstrom' or 'nm')")


# ----------------------------------------------------------------------------------------------
# parameters: shapes, validation, initialisation


def architecture(params: Mapping) -> dict:
    """Sizes of a parameter dict: n_species, n_radial, n_features, hidden sizes, l_max."""
    validate_params(params)
    rs = np.shape(params["radial.rs"])
    hidden = [int(np.shape(params[f"layer{layer}.b"])[1]) for layer in range(n_hidden_layers(params))]
    return {"n_species": int(rs[0]), "n_radial": int(rs[1]), "l_max": L_MAX,
            "n_features": (L_MAX + 1) * int(rs[1]), "hidden": hidden}


def expected_shapes(n_species: int, n_radial: int, hidden) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter for the given sizes."""
    shapes = {f"radial.{k}": (n_species, n_radial) for k in ("rs", "inta", "c")}
    width = (L_MAX + 1) * n_radial
    for layer, h in enumerate(hidden):
        p = f"layer{layer}."
        shapes[p + "w"] = (n_species, width, h)
        for k in _LAYER_KEYS[1:]:
            shapes[p + k] = (n_species, h)
        width = h
    shapes["output.w"] = (n_species, width)
    shapes["output.b"] = (n_species,)
    shapes["initpot"] = ()
    return shapes


def validate_params(params: Mapping) -> None:
    """Raise ``ValueError`` naming the first missing, unexpected or mis-shaped parameter."""
    if not isinstance(params, Mapping):
        raise ValueError(f"EANN parameters must be a dict of arrays, got {type(params).__name__}")
    for key in ("radial.rs", "radial.inta", "radial.c", "output.w", "output.b", "initpot"):
        if key not in params:
            raise ValueError(f"EANN parameters: missing {key!r} (have {sorted(params)})")
    rs = np.shape(params["radial.rs"])
    if len(rs) != 2:
        raise ValueError(f"EANN parameters: 'radial.rs' must be (n_species, n_radial), got {rs}")
    n_layers = n_hidden_layers(params)
    hidden = []
    for layer in range(n_layers):
        key = f"layer{layer}.b"
        if key not in params or len(np.shape(params[key])) != 2:
            raise ValueError(f"EANN parameters: missing or malformed {key!r} (hidden layers must be "
                             f"numbered 0..{n_layers - 1})")
        hidden.append(np.shape(params[key])[1])
    expected = expected_shapes(rs[0], rs[1], hidden)
    for key, shape in expected.items():
        if key not in params:
            raise ValueError(f"EANN parameters: missing {key!r}")
        if tuple(np.shape(params[key])) != shape:
            raise ValueError(f"EANN parameters: {key!r} has shape {tuple(np.shape(params[key]))}, "
                             f"expected {shape} (n_species={rs[0]}, n_radial={rs[1]}, hidden={hidden})")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise ValueError(f"EANN parameters: unexpected key(s) {extra}")


def init_eann_params(key, n_species: int = 2, n_radial: int = 12, hidden=(64, 64),
                     cutoff_angstrom: float = DEFAULT_CUTOFF_ANGSTROM, initpot: float = 0.0,
                     dtype=jnp.float32) -> dict:
    """Random EANN parameters (for pretraining a fresh model).

    * Gaussians: centres r_s evenly spaced on [0, r_c) (step Δ = r_c / K), exponents α = 1/Δ²
      (neighbouring Gaussians cross at about 0.78), the same for every element.
    * Orbital coefficients c ~ N(0, 1/K).
    * Dense weights ~ N(0, 2/(fan_in + fan_out)) (Glorot), biases 0; LayerNorm gain 1, shift 0;
      scaled-SiLU scales 1 (plain SiLU).
    * Output weights ~ N(0, 1/H), output bias 0; ``initpot`` (kJ/mol per atom) as given — set it
      to the mean reference energy per atom to start near the data.

    ``hidden`` may be an int (two layers of that width) or a sequence of widths.
    """
    if isinstance(hidden, int):
        hidden = (hidden, hidden)
    hidden = tuple(int(h) for h in hidden)
    if n_species < 1 or n_radial < 1 or not hidden or min(hidden) < 1:
        raise ValueError(f"invalid EANN sizes n_species={n_species}, n_radial={n_radial}, hidden={hidden}")
    # one draw of standard normals for every random array (a single small compiled kernel)
    shapes = {"radial.c": (n_species, n_radial)}
    width = (L_MAX + 1) * n_radial
    for layer, h in enumerate(hidden):
        shapes[f"layer{layer}.w"] = (n_species, width, h)
        width = h
    shapes["output.w"] = (n_species, width)
    sizes = [math.prod(s) for s in shapes.values()]
    normals = np.asarray(jax.random.normal(key, (sum(sizes),), jnp.float32), np.float64)
    draws = {k: part.reshape(s) for (k, s), part in
             zip(shapes.items(), np.split(normals, np.cumsum(sizes)[:-1]), strict=True)}

    step = cutoff_angstrom / n_radial
    params = {
        "radial.rs": np.broadcast_to(np.arange(n_radial) * step, (n_species, n_radial)),
        "radial.inta": np.full((n_species, n_radial), 1.0 / step**2),
        "radial.c": draws["radial.c"] / math.sqrt(n_radial),
    }
    width = (L_MAX + 1) * n_radial
    for layer, h in enumerate(hidden):
        p = f"layer{layer}."
        params[p + "w"] = draws[p + "w"] * math.sqrt(2.0 / (width + h))
        params[p + "b"] = np.zeros((n_species, h))
        params[p + "norm_gain"] = np.ones((n_species, h))
        params[p + "norm_shift"] = np.zeros((n_species, h))
        params[p + "act_outer"] = np.ones((n_species, h))
        params[p + "act_inner"] = np.ones((n_species, h))
        width = h
    params["output.w"] = draws["output.w"] / math.sqrt(width)
    params["output.b"] = np.zeros((n_species,))
    params["initpot"] = np.asarray(initpot)
    return {k: jnp.asarray(v, dtype) for k, v in params.items()}
