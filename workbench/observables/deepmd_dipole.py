r"""The seed paper's learned water dipole: a DeePMD-kit "DeepDipole" (se_e2_a) model in pure JAX.

The model maps each oxygen's environment to a 3-vector w_O (Å), the displacement of the centroid
of its molecule's four Wannier centres from the oxygen (|w| ≈ 3.06 Å, along the H–O–H bisector).
The total dipole of a water box is then (the seed's convention)

    M [e·Å] = Σ_H r_H − 2 Σ_O r_O − 0.2 Σ_O w_O
            = Σ_mol (d_1 + d_2) − 0.2 Σ_O w_O,        d_i = r_Hi − r_O of the whole molecule,

i.e. M [e·nm] = Σ_mol (d_1 + d_2)[nm] − 0.02 Σ_O w_O[Å] in the package's unit (e·nm).  Ṁ = J_M(x)·v
by ``jax.jvp`` and ∂M/∂x by AD are exact derivatives of this function.

Model (everything in Å inside; type map O = 0, H = 1; only oxygen centres give an output)
-----------------------------------------------------------------------------------------
For an oxygen centre i, the neighbours j ≠ i within r_c (minimum image) fill ``sel`` = (46 O, 92 H)
slots, the O block first, each block sorted by distance; unused slots are padding.

1. s(r) = f(r)/r with f = 1 below r_s, f = u³(−6u² + 15u − 10) + 1, u = (r − r_s)/(r_c − r_s),
   between, 0 beyond r_c (r_c = 6 Å, r_s = 5.8 Å taken as the float32 number 5.800000190734863
   that the original graph holds).
2. Row per slot (s, s x/r, s y/r, s z/r), (x, y, z) = r_j − r_i; padding rows are (0, 0, 0, 0).
3. R̃ = (row − t_avg)/t_std for **every** slot, padding included (``descrpt_attr/t_avg``, ``t_std``
   reshaped to (2 centre types, 138 slots, 4)).
4. Embedding net per (centre type, neighbour type) on the first column s̃ of its slots: widths
   1 → 25 → 50 → 100, tanh; the first layer is tanh(hW + b), a layer that doubles the width gives
   concat(h, h) + tanh(hW + b) (one of equal width h + tanh(hW + b); not used by the shipped model).
5. G (138 × 100) stacks the blocks' embeddings; T = Gᵀ R̃ / 138 (100 × 4); descriptor
   D = T · T[:6]ᵀ (100 × 6), flattened row-major (600).
6. Fitting net: h_0 = tanh(D W_0 + b_0); h_l = h_{l−1} + idt_l ⊙ tanh(h_{l−1} W_l + b_l), l = 1, 2;
   a = h_2 W_f + b_f (linear); w = aᵀ T[:, 1:4] (Å).

Neighbour selection is a per-centre top-k by distance within each type over all minimum-image
O–X distances (dense; cheap for a few hundred atoms).  The sort only chooses integer indices: the
displacements are re-gathered from the coordinates, so gradients flow through the coordinates and
never through the sort.  When two neighbours swap places the result is unchanged (t_avg/t_std are
the same for every slot of a block in the shipped model), and a neighbour crossing r_c enters or
leaves with s = 0, which is what padding holds: w is smooth.  Neighbours beyond the ``sel`` slots
of a block are dropped (as in DeePMD-kit; water at ambient density has ≤ 36 O and ≤ 69 H within
6 Å).  **Minimum image is exact only while r_c < L/2 for every edge of the orthorhombic box**
(r_c = 6 Å needs L > 12 Å, i.e. ≥ 60 waters at liquid density); smaller boxes raise
:class:`DeepDipoleBoxError` (checked whenever the box is a concrete array, which it is in MD).

Files
-----
The model is read from, and written to, an ``.npz`` holding every weight under its TensorFlow
graph name (``descrpt_attr/t_avg``, ``filter_type_{c}/matrix_{l}_{n}``, ``bias_{l}_{n}``,
``layer_{l}_type_0/matrix|bias|idt``, ``final_layer_type_0/matrix|bias``; float64), loaded with
``allow_pickle=False``.  Two flavours are read:

* the extracted-graph layout (``deepdipole_water.npz``): hyperparameters as ``meta/type_map``,
  ``meta/rcut``, ``meta/rcut_smth``, ``meta/sel``, ``meta/neuron``, ``meta/axis_neuron``,
  ``meta/fitting_neuron``, ``meta/sel_type`` arrays;
* the workbench's own format ``workbench-deepdipole`` v1 (written by :func:`save_deepdipole`): the
  same weight arrays plus ``__metadata__``, a 0-d string holding a JSON model card::

      {"format": "workbench-deepdipole", "format_version": 1, "model": "DeePMD se_e2_a dipole",
       "type_map": ["O", "H"], "rcut": 6.0, "rcut_smth": 5.800000190734863, "sel": [46, 92],
       "neuron": [25, 50, 100], "axis_neuron": 6, "fitting_neuron": [100, 100, 100],
       "sel_type": [0], "internal_units": {"length": "angstrom", "dipole": "e*angstrom"},
       "parameters": {"<graph name>": {"shape": [...], "dtype": "float64"}, ...},
       "n_parameters": ..., "provenance": "...", "created": "..."}

Missing or misshaped arrays raise :class:`DeepDipoleFormatError` (a ``UserInputError``).

The seed's derivative (for comparison only)
-------------------------------------------
The seed supplied its own derivative of M (a custom JVP) that is −1/10 of the correct electronic
term: DeePMD's ``eval_full`` returns −∂w/∂x, and the seed differentiated in nm a model that takes
Å, so it used +0.02·∂w/∂x_Å per nm instead of −0.2·∂w/∂x_Å.  Its spectra were right (it computed Ṁ
by finite differences of M values), its gradients through the dipole were not.
:func:`seed_derivative_variant` and :func:`seed_mdot` reproduce that behaviour so a benchmark can
measure its effect; nothing else uses them.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from workbench import units
from workbench.errors import UserInputError
from workbench.observables.dipole import DipoleModel, whole_molecules
from workbench.potentials.base import minimum_image

__all__ = [
    "DeepDipoleConfig", "DeepDipole", "DeepDipoleFormatError", "DeepDipoleBoxError",
    "load_deepdipole", "save_deepdipole", "wannier_vectors_angstrom", "wannier_centroids",
    "deepmd_dipole_model", "deepmd_dipole_fn", "deepmd_dipole_parts_fn", "config_of",
    "seed_derivative_variant", "seed_mdot", "seed_mdot_observable", "check_box", "ELECTRONIC_FACTOR",
    "SEED_DERIVATIVE_FACTOR",
]

FORMAT_NAME = "workbench-deepdipole"
FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"

#: M [e·Å] = Σ_H r_H − 2 Σ_O r_O + ELECTRONIC_FACTOR · Σ_O w_O [Å].
ELECTRONIC_FACTOR = -0.2
#: The seed's derivative of the electronic term relative to the correct one.
SEED_DERIVATIVE_FACTOR = -0.1
#: Frames per batch for trajectories (``dipole_trajectory(..., batch_size=)``): ≈ 0.6 GB in float64.
TRAJECTORY_BATCH_SIZE = 16


class DeepDipoleFormatError(UserInputError):
    """A DeepDipole model file that cannot be used (the message names the file and the problem)."""


class DeepDipoleBoxError(UserInputError):
    """The box is too small (or not orthorhombic) for the minimum-image neighbour search."""


# ----------------------------------------------------------------------------------------------
# configuration and parameters


@dataclasses.dataclass(frozen=True)
class DeepDipoleConfig:
    """Hyperparameters of an se_e2_a dipole model (static: not refined).

    Attributes:
      type_map: element of each type index (``("O", "H")``: O = 0, H = 1).
      rcut: cutoff r_c, Å.
      rcut_smth: start r_s of the smooth switch, Å (the graph's float32 value).
      sel: neighbour slots per neighbour type.
      neuron: embedding-net widths.
      axis_neuron: number of leading rows of T in the descriptor D = T · T[:axis_neuron]ᵀ.
      fitting_neuron: fitting-net widths.
      sel_type: centre types that carry a dipole output.
    """

    type_map: tuple[str, ...] = ("O", "H")
    rcut: float = 6.0
    rcut_smth: float = float(np.float32(5.8))
    sel: tuple[int, ...] = (46, 92)
    neuron: tuple[int, ...] = (25, 50, 100)
    axis_neuron: int = 6
    fitting_neuron: tuple[int, ...] = (100, 100, 100)
    sel_type: tuple[int, ...] = (0,)

    @property
    def n_types(self) -> int:
        return len(self.type_map)

    @property
    def n_slots(self) -> int:
        return int(sum(self.sel))

    def to_json(self) -> dict:
        return {"type_map": list(self.type_map), "rcut": self.rcut, "rcut_smth": self.rcut_smth,
                "sel": list(self.sel), "neuron": list(self.neuron), "axis_neuron": self.axis_neuron,
                "fitting_neuron": list(self.fitting_neuron), "sel_type": list(self.sel_type)}


def expected_shapes(cfg: DeepDipoleConfig) -> dict[str, tuple[int, ...]]:
    """Graph name → shape of every parameter array the model uses."""
    shapes: dict[str, tuple[int, ...]] = {
        "descrpt_attr/t_avg": (cfg.n_types, 4 * cfg.n_slots),
        "descrpt_attr/t_std": (cfg.n_types, 4 * cfg.n_slots),
    }
    for c in cfg.sel_type:
        for n in range(cfg.n_types):
            width = 1
            for layer, out in enumerate(cfg.neuron, start=1):
                shapes[f"filter_type_{c}/matrix_{layer}_{n}"] = (width, out)
                shapes[f"filter_type_{c}/bias_{layer}_{n}"] = (out,)
                width = out
        width = cfg.neuron[-1] * cfg.axis_neuron
        for layer, out in enumerate(cfg.fitting_neuron):
            shapes[f"layer_{layer}_type_{c}/matrix"] = (width, out)
            shapes[f"layer_{layer}_type_{c}/bias"] = (out,)
            if layer > 0:
                shapes[f"layer_{layer}_type_{c}/idt"] = (out,)
            width = out
        shapes[f"final_layer_type_{c}/matrix"] = (width, cfg.neuron[-1])
        shapes[f"final_layer_type_{c}/bias"] = (cfg.neuron[-1],)
    return shapes


@dataclasses.dataclass(frozen=True)
class DeepDipole:
    """A loaded model: static ``config``, parameter dict ``params`` (graph name → array; the
    refinable pytree) and ``metadata`` (model card)."""

    config: DeepDipoleConfig
    params: dict
    metadata: dict = dataclasses.field(default_factory=dict)


def _validate(params: Mapping, cfg: DeepDipoleConfig, filename: str) -> None:
    shapes = expected_shapes(cfg)
    missing = sorted(set(shapes) - set(params))
    if missing:
        raise DeepDipoleFormatError(f"{filename}: missing array(s) {missing[:8]}"
                                    f"{' …' if len(missing) > 8 else ''} of a DeepDipole model")
    for key, shape in shapes.items():
        got = tuple(np.shape(params[key]))
        if got != shape:
            raise DeepDipoleFormatError(f"{filename}: array {key!r} has shape {got}, expected {shape} "
                                        f"for sel={list(cfg.sel)}, neuron={list(cfg.neuron)}, "
                                        f"fitting_neuron={list(cfg.fitting_neuron)}")
        if not np.issubdtype(np.asarray(params[key]).dtype, np.floating):
            raise DeepDipoleFormatError(f"{filename}: array {key!r} is not floating point")
    widths = (1, *cfg.neuron)
    for a, b in zip(widths[1:-1], widths[2:], strict=True):
        if b not in (a, 2 * a):
            raise DeepDipoleFormatError(
                f"{filename}: embedding widths {list(cfg.neuron)} are not supported (each layer "
                f"after the first must keep or double the width)")


def _config_from_meta(meta: Mapping, filename: str) -> DeepDipoleConfig:
    try:
        type_map = tuple(str(t) for t in meta["type_map"])
        cfg = DeepDipoleConfig(
            type_map=type_map,
            rcut=float(meta["rcut"]),
            # the original graph stores r_s in float32; use exactly that number
            rcut_smth=float(np.float32(meta["rcut_smth"])),
            sel=tuple(int(s) for s in meta["sel"]),
            neuron=tuple(int(s) for s in meta["neuron"]),
            axis_neuron=int(meta["axis_neuron"]),
            fitting_neuron=tuple(int(s) for s in meta["fitting_neuron"]),
            sel_type=tuple(int(s) for s in meta["sel_type"]),
        )
    except KeyError as err:
        raise DeepDipoleFormatError(f"{filename}: hyperparameter {err.args[0]!r} missing") from None
    except (TypeError, ValueError) as err:
        raise DeepDipoleFormatError(f"{filename}: malformed hyperparameters: {err}") from err
    if type_map != ("O", "H"):
        raise DeepDipoleFormatError(f"{filename}: type_map {list(type_map)} is not ['O', 'H'] (only water "
                                    f"models with O = 0, H = 1 are supported)")
    if cfg.sel_type != (0,):
        raise DeepDipoleFormatError(f"{filename}: sel_type {list(cfg.sel_type)} is not [0] (oxygen centres)")
    if len(cfg.sel) != 2 or not 0 < cfg.rcut_smth < cfg.rcut:
        raise DeepDipoleFormatError(f"{filename}: need 2 sel entries and 0 < rcut_smth < rcut, got "
                                    f"sel={list(cfg.sel)}, rcut={cfg.rcut}, rcut_smth={cfg.rcut_smth}")
    if not 1 <= cfg.axis_neuron <= cfg.neuron[-1]:
        raise DeepDipoleFormatError(f"{filename}: axis_neuron {cfg.axis_neuron} out of range")
    return cfg


def load_deepdipole(path) -> DeepDipole:
    """Read a DeepDipole ``.npz`` (extracted-graph layout or ``workbench-deepdipole``; module doc)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dipole model file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise DeepDipoleFormatError(f"{path.name}: cannot read as .npz: {err}") from err
    name = path.name
    if METADATA_KEY in arrays:
        try:
            meta = json.loads(str(arrays.pop(METADATA_KEY)[()]))
        except (json.JSONDecodeError, TypeError, IndexError) as err:
            raise DeepDipoleFormatError(f"{name}: {METADATA_KEY} is not JSON: {err}") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise DeepDipoleFormatError(f"{name}: {METADATA_KEY} does not describe a {FORMAT_NAME} model")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DeepDipoleFormatError(f"{name}: {FORMAT_NAME} version {version!r} is not supported "
                                        f"(this workbench reads up to {FORMAT_VERSION})")
        source = f"{FORMAT_NAME} v{version}"
    else:
        meta_keys = [k for k in arrays if k.startswith("meta/")]
        if not meta_keys:
            raise DeepDipoleFormatError(
                f"{name}: neither a {FORMAT_NAME} file ({METADATA_KEY!r} missing) nor an extracted "
                f"DeePMD graph (no meta/* entries); keys: {sorted(arrays)[:10]}")
        meta = {k[5:]: arrays.pop(k).tolist() for k in meta_keys}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        meta["provenance"] = (f"imported from {name} (DeePMD-kit se_e2_a dipole graph weights, "
                              f"sha256 {digest})")
        source = "DeePMD graph npz"
    cfg = _config_from_meta(meta, name)
    _validate(arrays, cfg, name)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    card = _metadata(cfg, params, meta)
    card["source"] = source
    return DeepDipole(cfg, params, card)


def _metadata(cfg: DeepDipoleConfig, params: Mapping, extra: Mapping) -> dict:
    card = {k: v for k, v in extra.items() if k not in ("format", "format_version", "parameters")}
    card.update(cfg.to_json())
    card.update({
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": "DeePMD se_e2_a dipole",
        "internal_units": {"length": "angstrom", "dipole": "e*angstrom"},
        "parameters": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                       for k, v in sorted(params.items())},
        "n_parameters": int(sum(np.size(v) for v in params.values())),
    })
    return card


def save_deepdipole(path, model: DeepDipole, metadata: Mapping | None = None) -> Path:
    """Write ``model`` as ``workbench-deepdipole`` v1 (atomically); returns the path."""
    path = Path(path)
    params = {k: np.asarray(v) for k, v in model.params.items()}
    _validate(params, model.config, path.name)
    card = _metadata(model.config, params, {**model.metadata, **(metadata or {})})
    card.pop("source", None)
    card.setdefault("created", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    from workbench.potentials.model_io import write_npz_atomic

    text = json.dumps(card, indent=1, sort_keys=True)
    return write_npz_atomic(path, {**params, METADATA_KEY: np.array(text)})


# ----------------------------------------------------------------------------------------------
# the model (Å)


def check_box(box_angstrom, rcut: float) -> None:
    """Raise :class:`DeepDipoleBoxError` unless the box is orthorhombic with every edge > 2 r_c.

    ``box_angstrom`` is (3,) edges or a (3, 3) cell matrix (Å).  Traced boxes are not checked.
    """
    if isinstance(box_angstrom, jax.core.Tracer):
        return
    box = np.asarray(box_angstrom, dtype=float)
    if box.shape == (3, 3):
        if np.any(np.abs(box - np.diag(np.diag(box))) > 1e-12):
            raise DeepDipoleBoxError("the DeepDipole model supports orthorhombic boxes only "
                                     "(a diagonal cell)")
        box = np.diag(box)
    if box.shape != (3,):
        raise DeepDipoleBoxError(f"box must be (3,) edge lengths or a (3, 3) cell, got shape {box.shape}")
    if np.any(box <= 2.0 * rcut):
        raise DeepDipoleBoxError(
            f"box edges {np.round(box, 4).tolist()} Å: the DeepDipole neighbour search uses the minimum "
            f"image, which needs every edge > 2 r_c = {2 * rcut:g} Å; use a larger box (≥ 60 waters at "
            f"liquid density)")


def _box_edges(box):
    box = jnp.asarray(box)
    return jnp.diagonal(box) if box.ndim == 2 else box


def _switch(r, rs: float, rc: float):
    """f(r): 1 below r_s, u³(−6u² + 15u − 10) + 1 between (u = (r − r_s)/(r_c − r_s)), 0 beyond r_c."""
    u = jnp.clip((r - rs) / (rc - rs), 0.0, 1.0)
    return u**3 * (-6.0 * u**2 + 15.0 * u - 10.0) + 1.0


def _environment(centres, neighbours, box, k: int, rc: float, rs: float, exclude_self: bool):
    """Environment rows (n_c, k, 4) of the k nearest ``neighbours`` of each centre (Å), padded.

    Slots are sorted by distance; the indices come from a sort of constants (``stop_gradient``), the
    displacements are gathered again from the coordinates so that derivatives flow through them.
    """
    n_c, n_n = centres.shape[0], neighbours.shape[0]
    dr = minimum_image(neighbours[None, :, :] - centres[:, None, :], box)
    d2 = jax.lax.stop_gradient(jnp.sum(dr * dr, axis=-1))  # (n_c, n_n)
    far = jnp.asarray(jnp.inf, d2.dtype)
    d2 = jnp.where(d2 < rc * rc, d2, far)
    if exclude_self:
        d2 = jnp.where(jnp.eye(n_c, n_n, dtype=bool), far, d2)
    k_eff = min(k, n_n)
    neg, idx = jax.lax.top_k(-d2, k_eff)  # nearest first
    valid = jnp.isfinite(neg)
    disp = jnp.take_along_axis(dr, idx[:, :, None], axis=1)  # (n_c, k_eff, 3), differentiable
    disp = jnp.where(valid[..., None], disp, 0.0)
    r2 = jnp.sum(disp * disp, axis=-1)
    r = jnp.sqrt(jnp.where(valid, r2, 1.0))
    s = jnp.where(valid, _switch(r, rs, rc) / r, 0.0)
    rows = jnp.concatenate([s[..., None], (s / r)[..., None] * disp], axis=-1)
    rows = jnp.where(valid[..., None], rows, 0.0)
    if k_eff < k:
        rows = jnp.concatenate([rows, jnp.zeros((n_c, k - k_eff, 4), rows.dtype)], axis=1)
    return rows


def _embedding(params, prefix: str, neighbour_type: int, x, n_layers: int):
    """Embedding net of one (centre, neighbour) type pair on s̃ (..., 1) → (..., width)."""
    h = x
    for layer in range(1, n_layers + 1):
        w = params[f"{prefix}/matrix_{layer}_{neighbour_type}"]
        b = params[f"{prefix}/bias_{layer}_{neighbour_type}"]
        y = jnp.tanh(h @ w + b)
        if layer == 1:
            h = y
        elif w.shape[1] == 2 * w.shape[0]:
            h = jnp.concatenate([h, h], axis=-1) + y
        else:  # equal widths (validated at load time)
            h = h + y
    return h


def wannier_vectors_angstrom(params, cfg: DeepDipoleConfig, r_o, r_h, box):
    """w (n_O, 3) in Å of every oxygen from O positions (n_O, 3), H positions (n_H, 3) and the
    orthorhombic box (3,), all in Å.  Pure JAX; the parameters are cast to the positions' dtype."""
    dtype = r_o.dtype
    p = {k: jnp.asarray(v).astype(dtype) for k, v in params.items()}
    box = _box_edges(box).astype(dtype)
    rc, rs = cfg.rcut, cfg.rcut_smth
    env = jnp.concatenate([
        _environment(r_o, r_o, box, cfg.sel[0], rc, rs, exclude_self=True),
        _environment(r_o, r_h, box, cfg.sel[1], rc, rs, exclude_self=False)], axis=1)  # (n_O, 138, 4)
    centre = 0
    avg = p["descrpt_attr/t_avg"].reshape(cfg.n_types, cfg.n_slots, 4)[centre]
    std = p["descrpt_attr/t_std"].reshape(cfg.n_types, cfg.n_slots, 4)[centre]
    env = (env - avg) / std
    prefix = f"filter_type_{centre}"
    n_layers = len(cfg.neuron)
    blocks = []
    start = 0
    for neighbour_type, count in enumerate(cfg.sel):
        s_tilde = env[:, start:start + count, :1]
        blocks.append(_embedding(p, prefix, neighbour_type, s_tilde, n_layers))
        start += count
    g = jnp.concatenate(blocks, axis=1)  # (n_O, 138, 100)
    t = jnp.einsum("asm,asc->amc", g, env) / cfg.n_slots  # (n_O, 100, 4)
    desc = jnp.einsum("amc,anc->amn", t, t[:, : cfg.axis_neuron, :]).reshape(t.shape[0], -1)
    h = jnp.tanh(desc @ p[f"layer_0_type_{centre}/matrix"] + p[f"layer_0_type_{centre}/bias"])
    for layer in range(1, len(cfg.fitting_neuron)):
        q = f"layer_{layer}_type_{centre}/"
        h = h + p[q + "idt"] * jnp.tanh(h @ p[q + "matrix"] + p[q + "bias"])
    a = h @ p[f"final_layer_type_{centre}/matrix"] + p[f"final_layer_type_{centre}/bias"]
    return jnp.einsum("am,amc->ac", a, t[:, :, 1:4])


def _split_species(species):
    species = np.asarray(species)
    if species.ndim != 1:
        raise ValueError(f"species must be a 1-D int array (O = 0, H = 1), got shape {species.shape}")
    bad = set(np.unique(species).tolist()) - {0, 1}
    if bad:
        raise ValueError(f"species indices must be 0 (O) or 1 (H), got {sorted(bad)}")
    return np.nonzero(species == 0)[0], np.nonzero(species == 1)[0]


def wannier_centroids(model: DeepDipole, positions_nm, box_nm, species, params=None):
    """Wannier-centroid vectors w (n_O, 3) **in Å** (the model's output unit) of every oxygen, in
    the order of the O atoms in ``positions_nm``.

    Args:
      model: a loaded :class:`DeepDipole`; ``params`` overrides its parameters (differentiable).
      positions_nm: (N, 3) nm; box_nm: (3,) edges or diagonal (3, 3) cell, nm.
      species: (N,) concrete ints, O = 0, H = 1 (this model's type map; EANN uses the opposite).
    """
    p = model.params if params is None else params
    positions = jnp.asarray(positions_nm)
    scale = units.ANGSTROM_PER_NM
    box_a = _box_edges(box_nm) * scale
    check_box(box_a, model.config.rcut)
    o, h = _split_species(species)
    x = positions * scale
    return wannier_vectors_angstrom(p, model.config, x[o], x[h], box_a.astype(positions.dtype))


# ----------------------------------------------------------------------------------------------
# DipoleModel


def deepmd_dipole_parts_fn(cfg: DeepDipoleConfig):
    """``parts(params, positions_nm, box_nm, molecules) -> (ionic, electronic)``, both (3,) in e·nm:
    ionic = Σ_mol (d_1 + d_2) (= Σ_H r_H − 2 Σ_O r_O of whole molecules), electronic = −0.02 Σ_O w_O[Å];
    M = ionic + electronic.  ``molecules`` (n_mol, 3) in O, H, H order (water)."""
    scale = units.ANGSTROM_PER_NM

    def parts(params, positions, box, molecules):
        positions = jnp.asarray(positions)
        box = jnp.asarray(box).astype(positions.dtype)
        molecules = jnp.asarray(molecules)
        check_box(box * scale, cfg.rcut)
        if molecules.ndim != 2 or molecules.shape[1] != 3:
            raise ValueError(f"the DeepDipole model needs water molecules (n_mol, 3) in O, H, H order, "
                             f"got molecules of shape {molecules.shape}")
        r = whole_molecules(positions, box, molecules)  # (n_mol, 3, 3) nm
        ionic = jnp.sum(r[:, 1:3, :] - r[:, :1, :], axis=(0, 1))
        r_o = r[:, 0, :] * scale
        r_h = r[:, 1:3, :].reshape(-1, 3) * scale
        w = wannier_vectors_angstrom(params, cfg, r_o, r_h, box * scale)
        electronic = (ELECTRONIC_FACTOR * units.NM_PER_ANGSTROM) * jnp.sum(w, axis=0)
        return ionic, electronic

    return parts


def deepmd_dipole_fn(cfg: DeepDipoleConfig, electronic_derivative_factor: float = 1.0):
    """The ``dipole_fn(params, positions_nm, box_nm, molecules) -> M [e·nm]`` of the module doc.

    ``molecules`` (n_mol, 3) in O, H, H order (water).  ``electronic_derivative_factor`` scales every
    derivative (not the value) of the electronic term −0.02 Σ w; 1 is the exact model, and
    :data:`SEED_DERIVATIVE_FACTOR` (−1/10) the seed's derivative (see :func:`seed_derivative_variant`).
    """
    parts = deepmd_dipole_parts_fn(cfg)
    factor = float(electronic_derivative_factor)

    def dipole_fn(params, positions, box, molecules):
        ionic, electronic = parts(params, positions, box, molecules)
        if factor != 1.0:
            frozen = jax.lax.stop_gradient(electronic)
            electronic = frozen + factor * (electronic - frozen)
        return ionic + electronic

    return dipole_fn


def deepmd_dipole_model(path_or_model, name: str | None = None) -> DipoleModel:
    """A ``DipoleModel`` (``workbench.observables.dipole`` interface, M in e·nm) of the DeePMD
    dipole network: M = Σ_mol (d_1 + d_2) − 0.02 Σ_O w_O[Å] (e·nm), molecules in O, H, H order.

    ``path_or_model``: a model file (see :func:`load_deepdipole`) or a loaded :class:`DeepDipole`.
    The params pytree is the graph-name dict of float64 arrays (cast to the positions' dtype).

    Memory: (M, Ṁ) of one 64-water frame needs about 40 MB of temporaries in float64 (20 MB in
    float32), so trajectories must be evaluated in batches: pass
    ``batch_size=model.metadata["trajectory_batch_size"]`` (16) to ``dipole_trajectory`` — vmapping
    1,000 frames at once would need 40 GB.
    """
    model = path_or_model if isinstance(path_or_model, DeepDipole) else load_deepdipole(path_or_model)
    params = {k: jnp.asarray(v) for k, v in model.params.items()}
    meta = dict(model.metadata)
    meta.update({"units": "e·nm (model inside: Å, e·Å)", "kind": "DeePMD se_e2_a Wannier-centroid network",
                 "dipole": "M = Σ_H r_H − 2 Σ_O r_O − 0.2 Σ_O w_O [e·Å]",
                 "trajectory_batch_size": TRAJECTORY_BATCH_SIZE})
    return DipoleModel(name or "DeePMD DeepDipole", deepmd_dipole_fn(model.config), params, meta)


def config_of(dipole_model: DipoleModel) -> DeepDipoleConfig:
    """The :class:`DeepDipoleConfig` of a model made by :func:`deepmd_dipole_model`."""
    meta = dipole_model.metadata
    if meta.get("format") != FORMAT_NAME:
        raise ValueError("not a DeePMD dipole model (made by deepmd_dipole_model)")
    return _config_from_meta(meta, dipole_model.name)


def seed_derivative_variant(dipole_model: DipoleModel) -> DipoleModel:
    """The same M values, with the seed's **wrong** derivative: the electronic term's derivatives
    (w.r.t. positions and parameters) are multiplied by −1/10 (module doc).  For benchmarks that
    measure the seed's error only.  Note that Ṁ = jvp(M) of this model is then wrong as well; the
    seed itself had correct Ṁ values (finite differences) with this derivative, see :func:`seed_mdot`.
    """
    cfg = config_of(dipole_model)
    fn = deepmd_dipole_fn(cfg, SEED_DERIVATIVE_FACTOR)
    return dipole_model.replace(name=dipole_model.name + " (seed derivative, wrong)", dipole_fn=fn,
                                metadata={**dipole_model.metadata, "derivative": "seed (-1/10 electronic)"})


def seed_mdot(dipole_model: DipoleModel, params, positions, velocities, box, molecules):
    """Ṁ as the seed had it: the exact value J_M(x)·v (its finite differences of M converge to it),
    but derivatives w.r.t. x, v and params those of J_seed(x)·v, J_seed the Jacobian with the
    electronic term scaled by −1/10 (the limit Δt → 0 of differentiating its finite differences
    through its custom JVP).  e·nm/ps."""
    from workbench.observables.dipole import dipole_and_derivative

    seed = seed_derivative_variant(dipole_model)
    exact = dipole_and_derivative(dipole_model.dipole_fn, params, positions, velocities, box, molecules)[1]
    wrong = dipole_and_derivative(seed.dipole_fn, params, positions, velocities, box, molecules)[1]
    return jax.lax.stop_gradient(exact) + (wrong - jax.lax.stop_gradient(wrong))


def seed_mdot_observable(dipole_model: DipoleModel, box, molecules):
    """Like ``grad.windows.mdot_observable`` but with :func:`seed_mdot` (the seed's gradient)."""
    box = np.asarray(box, float)
    molecules = np.asarray(molecules)

    def obs(state):
        return seed_mdot(dipole_model, dipole_model.params, state.positions, state.velocities, box, molecules)

    return obs
