"""The parcel assets through Dagster on the simulated region: parcels, per-day observations masked with the
true cloud masks (so the test measures the statistics, not a model), and the season tensor built and then
updated one day at a time."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import xarray as xr
from rasterstats import zonal_stats as rs_zonal_stats

from kz_pipelines.definitions import defs
from kz_pipelines.timeseries import TENSOR_FEATURES, read_observations, tensor_feature
from kz_pipelines_tests.conftest import pipeline_resources

TILE = "35VLF"
DAYS = [date(2024, 6, 1) + timedelta(days=i) for i in range(16)]
pytestmark = pytest.mark.slow


def _key(day: date) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.isoformat(), "tile": TILE})


@pytest.fixture(scope="module")
def pipeline(region: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Parcels of 2024, scenes of DAYS, the true cloud mask of each scene in place of the model's, and the
    observations of every day but the last."""
    storage = tmp_path_factory.mktemp("parcel-store")
    resources = pipeline_resources(region, storage)
    d = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        assert (
            d.resolve_job_def("load_parcels")
            .execute_in_process(partition_key="2024", instance=instance)
            .success
        )
        for day in DAYS:
            assert (
                d.resolve_job_def("ingest")
                .execute_in_process(partition_key=_key(day), instance=instance)
                .success
            )
        for day in DAYS:  # the true mask of each scene where the masking step would write its own
            store = storage / "scenes" / "s2_l2a" / TILE / f"{day}.zarr"
            for item_id in xr.open_zarr(store)["item_id"].to_numpy() if store.exists() else []:
                target = storage / "cloud_mask" / TILE / day.isoformat() / f"{item_id}.tif"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(region / "truth" / "cloudmask" / f"{item_id}.tif", target)
        # the last day with a scene lands later (the tensor's incremental update)
        late = max(d_ for d_ in DAYS if any((storage / "scenes").glob(f"*/{TILE}/{d_}.zarr")))
        for day in (d_ for d_ in DAYS if d_ != late):
            result = dg.materialize(
                defs.assets,
                selection=["parcel_observations"],
                partition_key=_key(day),
                instance=instance,
                resources=resources,
            )
            assert result.success
        yield {
            "defs": d,
            "storage": storage,
            "instance": instance,
            "resources": resources,
            "region": region,
            "late": late,
        }


def test_parcels_asset_cleans_and_assigns_home_tiles(pipeline: dict[str, Any]) -> None:
    parcels = gpd.read_parquet(pipeline["storage"] / "parcels" / "2024" / "parcels.parquet")
    assert len(parcels) == 40
    assert set(parcels["home_tile"]) == {"35VLF", "35VMF"}
    truth = pd.read_parquet(pipeline["region"] / "truth" / "parcels.parquet").set_index("parcel_id")
    # the declared code maps to the class the simulator declared it for; the home tile is the tile it lies in
    merged = parcels.set_index("parcel_id").join(truth, rsuffix="_true")
    assert (merged["home_tile"] == merged["tile"]).all()
    assert (merged["crop_class"] == merged["crop_class_true"]).mean() > 0.9  # declarations carry errors
    event = pipeline["instance"].get_latest_materialization_event(dg.AssetKey("parcels"))
    meta = event.asset_materialization.metadata
    assert meta["kept"].value == 40
    assert meta["rejected_duplicate"].value == 0


def test_observation_counts_match_rasterstats_on_the_true_mask(pipeline: dict[str, Any]) -> None:
    storage, region = pipeline["storage"], pipeline["region"]
    parcels = gpd.read_parquet(storage / "parcels" / "2024" / "parcels.parquet")
    checked = 0
    for day in (d_ for d_ in DAYS if d_ != pipeline["late"]):
        table, scenes = read_observations(storage / "observations" / TILE / f"{day}.parquet")
        for scene in (s for s in scenes if s["sensor"] == "S2"):
            with rasterio.open(region / "truth" / "cloudmask" / f"{scene['item_id']}.tif") as src:
                clear = (src.read(1) == 1).astype(np.uint8)
                transform, epsg = src.transform, src.crs.to_epsg()
            local = parcels.to_crs(epsg)
            local = local[
                local.intersects(shapely.box(*rasterio.transform.array_bounds(*clear.shape, transform)))
            ]
            shrunk = local.geometry.buffer(-10.0)
            ref = rs_zonal_stats(list(shrunk), clear, affine=transform, stats=["sum"], nodata=255)
            expected = {pid: int(r["sum"] or 0) for pid, r in zip(local["parcel_id"], ref, strict=True)}
            got = (
                table[(table.sensor == "S2") & (table.feature == "B04") & (table.stat == "mean")]
                .set_index("parcel_id")["valid_count"]
                .to_dict()
            )
            assert got == {pid: n for pid, n in expected.items() if n > 0}
            checked += 1
        s1 = table[(table.sensor == "S1") & (table.stat == "mean")]
        if not s1.empty:
            vv = s1[s1.feature == "VV"]["value"]
            assert vv.between(-30, 5).all()
            assert s1["orbit"].str.match(r"^(ascending|descending)/\d+$").all()
    assert checked >= 3


def test_tensor_built_then_updated_one_day(pipeline: dict[str, Any]) -> None:
    d, instance, storage, resources, late = (
        pipeline["defs"],
        pipeline["instance"],
        pipeline["storage"],
        pipeline["resources"],
        pipeline["late"],
    )
    key = dg.MultiPartitionKey({"season": "2024", "tile": TILE})
    assert d.resolve_job_def("timeseries").execute_in_process(partition_key=key, instance=instance).success
    first = instance.get_latest_materialization_event(dg.AssetKey("parcel_timeseries")).asset_materialization
    # every processed day counts, an empty one too (items published later change its file and its digest)
    observed_days = len(DAYS) - 1
    assert any(not read_observations(storage / "observations" / TILE / f"{d}.parquet")[1] for d in DAYS)
    assert first.metadata["days_written"].value == observed_days > 0
    assert first.metadata["rebuilt"].value is True
    assert first.metadata["series"].value.startswith("![NDVI and VH of a few parcels](data:image/png;base64,")
    assert 0 <= first.metadata["cloud_free_fraction"].value <= 1

    # a new day lands: only it is written
    assert dg.materialize(
        defs.assets,
        selection=["parcel_observations"],
        partition_key=_key(late),
        instance=instance,
        resources=resources,
    ).success
    assert d.resolve_job_def("timeseries").execute_in_process(partition_key=key, instance=instance).success
    second = instance.get_latest_materialization_event(dg.AssetKey("parcel_timeseries")).asset_materialization
    assert second.metadata["rebuilt"].value is False
    assert second.metadata["days_unchanged"].value == observed_days
    assert second.metadata["days_written"].value == 1

    ds = xr.open_zarr(storage / "timeseries" / "2024" / f"{TILE}.zarr")
    parcels = gpd.read_parquet(storage / "parcels" / "2024" / "parcels.parquet")
    assert sorted(ds["parcel"].values) == sorted(parcels.loc[parcels.home_tile == TILE, "parcel_id"])
    assert list(ds["feature"].values) == list(TENSOR_FEATURES)
    table, _ = read_observations(storage / "observations" / TILE / f"{late}.parquet")
    row = table[table.stat == "median"].iloc[0]
    feature = tensor_feature(row["sensor"], row["orbit"], row["feature"])
    got = float(ds["obs"].sel(parcel=row["parcel_id"], time=str(late), feature=feature, stat="median"))
    assert got == pytest.approx(float(row["value"]))


def test_crop_type_trained_and_scored(pipeline: dict[str, Any]) -> None:
    d, instance, storage = pipeline["defs"], pipeline["instance"], pipeline["storage"]
    key = dg.MultiPartitionKey({"season": "2024", "tile": TILE})
    if not (storage / "timeseries" / "2024" / f"{TILE}.zarr").exists():
        assert (
            d.resolve_job_def("timeseries").execute_in_process(partition_key=key, instance=instance).success
        )
    config = {"ops": {"crop_type_model": {"config": {"lgb_rounds": 30, "mlp_epochs": 5}}}}
    trained = d.resolve_job_def("train_crop_type").execute_in_process(
        partition_key="2024", instance=instance, run_config=config
    )
    assert trained.success
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("crop_type_model")
    ).asset_materialization.metadata
    assert meta["selected"].value in ("lightgbm", "mlp")
    assert 0 <= meta["test_macro_f1"].value <= 1
    assert meta["confusion_matrix"].value.startswith("![confusion matrix](data:image/png;base64,")
    assert meta["split"].value.startswith("| class | test | validation | train | unused | total |")
    folder = Path(meta["model"].value)
    assert (folder / "model.json").is_file()
    assert (folder / "lightgbm.txt").is_file() or (folder / "net.safetensors").is_file()

    assert (
        d.resolve_job_def("score_crop_type").execute_in_process(partition_key=key, instance=instance).success
    )
    table = pd.read_parquet(storage / "crop_type" / "2024" / f"{TILE}.parquet")
    ds = xr.open_zarr(storage / "timeseries" / "2024" / f"{TILE}.zarr")
    assert sorted(table["parcel_id"]) == sorted(str(p) for p in ds["parcel"].to_numpy())
    probs = table.filter(like="p_")
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (table["probability"] == probs.max(axis=1)).all()
    assert (folder / "oof.parquet").is_file()  # the labelled parcels' out-of-fold probabilities
    assert table["flagged_out_of_fold"].all()  # every parcel of the tile has a known declaration here
    flagged = table[table["disagrees"]]
    assert (flagged["predicted_class"] != flagged["declared_class"]).all()
    assert (flagged["probability"] >= 0.8).all()
