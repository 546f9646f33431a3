"""The demo materializes every partition of a region, and finds every item the region holds."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from kz_pipelines.defs.demo import run_demo
from kz_pipelines.sim import SimConfig, simulate

pytestmark = pytest.mark.slow


def test_demo_materializes_all_partitions(tmp_path: Path) -> None:
    cfg = SimConfig(
        seed=2,
        tiles=("35VLF",),
        size_px=240,
        start=date(2024, 6, 1),
        end=date(2024, 6, 14),
        n_parcels=30,
        l1c=False,
    )
    summary = simulate(cfg, tmp_path / "region")
    model = {"preset": "tiny", "chip_size": 120, "epochs": 1}
    out = run_demo(
        tmp_path / "region",
        tmp_path / "home",
        tmp_path / "storage",
        log=lambda _: None,
        model=model,
        report=tmp_path / "report.html",
    )
    assert out["partitions"] == 14
    assert out["failed"] == []
    n_s2, n_s1 = summary["items"]["sentinel-2-l2a"], summary["items"]["sentinel-1-grd"]
    assert out["items"] == {
        "s2_items": n_s2,
        "s1_items": n_s1,
        "s2_scenes": n_s2,
        "s1_scenes": n_s1,
        "s2_cloud_mask": n_s2,
        "parcel_observations": n_s2 + n_s1,
    }
    masks = sorted((tmp_path / "storage" / "cloud_mask" / "35VLF").glob("*/*.tif"))
    assert len(masks) == n_s2
    stores = sorted((tmp_path / "storage" / "scenes" / "s2_l2a" / "35VLF").glob("*.zarr"))
    assert len(stores) == n_s2 > 0
    written = sorted((tmp_path / "storage" / "items" / "s2_l2a" / "35VLF").glob("*.json"))
    assert len(written) == 14
    assert (
        sum(len(json.loads(p.read_text())["features"]) for p in written) == summary["items"]["sentinel-2-l2a"]
    )
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        runs = instance.get_runs()
        # cloud-mask model, parcels, one run per partition, the tensor, the crop type model, its scores,
        # the event models and the event products
        assert len(runs) == 21
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        for asset in (
            "s2_items",
            "s1_items",
            "s2_scenes",
            "s1_scenes",
            "s2_cloud_mask",
            "parcel_observations",
        ):
            assert len(instance.get_materialized_partitions(dg.AssetKey(asset))) == 14
        assert instance.get_materialized_partitions(dg.AssetKey("parcel_timeseries")) == {"2024|35VLF"}
        assert instance.get_materialized_partitions(dg.AssetKey("crop_type_predictions")) == {"2024|35VLF"}
        for asset in (
            "mowing_events",
            "ploughing_harvest_events",
            "emergence_dates",
            "tillage_practice",
            "damage_areas",
        ):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {"2024|35VLF"}
        # two weeks of June: too short to judge a mowing deadline or date a harvest, and said so
        flags = pd.read_parquet(tmp_path / "storage" / "events" / "mowing" / "2024" / "35VLF.parquet")
        assert flags["mowed_by_deadline"].isna().all()
        assert set(flags["status"]) == {"insufficient_data"}
        harvest = pd.read_parquet(
            tmp_path / "storage" / "events" / "ploughing_harvest" / "2024" / "35VLF.parquet"
        )
        assert harvest["harvest_date"].isna().all()
        assert instance.get_latest_materialization_event(dg.AssetKey("cloud_mask_model")) is not None
    page = (tmp_path / "report.html").read_text()
    for asset in ("crop_type_model", "event_models", "mowing_events", "damage_areas", "tillage_practice"):
        assert f"<h3>{asset}</h3>" in page
    assert "Against the simulated truth" in page
    assert page.count("<img") >= 5  # confusion matrix, crop type, mowing, tillage and damage maps
    assert set(out["timings"]) >= {"season tensors built", "event models trained and products run"}
