"""Parcel statistics on a Dask LocalCluster of two worker processes give exactly the single-process results,
for several tiles at once and through the `parcel_observations` asset."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import xarray as xr
from distributed import Client, LocalCluster, get_task_stream

from kz_pipelines.day_statistics import observe_days
from kz_pipelines.definitions import defs
from kz_pipelines.defs.resources import DaskResource
from kz_pipelines.timeseries import read_observations
from kz_pipelines_tests.conftest import pipeline_resources

TILES = ("35VLF", "35VMF")
DAYS = [date(2024, 6, 3) + timedelta(days=i) for i in range(6)]
pytestmark = pytest.mark.slow


def _key(day: date, tile: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.isoformat(), "tile": tile})


@pytest.fixture(scope="module")
def ingested(region: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Parcels and the scenes of DAYS on both tiles, with each S2 scene's true cloud mask."""
    storage = tmp_path_factory.mktemp("dask-store")
    resources = pipeline_resources(region, storage)
    d = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", list(TILES))
        assert (
            d.resolve_job_def("load_parcels")
            .execute_in_process(partition_key="2024", instance=instance)
            .success
        )
        ingest = d.resolve_job_def("ingest")
        for tile in TILES:
            for day in DAYS:
                assert ingest.execute_in_process(partition_key=_key(day, tile), instance=instance).success
                store = storage / "scenes" / "s2_l2a" / tile / f"{day}.zarr"
                for item_id in xr.open_zarr(store)["item_id"].to_numpy() if store.exists() else []:
                    target = storage / "cloud_mask" / tile / day.isoformat() / f"{item_id}.tif"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(region / "truth" / "cloudmask" / f"{item_id}.tif", target)
        yield {"storage": storage, "resources": resources, "instance": instance}


def test_local_cluster_equals_single_process(ingested: dict[str, Any]) -> None:
    root = ingested["storage"]
    pairs = [(tile, day) for tile in TILES for day in DAYS]
    alone = observe_days(root, pairs)
    scenes = {key: len(obs.scenes) for key, obs in alone.items()}
    assert {tile for (tile, _), n in scenes.items() if n} == set(TILES)  # scenes on both tiles
    assert {s["sensor"] for obs in alone.values() for s in obs.scenes} == {"S1", "S2"}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        with get_task_stream(client) as stream:
            on_cluster = observe_days(root, pairs, client)
        # one task per scene, spread over both worker processes
        assert len(stream.data) == sum(scenes.values())
        assert {task["worker"] for task in stream.data} == set(client.scheduler_info()["workers"])
    assert on_cluster.keys() == alone.keys()
    for key, obs in alone.items():
        pd.testing.assert_frame_equal(on_cluster[key].table, obs.table, check_exact=True)
        assert on_cluster[key].scenes == obs.scenes


def test_asset_on_a_local_cluster_writes_the_same_table(ingested: dict[str, Any]) -> None:
    storage, instance = ingested["storage"], ingested["instance"]
    day = next(d for d in DAYS if (storage / "scenes" / "s2_l2a" / TILES[1] / f"{d}.zarr").exists())
    path = storage / "observations" / TILES[1] / f"{day}.parquet"
    tables = {}
    for scheduler in ("none", "local"):
        resources = {**ingested["resources"], "dask": DaskResource(scheduler=scheduler, workers=2)}
        result = dg.materialize(
            defs.assets,
            selection=["parcel_observations"],
            partition_key=_key(day, TILES[1]),
            instance=instance,
            resources=resources,
        )
        assert result.success
        tables[scheduler] = read_observations(path)
    (alone, alone_scenes), (on_cluster, cluster_scenes) = tables["none"], tables["local"]
    assert len(alone) > 0
    pd.testing.assert_frame_equal(on_cluster, alone, check_exact=True)
    assert cluster_scenes == alone_scenes
