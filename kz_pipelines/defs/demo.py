"""The demo: materialize every asset for every partition of a simulated region on a local instance."""

import json
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from kz_pipelines.definitions import defs
from kz_pipelines.defs.partitions import TILE_PARTITIONS
from kz_pipelines.defs.resources import StacResource, StorageResource

_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Runs log warnings and errors to the console; everything is in the instance's event log."""


def run_demo(region: Path, home: Path, storage: Path, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Register the region's tiles and materialize all assets for each day x tile of its season.

    Args:
        region: a simulated region folder (with region.json).
        home: Dagster instance folder (SQLite storage; created if absent).
        storage: root folder for asset values.
        log: where progress lines go.

    Returns:
        A summary: partitions run, items found per asset, failures, seconds.
    """
    summary = json.loads((region / "region.json").read_text())
    tiles = list(summary["config"]["tiles"])
    start, end = date.fromisoformat(summary["config"]["start"]), date.fromisoformat(summary["config"]["end"])
    home.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home.resolve())))
    instance.add_dynamic_partitions(TILE_PARTITIONS.name or "tile", tiles)
    resources = {
        "stac": StacResource(catalog=str(region.resolve())),
        "storage": StorageResource(root=str(storage.resolve())),
    }
    local = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources)
    job = local.resolve_job_def("scene_items")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    found: dict[str, int] = {}
    failed: list[str] = []
    t0 = time.monotonic()
    total = len(days) * len(tiles)
    for n, (day, tile) in enumerate(((d, t) for d in days for t in tiles), start=1):
        key = dg.MultiPartitionKey({"date": day.isoformat(), "tile": tile})
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=_QUIET
        )
        if not result.success:
            failed.append(str(key))
        for event in result.get_asset_materialization_events():
            mat = event.step_materialization_data.materialization
            name = mat.asset_key.to_user_string()
            found[name] = found.get(name, 0) + int(mat.metadata["items"].value)  # type: ignore[arg-type]
        if n % 50 == 0 or n == total:
            log(f"demo: {n}/{total} partitions, {time.monotonic() - t0:.0f} s, items so far {found}")
    return {
        "partitions": total,
        "items": found,
        "failed": failed,
        "seconds": round(time.monotonic() - t0, 1),
        "dagster_home": str(home.resolve()),
        "storage": str(storage.resolve()),
    }
