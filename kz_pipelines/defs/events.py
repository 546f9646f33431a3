"""Event assets: the season's event models (from the inspectors' field labels) and, per season x tile,
mowing, ploughing/harvest, emergence, damage and tillage (`kz_pipelines.models.event_models`).

The event models (LightGBM, scikit-learn, SciPy) are imported by the steps that use them, not by the code
location, which every run and every Kubernetes step pod loads."""

import functools
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from kz_pipelines.defs.assets import s2_scenes
from kz_pipelines.defs.checks import contract_check, keeps_contract
from kz_pipelines.defs.cloudmask import s2_cloud_mask
from kz_pipelines.defs.conditions import season_daily
from kz_pipelines.defs.metadata import image_md, md_table
from kz_pipelines.defs.parcels import declared_parcels, parcel_timeseries, season_tensor, staged_scenes
from kz_pipelines.defs.partitions import (
    SEASON_DIMENSION,
    SEASON_OF_TILE,
    SEASON_PARTITIONS,
    SEASON_TILE,
    TILE_PARTITIONS,
)
from kz_pipelines.defs.resources import ParcelSourceResource, StorageResource
from kz_pipelines.models.events import SeasonSeries, season_series
from kz_pipelines.plots import map_png, series_png
from kz_pipelines.storage import atomic_path

if TYPE_CHECKING:
    from kz_pipelines.models.event_models import EventModels

_events_asset = functools.partial(dg.asset, group_name="events", owners=["team:models"])
"""The event assets: in the events group."""

_KEY_FIGURE = {
    "mowing": "f1",
    "ploughing_harvest": "f1",
    "emergence": "mae_days",
    "tillage": "f1",
    "damage": "iou",
}
"""The validation figure each product's choice is shown by in the model table."""

_SHOWN = 3
"""Parcels drawn with their events in an asset's metadata."""


def _series(ds: xr.Dataset) -> SeasonSeries:
    """Every feature of a tensor as season series."""
    return season_series(ds, [str(f) for f in ds["feature"].to_numpy()])


class EventModelsConfig(dg.Config):
    """How the event models are trained."""

    seed: int = 0
    """Validation splits and model seeds."""


@_events_asset(
    check_specs=contract_check("event_models"),
    partitions_def=SEASON_PARTITIONS,
    kinds={"lightgbm"},
    code_version="1",
    deps=[dg.AssetDep(parcel_timeseries, partition_mapping=SEASON_DIMENSION)],
    description=(
        "The season's event models, one per product (mowing, ploughing/harvest, emergence, tillage, damage): "
        "each product's learned (LightGBM; damage: tuned thresholds) variant trained on the parcels the "
        "inspectors visited (field labels), compared with its rule-based baseline on held-out inspected "
        "parcels; the better one is used, both are reported. Without labels, or with too few, the baseline."
    ),
)
@keeps_contract
def event_models(
    context: dg.AssetExecutionContext,
    config: EventModelsConfig,
    parcel_source: ParcelSourceResource,
    storage: StorageResource,
) -> dg.MaterializeResult:
    from kz_pipelines.models.damage import NoScenesError, load_stack
    from kz_pipelines.models.event_models import PRODUCTS, FieldLabels, train_event_models

    season = int(context.partition_key)
    tiles = sorted(context.instance.get_dynamic_partitions(TILE_PARTITIONS.name or "tile"))
    series = _series(season_tensor(storage, season, tiles).load())
    label_dir = parcel_source.field_label_folder()
    labels = FieldLabels.read(Path(label_dir)) if label_dir else None
    stacks = []
    if labels is not None:
        for tile in tiles:
            try:
                stacks.append(
                    load_stack(staged_scenes(storage, season, tile), season, tile, labels.parcel_ids)
                )
            except NoScenesError as exc:  # a tile with no S2 scene this season: nothing to learn from
                context.log.warning(str(exc))
    t0 = time.perf_counter()
    models = train_event_models(series, labels, stacks, config.seed, log=context.log.info)
    folder = ("models", "events", str(season), time.strftime("%Y%m%dT%H%M%S"))
    models.save(storage.path(*folder))
    model_url = storage.save_pointer(("models", "events", str(season), "current.json"), folder)
    rows = []
    for name in PRODUCTS:
        choice = models.choices[name]
        key, learned = _KEY_FIGURE[name], "tuned" if name == "damage" else "learned"
        rows.append(
            {
                "product": name,
                "method": choice.method,
                "validation figure": key,
                "baseline": choice.validation.get(f"baseline_{key}", float("nan")),
                "learned (damage: tuned)": choice.validation.get(f"{learned}_{key}", float("nan")),
                "note": choice.note,
            }
        )
    table = pd.DataFrame(rows)
    return dg.MaterializeResult(
        metadata={
            "methods": dg.MetadataValue.md(md_table(table)),
            "labelled_parcels": len(labels.parcel_ids) if labels else 0,
            "parcels": len(series),
            "card": dg.MetadataValue.json(models.card()),
            "training_seconds": round(time.perf_counter() - t0, 1),
            "model": dg.MetadataValue.path(model_url),
        }
    )


def _models(storage: StorageResource, season: int) -> "EventModels":
    from kz_pipelines.models.event_models import EventModels

    return EventModels.load(
        storage.pointed_folder(
            "models",
            "events",
            str(season),
            "current.json",
            missing=f"no event models for season {season}: materialize event_models first",
        )
    )


def _inputs(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> tuple[int, str, SeasonSeries, "EventModels"]:
    """The partition's season and tile, the tile's season series and the season's event models."""
    keys = context.partition_key.keys_by_dimension
    season, tile = int(keys["season"]), keys["tile"]
    ds = xr.open_zarr(storage.fetch("timeseries", str(season), f"{tile}.zarr")).load()
    return season, tile, _series(ds), _models(storage, season)


def _write(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_parquet(tmp)


def _tile_parcels(storage: StorageResource, season: int, tile: str) -> gpd.GeoDataFrame:
    """The parcels whose home tile is ``tile``."""
    declared = gpd.read_parquet(declared_parcels(storage, season))
    return declared.loc[declared["home_tile"] == tile, ["parcel_id", "geometry"]]


def _events_plot(series: SeasonSeries, events: pd.DataFrame, title: str) -> dg.MetadataValue:
    """The NDVI and VH series of the parcels with the most confident events, their events marked."""
    best = events.groupby("parcel_id")["confidence"].max().sort_values(ascending=False)
    rows = {str(p): i for i, p in enumerate(series.parcel_ids)}
    panels: list[dict[str, np.ndarray]] = []
    marks: list[list[tuple[pd.Timestamp, str]]] = []
    for pid in [p for p in best.index if p in rows][:_SHOWN]:
        i = rows[pid]
        own = events.loc[events["parcel_id"] == pid]
        panels.append({f"{pid} NDVI": series.data["NDVI"][i]})
        panels.append({f"{pid} {f} (dB)": series.data[f][i] for f in ("VH_asc", "VH_desc")})
        marks += [list(zip(own["date"], own["event"], strict=True))] * 2
    if not panels:
        return dg.MetadataValue.md("no events detected")
    return image_md(series_png(series.days, panels, marks, title), title)


def _series_product(name: str, description: str) -> Callable[..., dg.AssetsDefinition]:
    """The decorator of an event product read from the tile's season series: a season x tile Parquet
    asset after the tensor and the season's models, daily for the current season, with its contract."""
    return _events_asset(
        check_specs=contract_check(name),
        partitions_def=SEASON_TILE,
        kinds={"parquet"},
        code_version="1",
        deps=[parcel_timeseries, dg.AssetDep(event_models, partition_mapping=SEASON_DIMENSION)],
        automation_condition=season_daily("event_models"),
        description=description,
    )


class MowingConfig(dg.Config):
    """The mowing check of the region."""

    deadline: str = "06-20"
    """Last day of the first cut: month-day in the season (``06-20``) or a full ISO date."""


def _deadline(text: str, season: int) -> date:
    try:
        return date.fromisoformat(text if len(text) > 5 else f"{season}-{text}")
    except ValueError:
        raise ValueError(f"mowing deadline {text!r}: give MM-DD or YYYY-MM-DD") from None


def _status_counts(status: pd.Series) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(k): int(v) for k, v in status.value_counts().items()})


@_series_product(
    "mowing_events",
    "Per grassland parcel of the tile: every mowing event (date, confidence; `<tile>_events.parquet`) "
    "from S2 NDVI drops fused with S1 VH/VV drops (cuts under cloud are still found), and the compliance "
    "flag `mowed_by_deadline` (None, not False, where the data are insufficient to judge).",
)
@keeps_contract
def mowing_events(
    context: dg.AssetExecutionContext, config: MowingConfig, storage: StorageResource
) -> dg.MaterializeResult:
    from kz_pipelines.models.mowing import compliance

    season, tile, series, models = _inputs(context, storage)
    deadline = _deadline(config.deadline, season)
    events, status = models.mowing_events(series)
    grass = status.loc[status["status"] != "not_grassland"]
    flags = compliance(
        events,
        grass["parcel_id"].tolist(),
        deadline,
        dict(zip(grass["parcel_id"], grass["status"], strict=True)),
    )
    folder = storage.path("events", "mowing", str(season))
    _write(flags, folder / f"{tile}.parquet")
    _write(events, folder / f"{tile}_events.parquet")
    shown = _tile_parcels(storage, season, tile).merge(flags, on="parcel_id", how="left")
    shown["check"] = shown["mowed_by_deadline"].map({True: "mowed", False: "not mowed"})
    shown.loc[shown["status"].isna(), "check"] = "not grassland"
    colours = {"mowed": "#228833", "not mowed": "#ee6677", "not grassland": "#f4f4f4"}
    return dg.MaterializeResult(
        metadata={
            "method": models.choices["mowing"].method,
            "grassland_parcels": len(grass),
            "events": len(events),
            "mowed_by_deadline": int((flags["mowed_by_deadline"] == True).sum()),  # noqa: E712 (None too)
            "not_mowed_by_deadline": int((flags["mowed_by_deadline"] == False).sum()),  # noqa: E712
            "unknown_insufficient_data": int(flags["mowed_by_deadline"].isna().sum()),
            "deadline": deadline.isoformat(),
            "map": image_md(
                map_png(shown, "check", colours, f"mowed by {deadline} ({tile})"), "compliance map"
            ),
            "series": _events_plot(series, events, f"mowing events ({models.choices['mowing'].method})"),
            "path": dg.MetadataValue.path(storage.url_of(folder / f"{tile}.parquet")),
        }
    )


def _per_parcel(
    events: pd.DataFrame, ids: np.ndarray, status: np.ndarray, kinds: tuple[str, ...]
) -> pd.DataFrame:
    """One row per parcel: status, and the first date and its confidence of each event kind."""
    table = pd.DataFrame({"parcel_id": ids, "status": status})
    for kind in kinds:
        first = events.loc[events["event"] == kind].groupby("parcel_id").first()
        table[f"{kind}_date"] = table["parcel_id"].map(first["date"]).astype("datetime64[ns]")
        table[f"{kind}_confidence"] = table["parcel_id"].map(first["confidence"]).astype(float)
    return table


@_series_product(
    "ploughing_harvest_events",
    "Per arable parcel of the tile: the harvest and the ploughing, dated with a confidence "
    "(`<tile>_events.parquet` has every event), from S2 residue and brightness steps and the S1 "
    "roughness rise; status `insufficient_data` with no date where too few observations.",
)
@keeps_contract
def ploughing_harvest_events(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    from kz_pipelines.models import ploughing_harvest

    season, tile, series, models = _inputs(context, storage)
    events = models.harvest_plough_events(series)
    table = _per_parcel(
        events, series.parcel_ids, ploughing_harvest.parcel_status(series), ploughing_harvest.KINDS
    )
    table = table.loc[table["status"] != "out_of_scope"].reset_index(drop=True)
    folder = storage.path("events", "ploughing_harvest", str(season))
    _write(table, folder / f"{tile}.parquet")
    _write(events, folder / f"{tile}_events.parquet")
    method = models.choices["ploughing_harvest"].method
    return dg.MaterializeResult(
        metadata={
            "method": method,
            "arable_parcels": len(table),
            "status": _status_counts(table["status"]),
            "harvests": int((events["event"] == "harvest").sum()),
            "ploughings": int((events["event"] == "ploughing").sum()),
            "series": _events_plot(series, events, f"harvest and ploughing ({method})"),
            "path": dg.MetadataValue.path(storage.url_of(folder / f"{tile}.parquet")),
        }
    )


@_series_product(
    "emergence_dates",
    "Per arable parcel of the tile: the seedling emergence date (green-up onset of the main crop) with a "
    "confidence, or an explicit status and no date (`not_sown_in_season` for overwintered crops, "
    "`insufficient_data`, `no_green_up`).",
)
@keeps_contract
def emergence_dates(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    season, tile, series, models = _inputs(context, storage)
    table = models.emergence_dates(series)
    path = storage.path("events", "emergence", str(season), f"{tile}.parquet")
    _write(table, path)
    dated = table.dropna(subset=["emergence_date"])
    events = pd.DataFrame(
        {
            "parcel_id": dated["parcel_id"],
            "event": "emergence",
            "date": dated["emergence_date"],
            "confidence": dated["confidence"],
        }
    )
    method = models.choices["emergence"].method
    return dg.MaterializeResult(
        metadata={
            "method": method,
            "parcels": len(table),
            "status": _status_counts(table["status"]),
            "median_emergence": str(pd.Timestamp(dated["emergence_date"].median()).date())
            if len(dated)
            else "none",
            "series": _events_plot(series, events, f"emergence ({method})"),
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )


@_series_product(
    "tillage_practice",
    "Per arable parcel of the tile and season: conventional or conservation tillage with the probability "
    "of conventional, from the residue indices (NDTI, CRC, NDI5, NDI7, NDRI, BI1, BI2) between harvest "
    "and the next sowing and S1 roughness; `insufficient_data` where no window was observed.",
)
@keeps_contract
def tillage_practice(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    season, tile, series, models = _inputs(context, storage)
    table = models.tillage_practice(series)
    path = storage.path("events", "tillage", str(season), f"{tile}.parquet")
    _write(table, path)
    shown = _tile_parcels(storage, season, tile).merge(table, on="parcel_id", how="left")
    shown["shown"] = shown["practice"].where(shown["status"] != "not_arable", "not arable")
    colours = {"conventional": "#aa3377", "conservation": "#228833", "not arable": "#f4f4f4"}
    method = models.choices["tillage"].method
    return dg.MaterializeResult(
        metadata={
            "method": method,
            "status": _status_counts(table["status"]),
            "practice": _status_counts(table["practice"].dropna()),
            "map": image_md(
                map_png(shown, "shown", colours, f"tillage practice ({tile}, {method})"), "tillage map"
            ),
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )


@_events_asset(
    check_specs=contract_check("damage_areas"),
    partitions_def=SEASON_TILE,
    kinds={"geoparquet"},
    code_version="1",
    deps=[
        dg.AssetDep(s2_scenes, partition_mapping=SEASON_OF_TILE),
        dg.AssetDep(s2_cloud_mask, partition_mapping=SEASON_OF_TILE),
        dg.AssetDep(event_models, partition_mapping=SEASON_DIMENSION),
    ],
    automation_condition=season_daily("event_models"),
    description=(
        "Per arable parcel of the tile: the damaged area as a polygon (GeoParquet, EPSG:4326, viewable in "
        "QGIS) with its area in ha and % of the parcel, where clear S2 pixels stay below the parcel's own "
        "development, and `class_ratio` against its crop class's; `insufficient_data` where too few clear "
        "green dates."
    ),
)
@keeps_contract
def damage_areas(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    from kz_pipelines.models.damage import damage_areas as damage_areas_of
    from kz_pipelines.models.damage import write_damage

    keys = context.partition_key.keys_by_dimension
    season, tile = int(keys["season"]), keys["tile"]
    models = _models(storage, season)
    table = damage_areas_of(staged_scenes(storage, season, tile), season, tile, models.damage_rules)
    path = storage.path("events", "damage", str(season), f"{tile}.parquet")
    write_damage(path, table)
    damaged = table.loc[table["status"] == "damaged"]
    parcels = _tile_parcels(storage, season, tile).merge(
        table[["parcel_id", "status"]], on="parcel_id", how="left"
    )
    parcels["status"] = parcels["status"].fillna("not arable")
    colours = {
        "damaged": "#ee6677",
        "undamaged": "#99ddaa",
        "insufficient_data": "#bbbbbb",
        "not arable": "#f4f4f4",
    }
    shown = damaged.sort_values("damaged_ha", ascending=False).head(10)
    method = models.choices["damage"].method
    return dg.MaterializeResult(
        metadata={
            "method": method,
            "status": _status_counts(table["status"]),
            "damaged_ha": round(float(damaged["damaged_ha"].sum()), 2),
            "largest": dg.MetadataValue.md(
                md_table(
                    shown[["parcel_id", "crop_class", "parcel_area_ha", "damaged_ha", "damaged_percent"]]
                )
                if len(shown)
                else "none"
            ),
            "map": image_md(
                map_png(parcels, "status", colours, f"damaged areas ({tile}, {method})", overlay=damaged),
                "damage map",
            ),
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )


EVENT_PRODUCTS = [mowing_events, ploughing_harvest_events, emergence_dates, tillage_practice, damage_areas]
"""The per season x tile event assets."""
