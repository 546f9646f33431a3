"""Data contracts: one per asset and one asset per contract; each kind of output checked (a broken one
reported case by case); and in a run a broken contract is a failed blocking check that stops what is
downstream of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from kz_pipelines.contracts import check, load_contracts, partition_keys
from kz_pipelines.definitions import defs
from kz_pipelines.defs import assets as scene_assets
from kz_pipelines.defs.checks import _columns, contracts_without_asset
from kz_pipelines.raster import GridSpec
from kz_pipelines.storage import write_cog
from kz_pipelines_tests.conftest import pipeline_resources

KEYS = {"date": "2024-06-01", "tile": "35VLF", "season": "2024"}


def test_every_asset_has_a_contract_and_every_contract_an_asset() -> None:
    repo = defs.get_repository_def()
    keys = repo.asset_graph.get_all_asset_keys()
    assert contracts_without_asset(list(defs.assets or [])) == []  # type: ignore[arg-type]
    for key in keys:
        checks = {c.name for c in repo.asset_graph.get(key).check_keys}
        assert checks == {"contract"}, key
    assert set(load_contracts()) == {k.to_user_string() for k in keys}


def test_column_schema_and_lineage_come_from_the_contract() -> None:
    meta = _columns(load_contracts()["damage_areas"])
    schema = meta["dagster/column_schema"]
    assert [c.name for c in schema.columns][:3] == ["parcel_id", "crop_class", "status"]
    area = next(c for c in schema.columns if c.name == "parcel_area_ha")
    assert (area.type, area.description) == ("float", "ha")
    deps = meta["dagster/column_lineage"].deps_by_column
    assert deps["crop_class"] == [dg.TableColumnDep("parcels", "crop_class")]
    assert "dagster/column_lineage" not in _columns(load_contracts()["tillage_practice"])
    assert _columns(load_contracts()["parcel_timeseries"]) == {}  # a tensor, not a table


def test_partition_keys_follow_dagster_order() -> None:
    assert partition_keys("2024-06-01|35VLF", ("date", "tile")) == {"date": "2024-06-01", "tile": "35VLF"}
    assert partition_keys("2024|35VLF", ("season", "tile")) == {"season": "2024", "tile": "35VLF"}
    assert partition_keys("2024", ("season",)) == {"season": "2024"}
    assert partition_keys(None, ()) == {}
    with pytest.raises(ValueError, match="does not match"):
        partition_keys("2024", ("season", "tile"))


def _cases(asset: str, root: Path) -> set[tuple[str, str]]:
    contract = load_contracts()[asset]
    failures = check(contract, root, {k: KEYS[k] for k in contract.partitions})
    return {(str(r.check), str(r.where)) for r in failures.itertuples()}


def test_tables_checked_row_by_row(tmp_path: Path) -> None:
    folder = tmp_path / "events" / "tillage" / "2024"
    folder.mkdir(parents=True)
    good = pd.DataFrame(
        {
            "parcel_id": ["a", "b", "c"],
            "practice": ["conventional", None, "conservation"],
            "p_conventional": np.array([0.9, np.nan, 0.2], np.float32),
            "status": ["ok", "not_arable", "ok"],
        }
    )
    good.to_parquet(folder / "35VLF.parquet")
    assert _cases("tillage_practice", tmp_path) == set()
    bad = good.assign(p_conventional=np.array([1.7, np.nan, 0.2], np.float32), status=["ok", "unknown", "ok"])
    bad = pd.concat([bad, bad.iloc[:1]]).assign(
        extra=1
    )  # a duplicated parcel and a column not in the contract
    bad.to_parquet(folder / "35VLF.parquet")
    found = _cases("tillage_practice", tmp_path)
    assert ("less_than_or_equal_to(1)", "p_conventional") in found
    assert ("isin(['ok', 'not_arable', 'insufficient_data'])", "status") in found
    assert any(c == "column_in_schema" for c, _ in found)
    assert any("unique" in c or "duplicates" in c for c, _ in found)


def test_geotables_types_and_missing_outputs(tmp_path: Path) -> None:
    assert _cases("damage_areas", tmp_path) == {("exists", "")}
    folder = tmp_path / "events" / "damage" / "2024"
    folder.mkdir(parents=True)
    table = gpd.GeoDataFrame(
        {
            "parcel_id": ["a"],
            "crop_class": np.array([7], np.int16),
            "status": ["damaged"],
            "parcel_area_ha": [4.0],
            "damaged_ha": [1.0],
            "damaged_percent": [25.0],
            "start_date": pd.to_datetime(["2024-06-10"]),
            "class_ratio": [0.8],
            "n_dates": ["12"],  # a number written as text
        },
        geometry=[shapely.box(24, 59, 24.01, 59.01)],
        crs=4326,
    )
    table.to_parquet(folder / "35VLF.parquet")
    found = _cases("damage_areas", tmp_path)
    assert ("type int", "n_dates") in found
    assert {where for _, where in found} == {"n_dates"}


def test_rasters_tensors_and_json(tmp_path: Path) -> None:
    grid = GridSpec(32635, 300000.0, 6500000.0, 10.0, 8, 8)
    mask = np.ones(grid.shape, np.uint8)
    mask[0, 0] = 7  # not a class
    write_cog(tmp_path / "cloud_mask" / "35VLF" / "2024-06-01" / "S2A_x.tif", mask, grid, None)
    assert _cases("s2_cloud_mask", tmp_path) == {("isin", "band 1")}

    obs = np.zeros((2, 3, 26, 6), np.float32)
    obs[0, 0, 0, 0] = np.inf
    features = load_contracts()["parcel_timeseries"].outputs[0]["coords"]["feature"]["isin"]
    ds = xr.Dataset(
        {"obs": (("parcel", "time", "feature", "stat"), obs)},
        coords={"feature": features, "stat": ["mean", "median", "min", "max", "std", "p90"]},
    )
    ds.to_zarr(tmp_path / "timeseries" / "2024" / "35VLF.zarr", zarr_format=2)
    assert _cases("parcel_timeseries", tmp_path) == {("isin", "stat"), ("finite", "obs")}

    (tmp_path / "models" / "events" / "2024").mkdir(parents=True)
    (tmp_path / "models" / "events" / "2024" / "current.json").write_text(
        json.dumps({"folder": str(tmp_path)})
    )
    assert _cases("event_models", tmp_path) == {("contains", str(tmp_path))}


def test_a_broken_contract_stops_the_run_downstream(
    region: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = scene_assets.write_item_collection

    def without_normalized_items(path: Path, raw: list[Any], items: list[Any]) -> dict[str, Any]:
        summary = real(path, raw, items)
        data = json.loads(path.read_text())
        del data["kz:items"]  # what downstream steps read
        path.write_text(json.dumps(data))
        return summary

    monkeypatch.setattr(scene_assets, "write_item_collection", without_normalized_items)
    storage = tmp_path / "storage"
    job = dg.Definitions(
        assets=defs.assets, jobs=defs.jobs, resources=pipeline_resources(region, storage)
    ).resolve_job_def("ingest")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        key = dg.MultiPartitionKey({"date": "2024-06-01", "tile": "35VLF"})
        result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        assert not result.success
        evaluations = {
            e.asset_check_evaluation_data.asset_key.to_user_string(): e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert not evaluations["s2_items"].passed
        cases = evaluations["s2_items"].metadata["cases"].value
        assert "| keys | kz:items | missing |" in str(cases)
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert "s2_scenes" not in materialized  # blocked: its input broke the contract
        assert not (storage / "scenes" / "s2_l2a" / "35VLF" / "2024-06-01.zarr").exists()
