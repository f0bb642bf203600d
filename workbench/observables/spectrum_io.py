"""Reading and writing experimental/simulated spectra.

A :class:`Spectrum` holds wavenumbers in cm⁻¹ (strictly ascending) and values of a named quantity:

| quantity                 | unit              | meaning                                             |
|--------------------------|-------------------|-----------------------------------------------------|
| ``n_alpha``              | cm⁻¹              | n(ν̃)·α(ν̃), α the Napierian absorption coefficient   |
| ``absorption_coefficient`` | cm⁻¹            | α = −ln(I/I0)/d (Napierian)                          |
| ``absorbance``           | 1                 | A = log10(I0/I) (decadic)                           |
| ``transmittance``        | 1                 | T = I/I0 (a fraction)                                |
| ``molar_absorptivity``   | L mol⁻¹ cm⁻¹      | ε = A/(c d) (decadic)                                |

Conversion to n·α (:meth:`Spectrum.to_n_alpha`) uses α = ln(10)·A/d, A = −log10 T,
α = ln(10)·ε·c and nα = n·α.  Data a file does not carry — path length d, concentration c,
refractive index n — must be passed explicitly; otherwise the conversion is refused with a
:class:`SpectrumConversionError` (never guessed).

Text tables (:func:`read_table`): lines starting with ``#`` are comments (``# source: ...`` sets the
source); text after ``#`` on a data line is ignored; fields are separated by commas, tabs,
semicolons or whitespace; non-numeric lines before the first data row are header lines (the last
one names the columns).  Which column holds the wavenumber:

1. ``x_column`` (0-based) when given;
2. else a column whose header name contains "wavenumber", "wave number", "wavelength" or
   "frequency";
3. else the column whose values are monotonic (ascending or descending); if several are, the first.

The y column is ``y_column`` or, in a two-column file, the other one.  The x unit is ``x_unit``
("cm-1", "um", "nm"), else the unit named in the x column's header, else cm⁻¹; wavelengths are
converted by ν̃ = 10⁴/λ[µm] = 10⁷/λ[nm].  The quantity is ``quantity``, else one named in the y
header, else ``n_alpha``.  Rows are returned in ascending wavenumber.

Every defect — unreadable or empty file, non-numeric field, NaN or infinite value, ragged rows,
duplicated or non-positive abscissae — raises :class:`SpectrumFileError` naming the file, the line
and the problem.  JCAMP-DX files (``.jdx``, ``.dx``, ``.jcamp``) are read with the ``jcamp``
package; their XUNITS/YUNITS set unit and quantity.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import UserInputError

__all__ = [
    "Spectrum", "SpectrumFileError", "SpectrumConversionError", "QUANTITY_UNITS",
    "read_spectrum", "read_table", "read_jcamp", "write_spectrum_csv", "to_wavenumber",
    "REFERENCE_WATER_IR", "reference_water_ir",
]

QUANTITY_UNITS = {
    "n_alpha": "cm^-1",
    "absorption_coefficient": "cm^-1",
    "absorbance": "1",
    "transmittance": "1",
    "molar_absorptivity": "L mol^-1 cm^-1",
}

X_UNITS = ("cm-1", "um", "nm")

#: The shipped experimental IR spectrum of liquid water at 298 K (Bertie & Lan 1996).
REFERENCE_WATER_IR = (Path(__file__).resolve().parents[2] / "assets" / "spectra"
                      / "water_ir_298K_bertie_lan_1996.csv")


class SpectrumFileError(UserInputError):
    """A spectrum file that cannot be read as it is (the message names the line and problem).

    A ``ValueError`` (through ``workbench.errors.UserInputError``, whose message the CLI/UI show)."""


class SpectrumConversionError(UserInputError):
    """A unit/quantity conversion that needs data the spectrum does not carry."""


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """A spectrum on a strictly ascending wavenumber grid.

    Attributes:
      wavenumber: (n,) cm⁻¹, strictly ascending.
      values: (n,) values of ``quantity``.
      quantity: one of ``QUANTITY_UNITS`` (default ``n_alpha``).
      unit: unit of ``values`` (default: the quantity's unit).
      source: where the data come from (file, citation).
    """

    wavenumber: np.ndarray
    values: np.ndarray
    quantity: str = "n_alpha"
    unit: str = ""
    source: str = ""

    def __post_init__(self):
        x = np.asarray(self.wavenumber, dtype=float)
        y = np.asarray(self.values, dtype=float)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError(f"wavenumber and values must be 1-D of the same non-zero length, got "
                             f"{x.shape} and {y.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("spectrum contains NaN or infinite values")
        if np.any(np.diff(x) <= 0):
            raise ValueError("wavenumbers must be strictly ascending")
        if self.quantity not in QUANTITY_UNITS:
            raise ValueError(f"unknown quantity {self.quantity!r}; known: {sorted(QUANTITY_UNITS)}")
        object.__setattr__(self, "wavenumber", x)
        object.__setattr__(self, "values", y)
        if not self.unit:
            object.__setattr__(self, "unit", QUANTITY_UNITS[self.quantity])

    def __len__(self) -> int:
        return self.wavenumber.size

    def interpolate(self, wavenumbers_cm) -> np.ndarray:
        """Values linearly interpolated on another grid (cm⁻¹), which must lie inside this one."""
        grid = np.asarray(wavenumbers_cm, dtype=float)
        lo, hi = self.wavenumber[0], self.wavenumber[-1]
        if grid.size and (grid.min() < lo - 1e-9 or grid.max() > hi + 1e-9):
            raise ValueError(f"grid {grid.min():.2f}–{grid.max():.2f} cm⁻¹ extends beyond the "
                             f"spectrum's {lo:.2f}–{hi:.2f} cm⁻¹; no extrapolation")
        return np.interp(grid, self.wavenumber, self.values)

    def to_n_alpha(self, path_length_cm: float | None = None, refractive_index=None,
                   concentration_mol_per_L: float | None = None) -> Spectrum:
        """The spectrum as n·α in cm⁻¹, refusing conversions that lack the needed data.

        absorbance A → α = ln(10)·A/d (needs ``path_length_cm`` d); transmittance T → A = −log10 T;
        molar absorptivity ε → α = ln(10)·ε·c (needs ``concentration_mol_per_L`` c);
        α → n·α (needs ``refractive_index`` n: a number or an array on this grid).
        """
        q = self.quantity
        if q == "n_alpha":
            return self
        y = self.values
        if q == "transmittance":
            if np.any(y <= 0):
                raise SpectrumConversionError("transmittance must be > 0 to convert to absorbance "
                                              "(A = −log10 T)")
            y, q = -np.log10(y), "absorbance"
        if q == "absorbance":
            if path_length_cm is None:
                raise SpectrumConversionError(
                    "converting absorbance to n·α needs the sample path length d (α = ln(10)·A/d); "
                    "the data do not give it — pass path_length_cm (the workbench does not guess it)")
            if not path_length_cm > 0:
                raise SpectrumConversionError(f"path_length_cm must be > 0, got {path_length_cm}")
            y, q = math.log(10.0) * y / path_length_cm, "absorption_coefficient"
        if q == "molar_absorptivity":
            if concentration_mol_per_L is None:
                raise SpectrumConversionError(
                    "converting molar absorptivity to n·α needs the concentration c in mol/L "
                    "(α = ln(10)·ε·c); pass concentration_mol_per_L (the workbench does not guess it)")
            y, q = math.log(10.0) * y * concentration_mol_per_L, "absorption_coefficient"
        if refractive_index is None:
            raise SpectrumConversionError(
                "converting the absorption coefficient α to n·α needs the refractive index n(ν̃) "
                "(nα = n·α); pass refractive_index as a number or an array on the spectrum's grid "
                "(the workbench does not guess it)")
        n = np.broadcast_to(np.asarray(refractive_index, dtype=float), y.shape)
        note = f"{self.source} (converted from {self.quantity} to n·α)".strip()
        return Spectrum(self.wavenumber, n * y, "n_alpha", QUANTITY_UNITS["n_alpha"], note)


# ----------------------------------------------------------------------------------------------
# units


def to_wavenumber(x, unit: str) -> np.ndarray:
    """Abscissa in ``unit`` ("cm-1", "um", "nm") → wavenumber in cm⁻¹ (10⁴/λ[µm], 10⁷/λ[nm])."""
    x = np.asarray(x, dtype=float)
    unit = _normalise_x_unit(unit)
    if unit == "cm-1":
        return x
    if unit == "um":
        return 1e4 / x
    return 1e7 / x


def _normalise_x_unit(unit: str) -> str:
    u = unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")
    if u in ("cm-1", "cm^-1", "1/cm", "cm⁻¹", "wavenumber", "wavenumbers"):
        return "cm-1"
    if u in ("um", "micron", "microns", "micrometer", "micrometers", "micrometre", "micrometres"):
        return "um"
    if u in ("nm", "nanometer", "nanometers", "nanometre", "nanometres"):
        return "nm"
    raise ValueError(f"unknown x unit {unit!r}; use one of {X_UNITS}")


def _x_unit_from_name(name: str) -> str | None:
    n = re.sub(r"[_()\[\]/,]", " ", name.lower().replace("µ", "u").replace("μ", "u").replace("1/cm", "cm-1"))
    if re.search(r"cm\s*\^?\{?\s*-\s*1|cm⁻¹|wavenumber|wave number", n):
        return "cm-1"
    if re.search(r"\bum\b|micron|micromet", n):
        return "um"
    if re.search(r"\bnm\b|nanomet", n):
        return "nm"
    return None


def _quantity_from_name(name: str) -> str | None:
    n = name.lower().replace(" ", "").replace("_", "")
    if re.search(r"(?<![a-z])n(\*|\(omega\)|\(ω\)|·)?(alpha|α)", n):
        return "n_alpha"
    if "absorbance" in n:
        return "absorbance"
    if "transmittance" in n:
        return "transmittance"
    if "molar" in n or "epsilon" in n:
        return "molar_absorptivity"
    if "absorptioncoefficient" in n or "alpha" in n or "α" in n:
        return "absorption_coefficient"
    return None


def _is_x_name(name: str) -> bool:
    n = name.lower()
    return any(word in n for word in ("wavenumber", "wave number", "wavelength", "frequency"))


# ----------------------------------------------------------------------------------------------
# text tables


def _split(line: str) -> list[str]:
    for sep in (",", "\t", ";"):
        if sep in line:
            return [f.strip() for f in line.split(sep)]
    return line.split()


def _parse_float(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def read_table(path, quantity: str | None = None, x_unit: str | None = None,
               x_column: int | None = None, y_column: int | None = None,
               source: str | None = None) -> Spectrum:
    """Read a CSV/TSV/whitespace table into a :class:`Spectrum` (rules in the module docstring)."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise SpectrumFileError(f"spectrum file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise SpectrumFileError(f"{name}: cannot read as text: {err}") from err

    header: list[str] | None = None
    comment_source = None
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            m = re.match(r"#\s*source\s*:\s*(.+)", stripped, flags=re.IGNORECASE)
            if m and comment_source is None:
                comment_source = m.group(1).strip()
            continue
        line = stripped.split("#", 1)[0].strip()
        if not line:
            continue
        fields = _split(line)
        values = [_parse_float(f) for f in fields]
        if any(v is None for v in values):
            if not rows:  # header line(s) before the data
                header = fields
                continue
            bad = next(f for f, v in zip(fields, values, strict=True) if v is None)
            problem = "empty field" if bad == "" else f"non-numeric value {bad!r}"
            raise SpectrumFileError(f"{name}, line {number}: {problem}")
        if rows and len(values) != len(rows[0]):
            raise SpectrumFileError(f"{name}, line {number}: expected {len(rows[0])} columns like "
                                    f"line {line_numbers[0]}, found {len(values)}")
        rows.append(values)
        line_numbers.append(number)
    if not rows:
        raise SpectrumFileError(f"{name}: no data rows (empty file or only comments/headers)")
    data = np.asarray(rows, dtype=float)
    lines = np.asarray(line_numbers)
    n_cols = data.shape[1]
    if n_cols < 2:
        raise SpectrumFileError(f"{name}, line {lines[0]}: a spectrum needs two columns "
                                f"(wavenumber and value), found 1")
    if header is not None and len(header) != n_cols:
        header = None  # a title line rather than column names

    xc = _choose_x_column(name, data, lines, header, x_column)
    if y_column is None:
        if n_cols != 2:
            raise SpectrumFileError(f"{name}: {n_cols} columns; pass y_column to say which holds "
                                    "the values")
        yc = 1 - xc
    else:
        yc = int(y_column)
    for c in (xc, yc):
        if not 0 <= c < n_cols:
            raise SpectrumFileError(f"{name}: column {c} does not exist (the file has {n_cols})")
    if xc == yc:
        raise SpectrumFileError(f"{name}: x_column and y_column are both {xc}")

    if x_unit is None:
        x_unit = (_x_unit_from_name(header[xc]) if header else None) or "cm-1"
    if quantity is None:
        quantity = (_quantity_from_name(header[yc]) if header else None) or "n_alpha"
    src = source or comment_source or name
    return _make_spectrum(name, data[:, xc], data[:, yc], lines, x_unit, quantity, src)


def _monotonic(x: np.ndarray) -> bool:
    d = np.diff(x)
    return bool(np.all(d >= 0) or np.all(d <= 0))


def _choose_x_column(name, data, lines, header, x_column) -> int:
    n_cols = data.shape[1]
    if x_column is not None:
        return int(x_column)
    if header:
        named = [i for i, h in enumerate(header) if _is_x_name(h)]
        if named:
            return named[0]
    if data.shape[0] < 2:
        return 0
    finite = np.all(np.isfinite(data), axis=0)
    mono = [i for i in range(n_cols) if finite[i] and _monotonic(data[:, i])]
    if mono:
        return mono[0]
    if not np.all(finite):
        _check_finite(name, {f"column {c}": data[:, c] for c in range(n_cols)}, lines)
    raise SpectrumFileError(f"{name}: cannot tell which column holds the wavenumber (no column is "
                            "monotonic and no header names one); pass x_column")


def _check_finite(name, columns, lines, row_word="line"):
    """Raise for the first NaN/infinite entry; ``columns`` maps a label to a 1-D array."""
    for label, values in columns.items():
        bad = np.nonzero(~np.isfinite(values))[0]
        if bad.size:
            what = "NaN" if np.isnan(values[bad[0]]) else "infinite value"
            raise SpectrumFileError(f"{name}, {row_word} {lines[bad[0]]}: {what} in {label}")


def _make_spectrum(name, x, y, lines, x_unit, quantity, source, row_word="line") -> Spectrum:
    if quantity not in QUANTITY_UNITS:
        raise SpectrumFileError(f"{name}: unknown quantity {quantity!r}; known: {sorted(QUANTITY_UNITS)}")
    try:
        unit = _normalise_x_unit(x_unit)
    except ValueError as err:
        raise SpectrumFileError(f"{name}: {err}") from err
    _check_finite(name, {"the x column": x, "the value column": y}, lines, row_word)
    if unit == "cm-1":
        bad = np.nonzero(x < 0)[0]
        if bad.size:
            raise SpectrumFileError(f"{name}, {row_word} {lines[bad[0]]}: negative wavenumber {x[bad[0]]}")
    else:
        bad = np.nonzero(x <= 0)[0]
        if bad.size:
            raise SpectrumFileError(f"{name}, {row_word} {lines[bad[0]]}: non-positive wavelength "
                                    f"{x[bad[0]]}")
    nu = to_wavenumber(x, unit)
    order = np.argsort(nu, kind="stable")
    nu, y, lines = nu[order], y[order], lines[order]
    dup = np.nonzero(np.diff(nu) == 0)[0]
    if dup.size:
        i = dup[0]
        a, b = sorted((int(lines[i]), int(lines[i + 1])))
        raise SpectrumFileError(f"{name}, {row_word}s {a} and {b}: duplicated x value "
                                f"({x[order][i]:g}, i.e. {nu[i]:g} cm⁻¹)")
    return Spectrum(nu, y, quantity, QUANTITY_UNITS[quantity], source)


# ----------------------------------------------------------------------------------------------
# JCAMP-DX

_JCAMP_Y = {
    "absorbance": "absorbance",
    "transmittance": "transmittance",
    "absorption coefficient": "absorption_coefficient",
    "molar absorptivity": "molar_absorptivity",
}


def read_jcamp(path, quantity: str | None = None, x_unit: str | None = None,
               source: str | None = None) -> Spectrum:
    """Read a JCAMP-DX file (``jcamp`` package).  XUNITS 1/CM, MICROMETERS or NANOMETERS; YUNITS
    ABSORBANCE, TRANSMITTANCE, ABSORPTION COEFFICIENT or MOLAR ABSORPTIVITY, else pass ``quantity``.
    Line numbers are not available from the parser: defects are reported by point index (1-based)."""
    import jcamp

    path = Path(path)
    name = path.name
    if not path.exists():
        raise SpectrumFileError(f"spectrum file {path} does not exist")
    reader = getattr(jcamp, "jcamp_readfile", None) or jcamp.readfile
    try:
        d = reader(str(path))
    except Exception as err:  # the parser raises many types; report file and reason
        raise SpectrumFileError(f"{name}: not a readable JCAMP-DX file: {err}") from err
    x = np.asarray(d.get("x", []), dtype=float)
    y = np.asarray(d.get("y", []), dtype=float)
    if x.size == 0 or y.size == 0:
        raise SpectrumFileError(f"{name}: no data points (missing ##XYDATA/##XYPOINTS block)")
    if x.size != y.size:
        raise SpectrumFileError(f"{name}: {x.size} x values but {y.size} y values (##NPOINTS or "
                                "data block inconsistent)")
    if x_unit is None:
        xunits = str(d.get("xunits", "")).strip()
        if not xunits:
            raise SpectrumFileError(f"{name}: no ##XUNITS; pass x_unit")
        x_unit = _x_unit_from_name(xunits) or xunits
    if quantity is None:
        yunits = str(d.get("yunits", "")).strip().lower()
        quantity = next((q for key, q in _JCAMP_Y.items() if key in yunits), None)
        if quantity is None:
            raise SpectrumFileError(f"{name}: ##YUNITS={d.get('yunits', '')!r} is not a known "
                                    f"quantity; pass quantity (one of {sorted(QUANTITY_UNITS)})")
    title = str(d.get("title", "")).strip()
    src = source or (f"{name}: {title}" if title else name)
    points = np.arange(1, x.size + 1)
    return _make_spectrum(name, x, y, points, x_unit, quantity, src, row_word="point")


# ----------------------------------------------------------------------------------------------
# entry points


def read_spectrum(path, quantity: str | None = None, x_unit: str | None = None,
                  x_column: int | None = None, y_column: int | None = None,
                  source: str | None = None, format: str | None = None) -> Spectrum:
    """Read a spectrum file: JCAMP-DX by suffix (.jdx, .dx, .jcamp) or ``format="jcamp"``, else a
    text table (:func:`read_table`)."""
    path = Path(path)
    fmt = (format or ("jcamp" if path.suffix.lower() in (".jdx", ".dx", ".jcamp") else "table")).lower()
    if fmt == "jcamp":
        if x_column is not None or y_column is not None:
            raise ValueError("x_column/y_column apply to text tables, not JCAMP-DX files")
        return read_jcamp(path, quantity=quantity, x_unit=x_unit, source=source)
    if fmt != "table":
        raise ValueError(f"unknown format {format!r}; use 'table' or 'jcamp'")
    return read_table(path, quantity=quantity, x_unit=x_unit, x_column=x_column,
                      y_column=y_column, source=source)


def write_spectrum_csv(spectrum: Spectrum, path, comments: Sequence[str] = ()) -> None:
    """Write a spectrum as CSV: ``#`` comment lines (quantity, unit, source, extra ``comments``),
    a column header ``wavenumber_cm^-1,<quantity>_<unit>``, then ascending rows (shortest
    round-trip decimal form, so values are written unchanged)."""
    path = Path(path)
    lines = [f"# quantity: {spectrum.quantity}",
             "# units: wavenumber in cm^-1; values in " + spectrum.unit]
    if spectrum.source:
        lines.append(f"# source: {spectrum.source}")
    lines += [f"# {c}" if not c.startswith("#") else c for c in comments]
    unit = spectrum.unit.replace(" ", "")
    lines.append(f"wavenumber_cm^-1,{spectrum.quantity}_{unit}")
    lines += [f"{float(x)!r},{float(y)!r}" for x, y in zip(spectrum.wavenumber, spectrum.values, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def reference_water_ir() -> Spectrum:
    """The shipped experimental n·α of liquid water at 298 K (Bertie & Lan 1996), cm⁻¹."""
    if not REFERENCE_WATER_IR.exists():
        raise FileNotFoundError(f"{REFERENCE_WATER_IR} is missing; build it with "
                                "scripts/build_water_ir_reference.py")
    return read_table(REFERENCE_WATER_IR, quantity="n_alpha")
