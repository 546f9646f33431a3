"""Sentinel-1 backscatter: dB conversions, the refined Lee speckle filter and openEO cube decoding.

Units: ``linear`` is sigma0 as a power ratio (m2/m2); ``dB`` is ``10 * log10(linear)``. Missing pixels
are NaN everywhere in this module.

The openEO / CDSE back-ends (and WorldCereal, which builds on them) compress Sentinel-1 sigma0 to uint16
as ``DN = 10 ** ((dB + 83) / 20)``, i.e. ``dB = 20 * log10(DN) - 83``, with ``DN == 65535`` (and
``DN == 0``, which the formula cannot produce) as nodata. Sentinel-2 bands come as reflectance x 10000.
:func:`read_openeo_cube` reads such cubes through xarray where a netCDF engine for the file is installed,
and through GDAL's netCDF driver (rasterio) otherwise.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "OPENEO_NODATA",
    "OPENEO_SIGMA0_OFFSET_DB",
    "S1_IW_GRDH_ENL",
    "decode_openeo_sigma0_db",
    "decode_openeo_sigma0_linear",
    "encode_openeo_sigma0_db",
    "read_openeo_cube",
    "refined_lee",
    "to_db",
    "to_linear",
]

S1_IW_GRDH_ENL = 4.4
"""Equivalent number of looks of Sentinel-1 IW GRDH (ESA product definition: ~4.4)."""

OPENEO_SIGMA0_OFFSET_DB = 83.0
"""Offset of the openEO uint16 sigma0 code: dB = 20 * log10(DN) - 83."""

OPENEO_NODATA = 65535
"""uint16 nodata of openEO / WorldCereal cubes (S1 sigma0 and S2 bands)."""

S2_REFLECTANCE_SCALE = 10000.0
"""Sentinel-2 L2A reflectance quantification value (openEO delivers harmonized values, no BOA offset)."""

S2_ATMOSPHERE_SCALE = 1000.0
"""Sentinel-2 L2A AOT (unitless) and WVP (cm) quantification value."""

_S1_POLARISATIONS = frozenset({"VV", "VH", "HH", "HV"})
_S2_BAND = re.compile(r"^B(0[1-9]|1[0-2]|8A)$")
_SCL_MAX = 11
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ENGINE_MODULES = {"h5netcdf": ("h5netcdf", "h5py"), "netcdf4": ("netCDF4",), "scipy": ("scipy",)}
"""Modules each xarray netCDF engine needs (h5netcdf imports without h5py but cannot open files)."""

# Refined Lee sub-window size and stride per window size (PolSARpro ``lee_refined_filter`` table): the
# three sub-windows per axis start at 0, stride and 2 * stride and together span the whole window.
_SUBWINDOW: dict[int, tuple[int, int]] = {
    5: (3, 1),
    7: (3, 2),
    9: (5, 2),
    11: (5, 3),
    13: (5, 4),
    15: (7, 4),
    17: (7, 5),
}

Backend = Literal["auto", "xarray", "gdal"]


# --------------------------------------------------------------------------------------------- dB


def _float_array(values: ArrayLike) -> NDArray[np.floating]:
    """``values`` as a float array: float32 for small ints and float32, float64 otherwise."""
    arr = np.asarray(values)
    return arr.astype(np.result_type(arr.dtype, np.float32), copy=False)


def to_db(linear: ArrayLike) -> NDArray[np.floating]:
    """Linear power to decibels: ``10 * log10(linear)``.

    Args:
        linear: power values (sigma0, gamma0 ...), any shape.

    Returns:
        dB, same shape; float32 for float32/small-int input, float64 otherwise. NaN where the input is
        NaN or <= 0 (no numpy warning is emitted).
    """
    x = _float_array(linear)
    out = np.full(x.shape, np.nan, dtype=x.dtype)
    np.log10(x, out=out, where=x > 0)
    out *= 10
    return out


def to_linear(db: ArrayLike) -> NDArray[np.floating]:
    """Decibels to linear power: ``10 ** (db / 10)``.

    Args:
        db: values in dB, any shape.

    Returns:
        linear power, same shape and float dtype rule as :func:`to_db`; NaN stays NaN, values beyond the
        dtype's range become inf (silently).
    """
    x = _float_array(db)
    with np.errstate(over="ignore"):
        return np.power(x.dtype.type(10), x / 10)


# ------------------------------------------------------------------------------ openEO sigma0 code


def _openeo_valid(dn: NDArray[Any]) -> NDArray[np.bool_]:
    """DN that carry a value: 0 < DN < 65535 (NaN, 0, 65535 and negatives are nodata)."""
    return (dn > 0) & (dn < OPENEO_NODATA)


def decode_openeo_sigma0_db(dn: ArrayLike) -> NDArray[np.float32]:
    """Decode openEO / CDSE / WorldCereal uint16 sigma0 to dB.

    Args:
        dn: digital numbers (uint16, or any numeric type holding them), any shape.

    Returns:
        float32 ``20 * log10(DN) - 83`` dB; NaN where DN is 65535 or 0 (nodata).
    """
    x = np.asarray(dn).astype(np.float32)
    out = np.full(x.shape, np.nan, dtype=np.float32)
    np.log10(x, out=out, where=_openeo_valid(x))
    out *= 20
    out -= OPENEO_SIGMA0_OFFSET_DB
    return out


def decode_openeo_sigma0_linear(dn: ArrayLike) -> NDArray[np.float32]:
    """Decode openEO uint16 sigma0 to linear power: ``DN**2 * 10**-8.3``.

    Args:
        dn: digital numbers, any shape.

    Returns:
        float32 linear sigma0; NaN where DN is 65535 or 0 (nodata).
    """
    x = np.asarray(dn).astype(np.float32)
    scaled = x * np.float32(10.0 ** (-OPENEO_SIGMA0_OFFSET_DB / 20))
    return np.where(_openeo_valid(x), scaled * scaled, np.float32(np.nan)).astype(np.float32)


def encode_openeo_sigma0_db(db: ArrayLike) -> NDArray[np.uint16]:
    """Encode dB to the openEO uint16 code (the inverse of :func:`decode_openeo_sigma0_db`).

    Args:
        db: sigma0 in dB, any shape.

    Returns:
        uint16 ``round(10 ** ((dB + 83) / 20))`` clipped to 1..65534 (-83 dB .. +13.3 dB); 65535 where the
        input is NaN or infinite. The code step is ``8.7 / DN`` dB (0.009 dB at -23 dB).
    """
    x = np.asarray(db, dtype=np.float64)
    finite = np.isfinite(x)
    with np.errstate(over="ignore"):
        dn = np.power(10.0, (np.where(finite, x, 0.0) + OPENEO_SIGMA0_OFFSET_DB) / 20)
    dn = np.clip(np.rint(dn), 1, OPENEO_NODATA - 1)
    return np.where(finite, dn, OPENEO_NODATA).astype(np.uint16)


# -------------------------------------------------------------------------------- refined Lee


def refined_lee(
    intensity: ArrayLike,
    window: int = 7,
    enl: float = S1_IW_GRDH_ENL,
    *,
    tile: tuple[int, int] = (64, 1024),
    workers: int | None = None,
) -> NDArray[np.float32]:
    """Refined Lee speckle filter with edge-aligned directional windows.

    The filter of Lee (1981), as used for single-channel intensity in Lee, Grunes & de Grandi (1999):

    1. The ``window`` x ``window`` neighbourhood is covered by 3 x 3 overlapping sub-windows (3 x 3 pixels
       each at the default 7 x 7, stride 2); their means form a 3 x 3 array.
    2. Four gradients of that array (horizontal, vertical, two diagonals) give the edge direction: the one
       of largest magnitude.
    3. Of the two sides of that edge, the side whose outer sub-window mean is closer to the centre
       sub-window mean is kept: one of 8 non-square windows -- a half window (7 x 4 or 4 x 7) for a
       vertical/horizontal edge, a triangle including the diagonal (28 pixels) for a diagonal edge.
    4. The local mean ``m`` and (population) variance ``v`` of that window give the Lee MMSE estimate
       ``m + b * (y - m)``, ``b = clip((v - m**2 / enl) / (v * (1 + 1 / enl)), 0, 1)``.

    Missing pixels (NaN, inf) and the area outside the image are left out of every local statistic (the
    windows are renormalized by their valid-pixel count) and stay NaN in the output, so nodata does not
    spread. An empty sub-window adds no gradient and counts as infinitely far when the side is chosen, so
    windows next to nodata turn away from it.

    Vectorized: every window sum is a sum of shifted views of the flattened tile (no per-pixel loop); the
    image is processed in tiles with a halo of ``window // 2`` pixels, in parallel threads. The result
    does not depend on ``tile`` or ``workers``.

    References:
        J.-S. Lee, "Refined filtering of image noise using local statistics", Computer Graphics and
        Image Processing 15(4):380-389, 1981.
        J.-S. Lee, M. R. Grunes, G. de Grandi, "Polarimetric SAR speckle filtering and its implication
        for classification", IEEE TGRS 37(5):2363-2373, 1999.
        Sub-window sizes for windows other than 7 follow PolSARpro's ``lee_refined_filter``.

    Args:
        intensity: 2-D linear intensity (sigma0/gamma0 power, not dB, not amplitude), (y, x).
        window: window size, odd, 5..17 (7: the published filter).
        enl: equivalent number of looks of the input (Sentinel-1 IW GRDH: 4.4).
        tile: (rows, cols) processed at once; the working memory is ~300 bytes per tile pixel and worker
            (~20 MB at the default) besides the float32 output.
        workers: threads; default: the CPUs available to this process.

    Returns:
        float32 filtered intensity, same shape; NaN exactly where the input is not finite.
    """
    img = np.asarray(intensity, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"refined_lee filters one 2-D image, got shape {img.shape}")
    if window not in _SUBWINDOW:
        raise ValueError(f"window must be one of {sorted(_SUBWINDOW)}, got {window}")
    if not enl > 0:
        raise ValueError(f"enl must be positive, got {enl}")
    if tile[0] < 1 or tile[1] < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    out = np.empty(img.shape, dtype=np.float32)
    half = window // 2
    sub, stride = _SUBWINDOW[window]

    def run(bounds: tuple[int, int, int, int]) -> None:
        r0, r1, c0, c1 = bounds
        out[r0:r1, c0:c1] = _refined_lee_tile(_padded_tile(img, bounds, half), half, sub // 2, stride, enl)

    tiles = list(_tiles(img.shape, tile))
    n_workers = min(workers or _available_cpus(), len(tiles))
    if n_workers <= 1:
        for bounds in tiles:
            run(bounds)
    else:
        with ThreadPoolExecutor(n_workers) as pool:
            for _ in pool.map(run, tiles):
                pass
    return out


def _available_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _tiles(shape: tuple[int, ...], tile: tuple[int, int]) -> Iterator[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) of the tiles covering ``shape``."""
    for r0 in range(0, shape[0], tile[0]):
        for c0 in range(0, shape[1], tile[1]):
            yield r0, min(r0 + tile[0], shape[0]), c0, min(c0 + tile[1], shape[1])


def _padded_tile(
    img: NDArray[np.float32], bounds: tuple[int, int, int, int], halo: int
) -> NDArray[np.float32]:
    """The tile plus a ``halo`` of neighbours; NaN beyond the image edge."""
    r0, r1, c0, c1 = bounds
    buf = np.full((r1 - r0 + 2 * halo, c1 - c0 + 2 * halo), np.nan, dtype=np.float32)
    sr0, sr1 = max(r0 - halo, 0), min(r1 + halo, img.shape[0])
    sc0, sc1 = max(c0 - halo, 0), min(c1 + halo, img.shape[1])
    buf[sr0 - r0 + halo : sr1 - r0 + halo, sc0 - c0 + halo : sc1 - c0 + halo] = img[sr0:sr1, sc0:sc1]
    return buf


def _refined_lee_tile(p: NDArray[np.float32], k: int, q: int, d: int, enl: float) -> NDArray[np.float32]:
    """Refined Lee on the centre of a padded tile.

    The tile is processed as one flat array: a shift by (di, dj) pixels is a shift by ``di * width + dj``
    elements, so every step is a contiguous 1-D operation. Positions in the halo columns get meaningless
    values that are cut off at the end; no valid output reads across a row boundary.

    Args:
        p: C-contiguous tile with a halo of ``k`` pixels on each side, (h + 2k, w + 2k), NaN = missing.
        k: window half size.
        q: sub-window half size.
        d: sub-window stride (``d + q == k``).
        enl: equivalent number of looks.

    Returns:
        the filtered (h, w) centre.
    """
    rows, width = p.shape
    h, w = rows - 2 * k, width - 2 * k
    flat = p.reshape(-1)
    valid = np.isfinite(flat)
    complete = bool(valid.all())  # the common case: counts are constants, no count channel
    # per-pixel channels: value, [valid count,] value squared -- 0 where missing
    qty = np.empty((2 if complete else 3, flat.size), dtype=np.float32)
    np.copyto(qty[0], flat)
    if not complete:
        qty[0][~valid] = 0
        qty[1] = valid
    np.multiply(qty[0], qty[0], out=qty[-1])

    grid = _FlatGrid(width, start=k * width + k, size=(h - 1) * width + w)
    choice = _edge_windows(qty[: 1 if complete else 2], grid, q, d)
    selected = _directional_sums(qty, grid, k, choice)

    size = np.float32((k + 1) * (2 * k + 1))  # pixels in every directional window
    count = np.full(grid.size, size) if complete else selected[1]
    mean = np.divide(selected[0], count, out=np.zeros(grid.size, np.float32), where=count > 0)
    var = np.divide(selected[-1], count, out=np.zeros(grid.size, np.float32), where=count > 0)
    mean_sq = mean * mean
    var -= mean_sq
    np.maximum(var, 0, out=var)
    noise = np.float32(1.0 / enl)  # squared coefficient of variation of the speckle
    mean_sq *= noise
    np.subtract(var, mean_sq, out=mean_sq)
    weight = np.divide(mean_sq, var * (1 + noise), out=np.zeros(grid.size, np.float32), where=var > 0)
    np.clip(weight, 0, 1, out=weight)
    filtered = np.empty(h * width, dtype=np.float32)
    out = filtered[: grid.size]
    np.subtract(grid.at(qty[0], 0), mean, out=out)  # missing centres: 0, then NaN
    out *= weight
    out += mean
    if not complete:
        out[~grid.at(valid, 0)] = np.nan
    return filtered.reshape(h, width)[:, :w]


@dataclass(frozen=True)
class _FlatGrid:
    """Output positions of a flattened padded tile.

    Attributes:
        width: padded tile width (elements per row).
        start: flat index of the first output pixel.
        size: flat span from the first to the last output pixel, inclusive.
    """

    width: int
    start: int
    size: int

    def offset(self, di: int, dj: int) -> int:
        """Flat offset of a shift by ``di`` rows and ``dj`` columns."""
        return di * self.width + dj

    def at(self, x: NDArray[Any], offset: int, grow: int = 0) -> NDArray[Any]:
        """``x`` (..., flat) seen from every output position shifted by ``offset``, span grown by ``grow``."""
        return x[..., self.start + offset - grow : self.start + offset + self.size + grow]


def _shifted_sum(x: NDArray[np.float32], offsets: list[int], out: NDArray[np.float32]) -> NDArray[np.float32]:
    """``out[..., t] = sum(x[..., t + o] for o in offsets)``; ``x`` must reach ``max(offsets)`` beyond out."""
    n = out.shape[-1]
    lo = min(offsets)
    np.copyto(out, x[..., offsets[0] - lo : offsets[0] - lo + n])
    for o in offsets[1:]:
        out += x[..., o - lo : o - lo + n]
    return out


def _directional_sums(
    qty: NDArray[np.float32], grid: _FlatGrid, k: int, choice: NDArray[np.int8]
) -> NDArray[np.float32]:
    """Sums of each channel over the chosen one of the 8 edge-aligned windows of half size ``k``.

    Windows, by index: 0 left half, 1 upper-right triangle, 2 upper half, 3 upper-left triangle, 4 right
    half, 5 lower-left triangle, 6 lower half, 7 lower-right triangle; each includes the centre row,
    column or diagonal, and ``i + 4`` is the other side of the edge of window ``i``.

    Args:
        qty: (channels, flat) per-pixel quantities of the padded tile.
        grid: the output positions.
        k: window half size.
        choice: (grid.size,) window index per output position.

    Returns:
        (channels, grid.size) sums.
    """
    channels, n = qty.shape[0], grid.size
    span = grid.width * k  # g is needed k rows above and below the output span
    # g[k + m]: horizontal sums over column offsets -k..m, m = -k..k
    g = np.empty((2 * k + 1, channels, n + 2 * span), dtype=np.float32)
    lo = grid.start - span - k  # column offset -k of the first row needed
    base = qty[..., lo : lo + n + 2 * span + 2 * k]
    np.copyto(g[0], base[..., : n + 2 * span])
    for j in range(1, 2 * k + 1):
        np.add(g[j - 1], base[..., j : j + n + 2 * span], out=g[j])

    def vertical(x: NDArray[np.float32], di: list[int], out: NDArray[np.float32]) -> NDArray[np.float32]:
        """Sum of ``x`` (laid out like g) over the rows ``di`` relative to each output."""
        return _shifted_sum(x[..., span + min(di) * grid.width :], [i * grid.width for i in di], out)

    selected = np.zeros((channels, n), dtype=np.float32)
    window = np.empty((channels, n), dtype=np.float32)
    full = np.empty((channels, n), dtype=np.float32)
    scratch = np.empty((channels, n), dtype=np.float32)

    def keep(index: int) -> None:
        """Add ``window`` where it is the chosen one."""
        np.multiply(window, (choice == index).astype(np.float32), out=scratch)
        np.add(selected, scratch, out=selected)

    every, upper, lower = list(range(-k, k + 1)), list(range(-k, 1)), list(range(0, k + 1))
    vertical(g[k], every, window)
    keep(0)
    vertical(g[2 * k] - g[k - 1], every, window)
    keep(4)
    vertical(g[2 * k], upper, full)
    np.copyto(window, full)
    keep(2)
    vertical(g[2 * k], lower, window)
    keep(6)
    full += window
    full -= vertical(g[2 * k], [0], window)
    # upper-left triangle (i + j <= 0): row i covers column offsets -k..-i
    for i in every:
        rowsum = g[k - i][..., span + i * grid.width : span + i * grid.width + n]
        if i == -k:
            np.copyto(window, rowsum)
        else:
            window += rowsum
    keep(3)
    # lower-right triangle (i + j >= 0): the full window minus the upper-left plus the anti-diagonal
    np.subtract(full, window, out=window)
    for i in every:
        window += grid.at(qty, grid.offset(i, -i))
    keep(7)
    # upper-right triangle (j >= i): row i covers i..k, i.e. all but -k..i-1 (nothing to remove in row -k)
    np.copyto(window, full)
    for i in every[1:]:
        window -= g[k + i - 1][..., span + i * grid.width : span + i * grid.width + n]
    keep(1)
    # lower-left triangle (j <= i): the full window minus the upper-right plus the main diagonal
    np.subtract(full, window, out=window)
    for i in every:
        window += grid.at(qty, grid.offset(i, i))
    keep(5)
    return selected


def _edge_windows(qty: NDArray[np.float32], grid: _FlatGrid, q: int, d: int) -> NDArray[np.int8]:
    """Index (0..7, see :func:`_directional_sums`) of the edge-aligned window of each output position.

    The edge direction is that of the largest of four gradients of the 3 x 3 sub-window means (ties: the
    first of vertical edge, main diagonal, horizontal edge, anti-diagonal). The window is on the side
    whose outer sub-window mean is closer to the centre sub-window mean (ties: window ``i``, not
    ``i + 4``). An empty sub-window (no valid pixel) counts as level with the centre for the gradients
    and as infinitely far for the side, so windows do not turn towards nodata.

    Args:
        qty: (1, flat) values of a complete tile, or (2, flat) values and valid counts.
        grid: the output positions.
        q: sub-window half size.
        d: sub-window stride.

    Returns:
        (grid.size,) window index, int8.
    """
    n = grid.size
    reach = grid.offset(d, d)  # sub-window centres lie within +-reach of the output positions
    # (2q+1)^2 box sums on the output span grown by reach
    cols = np.empty((qty.shape[0], n + 2 * reach + 2 * q * grid.width), dtype=np.float32)
    _shifted_sum(grid.at(qty, 0, grow=reach + q * grid.width + q), list(range(-q, q + 1)), cols)
    box = np.empty((qty.shape[0], n + 2 * reach), dtype=np.float32)
    _shifted_sum(cols, [i * grid.width for i in range(-q, q + 1)], box)
    complete = qty.shape[0] == 1
    if complete:
        level = box[0]  # equal counts: sums rank like means
    else:
        level = np.full(box.shape[1:], np.nan, dtype=np.float32)
        np.divide(box[0], box[1], out=level, where=box[1] > 0)

    def sub(a: int, b: int) -> NDArray[np.float32]:
        """Level of the sub-window at row a, column b (0..2) of the 3 x 3 grid, per output position."""
        o = reach + grid.offset((a - 1) * d, (b - 1) * d)
        return level[o : o + n]

    centre = sub(1, 1)
    raw = [[sub(a, b) for b in range(3)] for a in range(3)]
    m = raw if complete else [[np.where(np.isnan(x), centre, x) for x in row] for row in raw]

    def magnitude(plus: tuple[int, ...], minus: tuple[int, ...]) -> NDArray[np.float32]:
        """|sum of the ``plus`` sub-windows - sum of the ``minus`` ones| (indices a * 3 + b)."""
        out = m[plus[0] // 3][plus[0] % 3] + m[plus[1] // 3][plus[1] % 3]
        out += m[plus[2] // 3][plus[2] % 3]
        for i in minus:
            out -= m[i // 3][i % 3]
        return np.abs(out, out=out)

    vertical_edge = magnitude((2, 5, 8), (0, 3, 6))
    main_diagonal = magnitude((1, 2, 5), (3, 6, 7))
    horizontal_edge = magnitude((0, 1, 2), (6, 7, 8))
    anti_diagonal = magnitude((0, 1, 3), (5, 7, 8))

    def other_side(first: int, second: int) -> NDArray[np.bool_]:
        """Whether the outer sub-window ``second`` is strictly closer to the centre than ``first``."""
        near_first, near_second = (np.abs(raw[i // 3][i % 3] - centre) for i in (first, second))
        if not complete:
            near_first[np.isnan(near_first)] = np.inf
            near_second[np.isnan(near_second)] = np.inf
        return near_second < near_first

    # tournament (first maximum wins, as argmax): direction 0..3 and the side of its edge, with bit
    # operations (np.where on a random mask costs ~20 adds)
    late_01 = main_diagonal > vertical_edge
    late_23 = anti_diagonal > horizontal_edge
    late = np.maximum(horizontal_edge, anti_diagonal) > np.maximum(vertical_edge, main_diagonal)
    side_0, side_1 = other_side(3, 5), other_side(2, 6)
    side_2, side_3 = other_side(1, 7), other_side(0, 8)
    side_01 = side_0 ^ (late_01 & (side_0 ^ side_1))
    side_23 = side_2 ^ (late_23 & (side_2 ^ side_3))
    side = side_01 ^ (late & (side_01 ^ side_23))
    first, second = late_01.view(np.int8), late_23.view(np.int8) + np.int8(2)
    choice = first + late.view(np.int8) * (second - first)
    choice += np.int8(4) * side.view(np.int8)
    return choice


# ------------------------------------------------------------------------------ openEO cubes


def read_openeo_cube(path: str | os.PathLike[str], *, backend: Backend = "auto") -> xr.Dataset:
    """Open an openEO netCDF cube (CDSE / Geotrellis back-end) in physical units.

    Variables are renamed to their band names (``S1-SIGMA0-VV`` -> ``VV``, ``S2-L2A-B04`` -> ``B04``; the
    file's name is kept in the ``source_name`` attribute) and decoded:

    - S1 ``VV``/``VH``/``HH``/``HV``: float32 sigma0 in dB (``20 * log10(DN) - 83``); DN 0/65535 -> NaN.
    - S2 ``B01``..``B12``, ``B8A``: float32 reflectance ``DN / 10000``; DN 0/65535 -> NaN.
    - ``AOT`` (unitless), ``WVP`` (cm): float32 ``DN / 1000``; DN 0/65535 -> NaN.
    - ``SCL``: uint8 scene classes 0..11; anything else (65535 fill) -> 0, SCL's own "no data" class.
    - anything else: unchanged, with ``decoded = "no"`` in its attributes.

    The time dimension ``t`` is renamed ``time``; ``x``/``y`` (pixel centres, metres) are kept, y
    descending. The grid mapping is a scalar ``crs`` coordinate with ``crs_wkt``, ``spatial_ref`` and
    ``epsg`` attributes, and each variable keeps ``grid_mapping = "crs"``.

    Args:
        path: the ``.nc`` file (netCDF3 or netCDF4/HDF5).
        backend: ``"xarray"`` (needs an xarray engine for the format: ``h5netcdf`` or ``netCDF4`` for
            netCDF4/HDF5 files, ``scipy`` for netCDF3), ``"gdal"`` (rasterio's netCDF driver), or
            ``"auto"``: xarray where an engine is installed, GDAL otherwise.

    Returns:
        the decoded dataset, loaded in memory, dims (time, y, x).
    """
    path = Path(path)
    if backend == "auto":
        backend = "xarray" if _xarray_engine(path) else "gdal"
    if backend == "xarray":
        engine = _xarray_engine(path)
        if engine is None:
            raise ValueError(
                f"no installed xarray engine reads {path.name}; install h5netcdf or use backend='gdal'"
            )
        raw = _open_with_xarray(path, engine)
    elif backend == "gdal":
        raw = _open_with_gdal(path)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return _decode_cube(raw)


def _xarray_engine(path: Path) -> str | None:
    """An xarray engine whose libraries are installed and that reads this netCDF file, or None."""
    with path.open("rb") as f:
        magic = f.read(8)
    candidates = ("h5netcdf", "netcdf4") if magic == _HDF5_MAGIC else ("netcdf4", "scipy")
    return next((e for e in candidates if all(find_spec(m) for m in _ENGINE_MODULES[e])), None)


def _open_with_xarray(path: Path, engine: str) -> xr.Dataset:
    """The raw cube through xarray: stored integers (``_Unsigned`` applied), times decoded."""
    with xr.open_dataset(path, engine=engine, mask_and_scale=False) as ds:
        raw = ds.load()
    for name, var in raw.data_vars.items():
        if str(var.attrs.get("_Unsigned", "")).lower() == "true" and var.dtype.kind == "i":
            unsigned = np.dtype(f"u{var.dtype.itemsize}")
            raw[name] = var.copy(data=var.values.view(unsigned))
            raw[name].attrs.pop("_Unsigned")
            if "_FillValue" in raw[name].attrs:
                raw[name].attrs["_FillValue"] = (
                    np.array(raw[name].attrs["_FillValue"]).astype(var.dtype).view(unsigned)
                )
    return raw


def _open_with_gdal(path: Path) -> xr.Dataset:
    """The raw cube through GDAL's netCDF driver (rasterio), in the layout xarray would give."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        # the container of a multi-variable netCDF has no geotransform; its subdatasets have
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as container:
            subdatasets = list(container.subdatasets)
            global_attrs = _prefixed(container.tags(), "NC_GLOBAL#")
    if not subdatasets:
        raise ValueError(f"{path} has no netCDF variables on a grid")
    data_vars: dict[str, xr.Variable] = {}
    coords: dict[str, xr.Variable] = {}
    for sds in subdatasets:
        name = sds.rsplit(":", 1)[-1]
        with rasterio.open(sds) as src:
            data = src.read()
            tags = src.tags()
            band_tags = [src.tags(i) for i in src.indexes]
            transform, height, width = src.transform, src.height, src.width
        extra = tags.get("NETCDF_DIM_EXTRA", "{}").strip("{}")
        extra_dims = [e for e in extra.split(",") if e]
        if len(extra_dims) > 1:
            raise NotImplementedError(f"{name}: more than one non-spatial dimension ({extra_dims})")
        if extra_dims:
            dim = extra_dims[0]
            values = np.array([float(bt[f"NETCDF_DIM_{dim}"]) for bt in band_tags])
            if values.size and np.all(values == np.round(values)):
                values = values.astype(np.int64)
            coords[dim] = xr.Variable(dim, values, _prefixed(tags, f"{dim}#"))
            data_vars[name] = xr.Variable((dim, "y", "x"), data, _prefixed(tags, f"{name}#"))
        else:
            data_vars[name] = xr.Variable(("y", "x"), data[0], _prefixed(tags, f"{name}#"))
        coords["x"] = xr.Variable(
            "x", transform.c + (np.arange(width) + 0.5) * transform.a, _prefixed(tags, "x#")
        )
        coords["y"] = xr.Variable(
            "y", transform.f + (np.arange(height) + 0.5) * transform.e, _prefixed(tags, "y#")
        )
        grid_mapping = data_vars[name].attrs.get("grid_mapping")
        if grid_mapping and (crs_attrs := _prefixed(tags, f"{grid_mapping}#")):
            data_vars[str(grid_mapping)] = xr.Variable((), np.array(b"", dtype="S1"), crs_attrs)
    for var in data_vars.values():
        var.attrs.pop("_Unsigned", None)  # GDAL has applied it
    return xr.decode_cf(xr.Dataset(data_vars, coords, global_attrs), mask_and_scale=False)


def _prefixed(tags: dict[str, str], prefix: str) -> dict[str, Any]:
    """GDAL metadata items ``prefix + key`` as attributes, numbers parsed."""
    attrs: dict[str, Any] = {}
    for key, value in tags.items():
        if key.startswith(prefix) and not key.startswith("NETCDF_"):
            attrs[key[len(prefix) :]] = _parse_number(value)
    return attrs


def _parse_number(value: str) -> Any:
    """An int or float where the text is one, the text otherwise."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _band_name(name: Hashable) -> str:
    """``S1-SIGMA0-VV`` -> ``VV``, ``S2-L2A-B04`` -> ``B04``; other names unchanged."""
    text = str(name)
    return text.rsplit("-", 1)[-1] if text.startswith(("S1-", "S2-")) else text


def _decode_cube(raw: xr.Dataset) -> xr.Dataset:
    """Physical values, band names, a ``crs`` coordinate and a ``time`` dimension."""
    grid_mappings = {
        str(v.attrs["grid_mapping"]) for v in raw.data_vars.values() if "grid_mapping" in v.attrs
    }
    crs_name = next(iter(sorted(grid_mappings)), None)
    out = xr.Dataset(attrs=dict(raw.attrs))
    for name, var in raw.data_vars.items():
        if str(name) in grid_mappings:
            continue
        band = _band_name(name)
        data, attrs = _decode_band(band, var.values, var.attrs)
        attrs["source_name"] = str(name)
        if crs_name is not None:
            attrs["grid_mapping"] = "crs"
        out[band] = xr.Variable(var.dims, data, attrs)
    for name, coord in raw.coords.items():
        attrs = {k: v for k, v in coord.attrs.items() if k != "_FillValue"}  # coordinates have no gaps
        out = out.assign_coords({name: xr.Variable(coord.dims, coord.values, attrs)})
    if crs_name is not None:
        crs_attrs = dict(raw[crs_name].attrs)
        wkt = crs_attrs.get("crs_wkt") or crs_attrs.get("spatial_ref")
        if wkt:
            from pyproj import CRS

            epsg = CRS.from_wkt(str(wkt)).to_epsg()
            if epsg is not None:
                crs_attrs["epsg"] = epsg
        out = out.assign_coords(crs=xr.Variable((), np.int32(0), crs_attrs))
    if "t" in out.dims:
        out = out.rename({"t": "time"})
    if "y" in out.dims and out.sizes["y"] > 1 and float(out["y"][0]) < float(out["y"][-1]):
        out = out.isel(y=slice(None, None, -1))
    return out


def _decode_band(band: str, dn: NDArray[Any], attrs: dict[str, Any]) -> tuple[NDArray[Any], dict[str, Any]]:
    """Physical values and attributes of one openEO band from its stored integers."""
    kind = (
        "sigma0"
        if band in _S1_POLARISATIONS
        else "reflectance"
        if _S2_BAND.match(band)
        else "atmosphere"
        if band in ("AOT", "WVP")
        else "scl"
        if band == "SCL"
        else None
    )
    if kind is None:
        return dn, {k: v for k, v in attrs.items() if k != "grid_mapping"} | {"decoded": "no"}
    if dn.dtype.kind not in "iu":
        raise ValueError(f"{band}: expected openEO uint16 codes, got {dn.dtype}")
    if kind == "scl":
        scl = np.where((dn >= 0) & (dn <= _SCL_MAX), dn, 0).astype(np.uint8)
        return scl, {"long_name": "Sentinel-2 L2A scene classification", "nodata": 0}
    if kind == "sigma0":
        values = decode_openeo_sigma0_db(dn)
        new_attrs = {"units": "dB", "long_name": f"sigma0 {band}"}
    else:
        scale = S2_REFLECTANCE_SCALE if kind == "reflectance" else S2_ATMOSPHERE_SCALE
        values = dn.astype(np.float32) / np.float32(scale)
        values[~_openeo_valid(dn)] = np.nan
        units = "1" if band != "WVP" else "cm"
        new_attrs = {"units": units, "long_name": f"Sentinel-2 L2A {band}"}
    fill = attrs.get("_FillValue")
    if fill is not None:
        values[dn == fill] = np.nan
    return values, new_attrs
