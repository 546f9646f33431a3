"""Zonal statistics: exact against rasterstats on a real raster, independent of parcel order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterstats import zonal_stats as rs_zonal_stats

from kz_pipelines.raster import GridSpec
from kz_pipelines.zonal import STATS, power_stats, rasterize_parcels, zonal_stats

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "s2_l2a_29RKH_20200219" / "B04.tif"

CELL = 24
"""Each drawn parcel lies in its own CELL x CELL pixel cell (declared parcels do not overlap)."""
CELLS = 5
"""The window is CELLS x CELLS cells."""


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, GridSpec]:
    """A 120 x 120 px window of a real S2 L2A band (B04, 29RKH, 100 m pixels): reflectance, 0 = no data."""
    if not REAL.is_file():
        pytest.skip(f"{REAL} not found (../shared/data is not beside this checkout)")
    size = CELL * CELLS
    with rasterio.open(REAL) as src:
        dn = src.read(1, window=rasterio.windows.Window(400, 300, size, size))
        t = src.transform
        grid = GridSpec(src.crs.to_epsg(), t.c + 400 * t.a, t.f + 300 * t.e, t.a, size, size)
    return dn.astype(np.float64) * 1e-4, grid


# vertices off the pixel-centre lattice (offsets j/7 + 0.013 px), so no centre lies on a vertex
_coord = st.integers(0, CELL * 7 - 1).map(lambda j: j / 7 + 0.013)


@st.composite
def parcels(draw: st.DrawFn) -> list[tuple[str, shapely.Geometry]]:
    """Up to 12 random polygons (convex hulls of 3-9 points, some with a hole), one per cell."""
    cells = draw(st.lists(st.integers(0, CELLS * CELLS - 1), min_size=1, max_size=12, unique=True))
    out = []
    for cell in cells:
        r0, c0 = divmod(cell, CELLS)
        pts = draw(st.lists(st.tuples(_coord, _coord), min_size=3, max_size=9))
        poly = shapely.convex_hull(shapely.MultiPoint([(c0 * CELL + x, r0 * CELL + y) for x, y in pts]))
        if poly.geom_type != "Polygon" or poly.area < 1.0:
            continue
        if draw(st.booleans()):
            poly = poly.difference(poly.centroid.buffer(np.sqrt(poly.area) / 5))
        out.append((f"p{cell:03d}", poly))
    return out


def _to_map(grid: GridSpec, poly: shapely.Geometry) -> shapely.Geometry:
    """Pixel coordinates (col, row) -> map coordinates."""
    return shapely.transform(
        poly,
        lambda xy: np.column_stack(
            [grid.x0 + xy[:, 0] * grid.resolution, grid.y0 - xy[:, 1] * grid.resolution]
        ),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=parcels(), buffer_px=st.sampled_from([0.0, 1.0]))
def test_equal_to_rasterstats_on_real_raster(
    real: tuple[np.ndarray, GridSpec], drawn: list[tuple[str, shapely.Geometry]], buffer_px: float
) -> None:
    refl, grid = real
    ids = [i for i, _ in drawn]
    geoms = [_to_map(grid, g) for _, g in drawn]
    index = rasterize_parcels(ids, geoms, grid, buffer_px=buffer_px)
    values = np.where(refl == 0, np.nan, refl)
    ours = zonal_stats(index, index.gather(values))
    by_id = dict(zip(ids, geoms, strict=True))
    # rasterstats on exactly the geometry each parcel was measured with (buffered, or its outline)
    used = [
        shapely.buffer(by_id[i], -buffer_px * grid.resolution) if b and buffer_px else by_id[i]
        for i, b in zip(index.parcel_ids, index.buffered, strict=True)
    ]
    ref = rs_zonal_stats(used, refl, affine=grid.transform, nodata=0, stats=list(STATS), all_touched=False)
    for p, expected in enumerate(ref):
        assert ours[p, 0, 5] == expected["count"]
        for s, name in enumerate(STATS[:5]):
            if expected["count"] == 0:
                assert np.isnan(ours[p, 0, s])
            else:
                assert ours[p, 0, s] == pytest.approx(expected[name], abs=1e-6, rel=1e-6), name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=parcels(), seed=st.integers(0, 2**16))
def test_result_does_not_depend_on_parcel_order(
    real: tuple[np.ndarray, GridSpec], drawn: list[tuple[str, shapely.Geometry]], seed: int
) -> None:
    refl, grid = real
    ids = [i for i, _ in drawn]
    geoms = [_to_map(grid, g) for _, g in drawn]
    perm = np.random.default_rng(seed).permutation(len(ids))
    a = rasterize_parcels(ids, geoms, grid)
    b = rasterize_parcels([ids[i] for i in perm], [geoms[i] for i in perm], grid)
    assert list(a.parcel_ids) == list(b.parcel_ids) == sorted(ids)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(zonal_stats(a, a.gather(refl)), zonal_stats(b, b.gather(refl)))


GRID = GridSpec(32635, 500000.0, 6500000.0, 10.0, 20, 20)


def test_inward_buffer_drops_edge_pixels_and_small_parcels_fall_back() -> None:
    big = shapely.box(500000, 6500000 - 100, 500100, 6500000)  # 10 x 10 px
    small = shapely.box(500150, 6500000 - 20, 500170, 6500000)  # 2 x 2 px: nothing left after the buffer
    index = rasterize_parcels(["big", "small"], [big, small], GRID)
    assert list(index.parcel_ids) == ["big", "small"]
    assert list(index.n_pixels) == [64, 4]  # 8 x 8 inside the buffer; the small one unbuffered
    assert list(index.buffered) == [True, False]
    unbuffered = rasterize_parcels(["big", "small"], [big, small], GRID, buffer_px=0)
    assert list(unbuffered.n_pixels) == [100, 4]


def test_valid_mask_nan_and_empty_parcels() -> None:
    a = shapely.box(500000, 6500000 - 40, 500040, 6500000)  # 4 x 4 px at the corner
    outside = shapely.box(600000, 6400000, 600100, 6400100)
    index = rasterize_parcels(["a", "out"], [a, outside], GRID, buffer_px=0)
    raster = np.arange(400, dtype=np.float64).reshape(20, 20)
    raster[0, 0] = np.nan
    valid = np.ones((20, 20), bool)
    valid[1, 1] = False
    stats = zonal_stats(index, index.gather(raster), index.gather(valid))
    px = np.array([raster[r, c] for r in range(4) for c in range(4) if (r, c) not in ((0, 0), (1, 1))])
    expected = [px.mean(), np.median(px), px.min(), px.max(), px.std(), px.size]
    np.testing.assert_allclose(stats[0, 0], expected)
    assert stats[1, 0, 5] == 0
    assert np.isnan(stats[1, 0, :5]).all()


def test_power_stats_average_in_linear_power() -> None:
    a = shapely.box(500000, 6500000 - 20, 500020, 6500000)  # 2 x 2 px
    index = rasterize_parcels(["a"], [a], GRID, buffer_px=0)
    db = np.full((20, 20), -20.0)
    db[0, 0] = -10.0
    stats = power_stats(index, index.gather(db))[0, 0]
    linear = np.array([0.1, 0.01, 0.01, 0.01])
    assert stats[0] == pytest.approx(10 * np.log10(linear.mean()))
    assert stats[1] == pytest.approx(-20.0)
    assert (stats[2], stats[3]) == pytest.approx((-20.0, -10.0))
    assert stats[4] == pytest.approx(np.std([-10.0, -20, -20, -20]))
    assert stats[5] == 4


def test_benchmark_parcels_do_not_overlap_and_have_the_right_sizes() -> None:
    from kz_pipelines.bench.zonal import synthetic_parcels

    grid = GridSpec(32635, 500000.0, 6500000.0, 10.0, 2400, 2400)
    polys = synthetic_parcels(grid, 100, seed=3)
    areas = np.array([p.area for p in polys]) / 1e4
    assert len(polys) == 100
    assert areas.min() >= 1.0 - 1e-9
    assert areas.max() <= 20.0 + 1e-9
    assert shapely.union_all(polys).area == pytest.approx(sum(p.area for p in polys))
    assert all(shapely.box(*grid.bounds).contains(p) for p in polys)


def test_index_saved_and_loaded(tmp_path: Path) -> None:
    from kz_pipelines.zonal import load_index, save_index

    index = rasterize_parcels(
        ["a", "b"],
        [shapely.box(500000, 6499900, 500100, 6500000), shapely.box(500110, 6499950, 500130, 6500000)],
        GRID,
    )
    save_index(tmp_path / "i.npz", index)
    back = load_index(tmp_path / "i.npz")
    assert back.grid == index.grid
    for name in ("parcel_ids", "pixels", "offsets", "buffered"):
        np.testing.assert_array_equal(getattr(back, name), getattr(index, name))
