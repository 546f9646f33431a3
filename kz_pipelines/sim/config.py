"""Configuration of a simulated region."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from kz_pipelines.errors import UserFacingError
from kz_pipelines.tiles import TILE_SIZE_PX, UnknownTileError, s2_tile

__all__ = ["DEFAULT_TILES", "SimConfig", "SimConfigError"]

DEFAULT_TILES = ("35VLF", "35VMF")
"""Two neighbouring tiles in southern Estonia."""


class SimConfigError(UserFacingError, ValueError):
    """An invalid simulation configuration (the message says which field and why)."""


@dataclass(frozen=True)
class SimConfig:
    """What to simulate.

    Attributes:
        seed: random seed; the same config and seed give byte-identical rasters and tables.
        tiles: Sentinel-2 MGRS tile ids.
        size_px: side of the simulated window in each tile, 10 m pixels (10980 = the full tile).
        start: first day of the season (inclusive).
        end: last day of the season (inclusive).
        n_parcels: number of declared parcels over all tiles.
        l1c: also write Sentinel-2 L1C (top-of-atmosphere) scenes.
    """

    seed: int = 0
    tiles: tuple[str, ...] = DEFAULT_TILES
    size_px: int = 516
    start: date = date(2024, 4, 1)
    end: date = date(2024, 10, 31)
    n_parcels: int = 300
    l1c: bool = True
    tile_ids: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.tiles:
            raise SimConfigError("tiles: give at least one Sentinel-2 tile id")
        try:
            ids = tuple(s2_tile(t).tile_id for t in self.tiles)
        except UnknownTileError as exc:
            raise SimConfigError(f"tiles: {exc}") from None
        if len(set(ids)) != len(ids):
            raise SimConfigError(f"tiles: duplicate tile ids in {list(self.tiles)}")
        object.__setattr__(self, "tile_ids", ids)
        if not 120 <= self.size_px <= TILE_SIZE_PX:
            raise SimConfigError(f"size_px: must be 120..{TILE_SIZE_PX} (10 m pixels), got {self.size_px}")
        if self.end < self.start:
            raise SimConfigError(f"start/end: end {self.end} is before start {self.start}")
        if (self.end - self.start).days > 366:
            raise SimConfigError("start/end: a simulated season spans at most 366 days")
        if self.start.year != self.end.year:
            raise SimConfigError("start/end: a simulated season lies within one calendar year")
        if self.n_parcels < len(ids):
            raise SimConfigError(f"n_parcels: need at least one parcel per tile, got {self.n_parcels}")
        area_ha = (self.size_px * 10 / 100) ** 2 * len(ids)
        if self.n_parcels > area_ha / 4:
            raise SimConfigError(
                f"n_parcels: {self.n_parcels} parcels do not fit in {area_ha:.0f} ha "
                f"(at most {int(area_ha / 4)}: parcels average >= 4 ha with room for forest and roads)"
            )

    @property
    def days(self) -> int:
        """Number of days in the season."""
        return (self.end - self.start).days + 1
