"""What every dated-event product shares: a parcel's daily series from the tensor, the true events of a
simulated region, and event scoring.

The event products (mowing, ploughing/harvest, emergence, tillage, damage) read the season tensor
(``parcel_timeseries``: dims parcel x day x feature x stat, NaN where a parcel was not observed that day)
through :func:`season_series`: one (parcels, days) array per feature on the tensor's daily axis, S2
features from each date's parcel median (robust to unmasked cloud edges), S1 from the parcel mean
(averaged in linear power), with the valid-pixel count beside each. Nothing is gap-filled here: a detector
sees the irregular sampling as it is (S2 only on clear days, S1 every few days per pass).

Events are scored as DESIGN §7 says: an event F1 within a day tolerance and the mean absolute date error of
the matched events. :func:`match_days` pairs predicted and true days of one parcel one-to-one, closest
first; :func:`event_scores` pools the pairs of every parcel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

__all__ = [
    "EVENT_TOLERANCE_DAYS",
    "S1_FEATURES",
    "Event",
    "SeasonSeries",
    "day_anomalies",
    "day_anomaly",
    "drop_s2_dates",
    "event_scores",
    "events_table",
    "match_days",
    "next_observed",
    "season_series",
    "truth_events",
]

EVENT_TOLERANCE_DAYS = 6
"""A detected event matches a true one within this many days (issue: events)."""

S1_FEATURES = ("VV_asc", "VH_asc", "VH_VV_asc", "VV_desc", "VH_desc", "VH_VV_desc")
"""The tensor's Sentinel-1 features (every other feature is Sentinel-2)."""


@dataclass(frozen=True)
class SeasonSeries:
    """Daily series of a set of parcels.

    Attributes:
        parcel_ids: (parcels,) ids.
        days: the daily time axis (every day of the season).
        data: feature -> (parcels, days) float32; NaN where the parcel was not observed that day.
        counts: feature -> (parcels, days) valid-pixel count (0 where not observed).
        crop_class: (parcels,) declared crop class (0: unknown).
        area_ha: (parcels,) parcel area.
    """

    parcel_ids: npt.NDArray[np.str_]
    days: pd.DatetimeIndex
    data: dict[str, npt.NDArray[np.float32]]
    counts: dict[str, npt.NDArray[np.float32]]
    crop_class: npt.NDArray[np.int64]
    area_ha: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.parcel_ids)

    def subset(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> SeasonSeries:
        """The series of some parcels (a boolean mask or row indices)."""
        return SeasonSeries(
            parcel_ids=self.parcel_ids[rows],
            days=self.days,
            data={k: v[rows] for k, v in self.data.items()},
            counts={k: v[rows] for k, v in self.counts.items()},
            crop_class=self.crop_class[rows],
            area_ha=self.area_ha[rows],
        )

    def day_index(self, day: date | pd.Timestamp) -> int:
        """Position of ``day`` on the (daily, sorted) time axis."""
        return int(self.days.searchsorted(pd.Timestamp(day)))


def next_observed(observed: npt.NDArray[np.bool_], strictly: bool = False) -> npt.NDArray[np.int64]:
    """(rows, days) index of each row's first observed day on or after each day (``strictly``: after it);
    ``days`` where there is none."""
    n = observed.shape[1]
    idx = np.minimum.accumulate(np.where(observed, np.arange(n), n)[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([idx[:, 1:], np.full((len(idx), 1), n)], axis=1) if strictly else idx


def day_anomaly(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(parcels, days) each observation minus the median of the parcels observed that day (NaN where not
    observed): what the region's weather does to every parcel at once (soil moisture after rain moves the
    backscatter of all bare soil) is taken out, a parcel's own change (a ploughing's roughness) stays."""
    seen = np.isfinite(values).any(axis=0)
    median = np.full(values.shape[1], np.nan, np.float32)
    median[seen] = np.nanmedian(values[:, seen], axis=0)
    return (values - median).astype(np.float32)


def day_anomalies(series: SeasonSeries, features: Sequence[str]) -> SeasonSeries:
    """The series with ``features`` replaced by their :func:`day_anomaly` (counts unchanged)."""
    data = dict(series.data) | {f: day_anomaly(series.data[f]) for f in features}
    return SeasonSeries(
        series.parcel_ids, series.days, data, series.counts, series.crop_class, series.area_ha
    )


def drop_s2_dates(series: SeasonSeries, fraction: float, seed: int = 0) -> SeasonSeries:
    """The series with a random ``fraction`` of the days that have any Sentinel-2 observation removed from
    every S2 feature (all parcels lose the same acquisition days, as under a cloudy spell); S1 untouched."""
    s2 = [f for f in series.data if f not in S1_FEATURES]
    if not s2:
        return series
    seen = np.zeros(len(series.days), bool)
    for f in s2:
        seen |= (series.counts[f] > 0).any(axis=0)
    days = np.flatnonzero(seen)
    rng = np.random.default_rng(seed)
    dropped = rng.choice(days, size=int(round(fraction * len(days))), replace=False)
    values, counts = dict(series.data), dict(series.counts)
    for f in s2:
        values[f] = values[f].copy()
        counts[f] = counts[f].copy()
        values[f][:, dropped] = np.nan
        counts[f][:, dropped] = 0.0
    return SeasonSeries(series.parcel_ids, series.days, values, counts, series.crop_class, series.area_ha)


def season_series(
    ds: xr.Dataset,
    features: Sequence[str],
    start: str | None = None,
    end: str | None = None,
) -> SeasonSeries:
    """The daily series of ``features`` for every parcel of a season tensor.

    Args:
        ds: a season tensor (``parcel_timeseries``).
        features: tensor features to read (S2 ones from the per-date median, S1 ones from the mean).
        start: first day (ISO; default: the tensor's first day).
        end: last day (ISO; default: the tensor's last day).

    Raises:
        KeyError: a feature the tensor does not have.
    """
    missing = [f for f in features if f not in ds["feature"].to_numpy()]
    if missing:
        raise KeyError(f"the tensor has no feature(s) {missing}")
    obs = ds["obs"].sel(time=slice(start, end), feature=list(features))
    values: dict[str, npt.NDArray[np.float32]] = {}
    counts: dict[str, npt.NDArray[np.float32]] = {}
    for f in features:
        stat = "mean" if f in S1_FEATURES else "median"
        both = obs.sel(feature=f, stat=[stat, "count"]).to_numpy().astype(np.float32)
        count = np.nan_to_num(both[..., 1], nan=0.0)
        values[f] = np.where(count > 0, both[..., 0], np.nan).astype(np.float32)
        counts[f] = count
    return SeasonSeries(
        parcel_ids=np.array([str(p) for p in ds["parcel"].to_numpy()]),
        days=pd.DatetimeIndex(obs["time"].to_numpy()),
        data=values,
        counts=counts,
        crop_class=ds["crop_class"].to_numpy().astype(np.int64),
        area_ha=ds["area_ha"].to_numpy().astype(np.float32),
    )


@dataclass(frozen=True)
class Event:
    """One detected event.

    Attributes:
        parcel_id: the parcel.
        kind: ``mowing``, ``harvest``, ``ploughing`` or ``emergence``.
        day: the estimated date.
        confidence: 0..1.
    """

    parcel_id: str
    kind: str
    day: date
    confidence: float


def events_table(events: Iterable[Event]) -> pd.DataFrame:
    """Events as a table (parcel_id, event, date, confidence), sorted by parcel and date."""
    rows = [(e.parcel_id, e.kind, pd.Timestamp(e.day), float(e.confidence)) for e in events]
    table = pd.DataFrame(rows, columns=["parcel_id", "event", "date", "confidence"])
    table["date"] = pd.to_datetime(table["date"])
    table["confidence"] = table["confidence"].astype(np.float64)  # also when there is no event
    return table.sort_values(["parcel_id", "date"], ignore_index=True)


def truth_events(region: Path, kinds: Sequence[str]) -> pd.DataFrame:
    """A simulated region's true events of ``kinds`` (parcel_id, event, date), from truth/events.parquet."""
    table = pd.read_parquet(Path(region) / "truth" / "events.parquet")
    return table.loc[table["event"].isin(list(kinds))].reset_index(drop=True)


def match_days(
    predicted: Sequence[int], true: Sequence[int], tolerance: int = EVENT_TOLERANCE_DAYS
) -> list[tuple[int, int]]:
    """One-to-one pairs (predicted, true) of one parcel's event days within ``tolerance``, closest pairs
    first (ties: earlier days first)."""
    candidates = sorted(
        (abs(p - t), t, p) for p in predicted for t in true if abs(p - t) <= tolerance
    )  # fmt: skip
    used_p: set[int] = set()
    used_t: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _, t, p in candidates:
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
            pairs.append((p, t))
    return pairs


def event_scores(
    predicted: Mapping[str, Sequence[int]],
    true: Mapping[str, Sequence[int]],
    tolerance: int = EVENT_TOLERANCE_DAYS,
) -> dict[str, float]:
    """Event precision, recall and F1 within ``tolerance`` days, and the mean absolute date error of the
    matched events, pooled over parcels.

    Args:
        predicted: parcel id -> detected event days (day numbers, e.g. days since the season start).
        true: parcel id -> true event days (same numbering); parcels absent have none.
        tolerance: days.

    Returns:
        ``precision``, ``recall``, ``f1``, ``mae_days`` (NaN with no match), ``n_true``, ``n_predicted``,
        ``n_matched``.
    """
    matched = n_pred = n_true = 0
    errors: list[int] = []
    for parcel in set(predicted) | set(true):
        p, t = list(predicted.get(parcel, [])), list(true.get(parcel, []))
        pairs = match_days(p, t, tolerance)
        matched += len(pairs)
        n_pred += len(p)
        n_true += len(t)
        errors += [abs(a - b) for a, b in pairs]
    precision = matched / n_pred if n_pred else float(n_true == 0)
    recall = matched / n_true if n_true else float(n_pred == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mae_days": float(np.mean(errors)) if errors else float("nan"),
        "n_true": float(n_true),
        "n_predicted": float(n_pred),
        "n_matched": float(matched),
    }
