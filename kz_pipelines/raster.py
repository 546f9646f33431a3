"""Raster grids: the GridSpec value object shared by the simulator, loaders and statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box, mapping

__all__ = ["GridSpec", "footprint"]


@dataclass(frozen=True)
class GridSpec:
    """A north-up pixel grid in a projected CRS.

    Attributes:
        epsg: EPSG code of the CRS (a UTM zone for Sentinel-2 tiles).
        x0: x of the upper-left corner of the upper-left pixel, metres.
        y0: y of the upper-left corner of the upper-left pixel, metres.
        resolution: pixel size, metres (square pixels).
        width: number of columns.
        height: number of rows.
    """

    epsg: int
    x0: float
    y0: float
    resolution: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.resolution <= 0:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"grid shape must be positive, got {self.height}x{self.width}")

    @property
    def transform(self) -> Affine:
        """The GDAL-style affine transform (pixel -> map coordinates)."""
        return Affine(self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in metres."""
        return (
            self.x0,
            self.y0 - self.height * self.resolution,
            self.x0 + self.width * self.resolution,
            self.y0,
        )

    def coarsened(self, resolution: float) -> GridSpec:
        """The grid with the same origin at a coarser resolution, covering at least this extent."""
        factor = resolution / self.resolution
        return GridSpec(
            epsg=self.epsg,
            x0=self.x0,
            y0=self.y0,
            resolution=resolution,
            width=math.ceil(self.width / factor),
            height=math.ceil(self.height / factor),
        )


def footprint(grid: GridSpec) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON geometry (WGS84) and bbox of a grid's extent."""
    to_wgs = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    poly = shapely.transform(box(*grid.bounds).segmentize(500.0), to_wgs.transform, interleaved=False)
    geom = mapping(poly.simplify(1e-6))
    return {"type": geom["type"], "coordinates": geom["coordinates"]}, [round(v, 7) for v in poly.bounds]
