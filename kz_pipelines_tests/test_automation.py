"""Automation: the daily schedule asks for yesterday on every tile, the sensor re-runs exactly the days whose
items changed after ingest (late, reprocessed), and the season assets follow daily while models never
retrain on their own."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.dependency import NodeHandle

from kz_pipelines.definitions import defs
from kz_pipelines.defs import automation
from kz_pipelines.defs.automation import LOOKBACK_DAYS, daily_schedule, late_items_sensor
from kz_pipelines.defs.resources import StacResource, StorageResource
from kz_pipelines.scenes import find_scene_items, read_items, write_item_collection
from kz_pipelines.stac import open_search, provider_profile

TILES = ["35VLF", "35VMF"]


def test_schedule_asks_for_yesterday_on_every_tile() -> None:
    when = datetime(2024, 6, 2, 6, tzinfo=UTC)
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context,
    ):
        assert isinstance(daily_schedule(context), dg.SkipReason)  # no region registered yet
        instance.add_dynamic_partitions("tile", TILES)
        requests = daily_schedule(context)
    assert isinstance(requests, list)
    assert [r.partition_key for r in requests] == [
        dg.MultiPartitionKey({"date": "2024-06-01", "tile": t}) for t in TILES
    ]
    assert {r.job_name for r in requests} <= {None, "daily"}
    assert daily_schedule.cron_schedule == "0 6 * * *"


def _ingest(region: Path, storage: Path, day: date, tile: str) -> int:
    """What s2_items and s1_items store for a day x tile (the stored state the sensor compares with)."""
    search = open_search(str(region))
    n = 0
    for role, collection in provider_profile("local").collections.items():
        if role not in ("s2_l2a", "s2_l1c", "s1"):  # the roles s2_items and s1_items store
            continue
        raw, items = find_scene_items(search, collection, tile, day, "local")
        write_item_collection(storage / "items" / role / tile / f"{day}.json", raw, items)
        n += len(items)
    return n


def _requests(instance: dg.DagsterInstance, region: Path, storage: Path) -> list[dg.RunRequest]:
    resources = {"stac": StacResource(catalog=str(region)), "storage": StorageResource(root=str(storage))}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = late_items_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return list(result.run_requests or [])


def test_sensor_reruns_days_whose_items_changed(
    region: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = date(2024, 6, 11)
    monkeypatch.setattr(automation, "today", lambda: today)
    window = [today - timedelta(days=k) for k in range(LOOKBACK_DAYS, 0, -1)]
    tile = TILES[0]
    search = open_search(str(region))
    with_items = [d for d in window if find_scene_items(search, "sentinel-2-l2a", tile, d, "local")[1]]
    assert len(with_items) >= 2
    for day in window:  # everything ingested as published...
        _ingest(region, tmp_path, day, tile)
    late = with_items[-1]  # ...except the last day with S2, whose items appeared after the schedule ran
    (tmp_path / "items" / "s2_l2a" / tile / f"{late}.json").unlink()
    # and one day's S2 item reprocessed since: the stored copy has the older processing baseline
    redone = with_items[0]
    stored = tmp_path / "items" / "s2_l2a" / tile / f"{redone}.json"
    raw, items = find_scene_items(search, "sentinel-2-l2a", tile, redone, "local")
    write_item_collection(stored, raw, [dataclasses.replace(i, processing_baseline="04.00") for i in items])
    assert read_items(stored)[0].processing_baseline == "04.00"

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", [tile])
        requests = _requests(instance, region, tmp_path)
        assert sorted(r.partition_key for r in requests) == sorted(
            dg.MultiPartitionKey({"date": d.isoformat(), "tile": tile}) for d in (redone, late)
        )
        assert all(r.tags["kz/trigger"] == "late-items" for r in requests)
        again = _requests(instance, region, tmp_path)  # the same state asks with the same run keys
        assert {r.run_key for r in again} == {r.run_key for r in requests}
        _ingest(region, tmp_path, late, tile)  # the re-runs stored what is published now
        _ingest(region, tmp_path, redone, tile)
        assert _requests(instance, region, tmp_path) == []


def test_season_assets_follow_daily_and_models_wait_for_people() -> None:
    graph = defs.get_repository_def().asset_graph
    daily = [
        "parcel_timeseries",
        "crop_type_predictions",
        "mowing_events",
        "ploughing_harvest_events",
        "emergence_dates",
        "tillage_practice",
        "damage_areas",
    ]
    for name in daily:
        condition = graph.get(dg.AssetKey(name)).automation_condition
        assert condition is not None, name
        assert condition.get_label() == "on_cron(0 9 * * *, UTC)", name
    for name in ("cloud_mask_model", "crop_type_model", "event_models", "parcels"):
        assert graph.get(dg.AssetKey(name)).automation_condition is None, name


def test_pools_and_retries() -> None:
    job = defs.get_repository_def().get_job("daily")
    nodes = {n.name: n.definition for n in job.graph.nodes}
    assert nodes["s2_items"].pool == nodes["s1_items"].pool == "stac"
    assert nodes["s2_cloud_mask"].pool == "gpu"
    for name in ("s2_items", "s1_items", "s2_scenes", "s1_scenes", "s2_cloud_mask"):
        policy = job.get_retry_policy_for_handle(NodeHandle(name, None))
        assert policy is not None, name
        assert policy.max_retries >= 2, name
        assert policy.backoff == dg.Backoff.EXPONENTIAL, name
        assert policy.jitter == dg.Jitter.PLUS_MINUS, name
