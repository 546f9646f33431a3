"""The simulated landscape of one tile window: field polygons, background land cover and the
static rasters (parcel index, land cover, within-field heterogeneity, damaged patches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import shapely
from rasterio.features import rasterize
from scipy.ndimage import gaussian_filter
from shapely.geometry import MultiPoint, Polygon, box
from shapely.geometry.base import BaseGeometry

from kz_pipelines.raster import GridSpec

__all__ = [
    "COVER_FOREST",
    "COVER_GRASS",
    "COVER_PARCEL",
    "COVER_WATER",
    "Landscape",
    "make_landscape",
    "with_damage",
]

COVER_PARCEL, COVER_FOREST, COVER_GRASS, COVER_WATER = 0, 1, 2, 3
"""Land cover codes of the background raster (parcel pixels are COVER_PARCEL)."""

MIN_HA, MAX_HA = 0.5, 40.0


@dataclass
class Landscape:
    """Static layers of one tile window (all rasters on the 10 m window grid).

    Attributes:
        grid: the 10 m window grid.
        fields: parcel polygons in the grid's CRS, one per parcel.
        parcel_index: 1-based parcel index per pixel (0 = not a parcel), shape (rows, cols), int32.
        cover: land cover per pixel (COVER_*), shape (rows, cols), uint8.
        vigour: within-field vegetation vigour multiplier, ~0.85..1.15, shape (rows, cols), float32.
        soil: soil brightness multiplier, ~0.8..1.2, shape (rows, cols), float32.
        damage_index: 1-based parcel index of damaged-patch pixels (0 elsewhere), int32.
        damage_patches: damaged patch polygon per parcel index (0-based) that has one.
    """

    grid: GridSpec
    fields: list[Polygon]
    parcel_index: np.ndarray
    cover: np.ndarray
    vigour: np.ndarray
    soil: np.ndarray
    damage_index: np.ndarray
    damage_patches: dict[int, BaseGeometry]


def _split(poly: Polygon, rng: np.random.Generator) -> list[Polygon]:
    """Split a polygon across its long axis until every part is at most MAX_HA."""
    if poly.area / 1e4 <= MAX_HA:
        return [poly]
    rect = poly.minimum_rotated_rectangle
    xs, ys = np.asarray(rect.exterior.coords.xy)
    edges = np.hypot(np.diff(xs), np.diff(ys))
    k = int(np.argmax(edges[:2]))
    c = poly.centroid
    dx, dy = xs[k + 1] - xs[k], ys[k + 1] - ys[k]
    # a cut line perpendicular to the long edge, through a point near the centroid
    shift = rng.uniform(-0.15, 0.15)
    px, py = c.x + shift * dx, c.y + shift * dy
    n = 1e5 / max(np.hypot(dx, dy), 1e-9)
    blade = shapely.LineString([(px - dy * n, py + dx * n), (px + dy * n, py - dx * n)])
    parts = [p for p in shapely.ops.split(poly, blade).geoms if isinstance(p, Polygon)]
    if len(parts) < 2:
        return [poly]
    return [q for p in parts for q in _split(p, rng)]


def _fields(
    grid: GridSpec, n_parcels: int, rng: np.random.Generator
) -> tuple[list[Polygon], list[tuple[Polygon, int]]]:
    """Voronoi field layout: returns parcel polygons and (polygon, cover) background cells."""
    minx, miny, maxx, maxy = grid.bounds
    frame = box(minx + 60, miny + 60, maxx - 60, maxy - 60)
    n_cells = max(int(n_parcels / 0.7), 4)
    pts = np.column_stack([rng.uniform(minx, maxx, n_cells), rng.uniform(miny, maxy, n_cells)])
    for _ in range(2):  # Lloyd relaxation: fields of more even size
        cells = shapely.voronoi_polygons(MultiPoint(pts), extend_to=box(*grid.bounds)).geoms
        cells = [c.intersection(frame) for c in cells]
        pts = np.array([[c.centroid.x, c.centroid.y] for c in cells if not c.is_empty])
    cells = [c for c in shapely.voronoi_polygons(MultiPoint(pts), extend_to=box(*grid.bounds)).geoms]
    cells = [c.intersection(frame) for c in cells]
    cells = [c for c in cells if isinstance(c, Polygon) and not c.is_empty]
    order = rng.permutation(len(cells))
    parcels: list[Polygon] = []
    background: list[tuple[Polygon, int]] = []
    for i in order:
        cell = cells[i]
        if len(parcels) >= n_parcels:
            cover = int(rng.choice([COVER_FOREST, COVER_GRASS, COVER_WATER], p=[0.6, 0.32, 0.08]))
            background.append((cell, cover))
            continue
        for part in _split(cell, rng):
            field = part.buffer(-rng.uniform(4, 10), join_style="mitre").simplify(2.0)
            if isinstance(field, Polygon) and field.area / 1e4 >= MIN_HA and len(parcels) < n_parcels:
                parcels.append(field)
            else:
                background.append((part, COVER_GRASS))
    return parcels, background


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-6)


def _damage_patch(field: Polygon, rng: np.random.Generator) -> BaseGeometry:
    """An irregular blob inside the field covering 5-40% of it."""
    target = field.area * rng.uniform(0.05, 0.4)
    minx, miny, maxx, maxy = field.bounds
    for _ in range(50):
        p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if field.contains(p):
            break
    else:  # a thin field that random points keep missing
        p = field.representative_point()
    blobs = [p.buffer(1.0)]
    for _ in range(4):
        q = shapely.Point(p.x + rng.normal(0, 1), p.y + rng.normal(0, 1))
        blobs.append(q.buffer(rng.uniform(0.5, 1.0)))
    shape = shapely.unary_union(blobs)
    lo, hi = 1.0, np.sqrt(field.area)
    for _ in range(30):  # bisect the scale that gives the target area
        mid = (lo + hi) / 2
        area = shapely.affinity.scale(shape, mid, mid, origin=p).intersection(field).area
        lo, hi = (mid, hi) if area < target else (lo, mid)
    return shapely.affinity.scale(shape, lo, lo, origin=p).intersection(field)


def make_landscape(grid: GridSpec, n_parcels: int, rng: np.random.Generator) -> Landscape:
    """Lay out fields and background land cover on ``grid`` (no damaged patches yet).

    Args:
        grid: the 10 m window grid.
        n_parcels: number of parcels wanted (fewer if they do not fit).
        rng: random generator.
    """
    fields, background = _fields(grid, n_parcels, rng)
    shape = grid.shape
    tr = grid.transform
    cover = rasterize(
        [(g, c) for g, c in background], out_shape=shape, transform=tr, fill=COVER_GRASS, dtype="uint8"
    )
    parcel_index = rasterize(
        [(f, i + 1) for i, f in enumerate(fields)], out_shape=shape, transform=tr, fill=0, dtype="int32"
    )
    cover[parcel_index > 0] = COVER_PARCEL
    vigour = (1.0 + 0.06 * _smooth_noise(rng, shape, 3.0)).astype(np.float32)
    soil = 1.0 + 0.08 * _smooth_noise(rng, shape, 25.0) + 0.03 * _smooth_noise(rng, shape, 2.0)
    return Landscape(
        grid=grid,
        fields=fields,
        parcel_index=parcel_index,
        cover=cover,
        vigour=vigour,
        soil=soil.astype(np.float32),
        damage_index=np.zeros(shape, np.int32),
        damage_patches={},
    )


def with_damage(land: Landscape, damaged: Sequence[bool], rng: np.random.Generator) -> Landscape:
    """The landscape with a damaged patch (5-40% of the field) in each parcel flagged in ``damaged``.

    Args:
        land: the landscape.
        damaged: per parcel (same order as ``land.fields``), whether it gets a patch.
        rng: random generator.
    """
    patches = {i: _damage_patch(f, rng) for i, f in enumerate(land.fields) if damaged[i]}
    shapes = [(g, i + 1) for i, g in patches.items() if not g.is_empty]
    damage_index = (
        rasterize(shapes, out_shape=land.grid.shape, transform=land.grid.transform, fill=0, dtype="int32")
        if shapes
        else np.zeros(land.grid.shape, np.int32)
    )
    return replace(land, damage_index=damage_index, damage_patches=patches)
