"""Build the shipped experimental IR spectrum of liquid water (298 K) from the shared data file.

    python scripts/build_water_ir_reference.py [--source PATH] [--out PATH]

Reads ``../shared/data/water_ir_exp_298K.txt`` (two columns, wavenumber in cm⁻¹ and n(ν̃)α(ν̃) in
cm⁻¹, descending, ``#`` header; figures of Bertie & Lan, Appl. Spectrosc. 50, 1047 (1996) as
tabulated by the seed paper's authors) and writes ``assets/spectra/water_ir_298K_bertie_lan_1996.csv``
in ascending wavenumber with a header stating units, citation and provenance.  The values are not
changed (no smoothing, interpolation or baseline); the input's SHA-256 is recorded in the header.
The shipped app reads only the CSV, never ../shared.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from workbench.observables.spectrum_io import (
    REFERENCE_WATER_IR,
    Spectrum,
    SpectrumFileError,
    read_table,
    write_spectrum_csv,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "water_ir_exp_298K.txt"
CITATION = "J. E. Bertie and Z. Lan, Appl. Spectrosc. 50, 1047-1057 (1996), liquid H2O at 25 C"


def build(source: Path, out: Path) -> Spectrum:
    """Read ``source``, write the CSV asset to ``out``, return the spectrum."""
    if not source.exists():
        raise FileNotFoundError(
            f"source data {source} not found: the build needs the shared data directory "
            "(../shared/data/water_ir_exp_298K.txt); pass --source PATH")
    raw = read_table(source, quantity="n_alpha", x_unit="cm-1", x_column=0, y_column=1)
    spectrum = Spectrum(raw.wavenumber, raw.values, "n_alpha", "cm^-1", CITATION)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    comments = [
        "experimental n(nu)alpha(nu) of liquid water at 298 K (alpha: Napierian absorption coefficient)",
        "made by scripts/build_water_ir_reference.py from water_ir_exp_298K.txt "
        "(figures of Bertie & Lan 1996 as tabulated by the seed paper's authors, "
        "github.com/ice-hanbin/dynamical-fitting)",
        f"input sha256: {digest}",
        "processing: rows sorted to ascending wavenumber; values unchanged",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_spectrum_csv(spectrum, out, comments)
    return spectrum


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=REFERENCE_WATER_IR)
    args = parser.parse_args(argv)
    try:
        spectrum = build(args.source, args.out)
    except (FileNotFoundError, SpectrumFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(spectrum)} points, "
          f"{spectrum.wavenumber[0]:.2f}-{spectrum.wavenumber[-1]:.2f} cm^-1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
