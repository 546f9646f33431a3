"""Zonal statistics of parcels: rasterize once per tile grid, then statistics for every band, index and date.

:func:`rasterize_parcels` burns the parcel ids into the tile grid once, with the pixel-centre rule (a pixel
belongs to a parcel when its centre is inside the polygon; GDAL's rule, the one rasterstats and
exactextract's ``cell_center`` use). Each parcel is first shrunk by a 1-pixel inward buffer so that
mixed edge pixels (part field, part road or neighbour) are left out; a parcel too small to keep any pixel
after the buffer falls back to its own outline and is flagged (``buffered`` False). Parcels are burnt in
``parcel_id`` order, so where two overlap the result never depends on the order they came in. The result,
a :class:`ParcelIndex`, holds for each parcel the flat indices of its pixels, grouped by parcel (a
CSR layout): gathering a band's parcel pixels is then one indexed read, and every statistic of every
parcel is computed in one pass over them.

:func:`zonal_stats` computes, per parcel and feature: mean, median, min, max, standard deviation
(population, ``ddof=0``) and the valid-pixel count, over the pixels that are finite and, when given,
marked valid (e.g. clear in the cloud mask). Statistics are accumulated in float64. Kernels are compiled
with numba (parallel over parcels; cached on disk after the first call).

:func:`power_stats` is the Sentinel-1 variant: backscatter given in dB is averaged in linear power and
converted back to dB (mean, median, min, max); the standard deviation is that of the dB values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TypeVar

import numba
import numpy as np
import numpy.typing as npt
import shapely
from rasterio.features import rasterize

from kz_pipelines.raster import GridSpec
from kz_pipelines.storage import atomic_path

__all__ = [
    "STATS",
    "ParcelIndex",
    "load_index",
    "power_stats",
    "rasterize_parcels",
    "save_index",
    "zonal_stats",
]

G = TypeVar("G", bound=np.generic)

STATS = ("mean", "median", "min", "max", "std", "count")
"""The statistics, in the order of the last axis of :func:`zonal_stats`'s result."""


@dataclass(frozen=True)
class ParcelIndex:
    """Which pixels of a grid belong to which parcel.

    Attributes:
        grid: the tile grid.
        parcel_ids: parcel ids, sorted.
        pixels: flat pixel indices (row * width + col), grouped by parcel in ``parcel_ids`` order, each
            group in raster order.
        offsets: parcel ``i``'s pixels are ``pixels[offsets[i]:offsets[i + 1]]``.
        buffered: whether the 1-pixel inward buffer was applied (False: too small, its outline was used).
    """

    grid: GridSpec
    parcel_ids: npt.NDArray[np.str_]
    pixels: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    buffered: npt.NDArray[np.bool_]

    @property
    def n_pixels(self) -> npt.NDArray[np.int64]:
        """Pixels per parcel (0 for a parcel with no pixel centre inside it, even unbuffered)."""
        return np.diff(self.offsets)

    def gather(self, raster: npt.NDArray[G]) -> npt.NDArray[G]:
        """The parcel pixels of a (rows, cols) raster on the grid, grouped as ``pixels``."""
        if raster.shape != self.grid.shape:
            raise ValueError(f"raster shape {raster.shape} does not match the grid {self.grid.shape}")
        return np.asarray(raster).reshape(-1)[self.pixels]


def rasterize_parcels(
    parcel_ids: Sequence[str], geometries: Sequence[shapely.Geometry], grid: GridSpec, buffer_px: float = 1.0
) -> ParcelIndex:
    """Burn parcels into ``grid`` (pixel-centre rule, ``buffer_px`` inward buffer) and index their pixels.

    Args:
        parcel_ids: unique parcel ids.
        geometries: polygons in the grid's CRS, same order as ``parcel_ids``.
        grid: the tile grid.
        buffer_px: inward buffer in pixels (0: none).

    Returns:
        The index, parcels sorted by id.
    """
    ids = np.asarray(parcel_ids, dtype=str)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("parcel ids must be unique")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    geoms = np.asarray(geometries, dtype=object)[order]
    shrunk = shapely.buffer(geoms, -buffer_px * grid.resolution) if buffer_px > 0 else geoms
    labels = _burn(shrunk, grid, np.arange(1, len(ids) + 1))
    pixels, offsets = _group(labels.reshape(-1), len(ids))
    buffered = np.diff(offsets) > 0
    fallback = np.flatnonzero(~buffered)
    if fallback.size and buffer_px > 0:
        extra = _burn(geoms[fallback], grid, fallback + 1)
        np.copyto(labels, extra, where=labels == 0)
        pixels, offsets = _group(labels.reshape(-1), len(ids))
    return ParcelIndex(grid=grid, parcel_ids=ids, pixels=pixels, offsets=offsets, buffered=buffered)


def save_index(path: Path, index: ParcelIndex) -> None:
    """Write an index (``.npz``) atomically, so every date of a tile reuses one rasterization."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(
            f,
            grid=np.array(astuple(index.grid), dtype=np.float64),
            parcel_ids=index.parcel_ids,
            pixels=index.pixels,
            offsets=index.offsets,
            buffered=index.buffered,
        )


def load_index(path: Path) -> ParcelIndex:
    """Read an index written by :func:`save_index`."""
    with np.load(path, allow_pickle=False) as z:
        epsg, x0, y0, res, width, height = z["grid"].tolist()
        grid = GridSpec(int(epsg), x0, y0, res, int(width), int(height))
        return ParcelIndex(grid, z["parcel_ids"], z["pixels"], z["offsets"], z["buffered"])


def _burn(
    geoms: npt.NDArray[np.object_], grid: GridSpec, values: npt.NDArray[np.int64]
) -> npt.NDArray[np.int32]:
    """Rasterize (pixel centres, later shapes over earlier ones) non-empty geometries with their values."""
    shapes = [(g, int(v)) for g, v in zip(geoms, values, strict=True) if g is not None and not g.is_empty]
    if not shapes:
        return np.zeros(grid.shape, np.int32)
    return rasterize(
        shapes, out_shape=grid.shape, transform=grid.transform, fill=0, all_touched=False, dtype="int32"
    )


@numba.njit(cache=True)
def _group(labels: npt.NDArray[np.int32], n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Counting sort of the labelled pixels by label (1..n): flat indices grouped by label, and offsets."""
    counts = np.zeros(n + 1, np.int64)
    for v in labels:
        counts[v] += 1
    offsets = np.zeros(n + 1, np.int64)
    for i in range(1, n + 1):
        offsets[i] = offsets[i - 1] + counts[i]
    pixels = np.empty(offsets[n], np.int64)
    cursor = offsets[:-1].copy()
    for i in range(labels.size):
        v = labels[i]
        if v > 0:
            pixels[cursor[v - 1]] = i
            cursor[v - 1] += 1
    return pixels, offsets


@numba.njit(parallel=True, cache=True)
def _stats_kernel(
    values: npt.NDArray[np.floating], valid: npt.NDArray[np.bool_], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """(features, pixels) values -> (parcels, features, 6) statistics over finite pixels where ``valid``."""
    n = offsets.size - 1
    k = values.shape[0]
    out = np.full((n, k, 6), np.nan)
    for p in numba.prange(n):
        s, e = offsets[p], offsets[p + 1]
        buf = np.empty(e - s, np.float64)
        for f in range(k):
            c = 0
            total = 0.0
            lo = np.inf
            hi = -np.inf
            for j in range(s, e):
                x = values[f, j]
                if valid[j] and np.isfinite(x):
                    buf[c] = x
                    c += 1
                    total += x
                    lo = min(lo, x)
                    hi = max(hi, x)
            out[p, f, 5] = c
            if c == 0:
                continue
            mean = total / c
            ss = 0.0
            for j in range(c):
                ss += (buf[j] - mean) ** 2
            out[p, f, 0] = mean
            out[p, f, 1] = np.median(buf[:c])
            out[p, f, 2] = lo
            out[p, f, 3] = hi
            out[p, f, 4] = np.sqrt(ss / c)
    return out


def zonal_stats(
    index: ParcelIndex,
    values: npt.NDArray[np.floating],
    valid: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.float64]:
    """Statistics per parcel and feature over the parcels' valid pixels.

    Args:
        index: the parcels' pixels.
        values: gathered parcel pixels (``index.gather`` of each feature's raster), shape (features, pixels)
            or (pixels,) for one feature; NaN is no data.
        valid: gathered pixel validity (e.g. clear in the cloud mask), shape (pixels,); None: all.

    Returns:
        (parcels, features, 6) float64 in :data:`STATS` order; statistics are NaN and the count 0 for a
        parcel with no valid pixel.
    """
    vals = np.atleast_2d(values)
    if vals.shape[1] != index.pixels.size:
        raise ValueError(f"values have {vals.shape[1]} pixels, the index {index.pixels.size}")
    ok = np.ones(index.pixels.size, np.bool_) if valid is None else np.asarray(valid, np.bool_)
    if ok.shape != (index.pixels.size,):
        raise ValueError(f"valid has shape {ok.shape}, expected ({index.pixels.size},)")
    return np.asarray(_stats_kernel(vals, ok, index.offsets))


def power_stats(
    index: ParcelIndex, db: npt.NDArray[np.floating], valid: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.float64]:
    """Statistics of backscatter given in dB: mean, median, min and max taken in linear power and returned
    in dB; std of the dB values; the count. Same shapes as :func:`zonal_stats`."""
    db2 = np.atleast_2d(db).astype(np.float64)
    linear = zonal_stats(index, np.power(10.0, db2 / 10.0), valid)
    out = zonal_stats(index, db2, valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[..., :4] = 10.0 * np.log10(linear[..., :4])
    return out
