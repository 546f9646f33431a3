"""Loading scenes onto a tile grid: Sentinel-2 as physical reflectance with a validity mask, Sentinel-1
as speckle-filtered backscatter in dB.

Every band is read from its own file with the file's own georeferencing (an item's ``proj:*`` only says
which extent it covers): a file already on the target grid's CRS and pixel lattice is read with a
window at its own resolution (20/60 m pixels then replicated onto the 10 m grid: each 10 m pixel keeps
its band's measured value), anything else is warped (`rasterio.warp.reproject`),
including Sentinel-1 GRD files in radar geometry, which GDAL georeferences by their ground control
points. Bands are read in parallel threads (GDAL releases the GIL while decoding).

Errors name the item, the asset and its href (`IngestError`).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds

from kz_pipelines.errors import UserFacingError
from kz_pipelines.raster import GridSpec
from kz_pipelines.sar import refined_lee, to_db
from kz_pipelines.stac.normalize import BandAsset, SceneItem
from kz_pipelines.tiles import TILE_SIZE_PX, s2_tile

__all__ = [
    "ENCODED_NODATA",
    "ENCODED_SCALE",
    "S2_L1C_BANDS",
    "S2_L2A_BANDS",
    "IngestError",
    "S1Scene",
    "S2Scene",
    "SceneReadError",
    "load_s1_scene",
    "load_s2_scene",
    "read_band",
    "scene_grid",
]

S2_L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
"""The 12 Level-2A reflectance bands, in band order."""
S2_L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
"""The 13 Level-1C reflectance bands (with the cirrus band B10), in band order."""
ENCODED_SCALE = 1e-4
"""Reflectance per unit of the int16 encoding (``encoded=True``): reflectance = value x 1e-4."""
ENCODED_NODATA = -32768
"""No data in the int16 encoding."""
SCL_FIRST_VALID = 2
"""SCL classes below this have no usable surface reflectance: 0 no data, 1 saturated or defective."""


class IngestError(UserFacingError, RuntimeError):
    """A scene that cannot be loaded: unreadable or corrupt file, missing band, unknown CRS."""


class SceneReadError(IngestError):
    """A band could not be fetched (the network or the server failed, or timed out): a retry may succeed."""


_TRANSIENT = ("http", "curl", "timed out", "timeout", "connection", "temporarily", "throttl", "slow down")
"""Words of GDAL's messages for a failed fetch (vsicurl: HTTP status, CURL error, time-out), not for a
file that was read and is corrupt."""


def _snap(value: float, origin: float) -> float:
    return origin + round((value - origin) / 10.0) * 10.0


def scene_grid(
    item: SceneItem, window_px: int | None = None, resolution: float = 10.0, tile_id: str | None = None
) -> GridSpec:
    """The grid a tile's scenes are loaded onto: the tile's 10 m lattice (or ``resolution``).

    ``window_px`` > 0 gives the tile's centred window of that size (`S2Tile.window`). Otherwise the extent
    the item declares for its bands, when it is in the tile's CRS, snapped to the lattice and clipped to
    the tile (a simulated region covers a window of each tile); else the whole tile.

    Args:
        item: the item to load.
        window_px: centred window size, 10 m pixels; 0 or None for the rule above.
        resolution: pixel size of the returned grid, metres.
        tile_id: the tile, for items without one (Sentinel-1).

    Raises:
        IngestError: for an item without a tile and no ``tile_id``, or one declaring an extent outside it.
    """
    tile_name = tile_id or item.tile_id
    if tile_name is None:
        raise IngestError(f"item {item.id}: no MGRS tile; give the tile to load it onto")
    tile = s2_tile(tile_name)
    grid = tile.grid(10.0)
    declared = [b for b in item.bands.values() if b.transform and b.shape and b.quantity != "classes"]
    if window_px:
        grid = tile.window(window_px)
    elif declared and item.epsg == tile.epsg:
        band = min(declared, key=lambda b: abs(b.transform[0]) if b.transform else 0.0)
        t, (rows, cols) = band.transform or (), band.shape or (0, 0)
        size = TILE_SIZE_PX * 10.0
        left = max(tile.ulx, _snap(t[2], tile.ulx))
        right = min(tile.ulx + size, _snap(t[2] + cols * t[0], tile.ulx))
        top = min(tile.uly, _snap(t[5], tile.uly))
        bottom = max(tile.uly - size, _snap(t[5] + rows * t[4], tile.uly))
        if right <= left or top <= bottom:
            raise IngestError(f"item {item.id}: its declared extent does not overlap tile {tile.tile_id}")
        grid = GridSpec(tile.epsg, left, top, 10.0, round((right - left) / 10), round((top - bottom) / 10))
    return grid if resolution == 10.0 else grid.coarsened(resolution)


def _aligned_window(src: Any, grid: GridSpec) -> tuple[Window, int] | None:
    """The source window covering ``grid`` when a plain windowed read lands exactly on it (same CRS,
    north-up, the grid's edges on the source's pixel lattice, inside the file), with the integer factor
    by which source pixels are larger than the grid's (0 when they are not an integer multiple:
    GDAL resamples the read). None otherwise."""
    t: Affine = src.transform
    if src.crs is None or src.crs.to_epsg() != grid.epsg or t.b != 0 or t.d != 0 or t.e >= 0:
        return None
    window = from_bounds(*grid.bounds, transform=t)
    edges = (window.col_off, window.row_off, window.col_off + window.width, window.row_off + window.height)
    if any(abs(e - round(e)) > 1e-6 for e in edges):
        return None
    if min(edges[:2]) < 0 or edges[2] > src.width + 1e-6 or edges[3] > src.height + 1e-6:
        return None
    ratio = t.a / grid.resolution
    factor = round(ratio) if ratio >= 1 and abs(ratio - round(ratio)) < 1e-9 else 0
    return Window(round(edges[0]), round(edges[1]), round(window.width), round(window.height)), factor


def _replicate(values: np.ndarray, factor: int, out: np.ndarray | None = None) -> np.ndarray:
    """Each pixel repeated ``factor`` x ``factor`` times (nearest-neighbour upsampling), into ``out``."""
    rows, cols = values.shape
    target = np.empty((rows * factor, cols * factor), values.dtype) if out is None else out
    wide = np.repeat(values, factor, axis=1)  # then whole rows copied: contiguous, fast
    target.reshape(rows, factor, cols * factor)[...] = wide[:, np.newaxis, :]
    return target


def read_band(
    band: BandAsset,
    item_id: str,
    grid: GridSpec,
    resampling: Resampling = Resampling.bilinear,
    physical: bool = True,
    out: np.ndarray | None = None,
    on_rows: Callable[[slice, np.ndarray], None] | None = None,
    encoded: bool = False,
) -> np.ndarray:
    """Read one band onto ``grid``.

    Args:
        band: the band (href, scale, offset, nodata).
        item_id: for error messages.
        grid: the target grid.
        resampling: for files off the grid's lattice or finer than the grid (nearest for classes). A
            file on the lattice with pixels an integer multiple of the grid's (20 and 60 m bands on the 10 m
            grid) is read at its own resolution and each pixel replicated: exact values, no mixing.
        physical: return float32 ``stored * scale + offset`` with NaN for nodata and outside the file;
            else the stored values (nodata where there are none).
        out: a float32 array of the grid's shape to write the physical values into (saves a copy).
        on_rows: called with each finished block of result rows (a row slice of the grid and the values),
            while they are still in the CPU cache.
        encoded: physical values as int16 reflectance x 10^4 (`ENCODED_NODATA` for no data) instead of
            float32: half the memory, the precision of the products (1e-4).

    Raises:
        IngestError: naming item, asset and href, when the file cannot be opened or decoded, or has no
            georeferencing.
    """
    nodata = band.nodata
    try:
        with warnings.catch_warnings():
            # a file without georeferencing is refused below, with the item named
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(band.href) as src:
                if src.crs is None and not src.gcps[0]:
                    raise IngestError(
                        f"item {item_id} asset {band.asset} ({band.href}): the file has no CRS and no GCPs"
                    )
                nodata = src.nodata if src.nodata is not None else nodata
                convert = _Converter(band, nodata, encoded) if physical else None
                aligned = _aligned_window(src, grid)
                if aligned is not None and aligned[1] >= 1:
                    return _read_strips(src, aligned[0], aligned[1], grid, convert, out, on_rows)
                fill = nodata if nodata is not None else 0
                data = np.full(grid.shape, fill, dtype=src.dtypes[0])
                if aligned is not None:  # finer than the grid: GDAL resamples
                    src.read(1, window=aligned[0], out=data, resampling=resampling)
                else:  # GDAL's warper (for GRD in radar geometry, the GCP transformer)
                    reproject(
                        rasterio.band(src, 1),
                        data,
                        src_nodata=nodata,
                        dst_transform=grid.transform,
                        dst_crs=f"EPSG:{grid.epsg}",
                        dst_nodata=fill,
                        resampling=resampling,
                    )
    except RasterioError as exc:
        kind = SceneReadError if any(w in str(exc).lower() for w in _TRANSIENT) else IngestError
        raise kind(f"item {item_id} asset {band.asset} ({band.href}): {exc}") from None
    result = data if convert is None else convert(data, out)
    if on_rows is not None:
        on_rows(slice(0, grid.height), result)
    return result


STRIP_ROWS = 512
"""Rows of a file decoded at a time (the COG block height): temporaries stay a few MB."""


@dataclass(frozen=True)
class _Converter:
    """Stored values to physical values: float32 with NaN for nodata, or (``encoded``) int16 reflectance
    x 10^4 with `ENCODED_NODATA`. 8- and 16-bit integers go through a lookup table (one pass: scale,
    offset and nodata at once)."""

    band: BandAsset
    nodata: float | None
    encoded: bool = False

    @property
    def dtype(self) -> type[np.generic]:
        return np.int16 if self.encoded else np.float32

    def _physical(self, stored: np.ndarray) -> np.ndarray:
        values = stored.astype(np.float64) * self.band.scale + self.band.offset
        if self.nodata is not None:
            values[stored == self.nodata] = np.nan
        if not self.encoded:
            return values.astype(np.float32)
        scaled = np.clip(np.rint(np.nan_to_num(values, nan=0.0) / ENCODED_SCALE), -32767, 32767)
        return np.where(np.isnan(values), ENCODED_NODATA, scaled).astype(np.int16)

    @cached_property
    def _table(self) -> np.ndarray:
        return self._physical(np.arange(65536))

    def __call__(self, data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        values = np.empty(data.shape, self.dtype) if out is None else out
        if data.dtype in (np.uint8, np.uint16):
            return np.take(self._table, data, out=values)
        values[...] = self._physical(data)
        return values


def _read_strips(
    src: Any,
    window: Window,
    factor: int,
    grid: GridSpec,
    convert: _Converter | None,
    out: np.ndarray | None,
    on_rows: Callable[[slice, np.ndarray], None] | None,
) -> np.ndarray:
    """Read ``window`` strip by strip, convert each strip (when ``convert``) and replicate its pixels
    ``factor`` x ``factor`` into the grid-shaped result."""
    dtype = convert.dtype if convert is not None else np.dtype(src.dtypes[0])
    target = out if out is not None else np.empty(grid.shape, dtype)
    raw = np.empty((min(STRIP_ROWS, window.height), window.width), src.dtypes[0])
    for row in range(0, window.height, STRIP_ROWS):
        rows = min(STRIP_ROWS, window.height - row)
        strip = raw[:rows]
        src.read(1, window=Window(window.col_off, window.row_off + row, window.width, rows), out=strip)
        dest = target[row * factor : (row + rows) * factor]
        if factor == 1:
            if convert is not None:
                convert(strip, dest)
            else:
                dest[...] = strip
        else:
            _replicate(convert(strip) if convert is not None else strip, factor, dest)
        if on_rows is not None:
            on_rows(slice(row * factor, (row + rows) * factor), dest)
    return target


@dataclass(frozen=True)
class S2Scene:
    """One Sentinel-2 acquisition on a tile grid.

    Attributes:
        item: the normalized item.
        grid: the grid of every array.
        bands: band names, in the order of ``reflectance``.
        reflectance: (band, row, col) physical reflectance: float32 with NaN where there is no data, or,
            when ``encoded``, int16 reflectance x 10^4 with `ENCODED_NODATA`.
        valid: (row, col) True where every band has data and SCL (when there is one) is not no-data or
            defective.
        scl: uint8 (row, col) scene classification (0 = no data), or None for Level-1C.
        encoded: whether ``reflectance`` is the int16 encoding.
    """

    item: SceneItem
    grid: GridSpec
    bands: tuple[str, ...]
    reflectance: np.ndarray
    valid: np.ndarray
    scl: np.ndarray | None
    encoded: bool = False

    def band(self, name: str) -> np.ndarray:
        """Reflectance of band ``name`` as float32, NaN where there is no data."""
        values = self.reflectance[self.bands.index(name)]
        if not self.encoded:
            return values
        return np.where(values == ENCODED_NODATA, np.nan, values * np.float32(ENCODED_SCALE)).astype(
            np.float32
        )


def load_s2_scene(
    item: SceneItem,
    grid: GridSpec,
    bands: Sequence[str] | None = None,
    threads: int | None = None,
    encoded: bool = False,
) -> S2Scene:
    """Load a Sentinel-2 item's reflectance bands (and SCL for Level-2A) onto ``grid``.

    Args:
        item: a normalized Sentinel-2 item.
        grid: target grid (typically `scene_grid`).
        bands: which bands; default all of the product's (`S2_L2A_BANDS` / `S2_L1C_BANDS`).
        threads: bands read at the same time (default: one per core, at most 4).
        encoded: reflectance as int16 x 10^4 (what `s2_scenes` stores) instead of float32.

    Raises:
        IngestError: naming the item and band, for a missing band or an unreadable file.
    """
    names = tuple(bands or (S2_L1C_BANDS if item.product == "L1C" else S2_L2A_BANDS))
    assets = [item.band(n) for n in names]  # missing bands fail before anything is read
    scl_asset = item.bands.get("SCL") if item.product == "L2A" else None
    out = np.empty((len(names), *grid.shape), dtype=np.int16 if encoded else np.float32)
    valid = np.ones(grid.shape, dtype=bool)
    lock = threading.Lock()

    def invalidate(rows: slice, values: np.ndarray) -> None:
        # on rows still in cache, outside the lock
        has_data = values != ENCODED_NODATA if encoded else ~np.isnan(values)
        with lock:
            valid[rows] &= has_data

    def load(i: int) -> None:
        read_band(assets[i], item.id, grid, out=out[i], on_rows=invalidate, encoded=encoded)

    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:
        scl_future = (
            pool.submit(read_band, scl_asset, item.id, grid, Resampling.nearest, False) if scl_asset else None
        )
        list(pool.map(load, range(len(names))))
        scl = scl_future.result().astype(np.uint8) if scl_future else None
    if scl is not None:
        valid &= scl >= SCL_FIRST_VALID
    return S2Scene(item=item, grid=grid, bands=names, reflectance=out, valid=valid, scl=scl, encoded=encoded)


@dataclass(frozen=True)
class S1Scene:
    """One Sentinel-1 acquisition on a tile grid.

    Attributes:
        item: the normalized item.
        grid: the grid of every array.
        backscatter: ``sigma0`` or ``gamma0`` (what the provider delivers, linear power before dB).
        vv_db, vh_db: speckle-filtered backscatter, dB (NaN where no data).
        vh_vv_db: the VH/VV ratio, dB (VH dB - VV dB).
        unfiltered: the unfiltered VV and VH dB, when asked for (``{"VV": ..., "VH": ...}``).
        coherence: VV coherence (0-1) when the provider has it, else None.
        speckle_filter: the filter applied (``none`` when unfiltered).
    """

    item: SceneItem
    grid: GridSpec
    backscatter: str
    vv_db: np.ndarray
    vh_db: np.ndarray
    vh_vv_db: np.ndarray
    unfiltered: dict[str, np.ndarray]
    coherence: np.ndarray | None
    speckle_filter: str


def load_s1_scene(
    item: SceneItem,
    grid: GridSpec,
    speckle_filter: bool = True,
    keep_unfiltered: bool = False,
    enl: float = 4.4,
) -> S1Scene:
    """Load a Sentinel-1 item's VV and VH onto ``grid`` (warping GCP-georeferenced files), speckle
    filter them in linear power (refined Lee, `kz_pipelines.sar.refined_lee`, with ``enl`` looks) and
    convert to dB.

    Raises:
        IngestError: naming the item, for a missing polarization, unreadable file, or digital numbers
            without calibration (GRD from a provider that does not calibrate).
    """
    vv_band, vh_band = item.band("VV"), item.band("VH")
    if vv_band.quantity == "dn":
        raise IngestError(
            f"item {item.id}: VV/VH are uncalibrated GRD digital numbers; use a calibrated collection "
            "(the provider profile's `s1`, e.g. Planetary Computer's sentinel-1-rtc) or the local catalog"
        )
    linear = {}
    for name, band in (("VV", vv_band), ("VH", vh_band)):
        values = read_band(band, item.id, grid, Resampling.nearest)
        values[values <= 0] = np.nan
        linear[name] = values
    unfiltered = {k: to_db(v) for k, v in linear.items()} if keep_unfiltered or not speckle_filter else {}
    if speckle_filter:
        linear = {k: refined_lee(v, enl=enl) for k, v in linear.items()}
        vv_db, vh_db = to_db(linear["VV"]), to_db(linear["VH"])
    else:
        vv_db, vh_db = unfiltered["VV"], unfiltered["VH"]
    coherence = (
        read_band(item.bands["COH_VV"], item.id, grid, Resampling.nearest) if "COH_VV" in item.bands else None
    )
    return S1Scene(
        item=item,
        grid=grid,
        backscatter=vv_band.quantity,
        vv_db=vv_db,
        vh_db=vh_db,
        vh_vv_db=vh_db - vv_db,
        unfiltered=unfiltered if keep_unfiltered else {},
        coherence=coherence,
        speckle_filter=f"refined Lee 7x7, ENL {enl}" if speckle_filter else "none",
    )
