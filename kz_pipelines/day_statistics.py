"""Parcel statistics of whole days on a tile, read from the pipeline's stores under the storage root.

A day on a tile holds a few scenes (Sentinel-2, with the cloud mask of each, and Sentinel-1); each scene is an
independent task: rasterize the tile's parcels on the scene grid (cached per season, tile and grid), then the
zonal statistics of :mod:`kz_pipelines.observations`. :func:`observe_days` runs the tasks of any number of
tiles and days in this process, or on a Dask cluster (a ``distributed.Client``: a ``LocalCluster``, a
dask-kubernetes cluster or any scheduler address), with the same results either way.

Layout under the root (written by the ingest and cloud-mask assets)::

    parcels/<season>/parcels.parquet             declared parcels (GeoParquet)
    parcels/<season>/index/<tile>-<grid>.npz     the cached parcel index of a scene grid
    scenes/s2_l2a/<tile>/<day>.zarr              the day's S2 scenes
    cloud_mask/<tile>/<day>/<item_id>.tif        each S2 scene's 5-class mask
    scenes/s1/<tile>/<day>.zarr                  the day's S1 scenes
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import xarray as xr

from kz_pipelines.observations import empty_observations, s1_observations, s2_observations
from kz_pipelines.parcels import tile_parcels
from kz_pipelines.raster import GridSpec
from kz_pipelines.scenes import open_scenes, store_grid
from kz_pipelines.zonal import ParcelIndex, load_index, rasterize_parcels, save_index

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DayObservations", "SceneTask", "observe_days", "observe_scene", "parcels_path", "scene_tasks"]

CLEAR = 1
"""The cloud-mask class of clear pixels."""

Sensor = Literal["S2", "S1"]


def parcels_path(root: Path, season: int) -> Path:
    """The season's declared parcels (written by the ``parcels`` asset)."""
    return root / "parcels" / str(season) / "parcels.parquet"


def _store(root: Path, sensor: Sensor, tile: str, day: date) -> Path:
    return root / "scenes" / ("s2_l2a" if sensor == "S2" else "s1") / tile / f"{day}.zarr"


@dataclass(frozen=True)
class SceneTask:
    """One scene of a day on a tile: the ``position``-th time step of the day's store of ``sensor``."""

    root: Path
    tile: str
    day: date
    sensor: Sensor
    position: int


@dataclass(frozen=True)
class DayObservations:
    """A day's statistics on a tile: the long table (rows of every scene) and a summary per scene (sensor,
    item id, orbit, parcels in the tile, parcels observed, parcels at least half clear or valid)."""

    table: pd.DataFrame
    scenes: list[dict[str, Any]]


def scene_tasks(root: Path, tile: str, day: date) -> list[SceneTask]:
    """The scenes of the day on the tile, S2 first (none when nothing was ingested).

    Raises:
        FileNotFoundError: the season's parcels are missing.
    """
    if not parcels_path(root, day.year).is_file():
        raise FileNotFoundError(f"no parcels for season {day.year}: materialize `parcels` {day.year} first")
    tasks: list[SceneTask] = []
    for sensor in ("S2", "S1"):
        store = _store(root, sensor, tile, day)
        if store.exists():
            n = open_scenes(store).sizes["time"]
            tasks.extend(SceneTask(root, tile, day, sensor, t) for t in range(n))
    return tasks


def parcel_index(root: Path, season: int, tile: str, grid: GridSpec) -> ParcelIndex:
    """The tile's parcel index on a scene grid: rasterized once per season, tile and grid (S2 and S1 scenes
    on the same tile grid share it), then reused by every date; rebuilt when the parcels change. Tasks
    racing to build it write the same file atomically."""
    key = hashlib.sha256(repr(astuple(grid)).encode()).hexdigest()[:12]
    cached = root / "parcels" / str(season) / "index" / f"{tile}-{key}.npz"
    declared = parcels_path(root, season)
    if cached.is_file() and cached.stat().st_mtime >= declared.stat().st_mtime:
        return load_index(cached)
    local = tile_parcels(gpd.read_parquet(declared), grid)
    index = rasterize_parcels(local["parcel_id"].tolist(), local.geometry.tolist(), grid)
    save_index(cached, index)
    return index


def _band_reader(scene: xr.Dataset) -> Callable[[str], np.ndarray]:
    """Reads one band of a scene as reflectance (NaN: no data)."""
    return lambda band: scene["reflectance"].sel(band=band).to_numpy()


def _summary(index: ParcelIndex, table: pd.DataFrame, **info: str) -> dict[str, Any]:
    """What one scene gave: parcels in the tile, parcels observed, parcels at least half clear/valid."""
    first = table.drop_duplicates("parcel_id")
    counts = first.set_index("parcel_id")["valid_count"]
    size = pd.Series(index.n_pixels, index=index.parcel_ids)
    half = int((counts >= 0.5 * size.reindex(counts.index)).sum())
    return {**info, "parcels": int((index.n_pixels > 0).sum()), "observed": len(first), "clear_parcels": half}


def observe_scene(task: SceneTask) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The statistics of one scene and its summary. The scene is read here, in one piece (on a Dask worker
    its store's chunks would otherwise become tasks of their own).

    Raises:
        FileNotFoundError: an S2 scene has no cloud mask.
    """
    with dask.config.set(scheduler="synchronous"):
        return _observe_scene(task)


def _observe_scene(task: SceneTask) -> tuple[pd.DataFrame, dict[str, Any]]:
    ds = open_scenes(_store(task.root, task.sensor, task.tile, task.day))
    index = parcel_index(task.root, task.day.year, task.tile, store_grid(ds))
    scene = ds.isel(time=task.position)
    item_id = str(scene.item_id.values)
    if task.sensor == "S2":
        mask_path = task.root / "cloud_mask" / task.tile / str(task.day) / f"{item_id}.tif"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{item_id}: no cloud mask at {mask_path}; materialize s2_cloud_mask")
        with rasterio.open(mask_path) as src:
            clear = (src.read(1) == CLEAR) & scene["valid"].to_numpy().astype(bool)
        orbit = f"R{int(scene.relative_orbit.values):03d}"
        table = s2_observations(index, _band_reader(scene), clear, task.day, orbit)
    else:
        orbit = f"{scene.orbit_state.to_numpy()}/{int(scene.relative_orbit)}"
        db = {
            "VV": scene["vv_db"].to_numpy(),
            "VH": scene["vh_db"].to_numpy(),
            "VH_VV": scene["vh_vv_db"].to_numpy(),
        }
        table = s1_observations(index, db, task.day, orbit)
    return table, _summary(index, table, sensor=task.sensor, item_id=item_id, orbit=orbit)


def observe_days(
    root: Path, days: Sequence[tuple[str, date]], client: Client | None = None
) -> dict[tuple[str, date], DayObservations]:
    """The statistics of every (tile, day), each day's rows in scene order.

    Args:
        root: the storage root.
        days: (tile, day) pairs.
        client: a Dask client whose cluster runs the scene tasks; None: one after the other here.

    Raises:
        FileNotFoundError: a season's parcels or an S2 scene's cloud mask are missing.
    """
    tasks = [task for tile, day in days for task in scene_tasks(root, tile, day)]
    if client is None:
        results = [observe_scene(task) for task in tasks]
    else:
        # pure=False: a scene re-read after its store changed must not hit Dask's cache of the old result
        results = client.gather(client.map(observe_scene, tasks, pure=False))
    tables: dict[tuple[str, date], list[pd.DataFrame]] = {key: [] for key in days}
    scenes: dict[tuple[str, date], list[dict[str, Any]]] = {key: [] for key in days}
    for task, (table, summary) in zip(tasks, results, strict=True):
        tables[(task.tile, task.day)].append(table)
        scenes[(task.tile, task.day)].append(summary)
    return {
        key: DayObservations(
            pd.concat(tables[key], ignore_index=True) if tables[key] else empty_observations(), scenes[key]
        )
        for key in days
    }
