"""Rendering: Sentinel-2 surface and top-of-atmosphere reflectance and Sentinel-1 backscatter and
coherence of a tile window on one day, from the landscape and the parcels' crop state that day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kz_pipelines.sim.clouds import CloudScene
from kz_pipelines.sim.landscape import COVER_FOREST, COVER_GRASS, COVER_WATER, Landscape
from kz_pipelines.sim.spectra import SPECTRA, band_index

__all__ = [
    "ENL",
    "Covers",
    "DayState",
    "covers",
    "l1c_band",
    "l2a_band",
    "render_s1",
    "s1_coherence",
    "s1_sigma0",
    "shade",
    "surface_band",
]

ENL = 4.4
"""Equivalent number of looks of the simulated GRD speckle (Sentinel-1 IW GRDH)."""


@dataclass(frozen=True)
class DayState:
    """Crop state of every parcel on one day; index 0 is the background (no parcel).

    Attributes:
        green: green cover per parcel index, 0..1, shape (n_parcels + 1,).
        dry: dry cover per parcel index, 0..1.
        rough: soil roughness after tillage per parcel index, 0..1.
        damage: remaining fraction of green cover in the damaged patch per parcel index, 0..1.
        moisture: surface soil moisture per parcel index, m3/m3.
        meadow: green cover of unmanaged background grass that day, 0..1.
        canopy: scale of the green vegetation spectrum per parcel index and band (order of BANDS),
            (n_parcels + 1, bands); constant over the season (the crop's leaves and architecture).
        volume: scale of the radar volume scattering per parcel index, (n_parcels + 1,); constant.
    """

    green: np.ndarray
    dry: np.ndarray
    rough: np.ndarray
    damage: np.ndarray
    moisture: np.ndarray
    meadow: float
    canopy: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True)
class Covers:
    """Per-pixel cover of one day on the 10 m render grid (rows, cols), float32.

    Attributes:
        green: green vegetation cover, 0..1.
        dry: dry vegetation cover (senescent canopy, residue, cut grass), 0..1.
        soil: soil brightness factor (moisture darkens, fresh tillage darkens).
        canopy: the day's `DayState.canopy` (per parcel index, not per pixel).
    """

    green: np.ndarray
    dry: np.ndarray
    soil: np.ndarray
    canopy: np.ndarray


def covers(land: Landscape, day: DayState) -> Covers:
    """The landscape's cover on ``day``: crop state per parcel spread to its pixels, with the
    within-field vigour, the damaged patches and the background meadow."""
    pid = land.parcel_index
    green = day.green[pid] * land.vigour
    dry = day.dry[pid].copy()
    hit = land.damage_index > 0
    if hit.any():
        keep = day.damage[land.damage_index[hit]]
        dry[hit] += (1.0 - keep) * green[hit] * 0.6
        green[hit] *= keep
    grass = land.cover == COVER_GRASS
    green[grass] = day.meadow * land.vigour[grass]
    dry[grass] = 0.1
    wet = 1.15 - 1.2 * (day.moisture[pid] - 0.15)
    soil = land.soil * wet * (1.0 - 0.25 * day.rough[pid])
    green = np.clip(green, 0.0, 0.98)
    dry = np.clip(dry, 0.0, 1.0 - green)
    return Covers(green.astype(np.float32), dry.astype(np.float32), soil.astype(np.float32), day.canopy)


def surface_band(land: Landscape, cov: Covers, b: int) -> np.ndarray:
    """Cloud-free surface reflectance (BOA) of band ``b`` (index into BANDS) by linear spectral mixing.

    Returns:
        Reflectance, (rows, cols) float32 (B10 is 0: it carries no surface signal).
    """
    if b == band_index("B10"):
        return np.zeros(land.grid.shape, np.float32)
    bare = 1.0 - cov.green - cov.dry
    refl = (
        cov.green * SPECTRA["green_vegetation"][b] * cov.canopy[land.parcel_index, b]
        + cov.dry * SPECTRA["dry_vegetation"][b]
        + bare * cov.soil * SPECTRA["soil"][b]
    )
    forest = land.cover == COVER_FOREST
    refl[forest] = SPECTRA["forest"][b] * land.vigour[forest]
    refl[land.cover == COVER_WATER] = SPECTRA["water"][b]
    return refl


def shade(surface: np.ndarray, clouds: CloudScene) -> np.ndarray:
    """Surface reflectance dimmed where cloud shadow blocks direct sunlight."""
    return surface * (1.0 - clouds.shadow)


def _cloud_mix(refl: np.ndarray, clouds: CloudScene, cloud: float, cirrus: float) -> np.ndarray:
    """Reflectance seen through cirrus, then through cloud (the band's cloud reflectances)."""
    out = refl * (1.0 - clouds.cirrus) + clouds.cirrus * cirrus
    return (out * (1.0 - clouds.opacity) + clouds.opacity * cloud).astype(np.float32)


def l2a_band(shaded: np.ndarray, clouds: CloudScene, brightness: float, b: int) -> np.ndarray:
    """L2A-like reflectance of band ``b``: the shaded surface seen through cloud (over cloud,
    atmospheric correction removes about half of the path reflectance).

    Args:
        shaded: the band's surface reflectance after `shade`, (rows, cols).
        clouds: the scene's clouds.
        brightness: cloud brightness factor of the scene (~0.8..1.2).
        b: band index into BANDS.
    """
    half_path = 0.5 * SPECTRA["path"][b]
    cloud = (SPECTRA["cloud"][b] - half_path) * brightness
    return _cloud_mix(shaded, clouds, cloud, SPECTRA["cirrus"][b] - half_path)


def l1c_band(shaded: np.ndarray, clouds: CloudScene, brightness: float, b: int) -> np.ndarray:
    """L1C-like top-of-atmosphere reflectance of band ``b`` (adds path reflectance and
    transmittance; B10 cirrus sees only high cloud, the lower atmosphere's water vapour absorbs
    the surface signal).

    Args:
        shaded: the band's surface reflectance after `shade`, (rows, cols).
        clouds: the scene's clouds.
        brightness: cloud brightness factor of the scene (~0.8..1.2).
        b: band index into BANDS.
    """
    if b == band_index("B10"):
        toa = np.full(shaded.shape, SPECTRA["path"][b], np.float32)
    else:
        toa = SPECTRA["path"][b] + SPECTRA["transmittance"][b] * shaded
    return _cloud_mix(toa, clouds, SPECTRA["cloud"][b] * brightness, SPECTRA["cirrus"][b])


# Water-cloud model coefficients per polarization: vegetation A, B; soil dB = C + D * mv
_WCM = {"vv": (0.12, 0.30, -17.0, 25.0), "vh": (0.08, 0.20, -25.0, 20.0)}
_FOREST_DB = {"vv": -7.5, "vh": -12.5}
_WATER_DB = {"vv": -22.0, "vh": -28.0}


def s1_sigma0(
    land: Landscape, day: DayState, cov: Covers, incidence: float, wind_db: float
) -> dict[str, np.ndarray]:
    """Speckle-free sigma0 VV and VH (linear power).

    Backscatter follows the water-cloud model: vegetation volume scattering (scaled per parcel by the
    crop's `DayState.volume`) plus soil scattering
    (moisture and tillage roughness) attenuated by the canopy; forest and water are constant
    (water roughened by ``wind_db``), with a mild within-field texture.

    Args:
        land: the landscape.
        day: crop state that day (soil moisture and roughness per parcel).
        cov: the landscape's cover that day (`covers`).
        incidence: local incidence angle, degrees.
        wind_db: wind roughening of open water, dB.

    Returns:
        ``{"vv": ..., "vh": ...}``, each (rows, cols) float32.
    """
    veg = cov.green + 0.5 * cov.dry
    pid = land.parcel_index
    cos_t = float(np.cos(np.radians(incidence)))
    texture = 1.0 + 0.1 * (land.vigour - 1.0) / 0.06
    out: dict[str, np.ndarray] = {}
    for pol, (a, b, c, d) in _WCM.items():
        att = np.exp(-2.0 * b * veg / cos_t)
        soil_db = c + d * day.moisture[pid] - 0.15 * (incidence - 35.0) + 3.0 * day.rough[pid]
        sigma = a * day.volume[pid] * veg * cos_t * (1.0 - att) + att * 10.0 ** (soil_db / 10.0)
        sigma[land.cover == COVER_FOREST] = 10.0 ** (_FOREST_DB[pol] / 10.0)
        sigma[land.cover == COVER_WATER] = 10.0 ** ((_WATER_DB[pol] + wind_db) / 10.0)
        out[pol] = (sigma * texture).astype(np.float32)
    return out


def render_s1(
    rng: np.random.Generator, land: Landscape, day: DayState, cov: Covers, incidence: float
) -> dict[str, np.ndarray]:
    """Sigma0 VV and VH (linear power) with multiplicative gamma speckle of ENL 4.4 (mean 1).

    Args:
        rng: random generator.
        land: the landscape.
        day: crop state that day.
        cov: the landscape's cover that day (`covers`).
        incidence: local incidence angle, degrees.

    Returns:
        ``{"vv": ..., "vh": ...}``, each (rows, cols) float32.
    """
    clean = s1_sigma0(land, day, cov, incidence, wind_db=float(rng.uniform(0.0, 5.0)))
    return {pol: (s * rng.gamma(ENL, 1.0 / ENL, size=s.shape)).astype(np.float32) for pol, s in clean.items()}


def s1_coherence(
    rng: np.random.Generator, land: Landscape, cov: Covers, event: np.ndarray, repeat_days: int
) -> np.ndarray:
    """Interferometric VV coherence with the previous acquisition of the same orbit.

    High over bare stable soil, low under vegetation, and low where a mowing, harvest or ploughing
    happened between the two acquisitions.

    Args:
        rng: random generator.
        land: the landscape.
        cov: the landscape's cover on the later date (`covers`).
        event: True per parcel index where an event fell between the two acquisitions.
        repeat_days: days between the acquisitions (6 or 12).

    Returns:
        Coherence 0..1, (rows, cols) float32.
    """
    base = 0.75 * (0.92 if repeat_days <= 6 else 0.82)
    coh = base * np.exp(-1.6 * (cov.green + 0.3 * cov.dry))
    coh = np.where(event[land.parcel_index] & (land.parcel_index > 0), coh * 0.3, coh)
    coh[land.cover == COVER_FOREST] = 0.15
    coh[land.cover == COVER_WATER] = 0.05
    coh = coh + rng.normal(0.0, 0.04, coh.shape) + 0.05  # estimator bias and noise
    return np.clip(coh, 0.0, 1.0).astype(np.float32)
