"""Damaged areas: a synthetic patch found as a polygon, clouds and shadows ignored, insufficient data
explicit, scores and the storage reader checked on small generated inputs."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from pyproj import CRS

from kz_pipelines.models.damage import (
    DamageRules,
    PixelStack,
    damage_areas,
    damage_scores,
    damage_table,
    drop_dates,
    write_damage,
)
from kz_pipelines.raster import GridSpec
from kz_pipelines.storage import write_cog
from kz_pipelines.zonal import rasterize_parcels

GRID = GridSpec(32635, 300000.0, 6500000.0, 10.0, 60, 30)
"""Two 25 x 25 px parcels side by side (UTM 35N, 10 m pixels)."""
DAYS = np.arange("2024-06-01", "2024-07-31", 5, dtype="datetime64[D]")
"""12 acquisition dates."""
ONSET = 5
"""The damaged patch is low from this date index on."""


def _box(c0: int, r0: int, c1: int, r1: int) -> shapely.Polygon:
    x, y = GRID.x0, GRID.y0
    return shapely.box(x + 10 * c0, y - 10 * r1, x + 10 * c1, y - 10 * r0)


PARCELS = gpd.GeoDataFrame(
    {"parcel_id": ["A", "B"], "crop_class": [1, 1]},
    geometry=[_box(2, 2, 27, 27), _box(32, 2, 57, 27)],
    crs=GRID.epsg,
)
PATCH = _box(6, 8, 16, 20)
"""The damaged patch in parcel A: 10 x 12 px = 1.2 ha."""


def _rasters(days: np.ndarray) -> np.ndarray:
    """(dates, rows, cols) NDVI on ``days`` (12 of them): green canopy with noise, the patch low after
    ONSET, a cloud over parcel B on one date and a missed cloud shadow (one low date) in it on another."""
    rng = np.random.default_rng(3)
    out = 0.8 + 0.02 * rng.standard_normal((len(days), *GRID.shape))
    out[ONSET:, 8:20, 6:16] = 0.3
    out[3, :, 30:] = np.nan
    out[8, 10:20, 40:50] = 0.35
    return out.astype(np.float32)


def _stack(n_dates: int = DAYS.size) -> PixelStack:
    index = rasterize_parcels(PARCELS["parcel_id"].tolist(), PARCELS.geometry.tolist(), GRID, buffer_px=0)
    ndvi = np.stack([index.gather(r) for r in _rasters(DAYS)[:n_dates]])
    return PixelStack(PARCELS, index, DAYS[:n_dates], ndvi)


def test_finds_the_patch_and_ignores_clouds() -> None:
    table = damage_table(_stack(), DamageRules()).set_index("parcel_id")
    assert table.crs.to_epsg() == 4326
    assert list(table["status"]) == ["damaged", "undamaged"]
    found = gpd.GeoSeries([table.geometry["A"]], crs=4326).to_crs(GRID.epsg).iloc[0]
    iou = found.intersection(PATCH).area / found.union(PATCH).area
    assert iou > 0.95
    assert table.loc["A", "damaged_ha"] == pytest.approx(1.2, rel=0.02)
    assert table.loc["A", "parcel_area_ha"] == pytest.approx(6.25, rel=0.01)
    assert table.loc["A", "damaged_percent"] == pytest.approx(19.2, rel=0.02)
    assert table.loc["A", "start_date"] == pd.Timestamp(DAYS[ONSET])
    assert table.geometry["B"] is None
    assert table.loc["B", "damaged_ha"] == 0.0


def _stack_of(parcels: gpd.GeoDataFrame, rasters: np.ndarray) -> PixelStack:
    index = rasterize_parcels(parcels["parcel_id"].tolist(), parcels.geometry.tolist(), GRID, buffer_px=0)
    return PixelStack(parcels, index, DAYS, np.stack([index.gather(r) for r in rasters]))


def _area_ha(table: gpd.GeoDataFrame, parcel: str) -> float:
    return float(table.set_index("parcel_id").loc[parcel, "damaged_ha"])


def test_mixed_edge_pixels_join_the_patch_they_touch() -> None:
    rasters = _rasters(DAYS)
    # a 1 px ring around the patch lost less cover (pixels half on damaged ground): relative cover 0.75,
    # above the ratio (0.7) but below ratio + grow; a block elsewhere in parcel A lost as much, alone
    ring = np.zeros(GRID.shape, bool)
    ring[7:21, 5:17] = True
    ring[8:20, 6:16] = False
    rasters[ONSET:, ring] = 0.2 + 0.75 * 0.6
    rasters[ONSET:, 22:25, 20:24] = 0.2 + 0.75 * 0.6
    stack = _stack_of(PARCELS, rasters)
    assert _area_ha(damage_table(stack, DamageRules(grow=0.0)), "A") == pytest.approx(1.2, rel=0.02)
    grown = damage_table(stack, DamageRules()).set_index("parcel_id")
    assert grown.loc["A", "damaged_ha"] == pytest.approx(1.2 + 0.48, rel=0.02)  # + the 48 ring pixels
    found = gpd.GeoSeries([grown.geometry["A"]], crs=4326).to_crs(GRID.epsg).iloc[0]
    assert not found.intersects(_box(20, 22, 24, 25).buffer(-1))  # the lone block stays undamaged
    with pytest.raises(ValueError, match="ratio"):
        DamageRules(ratio=0.9, grow=0.2)


def test_a_lone_early_low_date_does_not_start_the_damage() -> None:
    # a late patch, low on the last 4 of 12 dates, under a cloud shadow the mask missed on the second: from
    # that lone low date the patch would be low on 5 of 11 seen dates, under the persistence share (0.6)
    rasters = _rasters(DAYS)
    rasters[ONSET:8, 8:20, 6:16] = rasters[ONSET:8, 2:5, 20:24].mean()
    rasters[1, 6:22, 4:18] = 0.35
    table = damage_table(_stack_of(PARCELS, rasters), DamageRules()).set_index("parcel_id")
    assert list(table["status"]) == ["damaged", "undamaged"]
    assert table.loc["A", "damaged_ha"] == pytest.approx(1.2, rel=0.02)  # not the shadow's larger box
    assert table.loc["A", "start_date"] == pd.Timestamp(DAYS[8])


def test_a_patch_reaching_the_field_edge_keeps_the_edge_strip() -> None:
    # parcel A's west edge runs 4 m into pixel column 1, whose centre lies outside the field: that 4 m
    # strip is in no pixel footprint of the parcel (without it the patch would come out 2.8% short)
    edge_x = GRID.x0 + 10 * 2 - 4.0
    field = shapely.box(edge_x, GRID.y0 - 10 * 27, GRID.x0 + 10 * 27, GRID.y0 - 10 * 2)
    parcels = PARCELS.set_geometry([field, PARCELS.geometry.iloc[1]])
    rasters = _rasters(DAYS)
    rasters[ONSET:, 8:20, 2:16] = 0.3  # the patch runs to the field's west edge
    table = damage_table(_stack_of(parcels, rasters), DamageRules()).set_index("parcel_id")
    truth = shapely.box(edge_x, GRID.y0 - 10 * 20, GRID.x0 + 10 * 16, GRID.y0 - 10 * 8)
    found = gpd.GeoSeries([table.geometry["A"]], crs=4326).to_crs(GRID.epsg).iloc[0]
    assert found.intersection(truth).area / found.union(truth).area > 0.98
    assert table.loc["A", "damaged_ha"] == pytest.approx(truth.area / 1e4, rel=0.02)


def test_few_green_dates_are_insufficient_data() -> None:
    table = damage_table(_stack(2), DamageRules())
    assert set(table["status"]) == {"insufficient_data"}
    assert table["damaged_ha"].isna().all()
    assert table.geometry.isna().all()


def test_dropping_dates_keeps_the_rest() -> None:
    stack = _stack()
    half = drop_dates(stack, 0.5, seed=1)
    assert half.dates.size == 6
    assert set(half.dates) <= set(stack.dates)
    assert half.ndvi.shape == (6, stack.ndvi.shape[1])


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="ratio"):
        DamageRules(ratio=1.5)
    with pytest.raises(ValueError, match="min_dates"):
        DamageRules(min_dates=0)


def test_scores_against_truth() -> None:
    table = damage_table(_stack(), DamageRules())
    patch = gpd.GeoDataFrame(
        {"parcel_id": ["A"], "start_date": [pd.Timestamp(DAYS[ONSET])], "area_ha": [1.2]},
        geometry=[PATCH],
        crs=GRID.epsg,
    ).to_crs(4326)
    parcels = pd.DataFrame({"parcel_id": ["A", "B"], "damaged": [True, False]})
    scores = damage_scores(table, patch, parcels)
    assert scores["iou"] > 0.95
    assert scores["area_error"] < 0.02
    assert scores["recall"] == 1.0
    assert scores["false_alarm_rate"] == 0.0
    assert scores["start_mae_days"] == 0.0
    missed = damage_scores(table.assign(status="undamaged", geometry=None, damaged_ha=0.0), patch, parcels)
    assert (missed["iou"], missed["area_error"], missed["recall"]) == (0.0, 1.0, 0.0)


def test_writes_geoparquet(tmp_path: Path) -> None:
    table = damage_table(_stack(), DamageRules())
    write_damage(tmp_path / "damage.parquet", table)
    back = gpd.read_parquet(tmp_path / "damage.parquet")
    assert back.crs.to_epsg() == 4326
    pd.testing.assert_frame_equal(back.drop(columns="geometry"), table.drop(columns="geometry"))
    assert back.geometry.iloc[0].equals(table.geometry.iloc[0])


def _storage(root: Path) -> None:
    """A pipeline storage holding the synthetic scenes (B04/B08 from NDVI), masks and parcels."""
    parcels = PARCELS.to_crs(4326).assign(arable=True, home_tile="35VLF")
    (root / "parcels" / "2024").mkdir(parents=True)
    parcels.to_parquet(root / "parcels" / "2024" / "parcels.parquet")
    t = GRID.transform
    ref = {"crs_wkt": CRS.from_epsg(GRID.epsg).to_wkt(), "GeoTransform": f"{t.c} {t.a} 0 {t.f} 0 {t.e}"}
    for day, ndvi in zip(DAYS, _rasters(DAYS), strict=True):
        clear = np.isfinite(ndvi)
        red = np.full(GRID.shape, 0.05, np.float32)
        nir = red * (1 + np.nan_to_num(ndvi)) / (1 - np.nan_to_num(ndvi))
        item = f"S2A_35VLF_{str(day).replace('-', '')}_0_L2A"
        ds = xr.Dataset(
            {
                "reflectance": (("time", "band", "y", "x"), np.stack([red, nir])[None]),
                "valid": (("time", "y", "x"), np.ones((1, *GRID.shape), bool)),
            },
            coords={
                "band": ["B04", "B08"],
                "item_id": ("time", [item]),
                "spatial_ref": xr.DataArray(0, attrs=ref),
            },
        )
        ds.to_zarr(root / "scenes" / "s2_l2a" / "35VLF" / f"{day}.zarr", zarr_format=2)
        write_cog(
            root / "cloud_mask" / "35VLF" / str(day) / f"{item}.tif",
            clear.astype(np.uint8) + 3 * ~clear,
            GRID,
            None,
        )


def test_reads_pipeline_storage(tmp_path: Path) -> None:
    _storage(tmp_path)
    table = damage_areas(tmp_path, 2024, "35VLF", DamageRules()).set_index("parcel_id")
    assert list(table["status"]) == ["damaged", "undamaged"]
    assert table.loc["A", "damaged_ha"] == pytest.approx(1.2, rel=0.02)
    assert list(table["n_dates"]) == [12, 11]


def test_a_season_without_s2_is_insufficient_data_not_undamaged(tmp_path: Path) -> None:
    _storage(tmp_path)
    for store in (tmp_path / "scenes" / "s2_l2a" / "35VLF").glob("*.zarr"):
        store.rename(store.with_name(store.name.replace("2024", "2023")))  # the scenes of another season
    table = damage_areas(tmp_path, 2024, "35VLF", DamageRules())
    assert list(table["parcel_id"]) == ["A", "B"]
    assert set(table["status"]) == {"insufficient_data"}
    assert table["damaged_ha"].isna().all()
    assert table.geometry.isna().all()
    assert table["parcel_area_ha"].to_numpy() == pytest.approx([6.25, 6.25], rel=0.01)
