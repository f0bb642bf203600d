"""Offline 3D structure viewer: a Panel ``JSComponent`` around 3Dmol.js.

3Dmol.js (npm package ``3dmol``, version pinned in ``scripts/build_viewer_bundle.sh``) is compiled
with the component's ES module (``viewer.js``) into ``viewer.bundle.js`` next to this file, and
Panel serves that bundle from the local server, so a page served with ``panel serve`` fetches
nothing from a CDN.  The ``_importmap`` below is only read by ``panel compile`` to learn the
package name and version; at run time it is ignored as long as the bundle exists (but note that
``panel serve --dev``/autoreload bypasses bundles and would load the ESM from the CDN).

Units: the workbench works in nm; the XYZ text handed to 3Dmol is in Å (positions × 10), the
unit of the XYZ format.  ``box_nm`` stays in nm and is converted in the browser.

Rebuild the bundle after editing ``viewer.js``: ``scripts/build_viewer_bundle.sh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import panel as pn
import param

from workbench.system import System

#: Å per nm, for the XYZ text.
ANGSTROM_PER_NM = 10.0

#: Pinned 3Dmol.js release compiled into the bundle (keep in sync with the build script).
THREEDMOL_VERSION = "2.5.5"

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "viewer.bundle.js"


def structure_xyz(symbols: Sequence[str], positions_nm, box_nm=None, comment: str = "") -> str:
    """Extended-XYZ text of one configuration.

    Args:
      symbols: element symbol per atom.
      positions_nm: (N, 3) positions in nm; written in Å (× 10), the unit of the XYZ format.
      box_nm: optional (3,) orthorhombic cell edges in nm; written as ``Lattice="..."`` in Å with
        ``pbc="T T T"`` on the comment line.
      comment: free text appended to the comment line (a newline in it is replaced by a space).

    Returns:
      The text: atom count, comment line, then one ``symbol x y z`` line per atom (Å).
    """
    positions = np.asarray(positions_nm, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {positions.shape}")
    if len(symbols) != len(positions):
        raise ValueError(f"{len(symbols)} symbols for {len(positions)} positions")
    fields = []
    if box_nm is not None:
        a, b, c = (float(x) * ANGSTROM_PER_NM for x in np.asarray(box_nm, dtype=float).reshape(3))
        fields.append(f'Lattice="{a:.6f} 0.0 0.0 0.0 {b:.6f} 0.0 0.0 0.0 {c:.6f}"')
        fields.append('pbc="T T T"')
    fields.append("Properties=species:S:1:pos:R:3")
    if comment:
        fields.append(" ".join(comment.split()))
    lines = [str(len(positions)), " ".join(fields)]
    angstrom = positions * ANGSTROM_PER_NM
    lines += [f"{s:<2s} {x:14.8f} {y:14.8f} {z:14.8f}"
              for s, (x, y, z) in zip(symbols, angstrom, strict=True)]
    return "\n".join(lines) + "\n"


def system_xyz(system: System, comment: str = "", wrap: bool = False) -> str:
    """Extended-XYZ text (Å) of ``system``: its symbols, positions (nm → Å) and box (nm → Å).

    With ``wrap=True`` each molecule is translated by whole box vectors so that its first atom
    (the oxygen of a water) lies inside the cell [0, box); molecules stay intact.  By default the
    positions are written as stored (MD trajectories are unwrapped, so atoms may lie outside).
    """
    positions = np.asarray(system.positions, dtype=float)
    if wrap:
        box = np.asarray(system.box, dtype=float)
        positions = positions.copy()
        for members in np.asarray(system.molecules):
            positions[members] -= np.floor(positions[members[0]] / box) * box
    return structure_xyz(system.symbols, positions, system.box, comment=comment)


class StructureViewer(pn.custom.JSComponent):
    """Interactive 3D view of one configuration, drawn by 3Dmol.js from a bundled (offline) build.

    Set ``xyz`` to new text to show another frame: the JS side replaces the model and keeps the
    camera (rotation and zoom) once a structure has been shown.

    Example::

        from workbench import models
        system = models.default_system()
        viewer = StructureViewer.from_system(system)   # or StructureViewer(xyz=system_xyz(system))
    """

    xyz = param.String(default="", doc="XYZ / extended-XYZ text of the configuration, coordinates in Å.")
    box_nm = param.List(default=[], item_type=(int, float),
                        doc="Orthorhombic cell edges (a, b, c) in nm, drawn as an outline; [] for none.")
    style = param.Selector(default="ball-and-stick", objects=["ball-and-stick", "sticks", "spheres"],
                           doc="How atoms are drawn.")
    background = param.Color(default="#ffffff", doc="Canvas background colour.")
    cell_color = param.Color(default="#555555", doc="Colour of the unit-cell outline.")

    _esm = "viewer.js"
    _bundle = "viewer.bundle.js"
    # Read by `panel compile` only (package name and version); the served page uses the bundle.
    _importmap = {"imports": {"3dmol": f"https://esm.sh/3dmol@{THREEDMOL_VERSION}"}}

    def __init__(self, **params):
        params.setdefault("height", 420)
        if "width" not in params:
            params.setdefault("sizing_mode", "stretch_width")
        params.setdefault("min_width", 200)
        box = params.get("box_nm")
        if box is not None:
            params["box_nm"] = [float(x) for x in np.asarray(box, dtype=float).reshape(-1)]
        super().__init__(**params)

    @classmethod
    def from_system(cls, system: System, **params) -> StructureViewer:
        """A viewer showing ``system`` (positions and box in nm) with its cell outline."""
        return cls(xyz=system_xyz(system), box_nm=[float(x) for x in system.box], **params)

    def show_system(self, system: System) -> None:
        """Replace the shown configuration by ``system`` (keeps the camera)."""
        self.param.update(xyz=system_xyz(system), box_nm=[float(x) for x in system.box])
