"""Spectral indices: published formulas by hand, realistic spectra, spyndex agreement, NaN, xarray, errors."""

from __future__ import annotations

import re
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from kz_pipelines.errors import UserFacingError
from kz_pipelines.indices import (
    INDICES,
    S2_BANDS,
    MissingBandError,
    UnknownIndexError,
    bands_for,
    compute_index,
    compute_indices,
)

NORMALIZED_DIFFERENCES = ("NDVI", "NDTI", "CRC", "NDI5", "NDI7", "NDRI")
RATIOS = (*NORMALIZED_DIFFERENCES, "PSRI")
LINEAR = ("BI1", "BI2", "TCG")

L2A_BANDS = tuple(b for b in S2_BANDS if b != "B10")


def spectrum(*values: float) -> dict[str, float]:
    """Reflectances in L2A band order B01..B08, B8A, B09, B11, B12."""
    return dict(zip(L2A_BANDS, values, strict=True))


# Typical library spectra resampled to the MSI bands (surface reflectance).
#                          B01   B02    B03   B04    B05   B06   B07   B08   B8A   B09   B11   B12
GREEN_VEGETATION = spectrum(0.03, 0.035, 0.08, 0.03, 0.12, 0.35, 0.45, 0.48, 0.50, 0.50, 0.22, 0.10)
DRY_RESIDUE = spectrum(0.08, 0.10, 0.14, 0.19, 0.24, 0.28, 0.30, 0.32, 0.33, 0.33, 0.40, 0.28)
BARE_SOIL = spectrum(0.07, 0.09, 0.12, 0.16, 0.19, 0.21, 0.22, 0.24, 0.25, 0.26, 0.33, 0.30)

# A vector with distinct values in every band, for the hand computations below.
V = spectrum(0.05, 0.06, 0.09, 0.07, 0.15, 0.30, 0.38, 0.42, 0.44, 0.40, 0.27, 0.15)


@pytest.fixture(scope="module")
def spyndex() -> ModuleType:
    return pytest.importorskip("spyndex")


def test_registry_documents_every_index() -> None:
    assert set(INDICES) == {"NDVI", "NDTI", "CRC", "NDI5", "NDI7", "NDRI", "BI1", "BI2", "PSRI", "TCG"}
    for name, index in INDICES.items():
        assert index.name == name
        assert set(index.bands) <= set(L2A_BANDS), "Level-2A has no B10"
        assert all(band in index.formula for band in index.bands)
        assert re.search(r"https://\S+", index.reference), name
    assert bands_for(["NDVI", "BI2"]) == ("B04", "B08", "B8A", "B11", "B12")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NDVI", (0.42 - 0.07) / (0.42 + 0.07)),  # (NIR - red) / (NIR + red) = 0.35 / 0.49
        ("NDTI", (0.27 - 0.15) / (0.27 + 0.15)),  # (SWIR1 - SWIR2) / (SWIR1 + SWIR2) = 2 / 7
        ("CRC", (0.27 - 0.06) / (0.27 + 0.06)),  # (SWIR1 - blue) / (SWIR1 + blue)
        ("NDI5", (0.42 - 0.27) / (0.42 + 0.27)),  # (TM4 - TM5) / (TM4 + TM5)
        ("NDI7", (0.42 - 0.15) / (0.42 + 0.15)),  # (TM4 - TM7) / (TM4 + TM7)
        ("NDRI", (0.07 - 0.15) / (0.07 + 0.15)),  # (TM3 - TM7) / (TM3 + TM7)
        ("PSRI", (0.07 - 0.06) / 0.30),  # (R678 - R500) / R750 = 1 / 30
        ("BI1", 0.27 - 0.15),
        ("BI2", 2 * 0.27 - 0.44 - 0.15),
        (  # Shi & Xu 2019 greenness on B02, B03, B04, B08, B11, B12
            "TCG",
            -0.3599 * 0.06 - 0.3533 * 0.09 - 0.4734 * 0.07 + 0.6633 * 0.42 + 0.0087 * 0.27 - 0.2856 * 0.15,
        ),
    ],
)
def test_hand_computed_values(name: str, expected: float) -> None:
    assert compute_index(name, V) == pytest.approx(expected, rel=1e-12)
    # elementwise on arrays: the same vector next to green vegetation
    stacked = {b: np.array([V[b], GREEN_VEGETATION[b]]) for b in L2A_BANDS}
    out = compute_index(name, stacked)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(expected, rel=1e-12)
    assert out[1] == pytest.approx(compute_index(name, GREEN_VEGETATION), rel=1e-12)


def test_exact_values_of_the_hand_vector() -> None:
    assert compute_index("NDVI", V) == pytest.approx(5 / 7)
    assert compute_index("NDTI", V) == pytest.approx(2 / 7)
    assert compute_index("PSRI", V) == pytest.approx(1 / 30)
    assert compute_index("BI2", V) == pytest.approx(-0.05)


def test_realistic_spectra() -> None:
    veg, residue, soil = (compute_indices(INDICES, s) for s in (GREEN_VEGETATION, DRY_RESIDUE, BARE_SOIL))
    # a closed green canopy has a high NDVI, soil and dry residue a low one
    assert veg["NDVI"] > 0.6
    assert residue["NDVI"] < 0.3
    assert soil["NDVI"] < 0.3
    # residue absorbs near 2.1 um (cellulose, lignin), soil hardly: the tillage index is higher on residue
    # (Van Deventer et al. 1997), and so are the CAI and LCA analogues, by construction of CAI and LCA
    assert residue["NDTI"] > soil["NDTI"]
    assert residue["BI1"] > soil["BI1"] > 0
    assert residue["BI2"] > soil["BI2"] > 0
    # the NIR term makes BI2 negative on green vegetation; BI1 is not (why it needs an NDVI mask)
    assert veg["BI2"] < 0 < veg["BI1"]
    # senescent material has a higher PSRI than green leaves (Merzlyak et al. 1999)
    assert residue["PSRI"] > veg["PSRI"]
    # greenness separates green vegetation from both backgrounds
    assert veg["TCG"] > max(residue["TCG"], soil["TCG"])
    for values in (veg, residue, soil):
        assert all(-1 <= values[n] <= 1 for n in NORMALIZED_DIFFERENCES)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_indices_mix_linearly(name: str) -> None:
    f = 0.3  # residue cover fraction
    mix = {b: f * DRY_RESIDUE[b] + (1 - f) * BARE_SOIL[b] for b in L2A_BANDS}
    expected = f * compute_index(name, DRY_RESIDUE) + (1 - f) * compute_index(name, BARE_SOIL)
    assert compute_index(name, mix) == pytest.approx(expected, rel=1e-12)


def _spyndex_band_map(spyndex: ModuleType) -> dict[str, str]:
    """spyndex's generic band names (N, R, S1, ...) -> our Sentinel-2 names, from spyndex's own metadata."""
    out = {}
    for key, band in spyndex.bands.items():
        s2 = getattr(band, "sentinel2a", None)
        if s2 is not None:
            out[key] = s2.band if len(s2.band) == 3 else f"B0{s2.band[1:]}"  # B8 -> B08, B8A stays
    return out


@pytest.mark.parametrize("name", [n for n, i in INDICES.items() if i.spyndex])
def test_agrees_with_spyndex(spyndex: ModuleType, name: str) -> None:
    index = INDICES[name]
    entry = spyndex.indices[index.spyndex]
    band_map = _spyndex_band_map(spyndex)
    assert {band_map[b] for b in entry.bands} == set(index.bands)
    rng = np.random.default_rng(7)
    bands = {b: rng.uniform(0.01, 0.8, 500) for b in index.bands}
    theirs = spyndex.computeIndex(index.spyndex, params={b: bands[band_map[b]] for b in entry.bands})
    np.testing.assert_allclose(compute_index(name, bands), theirs, rtol=1e-12)


@pytest.mark.parametrize(("name", "spyndex_name"), [("NDVI", "NDVI"), ("NDTI", "NDTillI"), ("PSRI", "PSRI")])
def test_same_index_as_spyndex_by_reference(spyndex: ModuleType, name: str, spyndex_name: str) -> None:
    assert INDICES[name].spyndex == spyndex_name
    assert spyndex.indices[spyndex_name].reference in INDICES[name].reference


def test_ndti_is_the_tillage_index_not_spyndex_ndti(spyndex: ModuleType) -> None:
    # spyndex's NDTI is the turbidity index (R - G) / (R + G) of Lacaux et al. 2007
    bands = {"B03": 0.09, "B04": 0.07, "B11": 0.27, "B12": 0.15}
    turbidity = spyndex.computeIndex("NDTI", params={"R": bands["B04"], "G": bands["B03"]})
    assert compute_index("NDTI", bands) != pytest.approx(turbidity)
    assert "Van Deventer" in INDICES["NDTI"].reference


@pytest.mark.parametrize("name", RATIOS)
def test_zero_denominator_is_nan_without_warning(name: str) -> None:
    index = INDICES[name]
    if name == "PSRI":
        cases = [{"B04": 0.2, "B02": 0.1, "B06": 0.0}, {"B04": 0.0, "B02": 0.0, "B06": 0.0}]
    else:
        a, b = index.bands
        cases = [{a: 0.1, b: -0.1}, {a: 0.0, b: 0.0}]  # x / 0 and 0 / 0
    bands = {band: np.array([c[band] for c in cases] + [0.2], dtype=np.float32) for band in index.bands}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_index(name, bands)
    assert out.dtype == np.float32
    assert np.isnan(out[:2]).all()
    assert np.isfinite(out[2])


@pytest.mark.parametrize("name", list(INDICES))
def test_nan_input_gives_nan(name: str) -> None:
    bands = {b: np.array([V[b], V[b]]) for b in L2A_BANDS}
    bands[INDICES[name].bands[-1]][0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_index(name, bands)
    assert np.isnan(out[0])
    assert out[1] == pytest.approx(compute_index(name, V))


def _band_array(value: float, band: str) -> xr.DataArray:
    """A (time, y, x) band the way a stackstac selection looks: shared grid coords plus per-band ones."""
    return xr.DataArray(
        np.full((2, 3, 4), value, dtype=np.float32),
        dims=("time", "y", "x"),
        coords={
            "time": np.array(["2024-05-01", "2024-05-11"], dtype="datetime64[ns]"),
            "y": [6600005.0, 6599995.0, 6599985.0],
            "x": [300005.0, 300015.0, 300025.0, 300035.0],
            "epsg": 32635,
            "band": band,
        },
    )


def test_dataarray_in_dataarray_out_keeps_coords() -> None:
    b11, b12 = _band_array(0.27, "B11"), _band_array(0.15, "B12")
    out = compute_index("NDTI", {"B11": b11, "B12": b12})
    assert isinstance(out, xr.DataArray)
    assert out.name == "NDTI"
    assert out.dims == ("time", "y", "x")
    for coord in ("time", "y", "x", "epsg"):
        np.testing.assert_array_equal(out[coord].values, b11[coord].values)
    assert "band" not in out.coords  # differs between the inputs
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.values, 2 / 7, rtol=1e-6)
    assert "Van Deventer" in out.attrs["reference"]


def test_dataarrays_on_different_grids_are_refused() -> None:
    b11 = _band_array(0.27, "B11")
    b12 = _band_array(0.15, "B12").assign_coords(x=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="align"):
        compute_index("NDTI", {"B11": b11, "B12": b12})


def test_dask_backed_input_stays_lazy_and_gives_nan_without_warning() -> None:
    pytest.importorskip("dask")
    b08 = _band_array(0.0, "B08").chunk({"time": 1})
    b04 = _band_array(0.0, "B04").chunk({"time": 1})
    out = compute_index("NDVI", {"B08": b08, "B04": b04})
    assert out.chunks is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = out.compute()
    assert values.dtype == np.float32
    assert np.isnan(values).all()


def test_unknown_index_error_names_the_index() -> None:
    with pytest.raises(UnknownIndexError) as exc:
        compute_index("NDWI", V)
    assert isinstance(exc.value, KeyError)
    assert isinstance(exc.value, UserFacingError)
    assert str(exc.value).startswith("unknown spectral index 'NDWI'; known indices: NDVI, NDTI")
    with pytest.raises(UnknownIndexError, match="'ndvi'"):
        compute_indices(["NDVI", "ndvi"], V)


def test_missing_band_error_names_the_band() -> None:
    with pytest.raises(MissingBandError) as exc:
        compute_index("NDTI", {"B11": 0.27, "B04": 0.07})
    assert isinstance(exc.value, KeyError)
    assert str(exc.value) == (
        "spectral index NDTI needs band(s) B12, missing from the inputs (given: B04, B11)"
    )
    bands: dict[str, Any] = {b: V[b] for b in L2A_BANDS if b != "B8A"}
    with pytest.raises(MissingBandError, match=r"indices BI2 need band\(s\) B8A"):
        compute_indices(["NDVI", "BI2", "NDTI"], bands)


reflectance = st.floats(min_value=1e-4, max_value=1.5, allow_nan=False, allow_infinity=False)


@given(st.fixed_dictionaries({b: reflectance for b in bands_for(NORMALIZED_DIFFERENCES)}))
def test_normalized_differences_lie_in_minus_one_one(bands: dict[str, float]) -> None:
    for name, value in compute_indices(NORMALIZED_DIFFERENCES, bands).items():
        assert -1.0 <= value <= 1.0, name
