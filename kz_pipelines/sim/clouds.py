"""Clouds over a scene: thick and semi-transparent cloud, cirrus, shadows displaced by the sun,
the true 5-class mask (KappaMask classes) and an imperfect Sen2Cor-like scene classification (SCL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

__all__ = [
    "CLEAR",
    "CLOUD",
    "MISSING",
    "SEMI_TRANSPARENT",
    "SHADOW",
    "CloudScene",
    "make_clouds",
    "scene_classification",
]

MISSING, CLEAR, SHADOW, SEMI_TRANSPARENT, CLOUD = 0, 1, 2, 3, 4
"""The 5 classes of the true cloud mask (as KappaMask)."""

_COARSE = 6  # cloud fields are drawn at 60 m and interpolated to 10 m


@dataclass
class CloudScene:
    """Cloud layers of one scene on the 10 m render grid.

    Attributes:
        opacity: thick/medium cloud opacity, 0..1, shape (rows, cols), float32.
        cirrus: thin high cloud opacity, 0..1, same shape.
        shadow: shadow strength (fraction of direct sunlight blocked), 0..1, same shape.
        valid: False where the scene has no data (outside the swath), same shape.
        truth: true class per pixel (MISSING..CLOUD), same shape, uint8.
    """

    opacity: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    valid: np.ndarray
    truth: np.ndarray


def _fractal(rng: np.random.Generator, shape: tuple[int, int], scales: tuple[float, ...]) -> np.ndarray:
    """Multi-scale smooth noise with unit standard deviation (sigmas in coarse pixels)."""
    out = np.zeros(shape, np.float32)
    for i, s in enumerate(scales):
        layer = gaussian_filter(rng.standard_normal(shape).astype(np.float32), s, mode="wrap")
        out += layer / max(float(layer.std()), 1e-6) * (0.6**i)
    return out / max(float(out.std()), 1e-6)


def _to_fine(field: np.ndarray, shape: tuple[int, int], pad: int, rs: int, cs: int) -> np.ndarray:
    """Cut the window (offset rs, cs in coarse pixels) from a padded coarse field and zoom to 10 m."""
    rows, cols = shape
    nr, nc = rows // _COARSE, cols // _COARSE
    win = field[pad + rs : pad + rs + nr + 1, pad + cs : pad + cs + nc + 1]
    fine = zoom(win, _COARSE, order=1, grid_mode=True, mode="nearest")
    return fine[:rows, :cols].astype(np.float32)


def make_clouds(
    rng: np.random.Generator, shape: tuple[int, int], sun_azimuth: float, sun_elevation: float
) -> CloudScene:
    """Draw the clouds of one scene.

    The cloud regime follows a Northern European summer: about a quarter of acquisitions nearly
    clear, most partly cloudy, about a third mostly overcast. Shadows are the thick cloud field
    displaced by cloud height x tan(solar zenith) away from the sun.

    Args:
        rng: random generator.
        shape: (rows, cols) of the 10 m render grid (multiples of 6).
        sun_azimuth: degrees clockwise from north.
        sun_elevation: degrees.
    """
    rows, cols = shape
    regime = rng.choice(3, p=[0.25, 0.45, 0.30])
    cover = [rng.uniform(0.0, 0.03), rng.uniform(0.08, 0.6), rng.uniform(0.7, 1.0)][regime]
    height = rng.uniform(800.0, 3000.0)  # metres
    zenith = math.radians(90.0 - sun_elevation)
    dist = height * math.tan(zenith) / (10.0 * _COARSE)  # coarse pixels
    az = math.radians(sun_azimuth)
    # shadow lies away from the sun: east = +col, north = -row
    d_col, d_row = -dist * math.sin(az), dist * math.cos(az)
    pad = int(math.ceil(dist)) + 2
    cshape = (rows // _COARSE + 2 * pad + 2, cols // _COARSE + 2 * pad + 2)
    f = _fractal(rng, cshape, (2.0, 5.0, 12.0, 30.0))
    q = float(np.quantile(f, 1.0 - cover)) if cover > 0 else float(f.max()) + 1
    softness = rng.uniform(0.25, 0.6)
    thick = np.clip((f - q) / softness + 0.5, 0.0, 1.0) ** 0.8
    opacity = _to_fine(thick, shape, pad, 0, 0)
    shadow = _to_fine(thick, shape, pad, -int(round(d_row)), -int(round(d_col))) * rng.uniform(0.6, 0.85)
    cirrus = np.zeros(shape, np.float32)
    if rng.random() < 0.3:
        streak = gaussian_filter(rng.standard_normal(cshape).astype(np.float32), (3.0, 20.0), mode="wrap")
        streak = streak / max(float(streak.std()), 1e-6)
        cirrus = _to_fine(np.clip((streak - 0.2) * rng.uniform(0.15, 0.3), 0.0, 0.45), shape, pad, 0, 0)
    valid = np.ones(shape, bool)
    if rng.random() < 0.12:  # swath edge crossing the window
        yy, xx = np.ogrid[0:rows, 0:cols]  # broadcast, not two full int64 grids
        angle = rng.uniform(-0.3, 0.3)
        edge = rng.uniform(0.3, 0.8) * cols
        valid = (xx - edge) * math.cos(angle) + (yy - rows / 2) * math.sin(angle) < 0
    total = 1.0 - (1.0 - opacity) * (1.0 - cirrus)
    truth = np.full(shape, CLEAR, np.uint8)
    truth[(shadow >= 0.25) & (total < 0.1)] = SHADOW
    truth[total >= 0.1] = SEMI_TRANSPARENT
    truth[opacity >= 0.5] = CLOUD
    truth[~valid] = MISSING
    return CloudScene(opacity, cirrus, shadow * (opacity < 0.5), valid, truth)


def scene_classification(
    rng: np.random.Generator, clouds: CloudScene, boa: dict[str, np.ndarray], water: np.ndarray
) -> np.ndarray:
    """A Sen2Cor-like SCL at 20 m that is plausibly imperfect.

    It finds thick cloud well, but misses much of the thin cloud and cloud shadow, and flags a few
    bright bare-soil patches as cloud, as Sen2Cor does.

    Args:
        rng: random generator.
        clouds: the scene's clouds (10 m).
        boa: 10 m surface reflectance of bands B04, B08, B11 after clouds, keyed by band id.
        water: True on water pixels (10 m).

    Returns:
        SCL codes (0 no data, 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water,
        8/9 cloud medium/high probability, 10 thin cirrus), shape (rows/2, cols/2), uint8.
    """
    sub = (slice(0, None, 2), slice(0, None, 2))
    op, ci, sh = clouds.opacity[sub], clouds.cirrus[sub], clouds.shadow[sub]
    red, nir, swir = boa["B04"][sub], boa["B08"][sub], boa["B11"][sub]
    shape = op.shape
    luck = 0.5 + 0.5 * np.tanh(gaussian_filter(rng.standard_normal(shape).astype(np.float32), 4.0) * 6)
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    scl = np.where(ndvi > 0.4, 4, 5).astype(np.uint8)
    scl[water[sub]] = 6
    scl[(red > 0.26) & (swir > 0.42) & (luck > 0.97)] = 8  # bright soil mistaken for cloud
    scl[(sh > 0.45) & (luck > 0.45)] = 3  # detects only the darker half of the shadows
    scl[(ci > 0.25) & (luck > 0.3)] = 10
    scl[(op > 0.35) & (luck > 0.35)] = 8  # misses the thinnest semi-transparent cloud
    scl[op > 0.5] = 8
    scl[op > 0.8] = 9
    scl[~clouds.valid[sub]] = 0
    return scl
