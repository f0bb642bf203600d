"""Dashboard inputs of one browser session: the model, the experimental spectrum and the system.

``InputsState`` validates uploads with the package's own readers and keeps the previous choice when
a file is refused (the reason goes to ``model_message`` / ``experiment_message``).  Uploaded files
are written to the session's work directory; a pickle model is read only after ``trust_pickles`` is
ticked, and is then re-saved in the project's own npz format so nothing downstream unpickles again.
"""

from __future__ import annotations

import re
from pathlib import Path

import param

from workbench import models
from workbench.errors import UserInputError
from workbench.observables.spectrum_io import Spectrum, read_spectrum, reference_water_ir
from workbench.potentials.base import Potential

SHIPPED_EXPERIMENT = "Bertie & Lan (1996), 298 K (shipped)"
UPLOADED_MODEL = "uploaded file"
PICKLE_SUFFIXES = (".pickle", ".pkl")


def _safe_name(filename: str) -> str:
    """A file name without directories or unusual characters."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "upload").name).lstrip(".")
    return name or "upload"


class InputsState(param.Parameterized):
    """Model, experimental spectrum and temperature chosen in one session (``workdir``: its files)."""

    model = param.Selector(objects=list(models.MODEL_CHOICES), default=models.DEFAULT_MODEL,
                           doc="potential used for spectra and refinement")
    trust_pickles = param.Boolean(False, doc="allow reading an uploaded pickle (runs code from the file)")
    model_message = param.String("")
    model_card = param.String("")
    experiment_name = param.String(SHIPPED_EXPERIMENT)
    experiment_message = param.String("")
    reference_message = param.String("", doc="outcome of the last RDF-target / reference-frames upload")
    temperature = param.Number(298.15, bounds=(250.0, 370.0), doc="K")
    revision = param.Integer(0, doc="incremented whenever the experimental spectrum changes")

    def __init__(self, workdir, **params):
        super().__init__(**params)
        self.workdir = Path(workdir)
        self.system = models.default_system()
        self.experiment: Spectrum = reference_water_ir().to_n_alpha()
        self.experiment_path: Path | None = None  # None: the shipped spectrum
        self._uploaded_model: Path | None = None
        self.rdf_target: Path | None = None  # two columns r (nm), g(r): the RDF loss's target
        self.reference_frames: Path | None = None  # frames with energies and forces: force matching
        self._update_card()

    def _save(self, filename: str, data: bytes) -> Path:
        """Write an uploaded file into the session's ``uploads`` folder under a sanitised name."""
        path = self.workdir / "uploads" / _safe_name(filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    # -- model --------------------------------------------------------------------------------
    def upload_model(self, filename: str, data: bytes) -> bool:
        """Accept a model file (own npz format, DMFF npz, or a DMFF pickle when trusted)."""
        from workbench.potentials.model_io import load_model, save_model

        path = self._save(filename, data)
        name = path.name
        try:
            if path.suffix.lower() in PICKLE_SUFFIXES and not self.trust_pickles:
                raise UserInputError(f"{name} is a pickle, which can run code when read: tick "
                                     f"'trust this file' first if you know where it comes from")
            model = load_model(path, trusted=self.trust_pickles)
            model.potential(self.system)  # the species and cutoff must suit the water box
            if path.suffix.lower() != ".npz":
                path = save_model(path.with_suffix(".npz"), model, {"provenance": f"uploaded {name}"})
        except Exception as err:  # any unreadable upload: its reason, never a traceback
            self.model_message = f"model not loaded: {err}"
            return False
        self._uploaded_model = path
        self.param.model.objects = [*models.MODEL_CHOICES, UPLOADED_MODEL]
        self.model = UPLOADED_MODEL
        self.model_message = f"loaded {name}"
        self._update_card()
        return True

    @property
    def model_spec(self) -> str:
        """A model name or file path accepted by ``models.load_potential`` and refinement configs."""
        if self.model == UPLOADED_MODEL:
            return str(self._uploaded_model)
        return self.model

    def potential(self) -> Potential:
        return models.load_potential(self.model_spec, self.system)

    @param.depends("model", watch=True)
    def _update_card(self) -> None:
        self.model_card = model_card_summary(self.model_spec)

    # -- experiment ---------------------------------------------------------------------------
    def upload_spectrum(self, filename: str, data: bytes) -> bool:
        """Accept a CSV/TSV/JCAMP-DX spectrum convertible to n·α; on error keep the current one."""
        path = self._save(filename, data)
        name = path.name
        try:
            spectrum = read_spectrum(path).to_n_alpha()
        except Exception as err:  # any unreadable upload: its reason, never a traceback
            self.experiment_message = f"{name} not loaded (kept {self.experiment_name}): {err}"
            return False
        self.experiment, self.experiment_path = spectrum, path
        self.experiment_name = name
        self.experiment_message = (f"loaded {name}: {len(spectrum.wavenumber)} points, "
                                   f"{spectrum.wavenumber[0]:.0f}–{spectrum.wavenumber[-1]:.0f} cm⁻¹")
        self.revision += 1
        return True

    def use_shipped_experiment(self) -> None:
        self.experiment, self.experiment_path = reference_water_ir().to_n_alpha(), None
        self.experiment_name, self.experiment_message = SHIPPED_EXPERIMENT, ""
        self.revision += 1

    # -- RDF target and force-matching frames ----------------------------------------------------
    def upload_reference(self, kind: str, filename: str, data: bytes) -> bool:
        """Accept an RDF target (``kind="rdf"``: columns r in nm, g) or force-matching frames
        (``kind="forces"``: .npz in nm/kJ/mol or any ase-readable file with energies and forces),
        checked by the same readers the refinement uses; on error keep the current file."""
        from workbench.refine.presets import quick_demo
        from workbench.refine.problem import rdf_target, reference_data

        path = self._save(filename, data)
        what, key, reader = {"rdf": ("RDF target", "loss.rdf", rdf_target),
                             "forces": ("reference frames", "loss.force_matching", reference_data)}[kind]
        field = "target" if kind == "rdf" else "data"
        try:
            reader(quick_demo(**{f"{key}.weight": 1.0, f"{key}.{field}": str(path)}), self.system)
        except Exception as err:  # any unreadable upload: its reason, never a traceback
            self.reference_message = f"{path.name} not loaded as {what}: {err}"
            return False
        setattr(self, "rdf_target" if kind == "rdf" else "reference_frames", path)
        self.reference_message = f"loaded {path.name} as {what}"
        return True

    @property
    def ir_target(self) -> str:
        """``loss.ir.target`` of a refinement config: "experiment" or the uploaded file."""
        return "experiment" if self.experiment_path is None else str(self.experiment_path)


def model_card_summary(spec: str) -> str:
    """Markdown lines describing a shipped model name or a model file (its card)."""
    if spec in models.MODEL_CHOICES and spec not in models.SHIPPED_MODEL_FILES:
        return f"**{spec}**: {models.MODEL_CHOICES[spec]}"
    from workbench.potentials.model_io import load_model

    path = models.SHIPPED_MODEL_FILES.get(spec, Path(spec))
    try:
        meta = load_model(path).metadata
    except UserInputError as err:
        return f"**{Path(spec).name}**: {err}"
    lines = [f"**{meta.get('name', Path(path).name)}** ({meta.get('format', 'model file')}, "
             f"{meta.get('n_parameters', '?')} parameters)"]
    for key in ("provenance", "model_card"):
        if meta.get(key):
            text = str(meta[key])
            lines.append(text if len(text) < 400 else text[:400] + " …")
    return "  \n".join(lines)
