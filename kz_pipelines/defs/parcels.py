"""Parcel assets: declared parcels per season, per-date parcel observations, the season tensor per tile."""

import functools
from datetime import date
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import xarray as xr
from shapely.geometry import shape

from kz_pipelines.day_statistics import observe_days, parcels_path
from kz_pipelines.defs.assets import s1_scenes, s2_scenes
from kz_pipelines.defs.checks import contract_check, keeps_contract
from kz_pipelines.defs.cloudmask import s2_cloud_mask
from kz_pipelines.defs.conditions import season_daily
from kz_pipelines.defs.metadata import image_md
from kz_pipelines.defs.partitions import (
    DAY_TILE,
    DAY_TO_SEASON,
    SEASON_OF_ALL_TILES,
    SEASON_PARTITIONS,
    SEASON_TILE,
    TILE_PARTITIONS,
)
from kz_pipelines.defs.resources import DaskResource, ParcelSourceResource, StorageResource
from kz_pipelines.parcels import clean_parcels, home_tiles, read_parcels
from kz_pipelines.raster import footprint
from kz_pipelines.storage import atomic_path, write_json
from kz_pipelines.tiles import s2_tile
from kz_pipelines.timeseries import (
    manifest_scenes,
    season_days,
    series_png,
    update_tensor,
    write_observations,
)

_parcel_asset = functools.partial(dg.asset, group_name="parcels", owners=["team:parcels"])
"""The parcel assets: in the parcels group."""


def declared_parcels(storage: StorageResource, season: int) -> Path:
    """The season's declared parcels (the ``parcels`` asset's table), fetched.

    Raises:
        FileNotFoundError: the ``parcels`` asset has not been materialized for the season.
    """
    try:
        return storage.fetch(parcels_path(Path(), season).as_posix())
    except FileNotFoundError as exc:
        message = f"no parcels for season {season}: materialize `parcels` {season} first"
        raise FileNotFoundError(message) from exc


def staged_scenes(storage: StorageResource, season: int, tile: str, day: date | None = None) -> Path:
    """The local root, holding the season's parcels and the tile's scene stores and cloud masks fetched
    from an object store: what the readers of a storage root need. One day: its S2 and S1 stores and masks
    (`kz_pipelines.day_statistics`); every day (``day`` None): the S2 stores and masks only (the damage
    pixels, `kz_pipelines.models.damage`)."""
    declared_parcels(storage, season)
    if day is None:
        storage.fetch("scenes", "s2_l2a", tile, missing_ok=True)
        storage.fetch("cloud_mask", tile, missing_ok=True)
    else:
        for sensor in ("s2_l2a", "s1"):
            storage.fetch("scenes", sensor, tile, f"{day}.zarr", missing_ok=True)
        storage.fetch("cloud_mask", tile, str(day), missing_ok=True)
    return storage.path()


def season_tensor(storage: StorageResource, season: int, tiles: list[str]) -> xr.Dataset:
    """The season tensors of the tiles that have one, parcels of all tiles together (each parcel is in its
    home tile's tensor only).

    Raises:
        FileNotFoundError: no tile has a tensor for the season.
    """
    found = [t for t in sorted(tiles) if storage.exists("timeseries", str(season), f"{t}.zarr")]
    paths = [storage.fetch("timeseries", str(season), f"{t}.zarr") for t in found]
    if not paths:
        raise FileNotFoundError(f"no parcel_timeseries for season {season}: materialize it first")
    return xr.concat([xr.open_zarr(p) for p in paths], dim="parcel", coords="minimal", compat="override")


@_parcel_asset(
    check_specs=contract_check("parcels"),
    partitions_def=SEASON_PARTITIONS,
    kinds={"geoparquet", "geopandas"},
    code_version="1",
    description=(
        "Declared parcels of the season (GeoParquet, GeoPackage, Shapefile or PostGIS; `parcel_source`): "
        "invalid geometry repaired or rejected, empty and sliver geometries dropped, duplicate ids rejected, "
        "crop codes mapped to the 28-class taxonomy (unknown kept as `unknown`), area in ha, and each "
        "parcel's home tile (the registered tile holding most of it)."
    ),
)
@keeps_contract
def parcels(
    context: dg.AssetExecutionContext, parcel_source: ParcelSourceResource, storage: StorageResource
) -> dg.MaterializeResult:
    season = int(context.partition_key)
    raw = read_parcels(parcel_source.url)
    clean, report = clean_parcels(
        raw,
        id_column=parcel_source.id_column,
        code_column=parcel_source.code_column,
        scheme=parcel_source.code_scheme(),
    )
    tiles = context.instance.get_dynamic_partitions(TILE_PARTITIONS.name or "tile")
    clean["home_tile"] = home_tiles(clean, {t: s2_tile(t).grid() for t in tiles})
    path = parcels_path(storage.path(), season)
    with atomic_path(path) as tmp:
        clean.to_parquet(tmp)
    write_json(path.with_name("hygiene.json"), report.__dict__)
    storage.publish_path(path.with_name("hygiene.json"))
    for rule, ids in (
        ("rejected_duplicate", report.rejected_duplicate),
        ("rejected_invalid", report.rejected_invalid),
        ("dropped_sliver", report.dropped_sliver),
        ("dropped_empty", report.dropped_empty),
    ):
        if ids:
            context.log.warning(f"{len(ids)} parcel(s) {rule}: {ids[:20]}{' ...' if len(ids) > 20 else ''}")
    per_tile = clean["home_tile"].fillna("none").value_counts().sort_index()
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in report.counts().items()},
            "unknown_codes": dg.MetadataValue.json(report.unknown_codes),
            "parcels_per_home_tile": dg.MetadataValue.json({str(k): int(v) for k, v in per_tile.items()}),
            "classes": dg.MetadataValue.json(clean["crop_name"].value_counts().head(28).to_dict()),
            "area_ha": round(float(clean["area_ha"].sum()), 1),
            "source": parcel_source.url,
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )


@_parcel_asset(
    check_specs=contract_check("parcel_observations"),
    partitions_def=DAY_TILE,
    kinds={"parquet", "numba"},
    code_version="1",
    deps=[
        dg.AssetDep(parcels, partition_mapping=DAY_TO_SEASON),
        s2_scenes,
        s2_cloud_mask,
        s1_scenes,
    ],
    description=(
        "Per parcel, scene, feature and statistic of the day on the tile: S2 bands and indices over the "
        "pixels the cloud mask calls clear, S1 VV/VH/ratio averaged in linear power (dB); mean, median, "
        "min, max, std and the valid-pixel count, 1-pixel inward buffer. A long Parquet table."
    ),
)
@keeps_contract
def parcel_observations(
    context: dg.AssetExecutionContext, storage: StorageResource, dask: DaskResource
) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    day, tile = date.fromisoformat(keys["date"]), keys["tile"]
    with dask.client() as client:
        root = staged_scenes(storage, day.year, tile, day)
        observed = observe_days(root, [(tile, day)], client)[(tile, day)]
    table, scenes = observed.table, observed.scenes
    path = storage.path("observations", tile, f"{day}.parquet")
    write_observations(path, table, scenes)
    s2 = [s for s in scenes if s["sensor"] == "S2"]
    return dg.MaterializeResult(
        metadata={
            "scenes": len(scenes),
            "rows": len(table),
            "parcels_observed": int(table["parcel_id"].nunique()),
            "s2_scenes": len(s2),
            "s1_scenes": len(scenes) - len(s2),
            "s2_clear_parcel_fraction": dg.MetadataValue.json(
                [round(s["clear_parcels"] / max(1, s["parcels"]), 3) for s in s2]
            ),
            "scene_summary": dg.MetadataValue.json(scenes),
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )


def overlapping_tiles(tile: str, tiles: list[str]) -> list[str]:
    """The registered tiles whose full extent overlaps ``tile``'s (itself included), sorted."""
    own = shape(footprint(s2_tile(tile).grid())[0])
    return sorted(t for t in tiles if shape(footprint(s2_tile(t).grid())[0]).intersects(own))


@_parcel_asset(
    check_specs=contract_check("parcel_timeseries"),
    partitions_def=SEASON_TILE,
    kinds={"zarr", "xarray"},
    code_version="1",
    deps=[
        dg.AssetDep(parcel_observations, partition_mapping=SEASON_OF_ALL_TILES),
    ],
    automation_condition=season_daily(),
    description=(
        "The season tensor of the parcels whose home tile this is: dims (parcel, time, feature, stat) in "
        "Zarr, every day of the season on the time axis, observations of overlapping tiles merged (most "
        "valid pixels wins). Updated incrementally: only days whose observations are new or changed are "
        "written."
    ),
)
@keeps_contract
def parcel_timeseries(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    season, tile = int(keys["season"]), keys["tile"]
    declared = gpd.read_parquet(declared_parcels(storage, season))
    home = pd.DataFrame(declared.loc[declared["home_tile"] == tile].drop(columns="geometry"))
    if home.empty:
        raise ValueError(f"no parcel has {tile} as its home tile in season {season}")
    registered = context.instance.get_dynamic_partitions(TILE_PARTITIONS.name or "tile")
    neighbours = overlapping_tiles(tile, registered)
    sources: dict[date, dict[str, Path]] = {}
    for day in season_days(season):
        files = {
            t: storage.fetch("observations", t, f"{day.date()}.parquet", missing_ok=True) for t in neighbours
        }
        present = {t: p for t, p in files.items() if p.is_file()}
        if present:
            sources[day.date()] = present
    path = storage.fetch("timeseries", str(season), f"{tile}.zarr", missing_ok=True)  # updated in place
    update = update_tensor(path, home, season, sources, log=context.log.info)
    ds = xr.open_zarr(path)
    # which (parcel, day) pairs hold an observation, read once for the features the metadata shows
    seen = (ds["obs"].sel(stat="count", feature=["NDVI", "VH_asc", "VH_desc"]) > 0).compute()
    s2_days = seen.sel(feature="NDVI").any("parcel")
    s1_feature = max(("VH_asc", "VH_desc"), key=lambda f: int(seen.sel(feature=f).sum()))
    s1_days = seen.sel(feature=s1_feature).any("parcel")
    s2 = [s for scenes in manifest_scenes(path).values() for s in scenes if s["sensor"] == "S2"]
    cloud_free = sum(s["clear_parcels"] for s in s2) / max(1, sum(s["parcels"] for s in s2))
    observed = seen.sel(feature="NDVI").sum("time").to_series().sort_values(ascending=False)
    shown = observed.index[:: max(1, len(observed) // 4)][:4].tolist()
    return dg.MaterializeResult(
        metadata={
            "parcels": len(home),
            "days_written": len(update.days_written),
            "days_unchanged": update.days_unchanged,
            "rebuilt": update.rebuilt,
            "s2_dates": int(s2_days.sum()),
            "s1_dates": int(s1_days.sum()),
            # (parcel, S2 scene) pairs with at least half of the parcel's pixels clear
            "cloud_free_fraction": round(cloud_free, 3),
            "tiles_merged": dg.MetadataValue.json(neighbours),
            "series": image_md(series_png(ds, shown, ("NDVI", s1_feature)), "NDVI and VH of a few parcels"),
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )
