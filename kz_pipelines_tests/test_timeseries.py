"""The season tensor: days land in their slice, updates are incremental, overlapping tiles count once."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from kz_pipelines.observations import S1_FEATURES, S2_FEATURES, s1_observations, s2_observations
from kz_pipelines.raster import GridSpec
from kz_pipelines.timeseries import (
    TENSOR_FEATURES,
    manifest_scenes,
    merge_observations,
    read_observations,
    update_tensor,
    write_observations,
)
from kz_pipelines.zonal import STATS, rasterize_parcels

GRID = GridSpec(32635, 500000.0, 6500000.0, 10.0, 30, 30)
PARCELS = pd.DataFrame(
    {
        "parcel_id": ["a", "b", "c"],
        "declared_code": ["1101", "3101", "9999"],
        "crop_class": [1, 24, 0],
        "area_ha": [0.36, 0.36, 0.36],
    }
)
GEOMS = {
    "a": shapely.box(500000, 6500000 - 60, 500060, 6500000),
    "b": shapely.box(500100, 6500000 - 60, 500160, 6500000),
    "c": shapely.box(500200, 6500000 - 60, 500260, 6500000),
}


def _s2(day: date, level: float, clear_cols: int = 30) -> pd.DataFrame:
    """Observations of a scene whose bands are ``level`` (NDVI 0) where clear (the first columns)."""
    index = rasterize_parcels(list(GEOMS), list(GEOMS.values()), GRID, buffer_px=0)
    clear = np.zeros(GRID.shape, bool)
    clear[:, :clear_cols] = True
    return s2_observations(index, lambda b: np.full(GRID.shape, level), clear, day, "R079")


def _write(path: Path, frame: pd.DataFrame) -> Path:
    write_observations(path, frame, [{"sensor": "S2", "item_id": path.stem}])
    return path


def test_observations_table() -> None:
    frame = _s2(date(2024, 5, 3), 0.2, clear_cols=20)  # c (columns 20-25) is under cloud
    assert set(frame["parcel_id"]) == {"a", "b"}
    assert set(frame["feature"]) == set(S2_FEATURES)
    assert set(frame["stat"]) == {"mean", "median", "min", "max", "std"}
    b04 = frame[(frame.parcel_id == "a") & (frame.feature == "B04") & (frame.stat == "mean")]
    assert b04["value"].item() == pytest.approx(0.2)
    assert b04["valid_count"].item() == 36
    ndvi = frame[(frame.parcel_id == "a") & (frame.feature == "NDVI") & (frame.stat == "median")]
    assert ndvi["value"].item() == pytest.approx(0.0)


def test_s1_observations_and_pass_features() -> None:
    index = rasterize_parcels(list(GEOMS), list(GEOMS.values()), GRID, buffer_px=0)
    db = {
        "VV": np.full(GRID.shape, -10.0),
        "VH": np.full(GRID.shape, -17.0),
        "VH_VV": np.full(GRID.shape, -7.0),
    }
    asc = s1_observations(index, db, date(2024, 5, 3), "ascending/58")
    desc = s1_observations(index, db, date(2024, 5, 3), "descending/131")
    merged = merge_observations({"T1": pd.concat([asc, desc])})
    assert set(merged["tensor_feature"]) == {f"{f}_{p}" for f in S1_FEATURES for p in ("asc", "desc")}
    vh = merged[(merged.parcel_id == "a") & (merged.tensor_feature == "VH_desc") & (merged.stat == "mean")]
    assert vh["value"].item() == pytest.approx(-17.0)


def test_overlapping_tiles_merge_without_double_counting() -> None:
    day = date(2024, 5, 3)
    west = _s2(day, 0.1, clear_cols=12)  # a fully clear, b partly
    east = _s2(day, 0.3, clear_cols=30)  # all clear
    merged = merge_observations({"W": west, "E": east})
    got = merged[(merged.feature == "B04") & (merged.stat == "mean")].set_index("parcel_id")
    # each parcel once; the tile with more valid pixels wins (a: tie of 36 -> the first tile id, E)
    assert got["value"].to_dict() == pytest.approx({"a": 0.3, "b": 0.3, "c": 0.3})
    assert got["valid_count"].to_dict() == {"a": 36, "b": 36, "c": 36}
    assert len(merged) == len(east)


def test_tensor_days_incremental_and_rebuild(tmp_path: Path) -> None:
    store = tmp_path / "2024.zarr"
    d1, d2 = date(2024, 5, 3), date(2024, 5, 8)
    f1 = _write(tmp_path / "obs" / "d1.parquet", _s2(d1, 0.1))
    first = update_tensor(store, PARCELS, 2024, {d1: {"T": f1}}, log=lambda _: None)
    assert first.rebuilt
    assert first.days_written == ["2024-05-03"]

    f2 = _write(tmp_path / "obs" / "d2.parquet", _s2(d2, 0.2, clear_cols=12))
    second = update_tensor(store, PARCELS, 2024, {d1: {"T": f1}, d2: {"T": f2}}, log=lambda _: None)
    assert not second.rebuilt
    assert second.days_written == ["2024-05-08"]  # day 1 is not recomputed
    assert second.days_unchanged == 1
    assert list(manifest_scenes(store)) == ["2024-05-03", "2024-05-08"]

    ds = xr.open_zarr(store)
    assert dict(ds["obs"].sizes) == {"parcel": 3, "time": 366, "feature": len(TENSOR_FEATURES), "stat": 6}
    assert list(ds["stat"].values) == list(STATS)
    b04 = ds["obs"].sel(feature="B04", stat="mean")
    assert float(b04.sel(parcel="a", time="2024-05-03")) == pytest.approx(0.1)
    assert float(b04.sel(parcel="a", time="2024-05-08")) == pytest.approx(0.2)
    assert np.isnan(float(b04.sel(parcel="c", time="2024-05-08")))  # under cloud that day
    assert float(ds["obs"].sel(parcel="b", time="2024-05-08", feature="B04", stat="count")) == 12
    assert int(np.isfinite(b04.sel(parcel="a")).sum()) == 2  # every other day stays empty
    assert int(ds["crop_class"].sel(parcel="b")) == 24

    # a reprocessed day 1 is rewritten; a new parcel set rebuilds the store
    f1 = _write(tmp_path / "obs" / "d1.parquet", _s2(d1, 0.15))
    third = update_tensor(store, PARCELS, 2024, {d1: {"T": f1}, d2: {"T": f2}}, log=lambda _: None)
    assert third.days_written == ["2024-05-03"]
    assert float(
        xr.open_zarr(store)["obs"].sel(parcel="a", time="2024-05-03", feature="B04", stat="mean")
    ) == (pytest.approx(0.15))
    fewer = PARCELS.iloc[:2]
    fourth = update_tensor(store, fewer, 2024, {d1: {"T": f1}, d2: {"T": f2}}, log=lambda _: None)
    assert fourth.rebuilt
    assert fourth.days_written == ["2024-05-03", "2024-05-08"]
    assert list(xr.open_zarr(store)["parcel"].values) == ["a", "b"]


def test_observation_file_roundtrip(tmp_path: Path) -> None:
    frame = _s2(date(2024, 5, 3), 0.1)
    path = _write(tmp_path / "o.parquet", frame)
    back, scenes = read_observations(path)
    assert scenes == [{"sensor": "S2", "item_id": "o"}]
    pd.testing.assert_frame_equal(back, frame)
