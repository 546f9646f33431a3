"""Simulating a whole region: tiles, parcels, crop seasons, scenes, STAC catalog and ground truth.

Output layout (all written under a temporary folder, renamed into place when complete)::

    OUT/region.json                  the configuration and what was written
    OUT/parcels.parquet              declared parcels (GeoParquet, EPSG:4326): parcel_id, declared_code
    OUT/stac/catalog.json            a static STAC catalog; collections sentinel-2-l2a, sentinel-2-l1c,
    OUT/stac/<collection>/...        sentinel-1-grd; one folder per item with its JSON and COG assets
    OUT/stac/items.parquet           all items as stac-geoparquet (the embedded search index)
    OUT/truth/parcels.parquet        true crop class, tillage, sowing/emergence/harvest dates, damage
    OUT/truth/events.parquet         dated events: sowing, emergence, mowing, harvest, ploughing
    OUT/truth/damage.parquet         damaged patches (GeoParquet, EPSG:4326), area in ha and % of parcel
    OUT/truth/cloudmask/<id>.tif     the true 5-class cloud mask of each S2 scene (10 m)
    OUT/labels/inspections.parquet   inspector reports (parcel_id, crop_class, source, confidence) for a
                                     random 20% of parcels: the labels an agency trusts for validation
    OUT/labels/field_*.parquet       what the inspectors saw on those parcels: their rows of
                                     truth/events (field_events), truth/parcels (field_parcels) and
                                     truth/damage (field_damage): the labels event models train on
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import stac_geoparquet.arrow

import kz_pipelines
from kz_pipelines.errors import UserFacingError
from kz_pipelines.labels import CropClass, load_taxonomy, simulated_inspections
from kz_pipelines.raster import GridSpec, footprint
from kz_pipelines.sim.acquisitions import S1Acquisition, S2Acquisition, s1_schedule, s2_schedule
from kz_pipelines.sim.clouds import CloudScene, make_clouds, scene_classification
from kz_pipelines.sim.config import SimConfig, SimConfigError
from kz_pipelines.sim.landscape import COVER_WATER, Landscape, make_landscape, with_damage
from kz_pipelines.sim.phenology import (
    CLASS_TRAITS,
    ClassTraits,
    CropCalendar,
    simulate_calendar,
    soil_moisture,
)
from kz_pipelines.sim.render import (
    Covers,
    DayState,
    covers,
    l1c_band,
    l2a_band,
    render_s1,
    s1_coherence,
    shade,
    surface_band,
)
from kz_pipelines.sim.spectra import BANDS, L2A_BANDS, S2Band, band_index, canopy_scale
from kz_pipelines.sim.stac_items import (
    S1_COLLECTION,
    S2_COLLECTIONS,
    collection_dict,
    s1_item,
    s2_item,
)
from kz_pipelines.storage import write_cog, write_json
from kz_pipelines.tiles import S2Tile, s2_tile

__all__ = [
    "S2Scene",
    "SimOutputError",
    "TileWorld",
    "build_tile",
    "day_state",
    "plan_region",
    "render_s2_scene",
    "simulate",
]

Progress = Callable[[int, int, str], None]
"""Callback (done, total, label) called after each scene."""

_EVENT_TYPES = ("mowing", "harvest", "ploughing")


class SimOutputError(UserFacingError, OSError):
    """The output folder cannot be written (exists, not writable, ...)."""


@dataclass
class TileWorld:
    """Everything simulated for one tile, before any scene is rendered.

    Attributes:
        index: position of the tile in the configuration.
        tile: the Sentinel-2 tile.
        grid: the published 10 m window grid (size_px x size_px).
        land: the landscape on the render grid (the window padded to a multiple of 60 m).
        classes: crop class per parcel.
        declared: declared crop code per parcel.
        parcel_ids: parcel id per parcel.
        calendars: crop season per parcel.
        green, dry, rough, damage, moisture: per parcel index (0 = background) and day, (n + 1, days).
        meadow: background grass green cover per day, (days,).
        canopy: scale of the green vegetation spectrum per parcel index and band, (n + 1, bands).
        volume: scale of the radar volume scattering per parcel index, (n + 1,).
    """

    index: int
    tile: S2Tile
    grid: GridSpec
    land: Landscape
    classes: list[CropClass]
    declared: list[str]
    parcel_ids: list[str]
    calendars: list[CropCalendar]
    green: np.ndarray
    dry: np.ndarray
    rough: np.ndarray
    damage: np.ndarray
    moisture: np.ndarray
    meadow: np.ndarray
    canopy: np.ndarray
    volume: np.ndarray


def _render_grid(grid: GridSpec) -> GridSpec:
    size = math.ceil(grid.width / 6) * 6
    return GridSpec(grid.epsg, grid.x0, grid.y0, grid.resolution, size, size)


INSPECTED_FRACTION = 0.2
"""Share of parcels with an inspector report in ``labels/inspections.parquet``."""


def build_tile(cfg: SimConfig, index: int, n_parcels: int, first_id: int) -> TileWorld:
    """Lay out one tile's parcels and simulate their crop seasons (no rendering yet)."""
    tile = s2_tile(cfg.tile_ids[index])
    grid = tile.window(cfg.size_px)
    rng = np.random.default_rng([cfg.seed, index, 0])
    taxonomy = load_taxonomy()
    land = make_landscape(_render_grid(grid), n_parcels, rng)
    n = len(land.fields)
    freq = np.array([c.frequency for c in taxonomy.classes])
    classes = [taxonomy.classes[i] for i in rng.choice(len(freq), size=n, p=freq / freq.sum())]
    codes = [c.codes["sim"][0] for c in taxonomy.classes]
    declared = []
    for c in classes:
        u = rng.random()
        declared.append("9999" if u < 0.005 else str(rng.choice(codes)) if u < 0.03 else c.codes["sim"][0])
    # hail, flood or drought patches hit some arable fields
    damaged = [c.arable and rng.random() < 0.12 for c in classes]
    land = with_damage(land, damaged, rng)
    dates = pd.date_range(cfg.start, cfg.end, freq="D")
    doy = dates.dayofyear.to_numpy()
    calendars = [
        simulate_calendar(rng, c.group, c.name, c.arable, doy, damaged[i]) for i, c in enumerate(classes)
    ]
    mv = soil_moisture(np.random.default_rng([cfg.seed, 99]), doy)
    days = len(doy)
    green = np.zeros((n + 1, days), np.float32)
    dry, rough = np.zeros_like(green), np.zeros_like(green)
    damage = np.ones_like(green)
    for i, cal in enumerate(calendars):
        green[i + 1], dry[i + 1], rough[i + 1] = cal.green, cal.dry, cal.rough
        if cal.damage_day is not None:
            ramp = np.clip((np.arange(days) - cal.damage_day) / 10.0, 0.0, 1.0)
            damage[i + 1] = 1.0 - cal.damage_severity * ramp
    offsets = np.concatenate([[0.0], rng.normal(0.0, 0.02, n)])
    moisture = np.clip(mv[None, :] + offsets[:, None], 0.05, 0.45).astype(np.float32)
    # each parcel's canopy: its class's traits with a few percent of parcel-to-parcel spread
    trait_rng = np.random.default_rng([cfg.seed, index, 2])
    canopy = np.ones((n + 1, len(BANDS)), np.float32)
    volume = np.ones(n + 1, np.float32)
    for i, c in enumerate(classes):
        traits = CLASS_TRAITS.get(c.name, ClassTraits())
        canopy[i + 1] = canopy_scale(np.asarray(traits.canopy) * (1.0 + trait_rng.normal(0.0, 0.03, 4)))
        volume[i + 1] = traits.volume * (1.0 + trait_rng.normal(0.0, 0.05))
    meadow = 0.3 + 0.45 / (1 + np.exp(-(doy - 120) / 8.0)) - 0.2 / (1 + np.exp(-(doy - 260) / 10.0))
    return TileWorld(
        index=index,
        tile=tile,
        grid=grid,
        land=land,
        classes=classes,
        declared=declared,
        parcel_ids=[f"P{first_id + i:06d}" for i in range(n)],
        calendars=calendars,
        green=green,
        dry=dry,
        rough=rough,
        damage=damage,
        moisture=moisture,
        meadow=meadow.astype(np.float32),
        canopy=canopy,
        volume=volume,
    )


def day_state(world: TileWorld, day: int) -> DayState:
    """The crop state of every parcel of a tile on season day ``day`` (0 = config.start)."""
    return DayState(
        green=world.green[:, day],
        dry=world.dry[:, day],
        rough=world.rough[:, day],
        damage=world.damage[:, day],
        moisture=world.moisture[:, day],
        meadow=float(world.meadow[day]),
        canopy=world.canopy,
        volume=world.volume,
    )


def _block(arr: np.ndarray, f: int, how: str) -> np.ndarray:
    if f == 1:
        return arr
    r, c = arr.shape[0] // f, arr.shape[1] // f
    view = arr[: r * f, : c * f].reshape(r, f, c, f)
    return view.mean(axis=(1, 3)) if how == "mean" else view.min(axis=(1, 3))


def _to_dn(refl: np.ndarray, valid: np.ndarray, offset_dn: int) -> np.ndarray:
    dn = np.clip(np.rint(refl * 10000.0) + offset_dn, 1, 65535).astype(np.uint16)
    dn[~valid] = 0
    return dn


def _item_folder(collection: str, tile: str, when: datetime, item_id: str) -> Path:
    """An item's folder relative to the catalog root (Earth Search layout: collection/tile/year/month/id)."""
    return Path(collection) / tile / f"{when:%Y}" / f"{when.month}" / item_id


S2_LEVELS: dict[str, tuple[S2Band, ...]] = {"L2A": L2A_BANDS, "L1C": BANDS}
"""The bands of each Sentinel-2 product level."""


@dataclass
class S2Scene:
    """One rendered Sentinel-2 scene. Bands are rendered one at a time on request, so that a full
    10980 x 10980 px tile never holds more than a few 10 m layers in memory.

    Attributes:
        key: seed sequence of the scene (seed, tile index, scene index).
        grid: the published 10 m grid.
        land: the tile's landscape.
        cover: the landscape's cover on the scene's day.
        clouds: the scene's clouds.
        brightness: cloud brightness factor of the scene.
        levels: product levels rendered (``L2A``, and ``L1C`` if configured).
        valid: per resolution (10, 20, 60 m), True where the scene has data.
        scl: Sen2Cor-like scene classification, 20 m, uint8.
        truth: the true 5-class cloud mask, 10 m, uint8.
    """

    key: tuple[int, int, int]
    grid: GridSpec
    land: Landscape
    cover: Covers
    clouds: CloudScene
    brightness: float
    levels: tuple[str, ...]
    valid: dict[int, np.ndarray]
    scl: np.ndarray
    truth: np.ndarray
    _last_shaded: tuple[int, np.ndarray] | None = None

    def _shaded(self, b: int) -> np.ndarray:
        """Shaded surface reflectance of band ``b``, kept for the next call (shared by the levels)."""
        if self._last_shaded is None or self._last_shaded[0] != b:
            self._last_shaded = (b, shade(surface_band(self.land, self.cover, b), self.clouds))
        return self._last_shaded[1]

    def toa_or_boa(self, level: str, b: int) -> np.ndarray:
        """Reflectance of band ``b`` at 10 m on the render grid, before sensor noise."""
        render = l2a_band if level == "L2A" else l1c_band
        return render(self._shaded(b), self.clouds, self.brightness, b)

    def band(self, level: str, name: str) -> np.ndarray:
        """Reflectance of band ``name`` at its native resolution on the published grid, with sensor
        noise: what the COG stores, up to uint16 rounding."""
        b = band_index(name)
        res = BANDS[b].resolution
        g = self.grid.coarsened(res)
        values = _block(self.toa_or_boa(level, b), res // 10, "mean")[: g.height, : g.width]
        noise = np.random.default_rng([*self.key, 3, self.levels.index(level), b])
        return values + noise.normal(0.0, 0.002 / math.sqrt(res // 10), values.shape)


def render_s2_scene(cfg: SimConfig, world: TileWorld, k: int, acq: S2Acquisition) -> S2Scene:
    """Render scene ``k`` of a tile: its clouds, SCL and truth now, its bands on request
    (deterministic for the config's seed)."""
    day = (acq.time.date() - cfg.start).days
    rng = np.random.default_rng([cfg.seed, world.index, 2, k])
    clouds = make_clouds(rng, world.land.grid.shape, acq.sun_azimuth, acq.sun_elevation)
    brightness = float(rng.uniform(0.85, 1.15))
    n = world.grid.width
    valid: dict[int, np.ndarray] = {}
    for res in (10, 20, 60):
        g = world.grid.coarsened(res)
        valid[res] = _block(clouds.valid.astype(np.uint8), res // 10, "min")[: g.height, : g.width].astype(
            bool
        )
    scene = S2Scene(
        key=(cfg.seed, world.index, k),
        grid=world.grid,
        land=world.land,
        cover=covers(world.land, day_state(world, day)),
        clouds=clouds,
        brightness=brightness,
        levels=("L2A", "L1C") if cfg.l1c else ("L2A",),
        valid=valid,
        scl=np.zeros(0, np.uint8),
        truth=clouds.truth[:n, :n],
    )
    seen = {b: scene.toa_or_boa("L2A", band_index(b)) for b in ("B04", "B08", "B11")}
    g20 = world.grid.coarsened(20)
    scene.scl = scene_classification(rng, clouds, seen, world.land.cover == COVER_WATER)[
        : g20.height, : g20.width
    ]
    return scene


def _s2_scene(
    cfg: SimConfig, world: TileWorld, k: int, acq: S2Acquisition, root: Path
) -> list[tuple[Path, dict[str, Any]]]:
    scene = render_s2_scene(cfg, world, k, acq)
    nodata_pct = float((scene.truth == 0).mean() * 100.0)
    offset_dn = 1000 if acq.baseline >= "04.00" else 0
    scl_counts = np.bincount(scene.scl.ravel(), minlength=12)
    folders: dict[str, Path] = {}
    items = []
    for level in scene.levels:
        item = s2_item(acq, world.tile, world.grid, level, scl_counts, nodata_pct)
        rel = _item_folder(S2_COLLECTIONS[level], world.tile.tile_id, acq.time, item["id"])
        folders[level] = root / "stac" / rel
        items.append((rel, item))
    for band in BANDS:  # band-major: the shaded surface of a band serves both levels
        for level in scene.levels:
            if band in S2_LEVELS[level]:
                dn = _to_dn(scene.band(level, band.name), scene.valid[band.resolution], offset_dn)
                write_cog(
                    folders[level] / f"{band.name}.tif", dn, world.grid.coarsened(band.resolution), nodata=0
                )
    l2a_id = items[0][1]["id"]
    write_cog(folders["L2A"] / "SCL.tif", scene.scl, world.grid.coarsened(20), nodata=0)
    write_cog(root / "truth" / "cloudmask" / f"{l2a_id}.tif", scene.truth, world.grid, nodata=None)
    for (_, item), folder in zip(items, folders.values(), strict=True):
        write_json(folder / f"{item['id']}.json", item)
    return items


def _s1_scene(
    cfg: SimConfig, world: TileWorld, k: int, acq: S1Acquisition, prev: S1Acquisition | None, root: Path
) -> tuple[Path, dict[str, Any]]:
    day = (acq.time.date() - cfg.start).days
    state = day_state(world, day)
    cov = covers(world.land, state)
    rng = np.random.default_rng([cfg.seed, world.index, 1, k])
    n = world.grid.width
    sigma = render_s1(rng, world.land, state, cov, acq.incidence)
    item = s1_item(acq, world.grid, with_coherence=prev is not None)
    rel = _item_folder(S1_COLLECTION, world.tile.tile_id, acq.time, item["id"])
    folder = root / "stac" / rel
    for pol in ("vv", "vh"):
        write_cog(folder / f"{pol}.tif", sigma[pol][:n, :n], world.grid, nodata=0)
    if prev is not None:
        d0 = (prev.time.date() - cfg.start).days
        event = np.zeros(len(world.calendars) + 1, bool)
        for i, cal in enumerate(world.calendars):
            event[i + 1] = any(e in _EVENT_TYPES and d0 < d <= day for e, d in cal.events)
        coh = s1_coherence(rng, world.land, cov, event, acq.repeat_days)
        write_cog(folder / "coh_vv.tif", np.maximum(coh[:n, :n], 1e-4), world.grid, nodata=0)
    write_json(folder / f"{item['id']}.json", item)
    return rel, item


def _truth_tables(cfg: SimConfig, worlds: list[TileWorld], root: Path) -> None:
    parcels, truth, events, damage = [], [], [], []
    start = pd.Timestamp(cfg.start)

    def date_of(day: int | None) -> pd.Timestamp | None:
        return start + pd.Timedelta(days=day) if day is not None else None

    for w in worlds:
        for i, (field, cls, cal) in enumerate(zip(w.land.fields, w.classes, w.calendars, strict=True)):
            pid = w.parcel_ids[i]
            parcels.append(
                {"parcel_id": pid, "declared_code": w.declared[i], "epsg": w.tile.epsg, "geometry": field}
            )
            first = {e: date_of(d) for e, d in reversed(cal.events)}
            truth.append(
                {
                    "parcel_id": pid,
                    "tile": w.tile.tile_id,
                    "crop_class": cls.id,
                    "crop_name": cls.name,
                    "declared_code": w.declared[i],
                    "arable": cls.arable,
                    "tillage": cal.tillage,
                    "sowing_date": first.get("sowing"),
                    "emergence_date": date_of(cal.emergence),
                    "harvest_date": first.get("harvest"),
                    "damaged": i in w.land.damage_patches,
                    "area_ha": field.area / 1e4,
                }
            )
            events += [{"parcel_id": pid, "event": e, "date": date_of(d)} for e, d in cal.events]
            if i in w.land.damage_patches:
                patch = w.land.damage_patches[i]
                damage.append(
                    {
                        "parcel_id": pid,
                        "start_date": date_of(cal.damage_day),
                        "severity": cal.damage_severity,
                        "area_ha": patch.area / 1e4,
                        "percent_of_parcel": patch.area / field.area * 100.0,
                        "epsg": w.tile.epsg,
                        "geometry": patch,
                    }
                )

    def to_wgs84(rows: list[dict[str, Any]]) -> gpd.GeoDataFrame:
        frames = [
            gpd.GeoDataFrame([r for r in rows if r["epsg"] == e], crs=e).to_crs(4326)
            for e in sorted({r["epsg"] for r in rows})
        ]
        cols = [c for c in rows[0] if c != "epsg"] if rows else ["parcel_id", "geometry"]
        gdf = pd.concat(frames, ignore_index=True) if frames else gpd.GeoDataFrame(columns=cols)
        return gpd.GeoDataFrame(gdf[cols], geometry="geometry", crs=4326)

    to_wgs84(parcels).to_parquet(root / "parcels.parquet")
    (root / "truth").mkdir(parents=True, exist_ok=True)
    truth_table = pd.DataFrame(truth)
    truth_table.to_parquet(root / "truth" / "parcels.parquet")
    # the simulated agency's on-the-spot checks: inspector reports (the true class) for 20% of parcels,
    # and what the inspector saw of those parcels' season (events, tillage, emergence, damage)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    inspections = simulated_inspections(truth_table, INSPECTED_FRACTION, seed=cfg.seed)
    inspections.to_parquet(root / "labels" / "inspections.parquet")
    seen = set(inspections["parcel_id"])
    event_table = pd.DataFrame(events, columns=["parcel_id", "event", "date"])
    event_table.to_parquet(root / "truth" / "events.parquet")
    event_table.loc[event_table["parcel_id"].isin(seen)].to_parquet(root / "labels" / "field_events.parquet")
    truth_table.loc[truth_table["parcel_id"].isin(seen)].to_parquet(root / "labels" / "field_parcels.parquet")
    dmg_cols = ["parcel_id", "start_date", "severity", "area_ha", "percent_of_parcel", "epsg", "geometry"]
    damage_table = (
        to_wgs84(damage)
        if damage
        else gpd.GeoDataFrame(columns=dmg_cols[:-2] + ["geometry"], geometry="geometry", crs=4326)
    )
    damage_table.to_parquet(root / "truth" / "damage.parquet")
    damage_table.loc[damage_table["parcel_id"].isin(seen)].to_parquet(
        root / "labels" / "field_damage.parquet"
    )


def _catalog(
    cfg: SimConfig, worlds: list[TileWorld], entries: list[tuple[Path, dict[str, Any]]], root: Path
) -> None:
    """Write collections, the catalog and the stac-geoparquet index; entries are (item folder relative
    to ``root/stac``, item)."""
    stac = root / "stac"
    bounds = [footprint(w.grid)[1] for w in worlds]
    bbox = [
        min(b[0] for b in bounds),
        min(b[1] for b in bounds),
        max(b[2] for b in bounds),
        max(b[3] for b in bounds),
    ]
    start = datetime(cfg.start.year, cfg.start.month, cfg.start.day)
    end = datetime(cfg.end.year, cfg.end.month, cfg.end.day) + timedelta(days=1) - timedelta(seconds=1)
    collections = sorted({it["collection"] for _, it in entries})
    for cid in collections:
        coll = collection_dict(cid, bbox, start, end)
        coll["links"] += [
            {
                "rel": "item",
                "href": f"./{rel.relative_to(cid)}/{it['id']}.json",
                "type": "application/geo+json",
            }
            for rel, it in entries
            if it["collection"] == cid
        ]
        write_json(stac / cid / "collection.json", coll)
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "kz-simulated-region",
        "description": f"kz_pipelines simulated region (seed {cfg.seed}, tiles {', '.join(cfg.tile_ids)})",
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "self", "href": "./catalog.json", "type": "application/json"},
        ]
        + [
            {"rel": "child", "href": f"./{cid}/collection.json", "type": "application/json"}
            for cid in collections
        ],
    }
    write_json(stac / "catalog.json", catalog)
    if not entries:
        raise SimConfigError(
            f"start/end: no Sentinel-1 or Sentinel-2 acquisition over {', '.join(cfg.tiles)} "
            f"from {cfg.start} to {cfg.end}; widen the season"
        )
    index = []
    for rel, it in entries:
        copy = json.loads(json.dumps(it))
        for asset in copy["assets"].values():
            asset["href"] = str(rel / asset["href"].removeprefix("./"))
        copy["links"] = []
        index.append(copy)
    table = stac_geoparquet.arrow.parse_stac_items_to_arrow(index)
    stac_geoparquet.arrow.to_parquet(table, stac / "items.parquet")


def _prepare(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise SimOutputError(f"output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SimOutputError(f"output folder {out} is not empty (use --overwrite to replace it)")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimOutputError(f"cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise SimOutputError(f"output folder {parent} is not writable")
    tmp = parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
    except OSError as exc:
        raise SimOutputError(f"cannot write in {parent}: {exc.strerror}") from None
    return tmp


Plan = tuple[TileWorld, list[S2Acquisition], list[S1Acquisition]]


def plan_region(cfg: SimConfig) -> list[Plan]:
    """Per tile: its world (parcels, crop seasons) and its S2 and S1 acquisition plans."""
    counts = [
        cfg.n_parcels // len(cfg.tile_ids) + (i < cfg.n_parcels % len(cfg.tile_ids))
        for i in range(len(cfg.tile_ids))
    ]
    plans: list[Plan] = []
    first = 1
    for i, n in enumerate(counts):
        w = build_tile(cfg, i, n, first_id=first)
        first += len(w.calendars)
        lon, lat = _centre(w.grid)
        plans.append(
            (
                w,
                s2_schedule(w.tile.tile_id, lat, lon, cfg.start, cfg.end, cfg.seed),
                s1_schedule(w.tile.tile_id, lon, cfg.start, cfg.end, cfg.seed),
            )
        )
    return plans


def simulate(
    cfg: SimConfig, out: Path, overwrite: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Simulate the region ``cfg`` into the folder ``out`` (see the module docstring for the layout).

    Nothing appears at ``out`` until the region is complete; on any error the partial output is removed.

    Args:
        cfg: what to simulate.
        out: output folder (created; must be empty or absent unless ``overwrite``).
        overwrite: replace an existing non-empty ``out``.
        progress: called after each rendered scene with (done, total, label).

    Returns:
        The summary also written to ``out/region.json``.

    Raises:
        SimOutputError: if ``out`` cannot be written.
    """
    tmp = _prepare(out, overwrite)
    try:
        plans = plan_region(cfg)
        worlds = [w for w, _, _ in plans]
        tasks = [(w.index, "S2", k) for w, s2, _ in plans for k in range(len(s2))]
        tasks += [(w.index, "S1", k) for w, _, s1 in plans for k in range(len(s1))]
        global _STATE
        _STATE = (cfg, plans, tmp)
        items: list[tuple[Path, dict[str, Any]]] = []
        workers = _workers(len(tasks), max(w.land.grid.width * w.land.grid.height for w in worlds))
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) if workers > 1 else _Serial() as pool:
            futures = [pool.submit(_render_task, t) for t in tasks]
            for done, fut in enumerate(as_completed(futures), start=1):
                entries, label = fut.result()
                items += entries
                if progress:
                    progress(done, len(tasks), label)
        items.sort(key=lambda e: (e[1]["collection"], str(e[0])))
        _truth_tables(cfg, worlds, tmp)
        _catalog(cfg, worlds, items, tmp)
        config = {
            **asdict(cfg),
            "start": cfg.start.isoformat(),
            "end": cfg.end.isoformat(),
            "tiles": list(cfg.tile_ids),
        }
        config.pop("tile_ids", None)
        summary: dict[str, Any] = {
            "kz_pipelines": kz_pipelines.__version__,
            "config": config,
            "tiles": {
                w.tile.tile_id: {
                    "epsg": w.grid.epsg,
                    "bounds": list(w.grid.bounds),
                    "parcels": len(w.calendars),
                }
                for w in worlds
            },
            "parcels": sum(len(w.calendars) for w in worlds),
            "items": {
                c: sum(it["collection"] == c for _, it in items)
                for c in sorted({it["collection"] for _, it in items})
            },
        }
        write_json(tmp / "region.json", summary)
        if out.exists():
            trash = out.resolve().parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, trash)
            shutil.rmtree(trash)
        os.replace(tmp, out)
        return summary
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_STATE: tuple[SimConfig, list[Plan], Path] | None = None
"""What forked render workers inherit (the worlds are large; they are not pickled per task)."""


def _render_task(task: tuple[int, str, int]) -> tuple[list[tuple[Path, dict[str, Any]]], str]:
    assert _STATE is not None
    cfg, plans, root = _STATE
    index, kind, k = task
    world, s2, s1 = plans[index]
    if kind == "S2":
        return _s2_scene(cfg, world, k, s2[k], root), f"S2 {world.tile.tile_id} {s2[k].time:%Y-%m-%d}"
    acq = s1[k]
    prev = next((a for a in reversed(s1[:k]) if a.relative_orbit == acq.relative_orbit), None)
    return [_s1_scene(cfg, world, k, acq, prev, root)], f"S1 {world.tile.tile_id} {acq.time:%Y-%m-%d}"


BYTES_PER_PIXEL = 110
"""Memory to budget per render process, per 10 m pixel of the window (measured peaks, landscape and one
scene render together: 0.9 GB for 3000 x 3000 px, 9.1 GB for a full 10980 x 10980 px tile)."""


def _available_memory() -> int:
    """Bytes of memory available to new work (MemAvailable on Linux, free pages elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _workers(n_tasks: int, render_px: int) -> int:
    """Render processes: one per core (at most 4), fewer when scenes are too large for memory."""
    by_memory = _available_memory() // (BYTES_PER_PIXEL * render_px)
    return max(1, min(os.cpu_count() or 1, 4, n_tasks, by_memory))


class _Serial:
    """A stand-in executor that runs tasks in this process (one CPU)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn(*args))
        return fut


def _centre(grid: GridSpec) -> tuple[float, float]:
    _, bbox = footprint(grid)
    return (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
