"""Finding the scenes of one tile and day, and recording them as item collections."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import pystac

from kz_pipelines.raster import footprint
from kz_pipelines.stac import StacSearch
from kz_pipelines.storage import write_json
from kz_pipelines.tiles import s2_tile

__all__ = ["S1_COLLECTION", "S2_COLLECTION", "find_scene_items", "write_item_collection"]

S2_COLLECTION = "sentinel-2-l2a"
S1_COLLECTION = "sentinel-1-grd"


@lru_cache(maxsize=256)
def _tile_bbox(tile_id: str) -> list[float]:
    """WGS84 bbox of the whole tile."""
    return footprint(s2_tile(tile_id).grid(60.0))[1]


def find_scene_items(search: StacSearch, collection: str, tile_id: str, day: date) -> list[pystac.Item]:
    """Items of ``collection`` acquired on ``day`` (UTC) over the Sentinel-2 tile ``tile_id``.

    Sentinel-2 items are matched on their MGRS tile (``grid:code``); other collections (Sentinel-1)
    on intersection with the tile's footprint.
    """
    query = (
        {"grid:code": {"eq": f"MGRS-{s2_tile(tile_id).tile_id}"}}
        if collection.startswith("sentinel-2")
        else None
    )
    return search.search([collection], bbox=_tile_bbox(tile_id), datetime=day.isoformat(), query=query)


def write_item_collection(path: Path, items: list[pystac.Item]) -> dict[str, Any]:
    """Write the items as a GeoJSON FeatureCollection (atomically); returns a summary for metadata."""
    write_json(path, {"type": "FeatureCollection", "features": [i.to_dict() for i in items]})
    return {
        "items": len(items),
        "ids": [i.id for i in items],
        "cloud_cover": [i.properties.get("eo:cloud_cover") for i in items],
    }
