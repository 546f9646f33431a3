"""The ingest assets through Dagster: items and scenes per day x tile, empty days, and a corrupt file
failing only its own partition without leaving anything half-written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from kz_pipelines.definitions import defs
from kz_pipelines.ingest import load_s2_scene, scene_grid
from kz_pipelines.scenes import find_scene_items, open_scenes, read_items
from kz_pipelines.stac import open_search
from kz_pipelines_tests.conftest import pipeline_resources

TILE = "35VLF"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions("tile", [TILE])
        yield inst


def _job(catalog: Path, storage: Path) -> dg.JobDefinition:
    resources = pipeline_resources(catalog, storage)  # the code location's jobs need them all
    return dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources).resolve_job_def("ingest")


def _run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, day: str, **config: Any
) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        partition_key=dg.MultiPartitionKey({"date": day, "tile": TILE}),
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"s2_scenes": {"config": config}}} if config else None,
    )


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def _days(region: Path, collection: str) -> list[str]:
    """Days with items of ``collection`` over the tile."""
    search = open_search(str(region))
    items = search.search([collection])
    days = sorted({i.datetime.date() for i in items})
    return [d.isoformat() for d in days if find_scene_items(search, collection, TILE, d)[1]]


def test_scenes_of_a_day_with_both_sensors(
    region: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    day = sorted(set(_days(region, "sentinel-2-l2a")) & set(_days(region, "sentinel-1-grd")))[0]
    result = _run(_job(region, tmp_path), instance, day)
    assert result.success
    meta = _metadata(result)
    assert meta["s2_items"]["items"] == meta["s2_scenes"]["scenes"] == 1
    assert meta["s1_scenes"]["scenes"] >= 1
    assert meta["s2_scenes"]["quicklook"].startswith("![quicklook](data:image/png;base64,")
    s2 = open_scenes(tmp_path / "scenes" / "s2_l2a" / TILE / f"{day}.zarr")
    assert s2.reflectance.dtype == np.float32
    assert dict(s2.sizes) == {"time": 1, "band": 12, "y": 240, "x": 240}
    assert list(s2.band.values[:4]) == ["B01", "B02", "B03", "B04"]
    assert s2.spatial_ref.attrs["GeoTransform"].split()[1] == "10.0"
    red = s2.reflectance.sel(band="B04").isel(time=0).values
    valid = s2.valid.isel(time=0).values
    item = read_items(tmp_path / "items" / "s2_l2a" / TILE / f"{day}.json")[0]
    loaded = load_s2_scene(item, scene_grid(item)).band("B04")  # the float path, in memory
    np.testing.assert_allclose(red, loaded, atol=0.5e-4 + 1e-7)  # the store decodes to the same values
    assert 0 < np.nanmedian(red[valid]) < 0.3
    assert np.isnan(red[~valid]).all() or valid[~np.isnan(red)].all()
    s1 = open_scenes(tmp_path / "scenes" / "s1" / TILE / f"{day}.zarr")
    assert {"vv_db", "vh_db", "vh_vv_db"} <= set(s1.data_vars)
    assert str(s1.orbit_state.values[0]) in ("ascending", "descending")
    assert (tmp_path / "scenes" / "s2_l2a" / TILE / f"{day}.png").is_file()
    items = json.loads((tmp_path / "items" / "s2_l2a" / TILE / f"{day}.json").read_text())
    assert items["kz:items"][0]["bands"]["B04"]["offset"] == -0.1


def test_empty_day_is_recorded_not_failed(region: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    busy = set(_days(region, "sentinel-2-l2a")) | set(_days(region, "sentinel-1-grd"))
    day = next(d for d in (f"2024-05-{n:02d}" for n in range(1, 31)) if d not in busy)
    result = _run(_job(region, tmp_path), instance, day)
    assert result.success
    meta = _metadata(result)
    assert meta["s2_items"]["empty"]
    assert meta["s1_items"]["empty"]
    assert meta["s2_scenes"] == {"scenes": 0, "empty": True}
    assert meta["s1_scenes"] == {"scenes": 0, "empty": True}
    assert not (tmp_path / "scenes").exists()


def test_l1c_selectable(region: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    day = _days(region, "sentinel-2-l1c")[0]
    assert _run(_job(region, tmp_path), instance, day, level="L1C").success
    ds = open_scenes(tmp_path / "scenes" / "s2_l1c" / TILE / f"{day}.zarr")
    assert "B10" in ds.band.values
    assert "scl" not in ds


def test_corrupt_file_fails_its_partition_only(
    region: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    copy = tmp_path / "region"
    shutil.copytree(region, copy)
    first, second = _days(region, "sentinel-2-l2a")[:2]
    red = next((copy / "stac" / "sentinel-2-l2a" / TILE).rglob(f"*{first.replace('-', '')}*/B04.tif"))
    red.write_bytes(red.read_bytes()[:2000])  # truncated
    storage = tmp_path / "store"
    job = _job(copy, storage)
    bad = _run(job, instance, first)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "s2_scenes"
    message = failure.event_specific_data.error.to_string()  # type: ignore[union-attr]
    assert f"IngestError: item S2A_{TILE}_{first.replace('-', '')}_0_L2A asset red" in message
    assert "B04.tif" in message
    scene_dir = storage / "scenes" / "s2_l2a" / TILE
    assert not list(scene_dir.glob("*")) if scene_dir.exists() else True  # nothing, not even a temp folder
    good = _run(job, instance, second)
    assert good.success
    assert sorted(p.name for p in scene_dir.iterdir()) == [f"{second}.png", f"{second}.zarr"]


def test_an_href_outside_the_provider_is_refused_without_retry(
    region: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A catalog entry pointing a worker at another host: refused at once, the item and href named."""
    day = _days(region, "sentinel-2-l2a")[0]
    storage = tmp_path / "store"
    key = dg.MultiPartitionKey({"date": day, "tile": TILE})
    items = _job(region, storage).execute_in_process(
        partition_key=key, instance=instance, op_selection=["s2_items"]
    )
    assert items.success  # the items as published
    stored = storage / "items" / "s2_l2a" / TILE / f"{day}.json"
    data = json.loads(stored.read_text())
    data["kz:items"][0]["bands"]["B04"]["href"] = (
        "http://203.0.113.7/B04.tif"  # not where the provider keeps data
    )
    stored.write_text(json.dumps(data))
    scenes = dg.Definitions(
        assets=defs.assets, jobs=defs.jobs, resources=pipeline_resources(region, storage)
    ).resolve_job_def("daily")
    result = scenes.execute_in_process(
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        op_selection=["s2_scenes"],
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["s2_scenes"]
    message = failures[0].event_specific_data.error.to_string()  # type: ignore[union-attr]
    assert "http://203.0.113.7/B04.tif is outside the locations provider 'local' allows" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]  # no retry
    assert not (storage / "scenes" / "s2_l2a" / TILE / f"{day}.zarr").exists()
