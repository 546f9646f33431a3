"""Scene assets (day x tile): what each provider published, and the scenes loaded onto the tile grid."""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, Literal

import dagster as dg
import numpy as np
import xarray as xr

from kz_pipelines.defs.checks import contract_check, keeps_contract
from kz_pipelines.defs.conditions import NETWORK_RETRY, permanent
from kz_pipelines.defs.metadata import image_md
from kz_pipelines.defs.partitions import DAY_TILE
from kz_pipelines.defs.resources import StacResource, StorageResource
from kz_pipelines.errors import UserFacingError
from kz_pipelines.ingest import SceneReadError, load_s1_scene, load_s2_scene, scene_grid
from kz_pipelines.scenes import (
    find_scene_items,
    read_items,
    s1_dataset,
    s1_quicklook,
    s2_dataset,
    s2_quicklook,
    write_item_collection,
    write_zarr,
)
from kz_pipelines.stac import SceneItem, StacSearchError
from kz_pipelines.storage import write_bytes

_S2_LEVELS = {"L2A": "s2_l2a", "L1C": "s2_l1c"}

_ingest_asset = functools.partial(
    dg.asset,
    partitions_def=DAY_TILE,
    group_name="ingest",
    owners=["team:ingest"],
    retry_policy=NETWORK_RETRY,
)
"""The ingest assets: per day x tile partition, in the ingest group; network faults retried with backoff
(`NETWORK_RETRY`)."""


def _partition(context: dg.AssetExecutionContext) -> tuple[date, str]:
    keys = context.partition_key.keys_by_dimension
    return date.fromisoformat(keys["date"]), keys["tile"]


@contextmanager
def _fail_at_once(retryable: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Errors a user must fix (an unusable item, a corrupt file, a missing band, an href outside the
    provider, uncalibrated data) fail the step at once, as no retry mends them; ``retryable`` ones (a
    failed search or fetch) go to the retry policy."""
    try:
        yield
    except UserFacingError as exc:
        if isinstance(exc, retryable):
            raise
        raise permanent(exc) from exc


def _find(stac: StacResource, collection: str, tile: str, day: date) -> tuple[list[Any], list[SceneItem]]:
    with _fail_at_once(retryable=(StacSearchError,)):
        return find_scene_items(stac.searcher(), collection, tile, day, stac.profile().name)


def _check_hrefs(stac: StacResource, items: list[SceneItem]) -> None:
    """Refuse items whose bands point outside the provider's allowed locations."""
    profile = stac.profile()
    with _fail_at_once():
        for item in items:
            for band in item.bands.values():
                profile.check_href(item.id, band.asset, band.href)


def _write_store(storage: StorageResource, parts: tuple[str, ...], ds: xr.Dataset, quicklook: bytes) -> str:
    """A partition's scene store and its quicklook ``<date>.png`` beside it, each written atomically (the
    store published by the contract check); where the store lives."""
    path = storage.path(*parts)
    write_zarr(path, ds)
    write_bytes(path.with_suffix(".png"), quicklook)
    storage.publish_path(path.with_suffix(".png"))
    return storage.url(*parts)


@_ingest_asset(
    check_specs=contract_check("s2_items"),
    kinds={"stac", "json"},
    code_version="2",
    pool="stac",
    description=(
        "Sentinel-2 items (L2A, and L1C where the provider has it) acquired over the tile on the day, "
        "normalized (bands, scale/offset, tile, orbit, baseline) and with reprocessed duplicates dropped. "
        "An empty list is a valid result (no overpass, or nothing published yet)."
    ),
)
@keeps_contract
def s2_items(
    context: dg.AssetExecutionContext, stac: StacResource, storage: StorageResource
) -> dg.MaterializeResult:
    day, tile = _partition(context)
    profile = stac.profile()
    metadata: dict[str, dg.RawMetadataValue] = {}
    for level, role in _S2_LEVELS.items():
        if role not in profile.collections:
            continue
        raw, items = _find(stac, profile.collections[role], tile, day)
        summary = write_item_collection(storage.path("items", role, tile, f"{day}.json"), raw, items)
        context.log.info(f"{len(items)} S2 {level} item(s) for {tile} on {day}")
        metadata[f"{level}_items"] = dg.MetadataValue.int(summary["items"])
        metadata[f"{level}_item_ids"] = dg.MetadataValue.json(summary["ids"])
        if level == "L2A":
            metadata["items"] = dg.MetadataValue.int(summary["items"])
            metadata["eo_cloud_cover"] = dg.MetadataValue.json(summary["cloud_cover"])
            metadata["empty"] = dg.MetadataValue.bool(summary["items"] == 0)
    metadata["provider"] = profile.name
    return dg.MaterializeResult(metadata=metadata)


@_ingest_asset(
    check_specs=contract_check("s1_items"),
    kinds={"stac", "json"},
    code_version="2",
    pool="stac",
    description=(
        "Sentinel-1 items acquired over the tile on the day (the provider profile's S1 collection: "
        "calibrated GRD or RTC), normalized. An empty list is a valid result."
    ),
)
@keeps_contract
def s1_items(
    context: dg.AssetExecutionContext, stac: StacResource, storage: StorageResource
) -> dg.MaterializeResult:
    day, tile = _partition(context)
    profile = stac.profile()
    raw, items = _find(stac, profile.collection("s1"), tile, day)
    summary = write_item_collection(storage.path("items", "s1", tile, f"{day}.json"), raw, items)
    context.log.info(f"{len(items)} S1 item(s) for {tile} on {day}")
    return dg.MaterializeResult(
        metadata={
            "items": summary["items"],
            "item_ids": dg.MetadataValue.json(summary["ids"]),
            "orbits": dg.MetadataValue.json([f"{i.orbit_state} {i.relative_orbit}" for i in items]),
            "empty": summary["items"] == 0,
            "provider": profile.name,
        }
    )


class S2SceneConfig(dg.Config):
    """How Sentinel-2 scenes are loaded."""

    level: Literal["L2A", "L1C"] = "L2A"
    """Processing level: L2A surface reflectance (default) or L1C top-of-atmosphere."""
    window_px: int = 0
    """A centred window of the tile, 10 m pixels; 0: the extent the items cover (the whole tile)."""


class S1SceneConfig(dg.Config):
    """How Sentinel-1 scenes are loaded."""

    speckle_filter: bool = True
    """Apply the refined Lee filter (7 x 7) before converting to dB."""
    keep_unfiltered: bool = False
    """Also store the unfiltered VV and VH dB."""
    window_px: int = 0
    """A centred window of the tile, 10 m pixels; 0: the extent the items cover (the whole tile)."""


def _empty(context: dg.AssetExecutionContext, what: str) -> dg.MaterializeResult:
    context.log.info(f"no {what} for this day and tile: nothing to load")
    return dg.MaterializeResult(metadata={"scenes": 0, "empty": True})


@_ingest_asset(
    check_specs=contract_check("s2_scenes"),
    kinds={"zarr", "sentinel-2"},
    code_version="1",
    deps=[s2_items],
    description=(
        "All Sentinel-2 bands on the tile's 10 m grid as physical reflectance, with the validity mask "
        "(and SCL for L2A); one Zarr store per day and tile, plus a true-colour quicklook."
    ),
)
@keeps_contract
def s2_scenes(
    context: dg.AssetExecutionContext, config: S2SceneConfig, stac: StacResource, storage: StorageResource
) -> dg.MaterializeResult:
    day, tile = _partition(context)
    role = _S2_LEVELS[config.level]
    items = read_items(storage.fetch("items", role, tile, f"{day}.json", missing_ok=True))
    if not items:
        return _empty(context, f"S2 {config.level} item")
    _check_hrefs(stac, items)
    grid = scene_grid(items[0], config.window_px or None, tile_id=tile)
    scenes = []
    with stac.profile().raster_env():
        for item in items:
            context.log.info(f"loading {item.id} onto {grid.height}x{grid.width} px")
            with _fail_at_once(retryable=(SceneReadError,)):
                scenes.append(load_s2_scene(item, grid, encoded=True))
    png = s2_quicklook(scenes[0])
    path = _write_store(storage, ("scenes", role, tile, f"{day}.zarr"), s2_dataset(scenes), png)
    return dg.MaterializeResult(
        metadata={
            "scenes": len(scenes),
            "item_ids": dg.MetadataValue.json([s.item.id for s in scenes]),
            "valid_fraction": dg.MetadataValue.json([round(float(s.valid.mean()), 4) for s in scenes]),
            "cloud_cover": dg.MetadataValue.json([s.item.cloud_cover for s in scenes]),
            "shape": f"{grid.height}x{grid.width} px, EPSG:{grid.epsg}",
            "path": dg.MetadataValue.path(path),
            "quicklook": image_md(png, "quicklook"),
            "empty": False,
        }
    )


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(np.median(finite)), 2) if finite.size else None


def _passes(items: list[SceneItem]) -> list[list[SceneItem]]:
    """Items grouped by pass: consecutive slices of one datatake (same platform and relative orbit,
    within 10 minutes) cover one tile together."""
    groups: list[list[SceneItem]] = []
    for item in sorted(items, key=lambda i: i.datetime):
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and (last.platform, last.relative_orbit) == (item.platform, item.relative_orbit)
            and (item.datetime - last.datetime).total_seconds() < 600
        ):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


@_ingest_asset(
    check_specs=contract_check("s1_scenes"),
    kinds={"zarr", "sentinel-1"},
    code_version="1",
    deps=[s1_items],
    description=(
        "Sentinel-1 VV and VH backscatter in dB, speckle-filtered (refined Lee) and the VH/VV ratio, on the "
        "tile's 10 m grid (radar-geometry GRD warped by its GCPs); per acquisition its orbit direction and "
        "relative orbit; VV coherence where the provider has it. One Zarr store per day and tile."
    ),
)
@keeps_contract
def s1_scenes(
    context: dg.AssetExecutionContext, config: S1SceneConfig, stac: StacResource, storage: StorageResource
) -> dg.MaterializeResult:
    day, tile = _partition(context)
    items = read_items(storage.fetch("items", "s1", tile, f"{day}.json", missing_ok=True))
    if not items:
        return _empty(context, "S1 item")
    _check_hrefs(stac, items)
    grid = scene_grid(items[0], config.window_px or None, tile_id=tile)
    scenes = []
    with stac.profile().raster_env():
        for group in _passes(items):
            with _fail_at_once(retryable=(SceneReadError,)):
                loaded = [
                    load_s1_scene(i, grid, config.speckle_filter, config.keep_unfiltered) for i in group
                ]
            scene = loaded[0]
            for other in loaded[1:]:  # slices of one pass: fill where the first has no data
                for name in ("vv_db", "vh_db", "vh_vv_db"):
                    a = getattr(scene, name)
                    np.copyto(a, getattr(other, name), where=np.isnan(a))
            scenes.append(scene)
    png = s1_quicklook(scenes[0])
    path = _write_store(storage, ("scenes", "s1", tile, f"{day}.zarr"), s1_dataset(scenes), png)
    return dg.MaterializeResult(
        metadata={
            "scenes": len(scenes),
            "item_ids": dg.MetadataValue.json([i.id for i in items]),
            "orbits": dg.MetadataValue.json(
                [f"{s.item.orbit_state} {s.item.relative_orbit}" for s in scenes]
            ),
            "valid_fraction": dg.MetadataValue.json(
                [round(float(np.isfinite(s.vv_db).mean()), 4) for s in scenes]
            ),
            "median_vv_db": dg.MetadataValue.json([_median(s.vv_db) for s in scenes]),
            "coherence": all(s.coherence is not None for s in scenes),
            "path": dg.MetadataValue.path(path),
            "quicklook": image_md(png, "quicklook"),
            "empty": False,
        }
    )
