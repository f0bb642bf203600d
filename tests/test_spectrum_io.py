"""Spectrum files: tables and JCAMP-DX, unit rules, refused conversions, every error path, the asset."""

import math

import numpy as np
import pytest

from workbench.observables.ir import band_analysis
from workbench.observables.spectrum_io import (
    REFERENCE_WATER_IR,
    Spectrum,
    SpectrumConversionError,
    SpectrumFileError,
    read_spectrum,
    reference_water_ir,
    write_spectrum_csv,
)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- reading


def test_descending_whitespace_table_with_comment_header(tmp_path):
    path = _write(tmp_path, "exp.txt", "# Wavenumber(cm^{-1}), n(omega)alpha(omega)(cm^{-1})\n"
                                       "3000.0 10.0\n2000.0 20.0\n1000.0 30.0\n")
    s = read_spectrum(path)
    np.testing.assert_array_equal(s.wavenumber, [1000.0, 2000.0, 3000.0])
    np.testing.assert_array_equal(s.values, [30.0, 20.0, 10.0])
    assert s.quantity == "n_alpha" and s.unit == "cm^-1" and s.source == "exp.txt"


def test_column_order_from_header_and_from_monotonicity(tmp_path):
    named = _write(tmp_path, "named.csv", "absorbance,wavenumber (cm-1)\n0.5,1000\n0.7,1100\n0.2,1200\n")
    s = read_spectrum(named)
    np.testing.assert_array_equal(s.wavenumber, [1000.0, 1100.0, 1200.0])
    assert s.quantity == "absorbance" and s.unit == "1"
    # no header: the monotonic column is the wavenumber, whichever side it is on
    bare = _write(tmp_path, "bare.tsv", "0.5\t1200\n0.9\t1100\n0.2\t1000\n")
    s = read_spectrum(bare, quantity="absorbance")
    np.testing.assert_array_equal(s.wavenumber, [1000.0, 1100.0, 1200.0])
    np.testing.assert_array_equal(s.values, [0.2, 0.9, 0.5])
    # an explicit column wins
    s = read_spectrum(bare, x_column=1, y_column=0, quantity="absorbance")
    np.testing.assert_array_equal(s.values, [0.2, 0.9, 0.5])
    three = _write(tmp_path, "three.csv", "1000,1,9\n1100,2,8\n")
    assert read_spectrum(three, y_column=2).values.tolist() == [9.0, 8.0]


def test_wavelength_units_are_converted(tmp_path):
    um = _write(tmp_path, "um.csv", "wavelength (um),alpha\n2.5,10\n5.0,20\n10.0,30\n")
    s = read_spectrum(um)
    np.testing.assert_allclose(s.wavenumber, [1000.0, 2000.0, 4000.0])
    np.testing.assert_array_equal(s.values, [30.0, 20.0, 10.0])
    assert s.quantity == "absorption_coefficient"
    nm = _write(tmp_path, "nm.txt", "5000 1\n2500 2\n")
    s = read_spectrum(nm, x_unit="nm", quantity="n_alpha")
    np.testing.assert_allclose(s.wavenumber, [2000.0, 4000.0])


def test_csv_round_trip(tmp_path):
    s = Spectrum(np.array([1.0, 2.5, 4000.0]), np.array([0.1, 1 / 3, 17401.0]), "n_alpha",
                 source="unit test")
    path = tmp_path / "out.csv"
    write_spectrum_csv(s, path, comments=["made in a test"])
    text = path.read_text()
    assert "# units: wavenumber in cm^-1; values in cm^-1" in text and "# made in a test" in text
    back = read_spectrum(path)
    np.testing.assert_array_equal(back.wavenumber, s.wavenumber)
    np.testing.assert_array_equal(back.values, s.values)
    assert back.quantity == "n_alpha" and back.source == "unit test"


JCAMP = """##TITLE=test absorbance
##JCAMP-DX=4.24
##DATA TYPE=INFRARED SPECTRUM
##XUNITS={xunits}
##YUNITS={yunits}
##FIRSTX=1000
##LASTX=1004
##NPOINTS=5
##XFACTOR=1
##YFACTOR=0.001
##XYDATA=(X++(Y..Y))
1000 100 200 300
1003 400 500
##END=
"""


def test_jcamp_absorbance_and_conversion(tmp_path):
    path = _write(tmp_path, "a.jdx", JCAMP.format(xunits="1/CM", yunits="ABSORBANCE"))
    s = read_spectrum(path)
    np.testing.assert_allclose(s.wavenumber, [1000, 1001, 1002, 1003, 1004])
    np.testing.assert_allclose(s.values, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert s.quantity == "absorbance" and "test absorbance" in s.source
    na = s.to_n_alpha(path_length_cm=1e-3, refractive_index=1.33)
    np.testing.assert_allclose(na.values, 1.33 * math.log(10) * s.values / 1e-3)
    assert na.quantity == "n_alpha" and na.unit == "cm^-1"


def test_interpolate_refuses_extrapolation():
    s = Spectrum(np.array([0.0, 10.0]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(s.interpolate([2.5, 5.0]), [0.25, 0.5])
    with pytest.raises(ValueError, match="no extrapolation"):
        s.interpolate([11.0])


# ----------------------------------------------------------------------------- refused conversions


def test_conversions_needing_missing_data_are_refused():
    absorb = Spectrum(np.array([1000.0, 1100.0]), np.array([0.1, 0.2]), "absorbance")
    with pytest.raises(SpectrumConversionError, match="path length"):
        absorb.to_n_alpha(refractive_index=1.33)
    with pytest.raises(SpectrumConversionError, match="refractive index"):
        absorb.to_n_alpha(path_length_cm=0.01)
    molar = Spectrum(np.array([1000.0, 1100.0]), np.array([10.0, 20.0]), "molar_absorptivity")
    with pytest.raises(SpectrumConversionError, match="concentration"):
        molar.to_n_alpha(refractive_index=1.33)
    trans = Spectrum(np.array([1000.0, 1100.0]), np.array([0.5, 0.0]), "transmittance")
    with pytest.raises(SpectrumConversionError, match="transmittance must be > 0"):
        trans.to_n_alpha(path_length_cm=0.01, refractive_index=1.33)


# ----------------------------------------------------------------------------- error paths


@pytest.mark.parametrize(("text", "message"), [
    ("# only a comment\n", r"no data rows"),
    ("", r"no data rows"),
    ("1000 1\n1100 abc\n", r"line 2: non-numeric value 'abc'"),
    ("1000,1\n1100,\n", r"line 2: empty field"),
    ("# c\n1000 1\n1100 nan\n1200 3\n", r"line 3: NaN in the value column"),
    ("1000 1\n1100 inf\n1200 3\n", r"line 2: infinite value"),
    ("1000 1\n1100 2 3\n", r"line 2: expected 2 columns like line 1, found 3"),
    ("1000 1\n1100 2\n1100 3\n", r"lines 2 and 3: duplicated x value"),
    ("3000 1\n1000 3\n2000 2\n", r"cannot tell which column holds the wavenumber"),
    ("1000 1 2\n1100 2 3\n", r"3 columns; pass y_column"),
    ("1000\n1100\n", r"line 1: a spectrum needs two columns"),
    ("-10 1\n1000 2\n", r"line 1: negative wavenumber"),
])
def test_table_errors_name_line_and_problem(tmp_path, text, message):
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(SpectrumFileError, match=message) as info:
        read_spectrum(path)
    assert "bad.txt" in str(info.value)


def test_more_table_errors(tmp_path):
    with pytest.raises(SpectrumFileError, match="does not exist"):
        read_spectrum(tmp_path / "missing.csv")
    wl = _write(tmp_path, "wl.txt", "0 1\n5 2\n")
    with pytest.raises(SpectrumFileError, match="line 1: non-positive wavelength"):
        read_spectrum(wl, x_unit="um")
    ok = _write(tmp_path, "ok.txt", "1 2\n3 4\n")
    with pytest.raises(SpectrumFileError, match="unknown x unit"):
        read_spectrum(ok, x_unit="furlongs")
    with pytest.raises(SpectrumFileError, match="column 5 does not exist"):
        read_spectrum(ok, x_column=0, y_column=5)
    nan_x = _write(tmp_path, "nanx.txt", "1000 5\nnan 3\n1200 4\n")
    with pytest.raises(SpectrumFileError, match="line 2: NaN in column 0"):
        read_spectrum(nan_x)


def test_jcamp_errors(tmp_path):
    unknown = _write(tmp_path, "u.jdx", JCAMP.format(xunits="1/CM", yunits="KUBELKA-MUNK"))
    with pytest.raises(SpectrumFileError, match="not a known quantity; pass quantity"):
        read_spectrum(unknown)
    assert read_spectrum(unknown, quantity="absorbance").quantity == "absorbance"
    empty = _write(tmp_path, "e.jdx", "##TITLE=nothing\n##END=\n")
    with pytest.raises(SpectrumFileError, match="no data points"):
        read_spectrum(empty)
    short = _write(tmp_path, "s.jdx", JCAMP.format(xunits="1/CM", yunits="ABSORBANCE")
                   .replace("1003 400 500", "1003 400 500 600"))
    with pytest.raises(SpectrumFileError, match="5 x values but 6 y values"):
        read_spectrum(short)
    nan = _write(tmp_path, "n.jdx", "##TITLE=xy\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##YUNITS=ABSORBANCE\n"
                 "##NPOINTS=3\n##XYPOINTS=(XY..XY)\n1000, 0.1; 1001, nan; 1002, 0.3\n##END=\n")
    with pytest.raises(SpectrumFileError, match="point 2: NaN in the value column"):
        read_spectrum(nan)
    dup = _write(tmp_path, "d.jdx", "##TITLE=xy\n##JCAMP-DX=4.24\n##XUNITS=MICROMETERS\n"
                 "##YUNITS=TRANSMITTANCE\n##NPOINTS=3\n##XYPOINTS=(XY..XY)\n"
                 "2.5, 0.1; 5.0, 0.2; 5.0, 0.3\n##END=\n")
    with pytest.raises(SpectrumFileError, match="points 2 and 3: duplicated x value"):
        read_spectrum(dup)
    garbage = _write(tmp_path, "g.jdx", "##TITLE=broken\n##XYDATA=(X++(Y..Y))\n10 ~~~\n##END=\n")
    with pytest.raises(SpectrumFileError, match="g.jdx"):
        read_spectrum(garbage)


# ----------------------------------------------------------------------------- the shipped asset


def test_shipped_water_reference_matches_design_values():
    """Bertie & Lan 1996 (DESIGN.md): stretch 17,401 at 3393, bend 3,724 at 1642, libration 4,622
    at 618 cm⁻¹.  The tabulated figures agree within 0.5 % in height and 5 cm⁻¹ in position."""
    assert REFERENCE_WATER_IR.exists()
    s = reference_water_ir()
    assert s.quantity == "n_alpha" and "Bertie" in s.source and "1996" in s.source
    assert np.all(np.diff(s.wavenumber) > 0) and s.wavenumber[0] < 5 and s.wavenumber[-1] > 4000
    bands = band_analysis(s.wavenumber, s.values)
    expected = {"stretch": (3393, 17401, 375), "bend": (1642, 3724, 89), "libration": (618, 4622, 500)}
    for name, (pos, height, fwhm) in expected.items():
        assert bands[name].position == pytest.approx(pos, abs=5.0), name
        assert bands[name].height == pytest.approx(height, rel=0.005), name
        # widths read without baseline subtraction: the bend sits on the libration tail
        assert bands[name].fwhm == pytest.approx(fwhm, rel=0.15), name
