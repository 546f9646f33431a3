"""Sentinel-2 bands and the endmember spectra the simulator mixes.

Surface reflectance is a linear mix of green vegetation, dry vegetation (straw, senescent canopy),
soil and water; top-of-atmosphere reflectance adds a path reflectance and a transmittance per band.
Values are typical library spectra resampled to the MSI bands (unitless reflectance, 0..1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BANDS", "L2A_BANDS", "S2Band", "SPECTRA", "band_index", "canopy_scale"]


@dataclass(frozen=True)
class S2Band:
    """One MSI band.

    Attributes:
        name: band id (B01..B12, B8A).
        asset: Earth Search asset key (common name).
        common_name: STAC eo common name.
        resolution: native pixel size, metres.
        center: centre wavelength, micrometres.
        fwhm: full width at half maximum, micrometres.
        title: human title as Earth Search writes it.
    """

    name: str
    asset: str
    common_name: str
    resolution: int
    center: float
    fwhm: float
    title: str


BANDS: tuple[S2Band, ...] = (
    S2Band("B01", "coastal", "coastal", 60, 0.443, 0.027, "Coastal - 60m"),
    S2Band("B02", "blue", "blue", 10, 0.49, 0.098, "Blue - 10m"),
    S2Band("B03", "green", "green", 10, 0.56, 0.045, "Green - 10m"),
    S2Band("B04", "red", "red", 10, 0.665, 0.038, "Red - 10m"),
    S2Band("B05", "rededge1", "rededge", 20, 0.704, 0.019, "Red Edge 1 - 20m"),
    S2Band("B06", "rededge2", "rededge", 20, 0.74, 0.018, "Red Edge 2 - 20m"),
    S2Band("B07", "rededge3", "rededge", 20, 0.783, 0.028, "Red Edge 3 - 20m"),
    S2Band("B08", "nir", "nir", 10, 0.842, 0.145, "NIR 1 - 10m"),
    S2Band("B8A", "nir08", "nir08", 20, 0.865, 0.033, "NIR 2 - 20m"),
    S2Band("B09", "nir09", "nir09", 60, 0.945, 0.026, "NIR 3 - 60m"),
    S2Band("B10", "cirrus", "cirrus", 60, 1.3735, 0.075, "Cirrus - 60m"),
    S2Band("B11", "swir16", "swir16", 20, 1.61, 0.143, "SWIR 1.6μm - 20m"),
    S2Band("B12", "swir22", "swir22", 20, 2.19, 0.242, "SWIR 2.2μm - 20m"),
)
"""All 13 MSI bands in band order (L1C has all; L2A drops B10)."""

L2A_BANDS: tuple[S2Band, ...] = tuple(b for b in BANDS if b.name != "B10")


_INDEX = {b.name: i for i, b in enumerate(BANDS)}


def band_index(name: str) -> int:
    """Position of band ``name`` (e.g. ``B04``) in BANDS."""
    return _INDEX[name]


_CANOPY_GROUP = {"B01": 0, "B02": 0, "B03": 0, "B04": 0, "B05": 1, "B06": 1, "B07": 1}
_CANOPY_GROUP |= {"B08": 2, "B8A": 2, "B09": 2, "B11": 3, "B12": 3}


def canopy_scale(groups: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """Per-band scale of the green vegetation spectrum (order of BANDS, float32) from the four band-group
    scales of a canopy (visible, red-edge, near-infrared, shortwave-infrared; B10 sees no surface)."""
    g = np.asarray(groups, np.float32)
    return np.array([g[_CANOPY_GROUP[b.name]] if b.name in _CANOPY_GROUP else 1.0 for b in BANDS], np.float32)


#            B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B10    B11    B12
SPECTRA: dict[str, np.ndarray] = {
    "green_vegetation": np.array(
        [0.030, 0.035, 0.080, 0.030, 0.120, 0.350, 0.450, 0.480, 0.500, 0.500, 0.0, 0.220, 0.100]
    ),
    "dry_vegetation": np.array(
        [0.080, 0.100, 0.140, 0.190, 0.240, 0.280, 0.300, 0.320, 0.330, 0.330, 0.0, 0.400, 0.280]
    ),
    "soil": np.array(
        [0.070, 0.090, 0.120, 0.160, 0.190, 0.210, 0.220, 0.240, 0.250, 0.260, 0.0, 0.330, 0.300]
    ),
    "water": np.array(
        [0.060, 0.060, 0.050, 0.030, 0.020, 0.010, 0.010, 0.010, 0.010, 0.005, 0.0, 0.005, 0.003]
    ),
    "forest": np.array(
        [0.020, 0.025, 0.050, 0.025, 0.080, 0.220, 0.280, 0.300, 0.310, 0.310, 0.0, 0.140, 0.060]
    ),
    # top of atmosphere: thick water cloud (bright, flat in the VNIR, lower in the SWIR)
    "cloud": np.array(
        [0.550, 0.540, 0.540, 0.540, 0.550, 0.560, 0.560, 0.560, 0.560, 0.350, 0.050, 0.380, 0.220]
    ),
    # top of atmosphere: thin ice cloud (cirrus), bright in B10
    "cirrus": np.array(
        [0.300, 0.300, 0.300, 0.300, 0.300, 0.300, 0.300, 0.300, 0.300, 0.250, 0.250, 0.250, 0.180]
    ),
    # atmosphere: path reflectance and two-way transmittance
    "path": np.array(
        [0.100, 0.075, 0.045, 0.030, 0.025, 0.020, 0.018, 0.015, 0.014, 0.010, 0.002, 0.004, 0.002]
    ),
    "transmittance": np.array(
        [0.800, 0.850, 0.900, 0.920, 0.930, 0.940, 0.940, 0.950, 0.950, 0.450, 0.0, 0.950, 0.930]
    ),
}
SPECTRA = {k: v.astype(np.float32) for k, v in SPECTRA.items()}
"""Endmember and atmosphere spectra per band (order of BANDS), float32."""
