"""Harvest and ploughing events on arable parcels: a rule-based baseline and a LightGBM day scorer.

A harvest turns a (senesced) canopy into stubble and residue: NDVI falls, the residue indices (NDTI, CRC,
NDI7) and the brightness (BI1, BI2) step, and Sentinel-1 VH and VH/VV fall with the vegetation volume.
Conventional tillage then ploughs the residue under: bare, rough, darker soil (NDTI and CRC fall to the
soil level) and a jump of VV and VH backscatter from the roughness. Conservation tillage leaves the
residue (no ploughing event); some fallow parcels are ploughed without a harvest.

* **Baseline** (:func:`detect_rules`): over the steps between consecutive clear S2 observations, a
  harvest is the largest fall of the brightness BI1 (flat through senescence, it falls when the canopy is
  cut) after the season's green peak that ends at a low NDVI; a ploughing the largest BI1 fall that ends
  with NDTI at the soil level and comes with a rise of S1 VV (roughness). The day is the middle of the
  step. On seed 1 it finds about half of the events: clouds leave S2 gaps of 15 days (median).
* **Learned** (:class:`HarvestPloughModel`): every day of an arable parcel is a candidate, described by the
  S2 observations just before and after it (values, steps, days to each) and the S1 means of each orbit
  before and after it, also relative to the other parcels observed the same day (rain wets every field at
  once; development seed 3: ploughing F1 0.91 -> 0.99 with these anomalies, as the training season's
  moisture no longer shifts the roughness jump); a multiclass LightGBM scores none / harvest / ploughing and
  per type the highest peak (at most ``max_events``) above a threshold chosen on validation parcels is the
  event, its day the probability-weighted centre of the peak. A parcel-level classifier of "ploughed in the
  season" (`kz_pipelines.models.tillage.TillageModel` on the tillage product's residue windows, trained on
  the same truth: ploughed parcels against harvested ones that were not) vetoes the ploughing events of the
  parcels it calls unploughed, which keeps this product consistent with the tillage practice; on the
  development seed it removed most false ploughings, those on conservation-tillage parcels.

Parcels with fewer than ``MIN_S2`` S2 or ``MIN_S1`` S1 observations get the status ``insufficient_data``
and no event (never an invented date); non-arable parcels are ``out_of_scope``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from kz_pipelines.labels import load_taxonomy
from kz_pipelines.models.events import (
    S1_FEATURES,
    Event,
    SeasonSeries,
    day_anomaly,
    event_scores,
    next_observed,
)
from kz_pipelines.models.tillage import TillageModel
from kz_pipelines.storage import atomic_dir

__all__ = [
    "KINDS",
    "MIN_S1",
    "MIN_S2",
    "S1_INPUTS",
    "S2_INPUTS",
    "HarvestPloughModel",
    "HarvestPloughRules",
    "arable",
    "candidate_features",
    "detect_rules",
    "event_figures",
    "evaluate",
    "fit",
    "parcel_status",
    "ploughed_classifier",
]

KINDS = ("harvest", "ploughing")
"""Event types, in the order of the model's classes 1 and 2 (0: no event)."""
S2_INPUTS = ("NDVI", "NDTI", "CRC", "NDI7", "BI1", "BI2")
"""Sentinel-2 features the detectors read."""
S1_INPUTS = S1_FEATURES
"""Sentinel-1 features the detectors read (dB)."""
MIN_S2 = 3
"""Fewer clear S2 observations in the season than this: ``insufficient_data``."""
MIN_S1 = 3
"""Fewer S1 observations (both orbits) in the season than this: ``insufficient_data``."""

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class HarvestPloughRules:
    """Thresholds of the rule-based baseline, applied to steps between consecutive clear S2 observations.

    Attributes:
        min_peak_ndvi: the parcel's season NDVI maximum must reach this for a harvest (a crop grew).
        bi_drop: fall of the brightness index BI1 across a step, at least: the canopy (or the residue) is
            removed and darker soil shows; senescence alone leaves BI1 flat.
        harvest_ndvi_after: NDVI after a harvest, at most (stubble and residue, no green canopy).
        plough_ndti_after: NDTI after a ploughing, at most (residue buried, bare soil).
        plough_vv_rise: rise of S1 VV across the step (dB, mean of both orbits, mean of the observations
            within ``s1_window`` days after minus before the step's middle): soil roughness.
        s1_window: days, see ``plough_vv_rise``.
        max_gap: days; a step across a longer S2 gap is not dated (too uncertain).
    """

    min_peak_ndvi: float = 0.5
    bi_drop: float = 0.012
    harvest_ndvi_after: float = 0.3
    plough_ndti_after: float = 0.085
    plough_vv_rise: float = 1.5
    s1_window: int = 12
    max_gap: int = 30


def arable(series: SeasonSeries) -> npt.NDArray[np.bool_]:
    """(parcels,) True where the declared crop class is arable in the taxonomy (unknown classes: False)."""
    taxonomy = load_taxonomy()
    ids = {c.id for c in taxonomy.classes if c.arable}
    return np.isin(series.crop_class, sorted(ids))


def parcel_status(series: SeasonSeries) -> npt.NDArray[np.str_]:
    """(parcels,) ``ok``, ``insufficient_data`` (too few S2 or S1 observations) or ``out_of_scope``."""
    n_s2 = (series.counts["NDVI"] > 0).sum(axis=1)
    n_s1 = sum((series.counts[f] > 0).sum(axis=1) for f in ("VV_asc", "VV_desc"))
    status = np.where((n_s2 >= MIN_S2) & (n_s1 >= MIN_S1), "ok", "insufficient_data")
    return np.where(arable(series), status, "out_of_scope")


def _last_index(observed: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """(parcels, days) index of the last observed day strictly before each day (-1: none)."""
    idx = np.where(observed, np.arange(observed.shape[1]), -1)
    upto = np.maximum.accumulate(idx, axis=1)
    return np.concatenate([np.full((len(idx), 1), -1), upto[:, :-1]], axis=1)


def _take(values: Array, index: npt.NDArray[np.int64]) -> Array:
    """values[p, index[p, d]], NaN where the index is outside the season."""
    n = values.shape[1]
    out = np.take_along_axis(values, np.clip(index, 0, n - 1), axis=1)
    return np.where((index >= 0) & (index < n), out, np.nan).astype(np.float32)


def _neighbours(values: Array) -> tuple[list[Array], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The two observations before each day, the two on or after it, and the days of the nearest ones.

    Returns:
        ([before1, before2, after1, after2] values, (parcels, days) each), index of before1, of after1.
    """
    observed = np.isfinite(values)
    last, nxt = _last_index(observed), next_observed(observed)
    n = values.shape[1]
    last2 = np.where(last >= 0, np.take_along_axis(last, np.clip(last, 0, n - 1), axis=1), -1)
    after_next = next_observed(observed, strictly=True)
    nxt2 = np.where(nxt < n, np.take_along_axis(after_next, np.clip(nxt, 0, n - 1), axis=1), n)
    return [_take(values, i) for i in (last, last2, nxt, nxt2)], last, nxt


def candidate_features(series: SeasonSeries) -> tuple[Array, tuple[str, ...]]:
    """Features of every (parcel, day) as a harvest or ploughing candidate.

    Per S2 feature: the last observation before the day, the first on or after it, and the steps between
    the nearest and between the means of the two nearest on each side; days since the last and until the
    next S2 observation; the season-to-date NDVI maximum. Per S1 feature (each orbit apart): the same
    values and steps, and again on its per-day anomaly (`kz_pipelines.models.events.day_anomaly`: the
    region's soil-moisture swings after rain taken out, a ploughing's roughness jump kept). Plus the day of
    year and the declared crop class.

    Returns:
        (parcels * days, features) float32 (rows parcel-major), feature names.
    """
    parcels, days = series.data["NDVI"].shape
    columns: dict[str, Array] = {}
    inputs = {name: series.data[name] for name in (*S2_INPUTS, *S1_INPUTS)}
    inputs |= {f"{name}_anom": day_anomaly(series.data[name]) for name in S1_INPUTS}
    for name, values in inputs.items():
        (b1, b2, a1, a2), last, nxt = _neighbours(values)
        columns[f"{name}_before"] = b1
        columns[f"{name}_after"] = a1
        columns[f"{name}_step"] = a1 - b1
        columns[f"{name}_step2"] = _pair_mean(a1, a2) - _pair_mean(b1, b2)
        if name in ("NDVI", "VV_asc", "VV_desc"):
            here = np.arange(days)
            columns[f"{name}_since"] = np.where(last >= 0, here - last, 99).astype(np.float32)
            columns[f"{name}_until"] = np.where(nxt < days, nxt - here, 99).astype(np.float32)
    ndvi = np.nan_to_num(series.data["NDVI"], nan=-1.0)
    columns["NDVI_max_before"] = np.maximum.accumulate(ndvi, axis=1)
    doy = np.asarray(series.days.dayofyear, dtype=np.float32)
    columns["doy"] = np.broadcast_to(doy, (parcels, days))
    columns["crop_class"] = np.broadcast_to(series.crop_class[:, None], (parcels, days)).astype(np.float32)
    names = tuple(columns)
    return np.stack([columns[n].reshape(-1) for n in names], axis=1).astype(np.float32), names


def _pair_mean(first: Array, second: Array) -> Array:
    """Mean of two observations, the first alone where the second is missing."""
    return np.where(np.isfinite(second), (first + second) / 2, first).astype(np.float32)


def _steps(
    series: SeasonSeries, row: int, max_gap: int, smooth: bool
) -> tuple[npt.NDArray[np.int64], dict[str, Array]]:
    """One parcel's consecutive clear S2 observation pairs: middle days and, per S2 input, the value after
    minus before (and ``{name}_after``)."""
    seen = np.flatnonzero(np.isfinite(series.data["NDVI"][row]))
    first, second = seen[:-1], seen[1:]
    keep = second - first <= max_gap
    first, second = first[keep], second[keep]
    values = {}
    for name in ("NDVI", "NDTI", "BI1"):
        v = series.data[name][row].copy()
        if smooth:  # a running median of three observations removes cloud-edge spikes
            v[seen[1:-1]] = np.median([v[seen[:-2]], v[seen[1:-1]], v[seen[2:]]], axis=0)
        values[name], values[f"{name}_after"] = v[second] - v[first], v[second]
    return (first + second + 1) // 2, values


def detect_rules(series: SeasonSeries, rules: HarvestPloughRules = HarvestPloughRules()) -> list[Event]:
    """The baseline, over the S2 steps of each parcel with status ``ok``: the harvest is the step after the
    season's NDVI peak with the largest BI1 fall (on a running median of three observations) that ends at a
    low NDVI and is no ploughing; the ploughing the step with the largest BI1 fall where NDTI ends at the
    soil level and S1 VV rises (see :class:`HarvestPloughRules`). At most one of each per parcel; the day
    is the middle of the step; the confidence grows with the BI1 fall.

    Args:
        series: daily series with at least NDVI, NDTI, BI1, VV_asc and VV_desc.
        rules: thresholds.
    """
    vv_rise = _s1_change(series, ("VV_asc", "VV_desc"), rules.s1_window)
    events: list[Event] = []
    for row in np.flatnonzero(parcel_status(series) == "ok").tolist():
        pid, ndvi = str(series.parcel_ids[row]), np.nan_to_num(series.data["NDVI"][row], nan=-1.0)
        mid, step = _steps(series, row, rules.max_gap, smooth=True)
        harvest = (-step["BI1"] >= rules.bi_drop) & (mid > np.argmax(ndvi))
        harvest &= (step["NDVI_after"] <= rules.harvest_ndvi_after) & ~_ploughed(
            step, vv_rise[row, mid], rules
        )
        if ndvi.max() >= rules.min_peak_ndvi and harvest.any():
            best = int(np.argmax(np.where(harvest, -step["BI1"], -np.inf)))
            conf = float(np.clip(-step["BI1"][best] / (3 * rules.bi_drop), 0, 1))
            events.append(Event(pid, "harvest", series.days[mid[best]].date(), conf))
        mid, step = _steps(series, row, rules.max_gap, smooth=False)
        conf = np.clip(-step["BI1"] / (3 * rules.bi_drop), 0, 1)
        plough = _ploughed(step, vv_rise[row, mid], rules)
        if plough.any():
            best = int(np.argmax(np.where(plough, -step["BI1"], -np.inf)))
            events.append(Event(pid, "ploughing", series.days[mid[best]].date(), float(conf[best])))
    return events


def _ploughed(step: dict[str, Array], vv_rise: Array, rules: HarvestPloughRules) -> npt.NDArray[np.bool_]:
    """Steps that look like a ploughing: BI1 falls, NDTI ends at the soil level, S1 VV rises."""
    falls = -step["BI1"] >= rules.bi_drop
    return (
        falls
        & (step["NDTI_after"] <= rules.plough_ndti_after)
        & (np.nan_to_num(vv_rise) >= rules.plough_vv_rise)
    )


def _s1_change(series: SeasonSeries, features: tuple[str, ...], window: int) -> Array:
    """(parcels, days) mean over ``features`` of (mean of the observations in [d, d + window) minus mean
    in [d - window, d)), dB; NaN where a side has no observation."""
    changes = []
    for name in features:
        values = series.data[name]
        seen = np.isfinite(values)
        csum = np.concatenate([np.zeros((len(values), 1)), np.cumsum(np.nan_to_num(values), 1)], axis=1)
        cnum = np.concatenate([np.zeros((len(values), 1)), np.cumsum(seen, 1)], axis=1)
        d = np.arange(values.shape[1])
        lo, hi = np.clip(d - window, 0, None), np.clip(d + window, None, values.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            after = (csum[:, hi] - csum[:, d]) / (cnum[:, hi] - cnum[:, d])
            before = (csum[:, d] - csum[:, lo]) / (cnum[:, d] - cnum[:, lo])
        changes.append(after - before)
    with np.errstate(invalid="ignore"):
        return np.mean(changes, axis=0).astype(np.float32)


def _true_days(series: SeasonSeries, truth: pd.DataFrame, kind: str) -> dict[str, list[int]]:
    """Parcel id -> true day numbers (days since the series start) of ``kind`` within the season."""
    rows = truth.loc[(truth["event"] == kind) & truth["parcel_id"].isin(series.parcel_ids)]
    day = (pd.to_datetime(rows["date"]) - series.days[0]).dt.days.to_numpy()
    out: dict[str, list[int]] = {}
    for pid, d in zip(rows["parcel_id"].astype(str), day, strict=True):
        if 0 <= d < len(series.days):
            out.setdefault(pid, []).append(int(d))
    return out


def _labels(series: SeasonSeries, truth: pd.DataFrame, radius: int) -> npt.NDArray[np.int64]:
    """(parcels, days) class per day: 0 none, 1 harvest, 2 ploughing (within ``radius`` days)."""
    labels = np.zeros(series.data["NDVI"].shape, np.int64)
    row_of = {p: i for i, p in enumerate(series.parcel_ids)}
    for code, kind in enumerate(KINDS, start=1):
        for pid, days in _true_days(series, truth, kind).items():
            for d in days:
                labels[row_of[pid], max(d - radius, 0) : d + radius + 1] = code
    return labels


def _peaks(prob: Array, threshold: float, max_events: int, half: int = 5) -> list[tuple[float, float]]:
    """Peaks of one parcel's daily probability: (probability-weighted centre day, peak height), highest
    first, at most ``max_events`` above ``threshold``, 30 days apart at least."""
    smooth = np.convolve(prob, np.ones(3) / 3, mode="same")
    out: list[tuple[float, float]] = []
    while len(out) < max_events:
        top = int(np.argmax(smooth))
        if smooth[top] < threshold:
            break
        lo, hi = max(top - half, 0), top + half + 1
        weights = prob[lo:hi]
        out.append(
            (float(np.sum(np.arange(lo, lo + len(weights)) * weights) / np.sum(weights)), float(smooth[top]))
        )
        smooth[max(top - 30, 0) : top + 31] = 0.0
    return out


def _to_events(
    series: SeasonSeries,
    rows: npt.NDArray[np.int64],
    prob: Array,
    thresholds: dict[str, float],
    max_events: int,
) -> list[Event]:
    """Events from (rows, days, 1 + kinds) class probabilities."""
    events: list[Event] = []
    for i, row in enumerate(rows):
        for code, kind in enumerate(KINDS, start=1):
            for centre, height in _peaks(prob[i, :, code], thresholds[kind], max_events):
                day = series.days[int(round(centre))].date()
                events.append(Event(str(series.parcel_ids[row]), kind, day, min(height, 1.0)))
    return events


LGB_PARAMS: dict[str, Any] = dict(
    objective="multiclass", num_class=1 + len(KINDS), learning_rate=0.05, num_leaves=31, min_data_in_leaf=20,
    feature_fraction=0.7, bagging_fraction=0.8, bagging_freq=1, lambda_l2=1.0, max_bin=63,
    deterministic=True, num_threads=1, verbose=-1,
)  # fmt: skip
"""LightGBM settings (one thread: deterministic, and fastest on the small shared CPUs this runs on)."""


@dataclass
class HarvestPloughModel:
    """The learned detector: a LightGBM day scorer and per-type thresholds for peak picking.

    Attributes:
        booster: multiclass LightGBM (0 none, 1 harvest, 2 ploughing) on :func:`candidate_features`.
        thresholds: event type -> smallest smoothed peak probability that makes an event.
        max_events: at most this many events of each type per parcel and season.
        card: training facts and validation figures (JSON-serializable).
        ploughed: the parcel-level "ploughed in the season" classifier whose "no" vetoes ploughing events
            (None: no veto).
    """

    booster: lgb.Booster
    thresholds: dict[str, float]
    max_events: int = 1
    card: dict[str, Any] | None = None
    ploughed: TillageModel | None = None

    @classmethod
    def train(
        cls,
        series: SeasonSeries,
        truth: pd.DataFrame,
        seed: int = 0,
        validation: float = 0.25,
        radius: int = 1,
        rounds: int = 400,
    ) -> HarvestPloughModel:
        """Fit on the arable ``ok`` parcels of ``series``; a ``validation`` share of them (by parcel) drives
        early stopping and the choice of thresholds.

        Args:
            series: daily series with :data:`S2_INPUTS` and :data:`S1_INPUTS`.
            truth: true events (parcel_id, event, date); types other than :data:`KINDS` are ignored.
            seed: split, sampling and LightGBM seed.
            validation: share of parcels held out.
            radius: days either side of a true event labelled as that event.
            rounds: maximum boosting rounds (early stopping after 30 without improvement).

        Raises:
            ValueError: fewer than 10 observed arable parcels with a true event.
        """
        rng = np.random.default_rng(seed)
        rows = np.flatnonzero(parcel_status(series) == "ok")
        with_events = set(truth.loc[truth["event"].isin(KINDS), "parcel_id"].astype(str))
        if len(with_events & {str(p) for p in series.parcel_ids[rows]}) < 10:
            raise ValueError(
                "harvest/ploughing: fewer than 10 observed arable parcels with a true harvest or ploughing "
                "to train on"
            )
        is_val = rng.random(len(rows)) < validation
        fit, val = series.subset(rows[~is_val]), series.subset(rows[is_val])
        sets = []
        for part in (fit, val):
            x, _ = candidate_features(part)
            y = _labels(part, truth, radius).reshape(-1)
            near = _labels(part, truth, 15).reshape(-1) > 0
            keep = near | (rng.random(len(y)) < 0.15)
            sets.append((x[keep], y[keep]))
        train_set = lgb.Dataset(sets[0][0], sets[0][1], free_raw_data=False)
        booster = lgb.train(
            {**LGB_PARAMS, "seed": seed},
            train_set,
            num_boost_round=rounds,
            valid_sets=[lgb.Dataset(sets[1][0], sets[1][1], reference=train_set)],
            callbacks=[lgb.early_stopping(30, verbose=False)],
        )
        model = cls(booster, dict.fromkeys(KINDS, 0.5), ploughed=ploughed_classifier(fit, truth, seed))
        prob, vetoed = model.probabilities(val), model.unploughed(val)
        for kind in KINDS:  # the threshold with the best validation F1 of its type
            f1: dict[float, float] = {}
            for t in np.arange(0.02, 0.9, 0.02).round(2):
                events = model._events(val, prob, {**model.thresholds, kind: float(t)}, vetoed)
                f1[float(t)] = event_figures(val, events, truth)[f"{kind}_f1"]
            model.thresholds[kind] = max(f1, key=lambda t: f1[t])
        learned = event_figures(val, model._events(val, prob, model.thresholds, vetoed), truth)
        baseline = event_figures(val, detect_rules(val), truth)
        scores = {f"learned_{k}": v for k, v in learned.items()}
        scores |= {f"baseline_{k}": v for k, v in baseline.items()}
        model.card = {"n_fit_parcels": len(fit), "n_validation_parcels": len(val), "seed": seed,
                      "rounds": booster.best_iteration, "radius_days": radius,
                      "validation": scores,
                      "ploughed_classifier": model.ploughed.card if model.ploughed else None}  # fmt: skip
        return model

    def probabilities(self, series: SeasonSeries) -> Array:
        """(parcels, days, 1 + kinds) class probabilities per day."""
        x, _ = candidate_features(series)
        n_best = self.booster.best_iteration or None
        prob = np.asarray(self.booster.predict(x, num_iteration=n_best), dtype=np.float32)
        return prob.reshape(len(series), len(series.days), -1)

    def unploughed(self, series: SeasonSeries) -> set[str]:
        """The parcels the ploughed classifier calls unploughed (their ploughings are vetoed)."""
        if self.ploughed is None:
            return set()
        table = self.ploughed.classify(series)
        return set(table.loc[(table["status"] == "ok") & (table["p_conventional"] < 0.5), "parcel_id"])

    def _events(
        self, series: SeasonSeries, prob: Array, thresholds: dict[str, float], vetoed: set[str]
    ) -> list[Event]:
        events = _to_events(series, np.arange(len(series)), prob, thresholds, self.max_events)
        return [e for e in events if not (e.kind == "ploughing" and e.parcel_id in vetoed)]

    def detect(self, series: SeasonSeries) -> list[Event]:
        """Harvest and ploughing events of the parcels with status ``ok`` (see :func:`parcel_status`)."""
        rows = np.flatnonzero(parcel_status(series) == "ok")
        if not len(rows):
            return []
        part = series.subset(rows)
        return self._events(part, self.probabilities(part), self.thresholds, self.unploughed(part))

    def save(self, folder: Path) -> None:
        """Write ``lightgbm.txt``, ``model.json`` (thresholds, card) and the ploughed classifier
        (``ploughed/``) atomically."""
        with atomic_dir(Path(folder)) as tmp:
            self.booster.save_model(str(tmp / "lightgbm.txt"))
            meta = {"thresholds": self.thresholds, "max_events": self.max_events, "card": self.card}
            (tmp / "model.json").write_text(json.dumps(meta, indent=1))
            if self.ploughed is not None:
                self.ploughed.save(tmp / "ploughed")

    @classmethod
    def load(cls, folder: Path) -> HarvestPloughModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((Path(folder) / "model.json").read_text())
        booster = lgb.Booster(model_file=str(Path(folder) / "lightgbm.txt"))
        return cls(
            booster,
            {k: float(v) for k, v in meta["thresholds"].items()},
            int(meta["max_events"]),
            meta["card"],
            TillageModel.load(Path(folder) / "ploughed") if (Path(folder) / "ploughed").is_dir() else None,
        )


def ploughed_classifier(series: SeasonSeries, truth: pd.DataFrame, seed: int) -> TillageModel | None:
    """The "ploughed in the season" classifier, trained on the parcels of ``series`` (label: a true
    ploughing in the season; None where the parcels do not hold both kinds)."""
    ploughed = set(_true_days(series, truth, "ploughing"))
    label = ["conventional" if str(p) in ploughed else "conservation" for p in series.parcel_ids]
    try:
        return TillageModel.train(
            series, pd.DataFrame({"parcel_id": series.parcel_ids, "tillage": label}), seed
        )
    except ValueError:  # e.g. a season without ploughing: no veto
        return None


def event_figures(series: SeasonSeries, events: list[Event], truth: pd.DataFrame) -> dict[str, float]:
    """F1, precision, recall and date MAE per type and for both (``{kind}_f1``, ``f1``...), over the
    arable parcels of ``series`` (those without a result count as misses)."""
    scope = {str(p) for p in series.parcel_ids[arable(series)]}
    out: dict[str, float] = {}
    both_pred: dict[str, list[int]] = {}
    both_true: dict[str, list[int]] = {}
    for kind in KINDS:
        pred: dict[str, list[int]] = {}
        for e in events:
            if e.kind == kind and e.parcel_id in scope:
                pred.setdefault(e.parcel_id, []).append((pd.Timestamp(e.day) - series.days[0]).days)
        true = {p: d for p, d in _true_days(series, truth, kind).items() if p in scope}
        scores = event_scores(pred, true)
        out |= {f"{kind}_{k}": scores[k] for k in ("f1", "precision", "recall", "mae_days", "n_true")}
        both_pred |= {f"{p}|{kind}": d for p, d in pred.items()}
        both_true |= {f"{p}|{kind}": d for p, d in true.items()}
    scores = event_scores(both_pred, both_true)
    return out | {k: scores[k] for k in ("f1", "precision", "recall", "mae_days")}


def fit(
    series: SeasonSeries, truth: pd.DataFrame, seed: int = 0
) -> tuple[HarvestPloughModel, dict[str, float]]:
    """Train the learned model on ``series`` and compare it with the baseline on its validation parcels
    (the share :meth:`HarvestPloughModel.train` holds out).

    Returns:
        The model, and the validation figures of both (``learned_*``, ``baseline_*``: :func:`event_figures`)
        with ``selected`` (1.0: the learned model's F1 is at least the baseline's, 0.0: the baseline).
    """
    model = HarvestPloughModel.train(series, truth, seed)
    validation = {k: float(v) for k, v in (model.card or {})["validation"].items()}
    return model, {**validation, "selected": float(validation["learned_f1"] >= validation["baseline_f1"])}


def evaluate(
    train: SeasonSeries, train_truth: pd.DataFrame, test: SeasonSeries, test_truth: pd.DataFrame
) -> dict[str, float]:
    """Fit the learned model on ``train`` (validation parcels inside it), score baseline and learned on
    ``test``'s arable parcels.

    Returns:
        ``baseline_*`` and ``learned_*`` figures (``f1``, ``mae_days``... for both types, and per type as
        ``harvest_f1``...), ``validation_*`` figures on the held-out part of ``train``, and ``selected``:
        1.0 where the learned model had the higher validation F1 (else 0.0, the baseline).
    """
    model, validation = fit(train, train_truth)
    out = {f"baseline_{k}": v for k, v in event_figures(test, detect_rules(test), test_truth).items()}
    out |= {f"learned_{k}": v for k, v in event_figures(test, model.detect(test), test_truth).items()}
    out |= {f"validation_{k}": v for k, v in validation.items() if k != "selected"}
    out["selected"] = validation["selected"]
    return out
