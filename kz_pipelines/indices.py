"""Spectral indices of Sentinel-2 surface reflectance: a registry of formula, bands and source per index.

Inputs are Level-2A bottom-of-atmosphere reflectance as physical reflectance (float, about 0..1: the
integer DN with the processing-baseline offset applied, divided by 10000), keyed by band name ``B01`` ..
``B12`` and ``B8A``. Values may be numpy arrays (or anything numpy accepts) or ``xarray.DataArray``s,
dask-backed included; the result is computed elementwise, is a DataArray when any input is one (shared
coordinates kept, band-specific scalar coordinates dropped, grids must be aligned exactly) and a numpy
array otherwise. It is NaN wherever a denominator is 0 or an input is NaN, and no floating-point
warning is raised.

=========  ===================================  ===============================  ====================
name       formula (Sentinel-2 bands)           source                           spyndex entry
=========  ===================================  ===============================  ====================
NDVI       (B08 - B04) / (B08 + B04)            Rouse et al. 1974                NDVI (same index)
NDTI       (B11 - B12) / (B11 + B12)            Van Deventer et al. 1997         NDTillI (same index)
CRC        (B11 - B02) / (B11 + B02)            Sullivan et al. 2006             none
NDI5       (B08 - B11) / (B08 + B11)            McNairn & Protz 1993             NDII (same formula)
NDI7       (B08 - B12) / (B08 + B12)            McNairn & Protz 1993             NBR (same formula)
NDRI       (B04 - B12) / (B04 + B12)            Gelder et al. 2009               NRFIr (same formula)
PSRI       (B04 - B02) / B06                    Merzlyak et al. 1999             PSRI (same index)
BI1        B11 - B12                            after CAI, see below             none
BI2        2*B11 - B8A - B12                    after LCA, see below             none
TCG        -0.3599*B02 - 0.3533*B03 - ...       Shi & Xu 2019                    none
=========  ===================================  ===============================  ====================

TCG in full: -0.3599*B02 - 0.3533*B03 - 0.4734*B04 + 0.6633*B08 + 0.0087*B11 - 0.2856*B12.

Names clash between libraries: the tillage index here (NDTI) is spyndex's ``NDTillI``; spyndex's
``NDTI`` is the turbidity index (R - G) / (R + G). Each registry entry's ``spyndex`` field names the
Awesome Spectral Indices entry with the identical formula under the same Sentinel-2 band mapping (N = B08,
R = B04, B = B02, RE2 = B06, S1 = B11, S2 = B12), and the tests check the two agree numerically. The
formulas are written out here rather than evaluated by ``spyndex.computeIndex``, which evaluates the
formula text as plain arithmetic: numpy's divide warnings on zero denominators, inf for x / 0.

BI1 and BI2 (simulated cellulose and lignin-cellulose absorption). The hyperspectral residue indices
measure absorption features Sentinel-2 cannot resolve: CAI = 0.5 (R2031 + R2211) - R2101 (Daughtry 2001),
the depth of the 2.1 um cellulose trough below the mean of its two shoulders, and LCA = 2 B6 - B5 - B8 on
ASTER's 2.145-2.185 / 2.185-2.225 / 2.295-2.365 um bands (Daughtry et al. 2005), a shoulder's height above
its two flanking ligno-cellulose absorptions. On Sentinel-2 all of that lies inside B12 (about 2.10-2.28
um), and the nearest SWIR band free of those absorptions is B11 (about 1.57-1.66 um). Keeping the published
shapes and weights and substituting those bands:

* BI1 = B11 - B12: CAI's "mean of the shoulders minus the trough" with B11 as the only shoulder available
  and B12 as the trough.
* BI2 = 2 B11 - B8A - B12: LCA's "twice the shoulder minus its flanks" with B11 as the shoulder, flanked by
  the NIR plateau B8A (the narrow NIR band on the same 20 m grid as B11 and B12) and the ligno-cellulose
  trough B12.

Both stay in reflectance units (without the x100 the hyperspectral forms carry), so unlike the normalized
differences they are linear in cover fractions under linear mixing, as CAI is. BI1 is positive over
green canopies too (leaf water also darkens B12) and should be read with NDVI or TCG; BI2's -B8A term
makes it negative over green vegetation. These band choices are ours, not a published Sentinel-2
formulation checked against its paper (Najafi et al. could not be consulted).

TCG uses the six-band greenness of Shi & Xu (2019), derived for Sentinel-2 MSI at-sensor reflectance and
applied here to surface reflectance. The 13-band coefficients of Nedkov (2017) were not used: they need
B10 (cirrus), which Level-2A products do not carry, and the 60 m atmospheric bands B01 and B09.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import xarray as xr

from kz_pipelines.errors import UserFacingError

__all__ = [
    "INDICES",
    "S2_BANDS",
    "MissingBandError",
    "SpectralIndex",
    "SpectralIndexError",
    "UnknownIndexError",
    "bands_for",
    "compute_index",
    "compute_indices",
    "get_index",
]

FloatArray = npt.NDArray[np.floating[Any]]
Kernel = Callable[..., FloatArray]

S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
"""Sentinel-2 MSI band names in band order (the keys compute_index expects)."""


class SpectralIndexError(UserFacingError, KeyError):
    """An index name or an input band the caller asked for does not exist."""

    def __str__(self) -> str:
        # KeyError would print the repr of the message, quotes included
        return str(self.args[0]) if self.args else ""


class UnknownIndexError(SpectralIndexError):
    """The index name is not in INDICES."""


class MissingBandError(SpectralIndexError):
    """An index needs a band the inputs do not have."""


@dataclass(frozen=True)
class SpectralIndex:
    """One spectral index.

    Attributes:
        name: registry key, e.g. ``NDTI``.
        long_name: the index's name in its source.
        bands: the Sentinel-2 bands it uses, in the order ``compute`` takes them.
        formula: the formula in band names.
        reference: where the index is defined (DOI or URL).
        compute: numpy kernel; takes float arrays in ``bands`` order, returns the index.
        spyndex: the Awesome Spectral Indices (spyndex) entry with the identical formula, if any.
    """

    name: str
    long_name: str
    bands: tuple[str, ...]
    formula: str
    reference: str
    compute: Kernel = field(repr=False)
    spyndex: str | None = None


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, NaN where den is 0 (callers run under np.errstate)."""
    return np.where(den == 0, np.nan, num / den)


def _normalized_difference(a: FloatArray, b: FloatArray) -> FloatArray:
    return _ratio(a - b, a + b)


def _psri(red: FloatArray, blue: FloatArray, red_edge: FloatArray) -> FloatArray:
    return _ratio(red - blue, red_edge)


def _weighted_sum(weights: tuple[float, ...], *arrays: FloatArray) -> FloatArray:
    out = weights[0] * arrays[0]
    for w, x in zip(weights[1:], arrays[1:], strict=True):
        out = out + w * x
    return out


def _nd_index(
    name: str, long_name: str, a: str, b: str, reference: str, spyndex: str | None = None
) -> SpectralIndex:
    """A normalized difference (a - b) / (a + b)."""
    return SpectralIndex(
        name, long_name, (a, b), f"({a} - {b}) / ({a} + {b})", reference, _normalized_difference, spyndex
    )


def _linear_index(name: str, long_name: str, weights: Mapping[str, float], reference: str) -> SpectralIndex:
    """A weighted sum of bands."""
    terms = " ".join(f"{'-' if w < 0 else '+'} {_magnitude(w)}{band}" for band, w in weights.items())
    formula = terms.removeprefix("+ ") if terms.startswith("+") else "-" + terms.removeprefix("- ")
    return SpectralIndex(
        name, long_name, tuple(weights), formula, reference, partial(_weighted_sum, tuple(weights.values()))
    )


def _magnitude(weight: float) -> str:
    return "" if abs(weight) == 1 else f"{abs(weight):g}*"


_CAI_LCA_SOURCES = (
    "Daughtry 2001, Agron. J. 93:125-131 (CAI); Daughtry et al. 2005, Agron. J. 97:864-871 (LCA); both "
    "restated in Serbin et al. 2009, Remote Sens. 1:971-991, https://doi.org/10.3390/rs1040971"
)

_ALL: tuple[SpectralIndex, ...] = (
    _nd_index(
        "NDVI", "Normalized Difference Vegetation Index", "B08", "B04",
        "Rouse et al. 1974, Monitoring vegetation systems in the Great Plains with ERTS, NASA SP-351 "
        "https://ntrs.nasa.gov/citations/19740022614",
        spyndex="NDVI",
    ),
    _nd_index(
        "NDTI", "Normalized Difference Tillage Index", "B11", "B12",
        "Van Deventer et al. 1997, Photogramm. Eng. Remote Sens. 63(1):87-93 "
        "https://www.asprs.org/wp-content/uploads/pers/1997journal/jan/1997_jan_87-93.pdf",
        spyndex="NDTillI",
    ),
    _nd_index(
        "CRC", "Crop Residue Cover index", "B11", "B02",
        "Sullivan et al. 2006, Agron. J. 98(5):1236-1246 https://doi.org/10.2134/agronj2005.0294",
    ),
    _nd_index(
        "NDI5", "Normalized Difference Index 5 (TM4, TM5)", "B08", "B11",
        "McNairn & Protz 1993, Can. J. Remote Sens. 19(2):152-159 "
        "https://doi.org/10.1080/07038992.1993.10874543",
        spyndex="NDII",
    ),
    _nd_index(
        "NDI7", "Normalized Difference Index 7 (TM4, TM7)", "B08", "B12",
        "McNairn & Protz 1993, Can. J. Remote Sens. 19(2):152-159 "
        "https://doi.org/10.1080/07038992.1993.10874543",
        spyndex="NBR",
    ),
    _nd_index(
        "NDRI", "Normalized Difference Residue Index", "B04", "B12",
        "Gelder et al. 2009, Agron. J. 101(3):635-643 https://doi.org/10.2134/agronj2007.0249",
        spyndex="NRFIr",
    ),
    SpectralIndex(
        "PSRI", "Plant Senescence Reflectance Index", ("B04", "B02", "B06"), "(B04 - B02) / B06",
        "Merzlyak et al. 1999, Physiol. Plant. 106:135-141 https://doi.org/10.1034/j.1399-3054.1999.106119.x",
        _psri, spyndex="PSRI",
    ),
    _linear_index(
        "BI1", "simulated Cellulose Absorption Index (Sentinel-2 broadband analogue of CAI)",
        {"B11": 1.0, "B12": -1.0}, _CAI_LCA_SOURCES,
    ),
    _linear_index(
        "BI2", "simulated Lignin-Cellulose Absorption index (Sentinel-2 broadband analogue of LCA)",
        {"B11": 2.0, "B8A": -1.0, "B12": -1.0}, _CAI_LCA_SOURCES,
    ),
    _linear_index(
        "TCG", "Tasselled-cap greenness (Sentinel-2, Shi & Xu 2019)",
        {"B02": -0.3599, "B03": -0.3533, "B04": -0.4734, "B08": 0.6633, "B11": 0.0087, "B12": -0.2856},
        "Shi & Xu 2019, IEEE J. Sel. Top. Appl. Earth Obs. Remote Sens. 12(10):4038-4048 "
        "https://doi.org/10.1109/JSTARS.2019.2938388",
    ),
)  # fmt: skip

INDICES: Mapping[str, SpectralIndex] = MappingProxyType({index.name: index for index in _ALL})
"""Every index by name (read-only)."""


def get_index(name: str) -> SpectralIndex:
    """The registry entry ``name``; UnknownIndexError naming it (and the known ones) if there is none."""
    try:
        return INDICES[name]
    except KeyError:
        raise UnknownIndexError(
            f"unknown spectral index {name!r}; known indices: {', '.join(INDICES)}"
        ) from None


def bands_for(names: Iterable[str]) -> tuple[str, ...]:
    """The bands the indices ``names`` need between them, in band order (load each once)."""
    needed = {band for name in names for band in get_index(name).bands}
    return tuple(b for b in S2_BANDS if b in needed)


@overload
def compute_index(name: str, bands: Mapping[str, xr.DataArray]) -> xr.DataArray: ...
@overload
def compute_index(name: str, bands: Mapping[str, npt.ArrayLike]) -> FloatArray: ...
def compute_index(name: str, bands: Mapping[str, Any]) -> xr.DataArray | FloatArray:
    """Index ``name`` of the reflectance ``bands`` (band name -> array).

    Returns a DataArray named ``name`` when any band used is a DataArray, otherwise a float numpy array
    (0-d for scalar inputs). Float32 inputs give float32, anything else float64.

    Raises:
        UnknownIndexError: ``name`` is not in INDICES.
        MissingBandError: ``bands`` lacks a band the index uses.
    """
    index = get_index(name)
    missing = [b for b in index.bands if b not in bands]
    if missing:
        raise MissingBandError(
            f"spectral index {name} needs band(s) {', '.join(missing)}, missing from the inputs "
            f"(given: {', '.join(sorted(bands)) or 'none'})"
        )
    arrays = [bands[b] for b in index.bands]
    if not any(isinstance(a, xr.DataArray) for a in arrays):
        return _evaluate(index, *arrays)
    dtype = np.result_type(*(_float_dtype(a) for a in arrays))
    out = xr.apply_ufunc(partial(_evaluate, index), *arrays, dask="parallelized", output_dtypes=[dtype])
    out.name = index.name
    out.attrs = {"long_name": index.long_name, "formula": index.formula, "reference": index.reference}
    return out


@overload
def compute_indices(names: Iterable[str], bands: Mapping[str, xr.DataArray]) -> dict[str, xr.DataArray]: ...
@overload
def compute_indices(names: Iterable[str], bands: Mapping[str, npt.ArrayLike]) -> dict[str, FloatArray]: ...
def compute_indices(names: Iterable[str], bands: Mapping[str, Any]) -> dict[str, Any]:
    """Several indices of the same ``bands``: {name: compute_index(name, bands)}.

    Every name and every band needed is checked before anything is computed.
    """
    names = list(names)
    missing = [b for b in bands_for(names) if b not in bands]
    if missing:
        needing = [n for n in names if set(INDICES[n].bands) & set(missing)]
        raise MissingBandError(
            f"spectral indices {', '.join(needing)} need band(s) {', '.join(missing)}, missing from the "
            f"inputs (given: {', '.join(sorted(bands)) or 'none'})"
        )
    return {name: compute_index(name, bands) for name in names}


def _float_dtype(a: Any) -> np.dtype[Any]:
    """The dtype _evaluate computes ``a`` in: its own if floating, float64 otherwise."""
    dtype = a.dtype if isinstance(a, xr.DataArray) else np.asarray(a).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _as_float(a: npt.NDArray[Any]) -> FloatArray:
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def _evaluate(index: SpectralIndex, *arrays: npt.ArrayLike) -> FloatArray:
    """Run the kernel on float arrays with floating-point warnings off (zero denominators give NaN)."""
    floats = [_as_float(np.asarray(a)) for a in arrays]
    with np.errstate(all="ignore"):
        return np.asarray(index.compute(*floats))
