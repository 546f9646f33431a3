"""Per-date parcel observations: the statistics of every feature of every parcel in one day's scenes.

One row per parcel, scene, feature and statistic (the long table of the ``parcel_observations`` asset)::

    parcel_id  date        sensor  orbit         feature  stat    value     valid_count
    p000123    2024-05-03  S2      R079          NDVI     median  0.6123    412
    p000123    2024-05-03  S1      ascending/58  VH       mean    -17.85    455

Features:

* **Sentinel-2** (:data:`S2_FEATURES`): the ten 10 m and 20 m surface-reflectance bands and the spectral
  indices of :mod:`kz_pipelines.indices` the downstream models use, computed per pixel on the parcel
  pixels only, over pixels the cloud mask calls clear (class 1) and the scene calls valid.
* **Sentinel-1** (:data:`S1_FEATURES`): VV, VH and VH/VV backscatter (speckle-filtered), averaged in linear
  power and given in dB (:func:`kz_pipelines.zonal.power_stats`); ``orbit`` keeps the pass direction and
  relative orbit, which see a field differently.

Statistics: ``mean``, ``median``, ``min``, ``max``, ``std``; each row carries the valid-pixel count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from kz_pipelines.indices import compute_indices
from kz_pipelines.zonal import STATS, ParcelIndex, power_stats, zonal_stats

__all__ = [
    "OBSERVATION_COLUMNS",
    "S1_FEATURES",
    "S2_BANDS",
    "S2_FEATURES",
    "S2_INDICES",
    "empty_observations",
    "s1_observations",
    "s2_observations",
]

S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""The Sentinel-2 bands kept as features (the 60 m atmospheric bands B01 and B09 are not)."""

S2_INDICES = ("NDVI", "NDTI", "CRC", "NDI5", "NDI7", "NDRI", "PSRI", "BI1", "BI2", "TCG")
"""The spectral indices kept as features."""

S2_FEATURES = S2_BANDS + S2_INDICES
"""Sentinel-2 features, in tensor order."""

S1_FEATURES = ("VV", "VH", "VH_VV")
"""Sentinel-1 features (dB), in tensor order."""

OBSERVATION_COLUMNS = ("parcel_id", "date", "sensor", "orbit", "feature", "stat", "value", "valid_count")
"""Columns of the long observation table."""

_VALUE_STATS = STATS[:5]
"""Statistics with a row each (the count is a column)."""


def empty_observations() -> pd.DataFrame:
    """An observation table with no rows and the right dtypes."""
    return _frame([], date(1970, 1, 1), "S2", "", (), np.zeros((0, 0, len(STATS))))


def _frame(
    parcel_ids: Sequence[str] | npt.NDArray[np.str_],
    day: date,
    sensor: str,
    orbit: str,
    features: Sequence[str],
    stats: npt.NDArray[np.float64],
) -> pd.DataFrame:
    """(parcels, features, STATS) statistics -> long table rows; parcels without a valid pixel left out."""
    p_idx, f_idx = np.nonzero(stats[:, :, 5] > 0)
    m = len(_VALUE_STATS)
    ids = np.asarray(parcel_ids, dtype=object)
    return pd.DataFrame(
        {
            "parcel_id": np.repeat(ids[p_idx], m),
            "date": pd.Series(np.full(p_idx.size * m, np.datetime64(day, "D")), dtype="datetime64[ns]"),
            "sensor": pd.Categorical([sensor] * (p_idx.size * m), categories=["S1", "S2"]),
            "orbit": np.full(p_idx.size * m, orbit, dtype=object),
            "feature": np.repeat(np.asarray(features, dtype=object)[f_idx], m),
            "stat": np.tile(np.asarray(_VALUE_STATS, dtype=object), p_idx.size),
            "value": stats[p_idx, f_idx, :m].reshape(-1).astype(np.float32),
            "valid_count": np.repeat(stats[p_idx, f_idx, 5], m).astype(np.int32),
        },
        columns=list(OBSERVATION_COLUMNS),
    )


def s2_observations(
    index: ParcelIndex,
    band: Callable[[str], npt.NDArray[np.floating]],
    clear: npt.NDArray[np.bool_],
    day: date,
    orbit: str,
) -> pd.DataFrame:
    """Statistics of :data:`S2_FEATURES` for one Sentinel-2 scene.

    Args:
        index: the parcels' pixels on the scene grid.
        band: reads one band of the scene as reflectance on the grid (NaN: no data); called once per band.
        clear: pixels to use (clear in the cloud mask and valid in the scene), on the grid.
        day: acquisition date.
        orbit: relative orbit, e.g. ``R079``.

    Returns:
        Long table rows (parcels with no clear pixel have none).
    """
    gathered = {b: index.gather(band(b)).astype(np.float32) for b in S2_BANDS}
    indices = compute_indices(S2_INDICES, gathered)
    values = np.stack(
        [gathered[b] for b in S2_BANDS] + [np.asarray(indices[i], np.float32) for i in S2_INDICES]
    )
    stats = zonal_stats(index, values, np.asarray(index.gather(clear), np.bool_))
    return _frame(index.parcel_ids, day, "S2", orbit, S2_FEATURES, stats)


def s1_observations(
    index: ParcelIndex, db: Mapping[str, npt.NDArray[np.floating]], day: date, orbit: str
) -> pd.DataFrame:
    """Statistics of :data:`S1_FEATURES` for one Sentinel-1 scene.

    Args:
        index: the parcels' pixels on the scene grid.
        db: ``VV``, ``VH`` and ``VH_VV`` backscatter in dB on the grid (NaN: no data).
        day: acquisition date.
        orbit: pass direction and relative orbit, e.g. ``ascending/58``.
    """
    values = np.stack([index.gather(db[f]).astype(np.float32) for f in S1_FEATURES])
    return _frame(index.parcel_ids, day, "S1", orbit, S1_FEATURES, power_stats(index, values))
