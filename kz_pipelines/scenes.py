"""The scenes of one tile and day: finding their items, and storing loaded scenes as Zarr.

Layout under the storage root (one file or store per day x tile partition):

- ``items/<kind>/<tile>/<date>.json``: a GeoJSON FeatureCollection of the provider's items with their
  normalized form (``kz:items``, `SceneItem.to_dict`).
- ``scenes/s2_<level>/<tile>/<date>.zarr``: reflectance (time, band, y, x) as physical reflectance
  (stored as int16 with CF ``scale_factor`` 1e-4, so xarray decodes floats), ``valid`` and, for L2A,
  ``scl``, with per-time item id, platform, relative orbit and baseline; ``<date>.png`` a quicklook.
- ``scenes/s1/<tile>/<date>.zarr``: ``vv_db``, ``vh_db``, ``vh_vv_db`` (time, y, x), optionally the
  unfiltered values and ``coh_vv``, with per-time orbit state and relative orbit.

Each store carries its grid as CF ``spatial_ref`` (CRS WKT and GeoTransform), which GDAL and QGIS read.
Stores are written to a temporary folder beside their target and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import xarray as xr
from PIL import Image
from pyproj import CRS

from kz_pipelines.ingest import ENCODED_NODATA, ENCODED_SCALE, S1Scene, S2Scene
from kz_pipelines.raster import GridSpec, footprint
from kz_pipelines.stac import SceneItem, StacSearch, deduplicate, normalize_item
from kz_pipelines.storage import atomic_dir, write_json
from kz_pipelines.tiles import s2_tile

__all__ = [
    "find_scene_items",
    "open_scenes",
    "store_grid",
    "read_items",
    "s1_dataset",
    "s1_quicklook",
    "s2_dataset",
    "s2_quicklook",
    "write_item_collection",
    "write_zarr",
]


@lru_cache(maxsize=256)
def _tile_bbox(tile_id: str) -> list[float]:
    """WGS84 bbox of the whole tile."""
    return footprint(s2_tile(tile_id).grid(60.0))[1]


def find_scene_items(
    search: StacSearch, collection: str, tile_id: str, day: date, provider: str | None = None
) -> tuple[list[pystac.Item], list[SceneItem]]:
    """Items of ``collection`` acquired on ``day`` (UTC) over the Sentinel-2 tile ``tile_id``, raw and
    normalized, reprocessed duplicates dropped (newest baseline kept).

    Sentinel-2 items are kept when their MGRS tile is ``tile_id`` (items of neighbouring tiles overlap the
    bbox); Sentinel-1 items when they intersect the tile.

    Raises:
        ItemNormalizationError: naming the item, for an item that cannot be used.
    """
    return find_items_between(search, collection, tile_id, day, day, provider).get(day, ([], []))


def find_items_between(
    search: StacSearch, collection: str, tile_id: str, start: date, end: date, provider: str | None = None
) -> dict[date, tuple[list[pystac.Item], list[SceneItem]]]:
    """:func:`find_scene_items` for every day from ``start`` to ``end`` (inclusive) in one search: day ->
    (raw, normalized), days without items absent."""
    tile = s2_tile(tile_id).tile_id
    found = search.search(
        [collection], bbox=_tile_bbox(tile), datetime=f"{start.isoformat()}/{end.isoformat()}"
    )
    normalized = {i.id: normalize_item(i, provider) for i in found}
    out: dict[date, tuple[list[pystac.Item], list[SceneItem]]] = {}
    for day in sorted({n.datetime.astimezone(UTC).date() for n in normalized.values()}):
        on_day = [n for n in normalized.values() if n.datetime.astimezone(UTC).date() == day]
        kept = deduplicate(n for n in on_day if n.mission == "sentinel-1" or n.tile_id == tile)
        ids = {n.id for n in kept}
        if kept:
            out[day] = ([i for i in found if i.id in ids], sorted(kept, key=lambda n: (n.datetime, n.id)))
    return out


def changed_days(
    search: StacSearch,
    collections: Mapping[str, str],
    tile_id: str,
    start: date,
    end: date,
    stored: Callable[[str, date], Sequence[SceneItem]],
    provider: str | None = None,
) -> dict[date, str]:
    """The days from ``start`` to ``end`` whose items differ from the stored ones: published late, removed,
    or reprocessed (another id or processing baseline).

    Args:
        search: the catalog.
        collections: storage role (``s2_l2a``, ``s2_l1c``, ``s1``) -> the provider's collection id.
        tile_id: the Sentinel-2 tile.
        start: first day (UTC).
        end: last day (inclusive).
        stored: (role, day) -> the items stored for that day (none if never ingested).
        provider: the provider profile (for normalization).

    Returns:
        day -> a fingerprint of the items there now (changes whenever they change).
    """
    found = {
        role: find_items_between(search, collection, tile_id, start, end, provider)
        for role, collection in collections.items()
    }
    changed: dict[date, str] = {}
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        now = sorted(
            (role, n.id, n.processing_baseline or "")
            for role in found
            for n in found[role].get(day, ([], []))[1]
        )
        before = sorted(
            (role, n.id, n.processing_baseline or "") for role in collections for n in stored(role, day)
        )
        if now != before:
            changed[day] = hashlib.sha256(json.dumps(now).encode()).hexdigest()[:16]
    return changed


def write_item_collection(path: Path, raw: list[pystac.Item], items: list[SceneItem]) -> dict[str, Any]:
    """Write the items as a GeoJSON FeatureCollection (atomically) with their normalized form;
    returns a summary for metadata."""
    write_json(
        path,
        {
            "type": "FeatureCollection",
            "features": [i.to_dict(transform_hrefs=False) for i in raw],
            "kz:items": [n.to_dict() for n in items],
        },
    )
    return {
        "items": len(items),
        "ids": [n.id for n in items],
        "cloud_cover": [n.cloud_cover for n in items],
        "platforms": sorted({n.platform for n in items}),
    }


def read_items(path: Path) -> list[SceneItem]:
    """The normalized items of a collection written by `write_item_collection` (none if absent)."""
    if not path.is_file():
        return []
    return [SceneItem.from_dict(d) for d in json.loads(path.read_text())["kz:items"]]


def _spatial_ref(grid: GridSpec) -> xr.DataArray:
    t = grid.transform
    return xr.DataArray(
        0,
        attrs={
            "crs_wkt": CRS.from_epsg(grid.epsg).to_wkt(),
            "spatial_ref": CRS.from_epsg(grid.epsg).to_wkt(),
            "GeoTransform": " ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e)),
        },
    )


def _coords(grid: GridSpec, items: Sequence[SceneItem]) -> dict[str, Any]:
    res = grid.resolution
    return {
        "time": ("time", np.array([np.datetime64(i.datetime.replace(tzinfo=None), "ns") for i in items])),
        "y": ("y", grid.y0 - res * (np.arange(grid.height) + 0.5)),
        "x": ("x", grid.x0 + res * (np.arange(grid.width) + 0.5)),
        "item_id": ("time", [i.id for i in items]),
        "platform": ("time", [i.platform for i in items]),
        "relative_orbit": ("time", [i.relative_orbit or 0 for i in items]),
        "orbit_state": ("time", [i.orbit_state or "" for i in items]),
        "spatial_ref": _spatial_ref(grid),
    }


def _stacked(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Arrays stacked on a new first axis (a view, not a copy, for one array)."""
    return arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays)


def s2_dataset(scenes: Sequence[S2Scene]) -> xr.Dataset:
    """Sentinel-2 scenes of one tile and day (same grid and bands) as one Dataset."""
    first = scenes[0]
    ds = xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), _stacked([s.reflectance for s in scenes])),
            "valid": (("time", "y", "x"), _stacked([s.valid for s in scenes])),
        },
        coords={
            **_coords(first.grid, [s.item for s in scenes]),
            "band": ("band", list(first.bands)),
            "processing_baseline": ("time", [s.item.processing_baseline or "" for s in scenes]),
        },
        attrs={"product": first.item.product, "provider": first.item.provider, "tile": first.item.tile_id},
    )
    if first.scl is not None:
        ds["scl"] = (("time", "y", "x"), _stacked([s.scl for s in scenes if s.scl is not None]))
    ds["reflectance"].attrs = {
        "units": "1",
        "long_name": "surface reflectance"
        if first.item.product == "L2A"
        else "top-of-atmosphere reflectance",
        "grid_mapping": "spatial_ref",
    }
    if first.encoded:  # already int16 x 1e-4: stored as is, decoded by CF readers
        ds["reflectance"].attrs["scale_factor"] = ENCODED_SCALE
        ds["reflectance"].encoding = {"_FillValue": ENCODED_NODATA}
    else:
        ds["reflectance"].encoding = {
            "dtype": "int16",
            "scale_factor": ENCODED_SCALE,
            "_FillValue": ENCODED_NODATA,
        }
    return ds


def s1_dataset(scenes: Sequence[S1Scene]) -> xr.Dataset:
    """Sentinel-1 scenes of one tile and day (same grid) as one Dataset."""
    first = scenes[0]
    dims = ("time", "y", "x")
    data: dict[str, Any] = {
        "vv_db": (dims, np.stack([s.vv_db for s in scenes])),
        "vh_db": (dims, np.stack([s.vh_db for s in scenes])),
        "vh_vv_db": (dims, np.stack([s.vh_vv_db for s in scenes])),
    }
    for pol in ("VV", "VH"):
        if all(pol in s.unfiltered for s in scenes):
            data[f"{pol.lower()}_db_unfiltered"] = (dims, np.stack([s.unfiltered[pol] for s in scenes]))
    coherence = [s.coherence for s in scenes if s.coherence is not None]
    if len(coherence) == len(scenes):
        data["coh_vv"] = (dims, np.stack(coherence))
    ds = xr.Dataset(data, coords=_coords(first.grid, [s.item for s in scenes]))
    ds.attrs = {
        "backscatter": first.backscatter,
        "speckle_filter": first.speckle_filter,
        "provider": first.item.provider,
    }
    for name in ds.data_vars:
        ds[name].attrs["grid_mapping"] = "spatial_ref"
    return ds


def write_zarr(path: Path, ds: xr.Dataset, chunk_px: int = 1024) -> None:
    """Write ``ds`` as a Zarr store at ``path`` atomically, chunked per time (and band) in
    ``chunk_px`` squares. Encoding and compression run chunk by chunk in threads (dask), so writing
    needs little memory beyond ``ds`` itself."""
    sizes = {"time": 1, "band": 1, "y": chunk_px, "x": chunk_px}
    chunked = ds.chunk({d: min(sizes.get(str(d), n), n) for d, n in ds.sizes.items()})
    with atomic_dir(path) as tmp:
        chunked.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2)


def store_grid(ds: xr.Dataset) -> GridSpec:
    """The grid of a scene store (from its CF ``spatial_ref``)."""
    ref = ds["spatial_ref"].attrs
    x0, res, _, y0, _, _ = (float(v) for v in str(ref["GeoTransform"]).split())
    epsg = CRS.from_wkt(ref["crs_wkt"]).to_epsg()
    if epsg is None:
        raise ValueError("scene store CRS has no EPSG code")
    return GridSpec(epsg, x0, y0, res, ds.sizes["x"], ds.sizes["y"])


def open_scenes(path: Path) -> xr.Dataset:
    """Open a scene store written by `write_zarr` (lazily), reflectance decoded to float32."""
    ds = xr.open_zarr(path)
    if "reflectance" in ds:
        ds["reflectance"] = ds["reflectance"].astype(np.float32)
    return ds


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = np.clip((np.nan_to_num(values, nan=lo) - lo) / (hi - lo), 0, 1)
    return (out * 255).astype(np.uint8)


def _png(rgb: np.ndarray, max_px: int) -> bytes:
    image = Image.fromarray(rgb)
    image.thumbnail((max_px, max_px), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def s2_quicklook(scene: S2Scene, max_px: int = 512) -> bytes:
    """A true-colour PNG (B04, B03, B02, reflectance 0-0.3), invalid pixels black."""
    rgb = np.stack([_stretch(scene.band(b), 0.0, 0.3) for b in ("B04", "B03", "B02")], axis=-1)
    rgb[~scene.valid] = 0
    return _png(rgb, max_px)


def s1_quicklook(scene: S1Scene, max_px: int = 512) -> bytes:
    """A false-colour PNG: VV (-20..0 dB), VH (-28..-8 dB), VH/VV ratio (-15..-3 dB) as R, G, B."""
    rgb = np.stack(
        [_stretch(scene.vv_db, -20, 0), _stretch(scene.vh_db, -28, -8), _stretch(scene.vh_vv_db, -15, -3)],
        axis=-1,
    )
    return _png(rgb, max_px)
