"""Sentinel-2 MGRS tiles and their real UTM grids.

The tile table (`data/s2_tiles.csv.gz`) holds, for every tile of the official Sentinel-2 tiling
grid, its UTM EPSG code and the upper-left corner of its 109.8 km square (10980 px at 10 m);
`scripts/build_s2_tile_table.py` says how it was derived.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from kz_pipelines.errors import UserFacingError
from kz_pipelines.raster import GridSpec

__all__ = ["TILE_SIZE_PX", "S2Tile", "UnknownTileError", "s2_tile"]

TILE_SIZE_PX = 10980
"""Width and height of a full Sentinel-2 tile at 10 m, pixels."""


class UnknownTileError(UserFacingError, ValueError):
    """The tile id is not a tile of the Sentinel-2 grid."""


@dataclass(frozen=True)
class S2Tile:
    """One Sentinel-2 MGRS tile.

    Attributes:
        tile_id: five-character MGRS id, e.g. ``35VLF``.
        epsg: EPSG code of its UTM zone (326xx north, 327xx south).
        ulx: x of the tile's upper-left corner, metres.
        uly: y of the tile's upper-left corner, metres.
    """

    tile_id: str
    epsg: int
    ulx: int
    uly: int

    @property
    def utm_zone(self) -> int:
        """UTM zone number (1-60)."""
        return int(self.tile_id[:2])

    @property
    def latitude_band(self) -> str:
        """MGRS latitude band letter."""
        return self.tile_id[2]

    @property
    def grid_square(self) -> str:
        """MGRS 100 km grid square letters."""
        return self.tile_id[3:]

    def grid(self, resolution: float = 10.0) -> GridSpec:
        """The full tile grid at ``resolution`` metres."""
        size = round(TILE_SIZE_PX * 10 / resolution)
        return GridSpec(self.epsg, self.ulx, self.uly, resolution, size, size)

    def window(self, size_px: int) -> GridSpec:
        """A centred square window of ``size_px`` 10 m pixels, aligned to the tile's 60 m grid."""
        if not 1 <= size_px <= TILE_SIZE_PX:
            raise ValueError(f"window size must be 1..{TILE_SIZE_PX} px, got {size_px}")
        offset = (TILE_SIZE_PX - size_px) // 2 // 6 * 6
        return GridSpec(self.epsg, self.ulx + offset * 10.0, self.uly - offset * 10.0, 10.0, size_px, size_px)


@lru_cache(maxsize=1)
def _table() -> dict[str, tuple[int, int, int]]:
    path = files("kz_pipelines") / "data" / "s2_tiles.csv.gz"
    with gzip.open(str(path), "rt") as fh:
        return {r["tile"]: (int(r["epsg"]), int(r["ulx"]), int(r["uly"])) for r in csv.DictReader(fh)}


def s2_tile(tile_id: str) -> S2Tile:
    """Look up a Sentinel-2 tile by its MGRS id (case-insensitive, optional leading ``T``).

    Raises:
        UnknownTileError: if the id is not in the official Sentinel-2 grid.
    """
    key = tile_id.strip().upper()
    if len(key) == 6 and key.startswith("T"):
        key = key[1:]
    try:
        epsg, ulx, uly = _table()[key]
    except KeyError:
        raise UnknownTileError(
            f"unknown Sentinel-2 tile id {tile_id!r} (not in the MGRS tiling grid)"
        ) from None
    return S2Tile(key, epsg, ulx, uly)
