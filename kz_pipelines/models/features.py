"""Model features from the parcel tensor: fixed-period composites, gap-filled, plus temporal summaries.

The tensor (``parcel_timeseries`` or :func:`kz_pipelines.worldcereal.load_worldcereal`) samples each parcel
irregularly: S2 only on clear days, S1 every few days per pass. Models need one fixed-length vector per
parcel, so :func:`composites` averages each feature over fixed periods (10 days by default, from the
season's start) and fills the periods without an observation by linear interpolation in time (the nearest
value before the first and after the last observation). :func:`parcel_features` flattens those series
and appends per-feature temporal summaries (mean, std, min, max, 10th/50th/90th percentiles, and the
position in the season of the maximum and the minimum).

S2 features use each date's parcel median (robust to the few unmasked cloud edges); S1 features the
parcel mean (averaged in linear power). An S2 date where the parcel's clear-pixel count is under
``min_clear_fraction`` of its best date is left out of the composites: a mostly masked date carries the
haze and shadow edges the cloud mask missed.

With ``anomalies``, each composited feature also enters as its anomaly: its value less the median of
every parcel of the tensor in the same period. Weather moves whole regions together from one year to the
next (soil moisture darkens bare soil and raises its radar backscatter on every parcel after rain), so a
model trained on one year and applied to another sees, in the anomalies, what sets a crop apart from the
region rather than that year's weather. The reference is the tensor being featurized (the season's tiles
when training, one tile when scoring): it needs many parcels (a tile holds thousands).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

__all__ = [
    "MIN_CLEAR_FRACTION",
    "MODEL_FEATURES",
    "FeatureSet",
    "composites",
    "fill_gaps",
    "parcel_features",
    "series_features",
]

MODEL_FEATURES = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
    "NDVI", "NDTI", "NDI5", "NDI7", "PSRI", "TCG",
    "VV_asc", "VH_asc", "VH_VV_asc", "VV_desc", "VH_desc", "VH_VV_desc",
)  # fmt: skip
"""The tensor features the crop models read (S2 bands and indices, S1 per pass direction)."""

MIN_CLEAR_FRACTION = 0.5
"""S2 dates with fewer clear pixels than this fraction of the parcel's best date are left out."""

_SUMMARIES = ("mean", "std", "min", "max", "p10", "p50", "p90", "argmax", "argmin")


@dataclass(frozen=True)
class FeatureSet:
    """A feature matrix.

    Attributes:
        parcel_ids: row ids.
        x: (parcels, columns) float32; NaN where a feature was never observed.
        names: column names (``NDVI@p03`` for a period, ``NDVI:max`` for a summary).
        start: first day of the first period (ISO); give it back to score other parcels alike.
        end: last day covered (ISO).
    """

    parcel_ids: npt.NDArray[np.str_]
    x: npt.NDArray[np.float32]
    names: tuple[str, ...]
    start: str
    end: str


def fill_gaps(a: npt.NDArray[np.floating], axis: int = 1) -> npt.NDArray[np.floating]:
    """Linear interpolation of NaN gaps along ``axis`` (nearest value at the ends); a series with no value
    stays NaN. Vectorized over all other axes."""
    x = np.moveaxis(np.asarray(a, np.float64), axis, -1)
    n = x.shape[-1]
    t = np.arange(n)
    valid = np.isfinite(x)
    prev = np.maximum.accumulate(np.where(valid, t, -1), axis=-1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(valid, t, n), -1), axis=-1), -1)
    pv = np.take_along_axis(x, np.clip(prev, 0, n - 1), -1)
    nv = np.take_along_axis(x, np.clip(nxt, 0, n - 1), -1)
    has_prev, has_next = prev >= 0, nxt < n
    span = np.where(has_prev & has_next & (nxt > prev), nxt - prev, 1)
    inner = pv + (t - prev) / span * (nv - pv)
    out = np.where(has_prev & has_next, inner, np.where(has_prev, pv, nv))
    return np.moveaxis(out, -1, axis).astype(np.asarray(a).dtype)


def composites(
    ds: xr.Dataset,
    period_days: int = 10,
    start: str | None = None,
    end: str | None = None,
    features: Sequence[str] = MODEL_FEATURES,
    min_clear_fraction: float = 0.0,
) -> tuple[npt.NDArray[np.float32], pd.DatetimeIndex]:
    """Per parcel, period and feature: the mean of the observed dates in the period, gaps filled.

    Args:
        ds: a parcel tensor (``obs`` with dims parcel, time, feature, stat).
        period_days: period length, days.
        start: first day of the first period (default: the first day with an observation).
        end: last day (default: the last day with an observation).
        features: tensor features to use (absent ones are NaN).
        min_clear_fraction: leave out S2 dates whose clear-pixel count (the ``count`` statistic) is under
            this fraction of the parcel's best date; 0 keeps every date (as does a tensor without counts).

    Returns:
        (parcels, periods, features) float32 and the periods' first days.
    """
    obs = ds["obs"]
    present = [f for f in features if f in obs["feature"].to_numpy()]
    s2 = [f for f in present if not f.startswith("V")]
    s1 = [f for f in present if f.startswith("V")]
    parts = []
    if s2:
        s2_values = obs.sel(feature=s2, stat="median")
        if min_clear_fraction > 0 and "count" in obs["stat"].to_numpy():
            clear = obs.sel(feature=s2[0], stat="count")
            mostly_masked = clear < min_clear_fraction * clear.max("time")  # False where no count
            s2_values = s2_values.where(~mostly_masked)
        parts.append(s2_values)
    if s1:
        parts.append(obs.sel(feature=s1, stat="mean"))
    values = xr.concat(parts, dim="feature", coords="minimal", compat="override").transpose(
        "parcel", "time", "feature"
    )
    seen = (values.count(("parcel", "feature")) > 0).to_numpy()
    times = pd.DatetimeIndex(values["time"].to_numpy())
    observed = times[seen]
    if observed.empty:
        raise ValueError("the tensor has no observation")
    t0 = pd.Timestamp(start) if start else observed[0].normalize()
    t1 = pd.Timestamp(end) if end else observed[-1].normalize()
    keep = (times >= t0) & (times <= t1) & seen
    v = np.asarray(values.isel(time=np.flatnonzero(keep)).to_numpy(), np.float64)
    period = ((times[keep] - t0).days // period_days).to_numpy()
    n_periods = int((t1 - t0).days // period_days) + 1
    total = np.zeros((v.shape[0], n_periods, v.shape[2]))
    count = np.zeros_like(total)
    for p in range(n_periods):
        block = v[:, period == p, :]
        total[:, p] = np.nansum(block, axis=1)
        count[:, p] = np.isfinite(block).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    out = np.full((v.shape[0], n_periods, len(features)), np.nan, np.float32)
    order = s2 + s1
    for j, f in enumerate(features):
        if f in order:
            out[:, :, j] = mean[:, :, order.index(f)]
    periods = pd.date_range(t0, periods=n_periods, freq=f"{period_days}D")
    return fill_gaps(out, axis=1), periods


def series_features(
    series: npt.NDArray[np.floating], features: Sequence[str]
) -> tuple[npt.NDArray[np.float32], tuple[str, ...]]:
    """(parcels, periods, features) gap-filled series (each complete or all NaN, as :func:`composites`
    gives them) -> the flattened series plus per-feature temporal summaries, and the column names."""
    n, t, k = series.shape
    names = [f"{f}@p{p:02d}" for p in range(t) for f in features]
    cols = [series.reshape(n, t * k)]
    # after fill_gaps a series is either complete or never observed (all NaN): plain reductions give NaN
    # for the latter and are far faster than numpy's nan-aware ones
    q10, q50, q90 = np.percentile(series, (10, 50, 90), axis=1)
    lo, hi = series.min(axis=1), series.max(axis=1)
    observed = np.isfinite(hi)
    last = max(1, t - 1)
    stats = {
        "mean": series.mean(axis=1),
        "std": series.std(axis=1),
        "min": lo,
        "max": hi,
        "p10": q10,
        "p50": q50,
        "p90": q90,
        "argmax": np.where(observed, np.nan_to_num(series, nan=-np.inf).argmax(axis=1) / last, np.nan),
        "argmin": np.where(observed, np.nan_to_num(series, nan=np.inf).argmin(axis=1) / last, np.nan),
    }
    for s in _SUMMARIES:
        cols.append(stats[s])
        names += [f"{f}:{s}" for f in features]
    return np.concatenate(cols, axis=1).astype(np.float32), tuple(names)


def parcel_features(
    ds: xr.Dataset,
    period_days: int = 10,
    start: str | None = None,
    end: str | None = None,
    features: Sequence[str] = MODEL_FEATURES,
    min_clear_fraction: float = MIN_CLEAR_FRACTION,
    anomalies: bool = True,
) -> FeatureSet:
    """The model's input: composited, gap-filled series flattened, plus temporal summaries per feature;
    with ``anomalies``, the same for each feature's anomaly against the tensor's median parcel (see the
    module docstring)."""
    series, periods = composites(ds, period_days, start, end, features, min_clear_fraction)
    names = list(features)
    if anomalies:
        with warnings.catch_warnings():  # a feature no parcel has (all NaN) stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = np.nanmedian(series, axis=0, keepdims=True)
        series = np.concatenate([series, series - reference], axis=2)
        names += [f"{f}_anom" for f in features]  # NDVI_anom@p03
    values, names_out = series_features(series, names)
    ids = np.array([str(p) for p in ds["parcel"].to_numpy()])  # Zarr may hand back numpy StringDType
    end_day = periods[-1] + pd.Timedelta(days=period_days - 1)
    return FeatureSet(ids, values, names_out, str(periods[0].date()), str(end_day.date()))
