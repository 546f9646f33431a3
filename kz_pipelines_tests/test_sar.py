"""Sentinel-1 helpers: dB, the refined Lee filter, the openEO uint16 code and real openEO cubes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import ndimage

from kz_pipelines.sar import (
    OPENEO_NODATA,
    decode_openeo_sigma0_db,
    decode_openeo_sigma0_linear,
    encode_openeo_sigma0_db,
    read_openeo_cube,
    refined_lee,
    to_db,
    to_linear,
)

ENL = 4.4


# ------------------------------------------------------------------------------------------ dB


def test_to_db_known_values_and_invalid_input() -> None:
    db = to_db(np.array([1.0, 10.0, 0.1, 0.0, -1.0, np.nan], dtype=np.float32))
    assert db.dtype == np.float32
    np.testing.assert_allclose(db[:3], [0.0, 10.0, -10.0], atol=1e-6)
    assert np.isnan(db[3:]).all()


def test_to_linear_known_values() -> None:
    lin = to_linear(np.array([0.0, -10.0, 3.0, np.nan]))
    assert lin.dtype == np.float64
    np.testing.assert_allclose(lin[:3], [1.0, 0.1, 10**0.3])
    assert np.isnan(lin[3])


@given(st.floats(min_value=1e-8, max_value=1e4))
def test_db_linear_round_trip(x: float) -> None:
    assert to_linear(to_db(x)) == pytest.approx(x, rel=1e-12)


@given(st.floats(min_value=-80.0, max_value=40.0))
def test_linear_db_round_trip(db: float) -> None:
    assert to_db(to_linear(db)) == pytest.approx(db, abs=1e-9)


# ------------------------------------------------------------------------------------ openEO code


def test_openeo_decode_hand_checked_values() -> None:
    # 20 * log10(DN) - 83: DN 10000 -> 80 - 83, DN 1000 -> 60 - 83, 10**3.6 = 3981.07 -> -11 dB
    dn = np.array([10000, 1000, 100, 3981, 65534, 1, OPENEO_NODATA, 0], dtype=np.uint16)
    db = decode_openeo_sigma0_db(dn)
    assert db.dtype == np.float32
    np.testing.assert_allclose(db[:4], [-3.0, -23.0, -43.0, -11.0], atol=1e-3)
    np.testing.assert_allclose(db[4:6], [20 * np.log10(65534) - 83, -83.0], atol=1e-4)
    assert np.isnan(db[6:]).all()


def test_openeo_decode_linear_matches_db() -> None:
    dn = np.arange(0, 65536, 7, dtype=np.uint16)
    lin = decode_openeo_sigma0_linear(dn)
    assert lin.dtype == np.float32
    np.testing.assert_allclose(lin, to_linear(decode_openeo_sigma0_db(dn)), rtol=2e-5)
    assert decode_openeo_sigma0_linear(np.array([10000]))[0] == pytest.approx(10**-0.3, rel=1e-6)
    assert np.isnan(decode_openeo_sigma0_linear(np.array([0, OPENEO_NODATA]))).all()


@given(st.floats(min_value=-40.0, max_value=13.0))
def test_openeo_encode_decode_round_trip(db: float) -> None:
    # DN >= 141 from -40 dB: half a code step is 20 * log10(1 + 0.5 / 141) = 0.031 dB
    assert float(decode_openeo_sigma0_db(encode_openeo_sigma0_db(db))) == pytest.approx(db, abs=0.031)


def test_openeo_encode_nodata_and_range() -> None:
    dn = encode_openeo_sigma0_db(np.array([np.nan, np.inf, -200.0, 50.0, -11.0]))
    assert dn.dtype == np.uint16
    assert dn.tolist() == [OPENEO_NODATA, OPENEO_NODATA, 1, OPENEO_NODATA - 1, 3981]


# ------------------------------------------------------------------------------------ refined Lee


def _speckled_step(rows: int = 160, cols: int = 160, edge: int = 80, seed: int = 3) -> NDArray[np.float32]:
    """Two homogeneous fields (sigma0 0.2 left of ``edge``, 0.02 right: 10 dB) with gamma speckle."""
    rng = np.random.default_rng(seed)
    clean = np.where(np.arange(cols) < edge, 0.2, 0.02)[None, :].repeat(rows, axis=0)
    return (clean * rng.gamma(ENL, 1.0 / ENL, size=(rows, cols))).astype(np.float32)


def _enl(x: NDArray[np.float32]) -> float:
    """Equivalent number of looks of a homogeneous patch: mean**2 / variance."""
    return float(np.mean(x) ** 2 / np.var(x))


def _edge_width(img: NDArray[np.float32], rows: slice, edge: int) -> float:
    """10-90 % width (pixels) of a falling step at column ``edge``, from the row-averaged profile."""
    profile = img[rows].mean(axis=0)
    high, low = profile[edge - 30 : edge - 10].mean(), profile[edge + 10 : edge + 30].mean()
    level = (profile - low) / (high - low)
    cols = np.arange(edge - 10, edge + 10)
    falling = level[cols]

    def crossing(value: float) -> float:
        i = int(np.nonzero(falling < value)[0][0])  # first column below the level
        return float(cols[i - 1] + (falling[i - 1] - value) / (falling[i - 1] - falling[i]))

    return crossing(0.1) - crossing(0.9)


def test_refined_lee_smooths_homogeneous_areas_and_keeps_the_mean() -> None:
    img = _speckled_step()
    out = refined_lee(img, enl=ENL)
    assert out.dtype == np.float32
    for cols in (slice(10, 70), slice(90, 150)):  # away from the edge and the image border
        before, after = img[10:150, cols], out[10:150, cols]
        assert _enl(before) == pytest.approx(ENL, rel=0.1)
        assert _enl(after) > 10 * _enl(before)  # measured: 14-17x
        assert np.mean(after) == pytest.approx(np.mean(before), rel=0.02)  # measured: -0.2 to -0.5 %


def test_refined_lee_keeps_edges_sharp() -> None:
    img = _speckled_step()
    rows = slice(10, 150)
    out = refined_lee(img, enl=ENL)
    assert _edge_width(img, rows, 80) < 1.0  # the input: an ideal step (0.8 px by interpolation)
    assert _edge_width(out, rows, 80) <= 2.0
    # the measure separates: a 7 x 7 boxcar smears the same edge over ~5 px
    assert _edge_width(ndimage.uniform_filter(img, 7), rows, 80) > 4.0


def test_refined_lee_nodata_stays_put() -> None:
    img = _speckled_step(rows=64, cols=64, edge=32)
    img[20:28, 5:15] = np.nan  # a nodata block
    img[40, 40] = np.nan
    img[50, 10] = np.inf
    img[0, :] = np.nan  # a nodata image row (swath edge)
    missing = ~np.isfinite(img)
    out = refined_lee(img, enl=ENL, tile=(16, 16))
    assert np.array_equal(np.isnan(out), missing)
    near = ndimage.binary_dilation(missing, iterations=3) & ~missing
    assert np.isfinite(out[near]).all()
    assert np.all(out[near] > 0)


def test_refined_lee_constant_image_is_unchanged() -> None:
    img = np.full((30, 40), 0.05, dtype=np.float32)
    img[3:6, 7:9] = np.nan
    out = refined_lee(img)
    np.testing.assert_allclose(out[np.isfinite(img)], 0.05, rtol=1e-5)


@pytest.mark.parametrize(("tile", "workers"), [((1, 1), 1), ((5, 7), 2), ((16, 300), 3), ((1000, 1000), 1)])
def test_refined_lee_does_not_depend_on_tiling(tile: tuple[int, int], workers: int) -> None:
    img = _speckled_step(rows=37, cols=45, edge=20)
    img[10:13, 30:40] = np.nan
    reference = refined_lee(img, tile=(37, 45), workers=1)
    assert np.array_equal(refined_lee(img, tile=tile, workers=workers), reference, equal_nan=True)


def _reference_refined_lee(img: NDArray[np.float32], window: int, enl: float) -> NDArray[np.float64]:
    """Per-pixel refined Lee, written from the published description (slow; for small images)."""
    # PolSARpro's sub-window size and stride per window size
    sub, stride = {5: (3, 1), 7: (3, 2), 9: (5, 2), 11: (5, 3), 13: (5, 4), 15: (7, 4), 17: (7, 5)}[window]
    k, q = window // 2, sub // 2
    i, j = np.mgrid[-k : k + 1, -k : k + 1]
    # left, upper-right, upper, upper-left, right, lower-left, lower, lower-right
    masks = [j <= 0, j >= i, i <= 0, i + j <= 0, j >= 0, j <= i, i >= 0, i + j >= 0]
    padded = np.pad(img.astype(np.float64), k, constant_values=np.nan)
    out = np.full(img.shape, np.nan)
    for r, c in np.argwhere(np.isfinite(img)):
        win = padded[r : r + window, c : c + window]
        means = np.full((3, 3), np.nan)
        for a in range(3):
            for b in range(3):
                y0, x0 = k + (a - 1) * stride - q, k + (b - 1) * stride - q
                part = win[y0 : y0 + sub, x0 : x0 + sub]
                if np.isfinite(part).any():
                    means[a, b] = np.nanmean(part)
        filled = np.where(np.isnan(means), means[1, 1], means)
        m = filled
        gradients = [
            m[:, 2].sum() - m[:, 0].sum(),
            m[0, 1] + m[0, 2] + m[1, 2] - m[1, 0] - m[2, 0] - m[2, 1],
            m[0].sum() - m[2].sum(),
            m[0, 0] + m[0, 1] + m[1, 0] - m[1, 2] - m[2, 1] - m[2, 2],
        ]
        direction = int(np.argmax(np.abs(gradients)))
        first = [means[1, 0], means[0, 2], means[0, 1], means[0, 0]][direction]
        second = [means[1, 2], means[2, 0], means[2, 1], means[2, 2]][direction]
        near_first = abs(first - m[1, 1]) if np.isfinite(first) else np.inf
        near_second = abs(second - m[1, 1]) if np.isfinite(second) else np.inf
        values = win[masks[direction + 4 * (near_second < near_first)]]
        values = values[np.isfinite(values)]
        mean, var = values.mean(), values.var()
        weight = 0.0 if var <= 0 else np.clip((var - mean**2 / enl) / (var * (1 + 1 / enl)), 0, 1)
        out[r, c] = mean + weight * (img[r, c] - mean)
    return out


@pytest.mark.parametrize("window", [5, 7, 9, 11, 13, 15, 17])
def test_refined_lee_matches_per_pixel_reference(window: int) -> None:
    img = _speckled_step(rows=23, cols=31, edge=13, seed=window)
    img[:, 20:] *= np.float32(3.0)  # a second, upward edge
    img[5, 7] = np.nan
    img[10:14, 20:25] = np.nan
    img[16:23, 0:6] = np.nan  # larger than a sub-window: empty sub-windows next to it
    np.testing.assert_allclose(
        refined_lee(img, window, ENL, tile=(8, 9)),
        _reference_refined_lee(img, window, ENL),
        rtol=1e-4,
        atol=1e-6,
    )


def test_refined_lee_rejects_bad_arguments() -> None:
    img = np.ones((10, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="2-D"):
        refined_lee(img[None])
    with pytest.raises(ValueError, match="window"):
        refined_lee(img, window=6)
    with pytest.raises(ValueError, match="enl"):
        refined_lee(img, enl=0.0)


# ------------------------------------------------------------------------------ real openEO cubes


@pytest.fixture(scope="module")
def belgium(shared_data: Path) -> Path:
    folder = shared_data / "openeo_belgium_2023"
    if not folder.is_dir():
        pytest.skip(f"openEO Belgium cubes not found at {folder}")
    return folder


def test_openeo_s1_cube_decodes_to_plausible_sigma0(belgium: Path) -> None:
    s1 = read_openeo_cube(belgium / "cdse_sentinel1_grd.nc")
    assert set(s1.data_vars) == {"VV", "VH"}
    assert dict(s1.sizes) == {"time": 10, "y": 66, "x": 64}
    assert s1["VV"].dtype == np.float32
    assert s1["VV"].attrs["units"] == "dB"
    assert s1["VV"].attrs["source_name"] == "S1-SIGMA0-VV"
    assert s1["crs"].attrs["epsg"] == 32631
    assert str(s1["time"].values[0])[:10] == "2023-04-03"
    np.testing.assert_allclose(np.diff(s1["x"].values), 10.0)
    np.testing.assert_allclose(np.diff(s1["y"].values), -10.0)
    # sigma0 over farmland in spring: VV about -12 dB, VH about -18.5 dB, VH below VV almost everywhere
    vv, vh = float(s1["VV"].median()), float(s1["VH"].median())
    assert -14.0 <= vv <= -8.0
    assert -22.0 <= vh <= -14.0
    assert float((s1["VV"] - s1["VH"]).median()) > 3.0
    assert float((s1["VH"] < s1["VV"]).mean()) > 0.9


def test_openeo_s1_cube_filters(belgium: Path) -> None:
    s1 = read_openeo_cube(belgium / "cdse_sentinel1_grd.nc")
    linear = to_linear(s1["VV"].isel(time=0).values)
    filtered = refined_lee(linear)
    assert np.isfinite(filtered).all()
    assert np.var(filtered) < np.var(linear)
    assert float(np.median(to_db(filtered))) == pytest.approx(float(np.median(to_db(linear))), abs=1.0)


def test_openeo_s2_cube_decodes_to_reflectance(belgium: Path) -> None:
    s2 = read_openeo_cube(belgium / "cdse_sentinel2_l2a.nc")
    assert set(s2.data_vars) == {"B01", "B04", "B08", "B11", "SCL", "AOT"}
    assert s2["SCL"].dtype == np.uint8
    assert set(np.unique(s2["SCL"].values)) <= set(range(12))
    for band in ("B01", "B04", "B08", "B11"):
        values = s2[band].values
        assert values.dtype == np.float32
        # bright clouds reach 1.66 in this cube: reflectance above 1 is real, not a decoding error
        assert np.nanmin(values) >= 0.0
        assert np.nanmax(values) <= 2.0
    clear = s2["SCL"].isin([4, 5]).values  # vegetation, bare soil
    assert clear.sum() > 1000
    assert np.percentile(s2["B04"].values[clear], 99) < 0.3
    vegetation = (s2["SCL"] == 4).values
    ndvi = ((s2["B08"] - s2["B04"]) / (s2["B08"] + s2["B04"])).values[vegetation]
    assert 0.5 <= float(np.median(ndvi)) <= 0.95
    assert 0.0 < float(s2["AOT"].median()) < 1.0


def test_openeo_reader_backends_agree(belgium: Path) -> None:
    # a netCDF3 cube: readable by xarray's scipy engine and by GDAL
    path = belgium / "test_optical_cube.nc"
    by_xarray = read_openeo_cube(path, backend="xarray")
    xr.testing.assert_identical(by_xarray, read_openeo_cube(path, backend="gdal"))
    assert set(by_xarray.data_vars) == {"B02", "B03", "B04", "B08", "SCL"}
    assert by_xarray["crs"].attrs["epsg"] == 32631
    assert float(by_xarray["B08"].max()) <= 2.0
