"""`kz bench zonal`: parcel statistics on a full tile, ours against exactextract and rasterstats.

The workload (issue: parcels): one full Sentinel-2 tile grid (10980 x 10980 px at 10 m), ``n_parcels``
non-overlapping parcels of 1-20 ha (random rotated, jittered quadrilaterals, one per cell of a grid laid
over the tile), and ``band_dates`` float32 band-dates (smooth reflectance-like fields with noise and a
no-data strip) in one tiled GeoTIFF, written once into ``work``. Statistics: mean, median, min, max,
standard deviation and count. In the same process:

- **ours**: rasterize the parcels once (pixel-centre rule, 1-pixel inward buffer, as the
  `parcel_observations` asset does), then per band-date read the band and compute all statistics of all
  parcels (:mod:`kz_pipelines.zonal`); the time includes reading and rasterizing; numba's one-time
  compilation of the kernels (on a tiny input first; cached on disk, so later processes only load them)
  is reported apart, as the GPU benchmark leaves out its warm-up;
- **exactextract** (its ``raster-sequential`` strategy, the same six statistics, reading the same file);
- **rasterstats** on an evenly spread subset of the parcels (it is slow: one rasterization and one window
  read per parcel and band), giving its throughput and the exactness check: our statistics equal to
  rasterstats' on exactly the pixels each parcel was measured with (the buffered outline, or the outline
  for parcels too small for the buffer), within 1e-6.

Throughput is parcel-band-dates per second. From ours, an estimate for a national season: 200,000
parcels, 6 tiles, 40 S2 dates and 60 S1 dates, 30 features (200,000 x 100 x 30 parcel-band-dates), on
this machine.

Targets: ours >= 5x exactextract's throughput; max |ours - rasterstats| <= 1e-6.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
import shapely.affinity
from rasterio.windows import Window

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.raster import GridSpec
from kz_pipelines.tiles import s2_tile
from kz_pipelines.zonal import STATS, rasterize_parcels, zonal_stats

__all__ = ["national_estimate_hours", "run", "synthetic_parcels"]

SPEEDUP_TARGET = 5.0
EXACT_TOLERANCE = 1e-6
NATIONAL = {"parcels": 200_000, "tiles": 6, "s2_dates": 40, "s1_dates": 60, "features": 30}
"""The national season the estimate is for."""

_EXACTEXTRACT_OPS = ["mean", "median", "min", "max", "stdev", "count"]


def synthetic_parcels(grid: GridSpec, n: int, seed: int = 0) -> list[shapely.Polygon]:
    """``n`` non-overlapping parcels of 1-20 ha inside ``grid``: one jittered, rotated rectangle (aspect 1-3)
    per cell of a square grid of cells, cells taken in random order."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = grid.bounds
    per_side = math.ceil(math.sqrt(n))
    cell = min(x1 - x0, y1 - y0) / per_side
    if cell < 480:  # a 20 ha rectangle of aspect 3 has a 775 m long side; rotated it needs ~480 m x 2
        raise ValueError(f"{n} parcels do not fit on a {grid.width} px grid (cells of {cell:.0f} m)")
    cells = rng.permutation(per_side * per_side)[:n]
    polys = []
    for c in cells:
        r, k = divmod(int(c), per_side)
        cx, cy = x0 + (k + 0.5) * cell, y1 - (r + 0.5) * cell
        area = rng.uniform(1e4, 20e4)
        aspect = rng.uniform(1.0, 3.0)
        w = math.sqrt(area / aspect)
        h = area / w
        scale = min(1.0, 0.85 * cell / math.hypot(w, h))  # fits the cell at any rotation and jitter
        w, h = w * scale, h * scale
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        corners += rng.uniform(-0.05, 0.05, corners.shape) * min(w, h)
        theta = rng.uniform(0, math.pi)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        poly = shapely.Polygon(corners @ rot.T)
        f = math.sqrt(area * scale * scale / poly.area)  # the drawn area again after the jitter
        polys.append(shapely.affinity.affine_transform(poly, [f, 0, 0, f, cx, cy]))
    return polys


def _raster(work: Path, grid: GridSpec, band_dates: int, log: Callable[[str], Any]) -> Path:
    """The band-dates as one tiled float32 GeoTIFF (written once)."""
    path = work / f"zonal-{grid.width}-{band_dates}.tif"
    if path.is_file():
        return path
    log(f"writing {band_dates} synthetic band-dates of {grid.height} x {grid.width} px to {path} (once)")
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": band_dates,
        "dtype": "float32",
        "crs": f"EPSG:{grid.epsg}",
        "transform": grid.transform,
        "nodata": np.nan,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
    tmp = path.with_suffix(".tmp.tif")
    coarse = 64
    with rasterio.open(tmp, "w", **profile) as dst:
        for b in range(band_dates):
            field = rng.uniform(0.02, 0.5, (coarse, coarse)).astype(np.float32)
            for row in range(0, grid.height, 1024):
                rows = min(1024, grid.height - row)
                ri = ((np.arange(row, row + rows) * coarse) // grid.height)[:, None]
                ci = ((np.arange(grid.width) * coarse) // grid.width)[None, :]
                block = field[ri, ci] + rng.normal(0, 0.02, (rows, grid.width)).astype(np.float32)
                if row < 300:  # a no-data strip along the top edge
                    block[: max(0, 300 - row)] = np.nan
                dst.write(block.astype(np.float32), b + 1, window=Window(0, row, grid.width, rows))
    tmp.rename(path)
    return path


def national_estimate_hours(pbd_per_s: float) -> float:
    """Hours for :data:`NATIONAL` at ``pbd_per_s`` parcel-band-dates per second."""
    n = NATIONAL
    work = n["parcels"] * (n["s2_dates"] + n["s1_dates"]) * n["features"]
    return work / pbd_per_s / 3600


def run(
    work: Path,
    size_px: int = 10980,
    n_parcels: int = 20_000,
    band_dates: int = 4,
    rasterstats_parcels: int = 400,
    log: Callable[[str], Any] = print,
) -> BenchResult:
    """Run the benchmark (see the module docstring); ``work`` keeps the raster between runs."""
    from exactextract import exact_extract
    from rasterstats import zonal_stats as rs_zonal_stats

    tile = s2_tile("35VLF")
    grid = tile.grid() if size_px == 10980 else tile.window(size_px)
    parcels = synthetic_parcels(grid, n_parcels)
    ids = [f"p{i:06d}" for i in range(len(parcels))]
    raster = _raster(work, grid, band_dates, log)
    pbd = len(parcels) * band_dates

    t0 = time.perf_counter()  # numba compiles (or loads from its disk cache) on first use: not timed
    small = GridSpec(grid.epsg, grid.x0, grid.y0, grid.resolution, 64, 64)
    warm = rasterize_parcels(["w"], [shapely.box(*small.bounds)], small)
    zonal_stats(warm, warm.gather(np.zeros(small.shape, np.float32)))
    jit_s = time.perf_counter() - t0

    log(f"ours: {len(parcels)} parcels x {band_dates} band-dates")
    t0 = time.perf_counter()
    index = rasterize_parcels(ids, parcels, grid)
    t_index = time.perf_counter() - t0
    ours = np.empty((len(parcels), band_dates, len(STATS)))
    band = np.empty(grid.shape, np.float32)
    with rasterio.open(raster) as src:
        for b in range(band_dates):
            src.read(b + 1, out=band)
            ours[:, b] = zonal_stats(index, index.gather(band))[:, 0]
    ours_s = time.perf_counter() - t0

    log("exactextract (raster-sequential)")
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"parcel_id": ids}, geometry=parcels, crs=grid.epsg)
    t0 = time.perf_counter()
    exact_extract(
        str(raster),
        frame,
        _EXACTEXTRACT_OPS,
        include_cols=["parcel_id"],
        strategy="raster-sequential",
        output="pandas",
    )
    ee_s = time.perf_counter() - t0

    subset = np.unique(np.linspace(0, len(parcels) - 1, min(rasterstats_parcels, len(parcels))).astype(int))
    log(f"rasterstats on {len(subset)} parcels")
    pos = {p: i for i, p in enumerate(index.parcel_ids)}  # index order is sorted ids
    used = []
    for i in subset:
        buffered = index.buffered[pos[ids[i]]]
        used.append(shapely.buffer(parcels[i], -grid.resolution) if buffered else parcels[i])
    worst = 0.0
    t0 = time.perf_counter()
    with rasterio.open(raster) as src:
        refs = [
            rs_zonal_stats(used, src.read(b + 1), affine=grid.transform, nodata=np.nan, stats=list(STATS))
            for b in range(band_dates)
        ]
    rs_s = time.perf_counter() - t0
    for b, ref in enumerate(refs):  # every statistic, the count included
        for i, expected in zip(subset, ref, strict=True):
            got = ours[pos[ids[i]], b]
            ref_values = [np.nan if expected[s] is None else float(expected[s]) for s in STATS]
            diffs = np.abs(np.array(ref_values) - got)
            worst = max(worst, float(np.nanmax(diffs)))  # the count is never NaN
    rs_pbd = len(subset) * band_dates

    ours_rate, ee_rate, rs_rate = pbd / ours_s, pbd / ee_s, rs_pbd / rs_s
    n_pixels = index.n_pixels
    figures: dict[str, float | int | str] = {
        "tile_px": f"{grid.height}x{grid.width}",
        "parcels": len(parcels),
        "parcel_pixels_median": int(np.median(n_pixels)),
        "parcels_unbuffered_fallback": int((~index.buffered).sum()),
        "band_dates": band_dates,
        "stats": ", ".join(STATS),
        "ours_s": round(ours_s, 2),
        "ours_rasterize_s": round(t_index, 2),
        "ours_jit_warmup_s": round(jit_s, 2),
        "exactextract_s": round(ee_s, 2),
        "rasterstats_parcels": len(subset),
        "rasterstats_s": round(rs_s, 2),
        "ours_parcel_band_dates_per_s": round(ours_rate, 1),
        "exactextract_parcel_band_dates_per_s": round(ee_rate, 1),
        "rasterstats_parcel_band_dates_per_s": round(rs_rate, 1),
        "ours_over_exactextract": round(ours_rate / ee_rate, 2),
        "ours_over_rasterstats": round(ours_rate / rs_rate, 1),
        "max_abs_diff_vs_rasterstats": worst,
        "national_season": (
            f"{NATIONAL['parcels']} parcels, {NATIONAL['tiles']} tiles, {NATIONAL['s2_dates']} S2 + "
            f"{NATIONAL['s1_dates']} S1 dates, {NATIONAL['features']} features"
        ),
        "national_season_hours_ours": round(national_estimate_hours(ours_rate), 2),
        "national_season_hours_exactextract": round(national_estimate_hours(ee_rate), 2),
        "gpu": "not measured: no GPU path yet",
    }
    targets = {
        "ours_over_exactextract": Target(ours_rate / ee_rate, ">=", SPEEDUP_TARGET),
        "max_abs_diff_vs_rasterstats": Target(worst, "<=", EXACT_TOLERANCE),
    }
    return BenchResult(name="zonal", figures=figures, targets=targets)
