"""Model files: the workbench's own EANN format and importers for the seed's DMFF files.

Own format (``workbench-eann``, version 1) — one ``.npz`` (plain zip of ``.npy`` files, loaded with
``allow_pickle=False``):

* one array per parameter, under the parameter's stable name (``radial.rs``, ``layer0.w``, ...; see
  ``workbench.potentials.eann``), dtype as saved (float32 or float64);
* ``__metadata__``: a 0-d unicode array holding a JSON object — the model card::

      {"format": "workbench-eann", "format_version": 1, "model": "EANN",
       "species_order": ["H", "O"], "cutoff": {"value": 6.0, "unit": "angstrom"},
       "internal_units": {"length": "angstrom", "energy": "kJ/mol"},
       "architecture": {"n_species": 2, "n_radial": 12, "l_max": 2, "hidden": [64, 64], ...},
       "parameters": {"radial.rs": {"shape": [2, 12], "dtype": "float32"}, ...},
       "n_parameters": 14283, "provenance": "...", "model_card": "...", ...}

Imported formats (read-only):

* DMFF/EANN ``.npz`` as written from the seed's parameter pytree: keys ``"['w'][i]"``, ``"['b'][i]"``,
  ``"['c']"``, ``"['rs']"``, ``"['inta']"``, ``"['initpot']"``, optionally all prefixed with
  ``"['energy']"`` (the seed's refined files).
* The seed's original pickle (``*.dmff.pickle``): a dict of JAX arrays pickled by an older JAX.
  Pickles can run arbitrary code when loaded, so ``load_model`` refuses them unless
  ``trusted=True`` is passed; even then a restricted unpickler only resolves the handful of
  numpy/JAX array-reconstruction globals such a file needs and rebuilds plain numpy arrays.

Mapping of the seed's layout (S elements, hidden layers ℓ = 0..n−1, 3 seed entries per layer):
``w[3ℓ], b[3ℓ]`` → ``layerℓ.w, layerℓ.b``; ``w[3ℓ+1], b[3ℓ+1]`` → ``layerℓ.norm_gain, norm_shift``;
``w[3ℓ+2], b[3ℓ+2]`` (S, 1, H) → ``layerℓ.act_outer, act_inner`` (S, H); ``w[3n]`` (S, H, 1) →
``output.w`` (S, H); ``b[3n]`` (S, 1) → ``output.b`` (S,); ``initpot`` (1,) → ``initpot`` ();
``rs, inta, c`` → ``radial.rs, radial.inta, radial.c``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import UserInputError
from workbench.potentials import eann
from workbench.potentials.base import Potential

FORMAT_NAME = "workbench-eann"
FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"

#: Metadata keys that describe one system rather than the model; dropped when saving.
_PER_SYSTEM_KEYS = ("n_atoms", "species_index")


class ModelFormatError(UserInputError):
    """A model file that cannot be read (the message names the file and the problem)."""


class UntrustedPickleError(ModelFormatError):
    """A pickle file was given without ``trusted=True``."""


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """Parameters and model card of a model read from (or to be written to) a file.

    Attributes:
      params: parameter dict (numpy arrays, names as in ``workbench.potentials.eann``).
      metadata: the model card (JSON-serialisable dict; see module docstring).
      source: what was read, e.g. ``"workbench-eann v1"``, ``"DMFF EANN npz"``.
    """

    params: dict
    metadata: dict
    source: str = ""

    @property
    def species_order(self) -> tuple[str, ...]:
        """Element symbols in species-index order, e.g. ``("H", "O")``."""
        return tuple(self.metadata.get("species_order", eann.WATER_SPECIES_ORDER))

    @property
    def cutoff_angstrom(self) -> float:
        return eann.cutoff_from_metadata(self.metadata)

    def potential(self, species, name: str | None = None) -> Potential:
        """A ``Potential`` for the given atoms.

        ``species`` is either a (N,) int array in this model's species order or anything with a
        ``species_index(order)`` method (a ``workbench.system.System``).
        """
        if hasattr(species, "species_index"):
            species = species.species_index(self.species_order)
        return eann.eann_potential(self.params, species, name=name or self.metadata.get("name", "EANN"),
                                   metadata=self.metadata)


# ----------------------------------------------------------------------------------------------
# loading


def load_model(path, trusted: bool = False) -> ModelFile:
    """Read a model file, recognising its format from its content.

    Args:
      path: a ``workbench-eann`` ``.npz``, a DMFF/EANN ``.npz`` (optionally ``['energy']``-prefixed
        keys) or a DMFF pickle.
      trusted: must be ``True`` to read a pickle (pickles can execute code when loaded; only
        load pickles from a source you trust).  Ignored for ``.npz`` files, which are read
        without pickle support.

    Raises ``FileNotFoundError``, ``UntrustedPickleError`` or ``ModelFormatError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return _load_npz(path)
    if head[:1] == b"\x80" or path.suffix in (".pickle", ".pkl"):
        return _load_dmff_pickle(path, trusted=trusted)
    raise ModelFormatError(
        f"{path.name}: unknown model file format (not an .npz/zip archive and not a pickle); "
        f"expected a workbench-eann .npz, a DMFF EANN .npz or a DMFF .pickle")


def load_potential(path, species, trusted: bool = False, name: str | None = None) -> Potential:
    """``load_model(path, trusted).potential(species, name)`` in one call."""
    return load_model(path, trusted=trusted).potential(species, name=name)


def _load_npz(path: Path) -> ModelFile:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise ModelFormatError(f"{path.name}: cannot read as .npz: {err}") from err
    if METADATA_KEY in arrays:
        return _from_own_arrays(arrays, path.name)
    if any(_DMFF_KEY.match(k) for k in arrays):
        params = from_dmff_layout(_dmff_tree_from_flat(arrays, path.name), path.name)
        return ModelFile(params, _imported_metadata(params, path, "DMFF EANN npz"), "DMFF EANN npz")
    raise ModelFormatError(
        f"{path.name}: .npz holds neither a workbench model ({METADATA_KEY!r} entry missing) nor DMFF "
        f"EANN parameters (keys like \"['w'][0]\"); its keys are {sorted(arrays)[:12]}")


def _from_own_arrays(arrays: dict, filename: str) -> ModelFile:
    raw = arrays.pop(METADATA_KEY)
    try:
        metadata = json.loads(str(raw[()]))
    except (json.JSONDecodeError, TypeError, IndexError) as err:
        raise ModelFormatError(f"{filename}: {METADATA_KEY} is not a JSON object: {err}") from err
    if not isinstance(metadata, dict):
        raise ModelFormatError(f"{filename}: {METADATA_KEY} is not a JSON object")
    fmt, version = metadata.get("format"), metadata.get("format_version")
    if fmt != FORMAT_NAME:
        raise ModelFormatError(f"{filename}: format {fmt!r} is not {FORMAT_NAME!r}")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(f"{filename}: {FORMAT_NAME} format version {version!r} is not supported "
                               f"(this workbench reads up to version {FORMAT_VERSION}); update the workbench")
    listed = metadata.get("parameters", {})
    missing = sorted(set(listed) - set(arrays))
    if missing:
        raise ModelFormatError(f"{filename}: parameter(s) {missing} listed in the metadata are missing")
    for key, info in listed.items():
        if list(arrays[key].shape) != list(info.get("shape", arrays[key].shape)):
            raise ModelFormatError(f"{filename}: parameter {key!r} has shape {arrays[key].shape}, "
                                   f"the metadata says {tuple(info['shape'])}")
    try:
        eann.validate_params(arrays)
    except ValueError as err:
        raise ModelFormatError(f"{filename}: {err}") from err
    return ModelFile(arrays, metadata, f"{FORMAT_NAME} v{version}")


# ----------------------------------------------------------------------------------------------
# saving


def default_metadata(params: Mapping, species_order=eann.WATER_SPECIES_ORDER,
                     cutoff_angstrom: float = eann.DEFAULT_CUTOFF_ANGSTROM) -> dict:
    """The model card fields derived from the parameters (format, units, sizes, parameter list)."""
    arch = eann.architecture(params)
    arch.update({
        "cutoff_function": "(0.5*cos(pi*d/rc) + 0.5)**2, hard mask d <= rc",
        "radial_basis": "exp(-inta[Z_neighbour,k] * (d - rs[Z_neighbour,k])**2)",
        "angular": "Cartesian monomials of v up to degree l_max, density = sum of squares per L",
        "layer": "dense -> LayerNorm(eps=1e-5) -> outer*silu(inner*h)",
        "layer_norm_eps": eann.LAYER_NORM_EPS,
    })
    if len(species_order) != arch["n_species"]:
        raise ValueError(f"species_order {tuple(species_order)} has {len(species_order)} elements but the "
                         f"parameters are for {arch['n_species']}")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": "EANN",
        "species_order": list(species_order),
        "cutoff": {"value": float(cutoff_angstrom), "unit": "angstrom"},
        "internal_units": {"length": "angstrom", "energy": "kJ/mol", "forces": "kJ/mol/angstrom"},
        "architecture": arch,
        "parameters": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                       for k, v in sorted(params.items())},
        "n_parameters": int(sum(np.size(v) for v in params.values())),
    }


def save_model(path, model, metadata: Mapping | None = None) -> Path:
    """Write ``model`` in the ``workbench-eann`` format and return the path.

    Args:
      path: output file (written atomically; the ``.npz`` suffix is recommended, not added).
      model: a ``Potential`` (EANN), a ``ModelFile`` or a parameter dict.
      metadata: extra model-card entries (e.g. ``provenance``, ``model_card``, ``name``); they
        override those of ``model``.  ``species_order`` and ``cutoff`` are honoured; the format
        fields, architecture and parameter list are always recomputed from the parameters.
    """
    path = Path(path)
    if isinstance(model, (Potential, ModelFile)):
        params, meta = model.params, dict(model.metadata)
    elif isinstance(model, Mapping):
        params, meta = model, {}
    else:
        raise TypeError(f"save_model needs a Potential, ModelFile or parameter dict, "
                        f"got {type(model).__name__}")
    meta.update(metadata or {})
    for key in _PER_SYSTEM_KEYS:
        meta.pop(key, None)
    params = {k: np.asarray(v) for k, v in params.items()}
    eann.validate_params(params)
    derived = default_metadata(params, meta.get("species_order", eann.WATER_SPECIES_ORDER),
                               eann.cutoff_from_metadata(meta))
    meta.update(derived)
    meta.setdefault("created", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    try:
        text = json.dumps(meta, indent=1, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"metadata must be JSON-serialisable: {err}") from err
    return write_npz_atomic(path, {**params, METADATA_KEY: np.array(text)})


def write_npz_atomic(path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an npz file that appears whole or not at all (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------------------------
# DMFF layout


_DMFF_KEY = re.compile(r"^(?:\['energy'\])?\['(w|b)'\]\[(\d+)\]$"
                       r"|^(?:\['energy'\])?\['(c|rs|inta|initpot)'\]$")


def _dmff_tree_from_flat(arrays: Mapping[str, np.ndarray], filename: str) -> dict:
    """``{"['w'][0]": ..., "['c']": ...}`` (optionally ``['energy']``-prefixed) → seed pytree."""
    tree: dict[str, Any] = {"w": {}, "b": {}}
    unknown = []
    for key, value in arrays.items():
        m = _DMFF_KEY.match(key)
        if m is None:
            unknown.append(key)
        elif m.group(1):
            tree[m.group(1)][int(m.group(2))] = value
        else:
            tree[m.group(3)] = value
    if unknown:
        raise ModelFormatError(f"{filename}: unexpected key(s) {sorted(unknown)} in a DMFF EANN .npz")
    for name in ("w", "b"):
        idx = sorted(tree[name])
        if idx != list(range(len(idx))):
            raise ModelFormatError(f"{filename}: ['{name}'] entries must be numbered 0..n-1, found {idx}")
        tree[name] = [tree[name][i] for i in idx]
    return tree


def from_dmff_layout(tree: Mapping, filename: str = "DMFF parameters") -> dict:
    """Convert the seed's parameter pytree ``{"w": [...], "b": [...], "c", "rs", "inta", "initpot"}``
    (or ``{"energy": {...}}``) to the workbench parameter dict, checking every shape."""
    if set(tree) == {"energy"}:
        tree = tree["energy"]
    need = ("w", "b", "c", "rs", "inta", "initpot")
    missing = [k for k in need if k not in tree]
    if missing:
        raise ModelFormatError(f"{filename}: DMFF EANN parameters miss {missing} (have {sorted(tree)})")
    extra = sorted(set(tree) - set(need))
    if extra:
        raise ModelFormatError(f"{filename}: unexpected DMFF EANN entries {extra}")
    w = [np.asarray(a) for a in tree["w"]]
    b = [np.asarray(a) for a in tree["b"]]
    if len(w) != len(b) or len(w) < 4 or (len(w) - 1) % 3:
        raise ModelFormatError(f"{filename}: expected 3·n_layers + 1 entries in ['w'] and ['b'] "
                               f"(7 for two hidden layers), got {len(w)} and {len(b)}")
    rs = np.asarray(tree["rs"])
    if rs.ndim != 2:
        raise ModelFormatError(f"{filename}: ['rs'] must be (n_species, n_radial), got shape {rs.shape}")
    n_species, n_radial = rs.shape
    n_layers = (len(w) - 1) // 3

    def check(name, arr, shape):
        if arr.shape != shape:
            raise ModelFormatError(f"{filename}: {name} has shape {arr.shape}, expected {shape}")
        return arr

    params = {}
    for key in ("rs", "inta", "c"):
        params[f"radial.{key}"] = check(f"['{key}']", np.asarray(tree[key]), (n_species, n_radial))
    width = (eann.L_MAX + 1) * n_radial
    for layer in range(n_layers):
        k = 3 * layer
        if w[k].ndim != 3:
            raise ModelFormatError(f"{filename}: ['w'][{k}] must be (n_species, n_in, n_out), "
                                   f"got {w[k].shape}")
        h = w[k].shape[2]
        p = f"layer{layer}."
        params[p + "w"] = check(f"['w'][{k}]", w[k], (n_species, width, h))
        params[p + "b"] = check(f"['b'][{k}]", b[k], (n_species, h))
        params[p + "norm_gain"] = check(f"['w'][{k + 1}]", w[k + 1], (n_species, h))
        params[p + "norm_shift"] = check(f"['b'][{k + 1}]", b[k + 1], (n_species, h))
        params[p + "act_outer"] = check(f"['w'][{k + 2}]", w[k + 2], (n_species, 1, h))[:, 0]
        params[p + "act_inner"] = check(f"['b'][{k + 2}]", b[k + 2], (n_species, 1, h))[:, 0]
        width = h
    params["output.w"] = check(f"['w'][{len(w) - 1}]", w[-1], (n_species, width, 1))[..., 0]
    params["output.b"] = check(f"['b'][{len(b) - 1}]", b[-1], (n_species, 1))[:, 0]
    initpot = np.asarray(tree["initpot"])
    if initpot.size != 1:
        raise ModelFormatError(f"{filename}: ['initpot'] must hold one number, got shape {initpot.shape}")
    params["initpot"] = initpot.reshape(())
    params = {k: np.array(v) for k, v in params.items()}
    eann.validate_params(params)
    return params


def to_dmff_layout(params: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    """The inverse of the importer: flat DMFF npz keys (``prefix`` e.g. ``"['energy']"``) → arrays."""
    eann.validate_params(params)
    p = {k: np.asarray(v) for k, v in params.items()}
    out = {f"{prefix}['{k}']": p[f"radial.{k}"] for k in ("rs", "inta", "c")}
    out[f"{prefix}['initpot']"] = p["initpot"].reshape(1)
    n_layers = eann.n_hidden_layers(p)
    for layer in range(n_layers):
        k, q = 3 * layer, f"layer{layer}."
        out[f"{prefix}['w'][{k}]"], out[f"{prefix}['b'][{k}]"] = p[q + "w"], p[q + "b"]
        out[f"{prefix}['w'][{k + 1}]"] = p[q + "norm_gain"]
        out[f"{prefix}['b'][{k + 1}]"] = p[q + "norm_shift"]
        out[f"{prefix}['w'][{k + 2}]"] = p[q + "act_outer"][:, None, :]
        out[f"{prefix}['b'][{k + 2}]"] = p[q + "act_inner"][:, None, :]
    out[f"{prefix}['w'][{3 * n_layers}]"] = p["output.w"][..., None]
    out[f"{prefix}['b'][{3 * n_layers}]"] = p["output.b"][:, None]
    return out


def _imported_metadata(params: Mapping, path: Path, kind: str) -> dict:
    meta = default_metadata(params)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta["name"] = path.name.split(".")[0]
    meta["provenance"] = (f"imported from {path.name} ({kind}, sha256 {digest}); seed-paper EANN layout "
                          f"(ice-hanbin/dynamical-fitting, DMFF), species order H=0, O=1, cutoff 6 Å")
    meta.setdefault("model_card", "")
    return meta


# ----------------------------------------------------------------------------------------------
# legacy pickle


def _np_reconstruct():
    """numpy's ndarray reconstructor (``numpy._core`` in numpy 2, ``numpy.core`` before)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _np_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


def _reconstruct_jax_array(fun, args, arr_state, aval_state):
    """Stand-in for ``jax._src.array._reconstruct_array``: rebuild the numpy value, drop the JAX part.

    JAX pickles an array as ``_reconstruct_array(np_reduce_fn, np_reduce_args, np_state, aval_state)``
    with numpy's own ``__reduce__`` parts; ``aval_state`` (``weak_type``, ``named_shape``) is ignored.
    """
    if fun is not _np_reconstruct() or not isinstance(args, tuple):
        raise ModelFormatError("pickle: malformed JAX array record")
    arr = fun(*args)
    arr.__setstate__(arr_state)
    return arr


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed for (legacy JAX) numpy arrays."""

    def find_class(self, module, name):
        allowed = {
            ("jax._src.array", "_reconstruct_array"): _reconstruct_jax_array,
            ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct(),
            ("numpy.core.multiarray", "scalar"): _np_scalar(),
            ("numpy._core.multiarray", "scalar"): _np_scalar(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("collections", "OrderedDict"): dict,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise ModelFormatError(
                f"pickle references {module}.{name}, which is not on the allow-list of array "
                f"classes; refusing to load it") from None


def read_legacy_pickle(path, trusted: bool = False):
    """Unpickle a (legacy JAX) parameter file into a tree of numpy arrays, with a restricted unpickler.

    Raises ``UntrustedPickleError`` unless ``trusted=True``.
    """
    path = Path(path)
    if not trusted:
        raise UntrustedPickleError(
            f"refusing to read the pickle {path.name}: loading a pickle can execute arbitrary code, so "
            f"the workbench reads pickles only when told the file is trusted. If you know where this "
            f"file comes from, call load_model(path, trusted=True) (even then only numpy/JAX array "
            f"classes are allowed), then save_model() it once to the safe .npz format.")
    try:
        tree = _RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
    except ModelFormatError as err:
        raise ModelFormatError(f"{path.name}: {err}") from err
    except Exception as err:  # corrupt pickles raise many kinds of errors
        raise ModelFormatError(f"{path.name}: cannot unpickle: {type(err).__name__}: {err}") from err
    _check_numeric_tree(tree, path.name)
    return tree


def _check_numeric_tree(tree, filename: str, where: str = "") -> None:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            _check_numeric_tree(v, filename, f"{where}[{k!r}]")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _check_numeric_tree(v, filename, f"{where}[{i}]")
    elif not (isinstance(tree, (np.ndarray, np.generic)) and np.asarray(tree).dtype.kind in "fiub"):
        raise ModelFormatError(f"{filename}: entry {where or 'root'} is {type(tree).__name__}, "
                               f"not a numeric array")


def _load_dmff_pickle(path: Path, trusted: bool) -> ModelFile:
    tree = read_legacy_pickle(path, trusted=trusted)
    if not isinstance(tree, Mapping):
        raise ModelFormatError(f"{path.name}: pickle holds a {type(tree).__name__}, expected a dict of "
                               f"DMFF EANN parameters")
    params = from_dmff_layout(tree, path.name)
    return ModelFile(params, _imported_metadata(params, path, "DMFF EANN pickle"), "DMFF EANN pickle")
