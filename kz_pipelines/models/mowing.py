"""Mowing events on grassland parcels: dated cuts with a confidence, and the "mowed by the deadline" flag.

A cut removes most of the green canopy at once and leaves a swath that dries within days; the sward then
regrows over two to three weeks. Sentinel-2 sees it as an NDVI drop between clear observations, Sentinel-1
as a drop of VH (and VV) backscatter, which it sees under cloud too.

Two detectors share this module:

- :func:`detect_mowing_rules`, the transparent baseline (:class:`MowingRules`): a VH drop between
  consecutive S1 acquisitions (both orbits on one axis) puts a cut between them; an overlapping NDVI drop
  between mostly clear S2 dates dates it more finely. (On the simulated seed 1 S2 alone is too noisy for
  rules: unmasked cloud lowers NDVI as much as a cut does.)
- :class:`MowingModel`, LightGBM scoring every candidate day from window features before and after it
  (S2 NDVI/NDTI, S1 VH/VV/VH-VV per orbit and merged, days since the last observation), trained on days
  within +-2 of a true cut (plus a copy of the training parcels with S2 dates and S1 scenes removed, so a
  missing scene or a cloudy spell is no surprise), then peak picking with a minimum spacing; the score
  threshold is chosen on validation parcels by event F1.

Parcels with too few observations get no events and the status ``insufficient_data`` (:func:`data_status`),
and :func:`compliance` says None for them rather than "not mowed".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import uniform_filter1d

from kz_pipelines.labels import load_taxonomy
from kz_pipelines.models.events import Event, SeasonSeries, drop_s2_dates, event_scores, events_table
from kz_pipelines.storage import atomic_dir

__all__ = [
    "MOWING_FEATURES",
    "MowingModel",
    "MowingRules",
    "compliance",
    "data_status",
    "detect_mowing_rules",
    "evaluate",
    "fit",
    "grassland",
    "merged_s1",
    "window_features",
]

S2_INPUTS = ("NDVI", "NDTI")
S1_INPUTS = ("VH_asc", "VV_asc", "VH_VV_asc", "VH_desc", "VV_desc", "VH_VV_desc")
MOWING_FEATURES = S2_INPUTS + S1_INPUTS
"""Tensor features the mowing detectors read (give these to :func:`season_series`)."""

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class MowingRules:
    """Thresholds of the rule-based detector (and the data sufficiency test both detectors use).

    Attributes:
        ndvi_drop: least NDVI decrease between two consecutive clear S2 observations that marks a cut.
        ndvi_drop_alone: least NDVI decrease that marks a cut S1 did not see.
        max_s2_gap_days: the two S2 observations are at most this many days apart.
        vh_drop_db: least VH decrease (dB) between consecutive S1 acquisitions (both orbits, see `merged_s1`).
        max_s1_gap_days: the two S1 acquisitions are at most this many days apart.
        min_spacing_days: two cuts of one parcel are at least this many days apart.
        first_doy: first day of year a cut can be dated.
        last_doy: last day of year a cut can be dated.
        min_s2_obs: fewest clear S2 observations in the mowing window for a parcel to be judged.
        min_s1_obs: fewest S1 acquisitions (both orbits) in the mowing window for a parcel to be judged.
        min_valid_fraction: S2 dates whose valid-pixel count is below this fraction of the parcel's largest
            count are ignored (cloud edges and unmasked haze hide in partly masked dates).
    """

    ndvi_drop: float = 0.2
    ndvi_drop_alone: float = 0.6
    max_s2_gap_days: int = 16
    vh_drop_db: float = 1.25
    max_s1_gap_days: int = 13
    min_spacing_days: int = 20
    first_doy: int = 130
    last_doy: int = 300
    min_s2_obs: int = 3
    min_s1_obs: int = 6
    min_valid_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.first_doy < self.last_doy <= 366:
            raise ValueError("need 0 < first_doy < last_doy <= 366")
        if self.min_spacing_days < 1 or self.max_s2_gap_days < 1 or self.max_s1_gap_days < 1:
            raise ValueError("spacings and gaps are positive numbers of days")


def grassland(series: SeasonSeries) -> npt.NDArray[np.bool_]:
    """(parcels,) True where the declared crop class is in the taxonomy group ``grassland``."""
    ids = [c.id for c in load_taxonomy().classes if c.group == "grassland"]
    return np.isin(series.crop_class, ids)


def _valid_fraction(counts: Array) -> Array:
    """(parcels, days) valid-pixel count over the parcel's largest count of the season (0: unobserved)."""
    return (counts / np.maximum(counts.max(axis=1, keepdims=True), 1.0)).astype(np.float32)


def _window(series: SeasonSeries, rules: MowingRules) -> npt.NDArray[np.bool_]:
    doy = series.days.dayofyear.to_numpy()
    return np.asarray((doy >= rules.first_doy) & (doy <= rules.last_doy))


def data_status(series: SeasonSeries, rules: MowingRules = MowingRules()) -> pd.DataFrame:
    """Per parcel: ``parcel_id``, ``n_s2`` and ``n_s1`` observations in the mowing window and ``status``
    (``ok``, ``insufficient_data``, or ``not_grassland``)."""
    win = _window(series, rules)
    n_s2 = (series.counts["NDVI"][:, win] > 0).sum(axis=1)
    n_s1 = sum((series.counts[f][:, win] > 0).sum(axis=1) for f in ("VH_asc", "VH_desc"))
    ok = (n_s2 >= rules.min_s2_obs) & (n_s1 >= rules.min_s1_obs)
    status = np.where(~grassland(series), "not_grassland", np.where(ok, "ok", "insufficient_data"))
    return pd.DataFrame({"parcel_id": series.parcel_ids, "n_s2": n_s2, "n_s1": n_s1, "status": status})


def _greedy_peaks(days: Sequence[int], scores: Sequence[float], spacing: int) -> list[tuple[int, float]]:
    """Keep the highest-scoring candidates at least ``spacing`` days from every kept one."""
    kept: list[tuple[int, float]] = []
    for k in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if all(abs(days[k] - d) >= spacing for d, _ in kept):
            kept.append((int(days[k]), float(scores[k])))
    return sorted(kept)


def _drops(values: npt.NDArray[np.floating], max_gap: int, least: float) -> list[tuple[int, int, float]]:
    """(day before, day after, decrease) of consecutive observations of one parcel at most ``max_gap`` days
    apart whose value fell by at least ``least``."""
    t = np.flatnonzero(~np.isnan(values))
    drop = values[t[:-1]] - values[t[1:]]
    keep = ((t[1:] - t[:-1]) <= max_gap) & (drop >= least)
    return [(int(a), int(b), float(d)) for a, b, d in zip(t[:-1][keep], t[1:][keep], drop[keep], strict=True)]


def detect_mowing_rules(series: SeasonSeries, rules: MowingRules = MowingRules()) -> list[Event]:
    """Rule-based mowing events of the grassland parcels with sufficient data.

    Sentinel-1 finds the cuts: a VH drop of at least ``vh_drop_db`` between consecutive acquisitions
    (`merged_s1`) puts a cut between them, dated at their midpoint. Sentinel-2 dates it more finely: when an
    NDVI drop of at least ``ndvi_drop`` between consecutive mostly clear dates overlaps that interval, the
    cut is dated at the NDVI drop's midpoint (kept inside the S1 interval). An NDVI drop alone counts only
    from ``ndvi_drop_alone`` (unmasked cloud also lowers NDVI). Cuts closer than ``min_spacing_days`` merge.

    Args:
        series: a SeasonSeries with at least NDVI and the S1 VH features of both orbits.
        rules: thresholds.

    Returns:
        Events of kind ``mowing``; confidence 0.5 for one sensor, 0.8 when both agree, up to 1 for strong
        drops.
    """
    win = _window(series, rules)
    ok = (data_status(series, rules)["status"] == "ok").to_numpy()
    frac = _valid_fraction(series.counts["NDVI"])
    vh = merged_s1(series, "VH")
    events: list[Event] = []
    for p in np.flatnonzero(ok):
        ndvi = np.where(frac[p] >= rules.min_valid_fraction, series.data["NDVI"][p], np.nan)
        s2 = _drops(ndvi, rules.max_s2_gap_days, rules.ndvi_drop)
        cands: list[tuple[int, float]] = []
        for a, b, d in _drops(vh[p], rules.max_s1_gap_days, rules.vh_drop_db):
            both = [(d2, (a2 + b2 + 1) // 2) for a2, b2, d2 in s2 if a2 < b and b2 > a]
            day = int(np.clip(max(both)[1], a + 1, b)) if both else (a + b + 1) // 2
            strength = min(d / rules.vh_drop_db / 4.0, 0.2)
            cands.append((day, (0.8 if both else 0.5) + strength))
        cands += [((a + b + 1) // 2, 0.5) for a, b, d in s2 if d >= rules.ndvi_drop_alone]
        cands = [c for c in cands if win[c[0]]]
        for day, conf in _greedy_peaks([c[0] for c in cands], [c[1] for c in cands], rules.min_spacing_days):
            events.append(Event(str(series.parcel_ids[p]), "mowing", series.days[day].date(), min(conf, 1.0)))
    return events


# ---- learned model: window features per (parcel, day) ----


def _last_obs(values: Array, strict: bool) -> tuple[Array, Array]:
    """Value of the last observation at (or strictly before) each day, and its age in days (NaN: none)."""
    n_days = values.shape[1]
    idx = np.where(~np.isnan(values), np.arange(n_days), -1)
    idx = np.maximum.accumulate(idx, axis=1)
    if strict:
        idx = np.concatenate([np.full((len(idx), 1), -1), idx[:, :-1]], axis=1)
    val = np.take_along_axis(values, np.clip(idx, 0, None), axis=1)
    none = idx < 0
    return np.where(none, np.nan, val).astype(np.float32), np.where(none, np.nan, np.arange(n_days) - idx)


def _rolling(values: Array, lo: int, hi: int, how: str) -> Array:
    """Max, min or mean of the observations in days [d + lo, d + hi] for every day d (NaN: none)."""
    pad = max(abs(lo), abs(hi))
    padded = np.pad(values, ((0, 0), (pad, pad)), constant_values=np.nan)
    view = sliding_window_view(padded, hi - lo + 1, axis=1)[:, pad + lo : pad + lo + values.shape[1]]
    seen = ~np.isnan(view)
    n = seen.sum(axis=2)
    if how == "mean":
        out = np.where(seen, view, 0.0).sum(axis=2) / np.maximum(n, 1)
    elif how == "max":
        out = np.where(seen, view, -np.inf).max(axis=2)
    else:
        out = np.where(seen, view, np.inf).min(axis=2)
    return np.where(n > 0, out, np.nan).astype(np.float32)


def merged_s1(series: SeasonSeries, pol: str) -> Array:
    """(parcels, days) one polarization (``VH`` or ``VV``, dB) of both orbits on one axis: each orbit less
    its parcel's season median (orbits differ by incidence angle), averaged where both see a day."""
    total = np.zeros((len(series.parcel_ids), len(series.days)), np.float32)
    n = np.zeros_like(total)
    for orbit in ("asc", "desc"):
        v = series.data[f"{pol}_{orbit}"]
        rows = np.flatnonzero((~np.isnan(v)).any(axis=1))
        centred = np.full_like(v, np.nan)
        centred[rows] = v[rows] - np.nanmedian(v[rows], axis=1, keepdims=True)
        total += np.nan_to_num(centred)
        n += ~np.isnan(centred)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan).astype(np.float32)


def window_features(series: SeasonSeries) -> tuple[Array, list[str]]:
    """Features of every (parcel, day): is day d the first day after a cut?

    Returns:
        (parcels, days, features) float32 (NaN where undefined) and the feature names.
    """
    cols: dict[str, Array] = {}
    inputs = {f: series.data[f] for f in MOWING_FEATURES} | {p: merged_s1(series, p) for p in ("VH", "VV")}
    for f, v in inputs.items():
        prev, prev_age = _last_obs(v, strict=True)
        nxt, nxt_age = (a[:, ::-1] for a in _last_obs(v[:, ::-1], strict=False))
        s1 = f not in S2_INPUTS
        before = _rolling(v, -25 if s1 else -20, -1, "mean" if s1 else "max")
        after = _rolling(v, 0, 13 if s1 else 10, "min")
        later = _rolling(v, 18, 40, "mean")
        if not s1:
            frac = np.where(np.isnan(v), np.nan, _valid_fraction(series.counts[f]))
            cols[f"{f}_prev_frac"] = _last_obs(frac, strict=True)[0]
            cols[f"{f}_next_frac"] = _last_obs(frac[:, ::-1], strict=False)[0][:, ::-1]
        cols |= {f"{f}_prev": prev, f"{f}_next": nxt, f"{f}_diff": nxt - prev, f"{f}_drop": after - before,
                 f"{f}_recover": later - after, f"{f}_prev_age": prev_age,
                 f"{f}_next_age": nxt_age}  # fmt: skip
    doy = np.broadcast_to(series.days.dayofyear.to_numpy(), (len(series.parcel_ids), len(series.days)))
    cols["doy"] = doy.astype(np.float32)
    names = list(cols)
    return np.stack([cols[n] for n in names], axis=-1), names


def _truth_days(series: SeasonSeries, truth: pd.DataFrame) -> dict[str, list[int]]:
    mow = truth.loc[truth["event"] == "mowing"]
    known = set(series.parcel_ids.tolist())
    out: dict[str, list[int]] = {}
    for pid, day in zip(mow["parcel_id"], pd.to_datetime(mow["date"]), strict=True):
        if pid in known and series.days[0] <= day.normalize() <= series.days[-1]:
            out.setdefault(str(pid), []).append(series.day_index(day.normalize()))
    return out


def _event_days(series: SeasonSeries, events: Sequence[Event]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {str(p): [] for p in series.parcel_ids}
    for e in events:
        out[e.parcel_id].append(series.day_index(e.day))
    return out


NEGATIVE_SHARE = 0.25
"""Share of the training days farther than 10 days from any true cut that the learned model is fit on."""


def _day_rows(
    series: SeasonSeries, truth: pd.DataFrame, rules: MowingRules
) -> tuple[Array, Array, npt.NDArray[np.bool_], list[str]]:
    """Window features of the days in the mowing window, flattened to (rows, features); labels (1 within
    +-2 days of a true cut); whether each row is within 10 days of one; the feature names."""
    x, names = window_features(series)
    y = np.zeros(x.shape[:2], np.float32)
    near = np.zeros(x.shape[:2], bool)
    rows = {pid: i for i, pid in enumerate(series.parcel_ids.tolist())}
    for pid, days in _truth_days(series, truth).items():
        for d in days:
            y[rows[pid], max(d - 2, 0) : d + 3] = 1.0
            near[rows[pid], max(d - 10, 0) : d + 11] = True
    win = _window(series, rules)
    return x[:, win].reshape(-1, len(names)), y[:, win].ravel(), near[:, win].ravel(), names


def _thinned(series: SeasonSeries, seed: int) -> SeasonSeries:
    """A copy with half the S2 days and a quarter of each orbit's S1 days removed (training augmentation:
    one region's acquisition plan is regular, real seasons have missing scenes and long cloudy spells)."""
    thin = drop_s2_dates(series, 0.5, seed)
    rng = np.random.default_rng(seed + 1)
    data, counts = dict(thin.data), dict(thin.counts)
    for orbit in ("asc", "desc"):
        names = [f for f in S1_INPUTS if f.endswith(orbit)]
        days = np.flatnonzero((counts[names[0]] > 0).any(axis=0))
        gone = rng.choice(days, size=len(days) // 4, replace=False)
        for f in names:
            data[f], counts[f] = data[f].copy(), counts[f].copy()
            data[f][:, gone], counts[f][:, gone] = np.nan, 0.0
    return SeasonSeries(thin.parcel_ids, thin.days, data, counts, thin.crop_class, thin.area_ha)


@dataclass
class MowingModel:
    """LightGBM day scorer plus peak picking.

    Attributes:
        booster: the day scorer (probability that a cut happened within +-2 days).
        threshold: least smoothed score of a reported peak (chosen on validation parcels).
        rules: window, spacing and data sufficiency settings (shared with the baseline).
        card: method, data and validation figures.
    """

    booster: lgb.Booster
    threshold: float
    rules: MowingRules = MowingRules()
    card: dict[str, Any] = field(default_factory=dict)

    def day_scores(self, series: SeasonSeries) -> Array:
        """(parcels, days) scores, smoothed over 5 days, 0 outside the mowing window."""
        x, _ = window_features(series)
        win = _window(series, self.rules)
        raw = np.zeros(x.shape[:2], np.float32)
        if len(x):
            flat = x[:, win].reshape(-1, x.shape[-1])
            raw[:, win] = np.asarray(self.booster.predict(flat, num_threads=1)).reshape(len(x), -1)
        return uniform_filter1d(raw, 5, axis=1, mode="constant").astype(np.float32)

    def detect(self, series: SeasonSeries) -> list[Event]:
        """Mowing events of the grassland parcels with sufficient data."""
        ok = np.flatnonzero((data_status(series, self.rules)["status"] == "ok").to_numpy())
        sub = series.subset(ok)
        return self._peaks(sub, self.day_scores(sub), self.threshold)

    def _peaks(self, series: SeasonSeries, scores: Array, threshold: float) -> list[Event]:
        events: list[Event] = []
        for i, pid in enumerate(series.parcel_ids):
            s = scores[i]
            cand = np.flatnonzero(s >= threshold)
            for day, conf in _greedy_peaks(cand.tolist(), s[cand].tolist(), self.rules.min_spacing_days):
                events.append(Event(str(pid), "mowing", series.days[day].date(), min(conf, 1.0)))
        return events

    @classmethod
    def train(
        cls, series: SeasonSeries, truth: pd.DataFrame, seed: int = 0, rules: MowingRules = MowingRules()
    ) -> MowingModel:
        """Fit on 80% of the grassland parcels, early-stop and choose the threshold on the other 20%.

        Args:
            series: the training parcels (others than grassland are left out).
            truth: true events (parcel_id, event, date); only ``mowing`` rows are used.
            seed: parcel split and LightGBM seed.
            rules: window and spacing settings.
        """
        grass = series.subset(np.flatnonzero(grassland(series)))
        if len(_truth_days(grass, truth)) < 10:
            raise ValueError(
                "mowing: fewer than 10 grassland parcels with a true cut in the season to train on"
            )
        rng = np.random.default_rng(seed)
        is_val = rng.random(len(grass)) < 0.2
        fit, val = grass.subset(np.flatnonzero(~is_val)), grass.subset(np.flatnonzero(is_val))
        (xf, yf, near, names), (xv, yv, _, _) = (_day_rows(part, truth, rules) for part in (fit, val))
        xa, ya, near_a, _ = _day_rows(_thinned(fit, seed), truth, rules)  # missing scenes, cloudy spells
        xf, yf, near = np.concatenate([xf, xa]), np.concatenate([yf, ya]), np.concatenate([near, near_a])
        keep = near | (rng.random(len(yf)) < NEGATIVE_SHARE)  # far-from-cut days are many and easy
        params = {"objective": "binary", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 50,
                  "feature_fraction": 0.7, "bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed,
                  "deterministic": True, "num_threads": 1, "verbose": -1}  # fmt: skip
        train_set = lgb.Dataset(xf[keep], yf[keep], feature_name=names)
        valid = lgb.Dataset(xv, yv, reference=train_set)
        booster = lgb.train(params, train_set, 400, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(30, verbose=False)])  # fmt: skip
        model = cls(booster, 0.5, rules)
        truth_val = _truth_days(val, truth)
        ok = val.subset(np.flatnonzero((data_status(val, rules)["status"] == "ok").to_numpy()))
        val_scores = model.day_scores(ok)
        best = (-1.0, 0.5)
        for t in np.arange(0.1, 0.8, 0.05):
            f1 = event_scores(_event_days(val, model._peaks(ok, val_scores, float(t))), truth_val)["f1"]
            best = max(best, (f1, float(t)))
        model.threshold = best[1]
        base = event_scores(_event_days(val, detect_mowing_rules(val, rules)), truth_val)["f1"]
        model.card = {"method": "LightGBM day scorer + peak picking", "features": names,
                      "validation_f1": best[0], "validation_baseline_f1": base, "threshold": best[1],
                      "rounds": booster.best_iteration,
                      "train_parcels": len(fit), "validation_parcels": len(val)}  # fmt: skip
        return model

    def save(self, folder: Path) -> None:
        """Write ``lightgbm.txt`` and ``model.json`` (threshold, rules, card) atomically."""
        with atomic_dir(Path(folder)) as tmp:
            self.booster.save_model(str(tmp / "lightgbm.txt"))
            meta = {"threshold": self.threshold, "rules": self.rules.__dict__, "card": self.card}
            (tmp / "model.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> MowingModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((Path(folder) / "model.json").read_text())
        booster = lgb.Booster(model_file=str(Path(folder) / "lightgbm.txt"))
        return cls(booster, float(meta["threshold"]), MowingRules(**meta["rules"]), meta["card"])


def compliance(
    events: pd.DataFrame,
    parcel_ids: Sequence[str],
    deadline: date,
    status: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Whether each parcel was mowed by ``deadline`` (inclusive).

    Args:
        events: an events table (parcel_id, event, date, confidence); only ``mowing`` rows count.
        parcel_ids: the parcels to judge.
        deadline: last allowed day of the first cut.
        status: parcel id -> data status (:func:`data_status`); parcels not ``ok`` and with no cut by the
            deadline get None (unknown), never False.

    Returns:
        parcel_id, mowed_by_deadline (bool or None), first_mowing (date or NaT), n_events, status.
    """
    mow = events.loc[events["event"] == "mowing"]
    dates = pd.to_datetime(mow["date"])
    first = dates.groupby(mow["parcel_id"]).min()
    n = mow.groupby("parcel_id").size()
    rows = []
    for pid in parcel_ids:
        st = (status or {}).get(pid, "ok")
        f = first.get(pid, pd.NaT)
        mowed = bool(pd.notna(f) and f <= pd.Timestamp(deadline))
        flag = True if mowed else (False if st == "ok" else None)
        rows.append((pid, flag, f, int(n.get(pid, 0)), st))
    return pd.DataFrame(
        rows, columns=["parcel_id", "mowed_by_deadline", "first_mowing", "n_events", "status"]
    )


def fit(series: SeasonSeries, truth: pd.DataFrame, seed: int = 0) -> tuple[MowingModel, dict[str, float]]:
    """Train the learned model on ``series`` and compare it with the baseline on its validation parcels
    (the 20% :meth:`MowingModel.train` holds out).

    Returns:
        The model, and the validation figures ``learned_f1``, ``baseline_f1`` and ``selected`` (1.0: the
        learned model is at least as good, 0.0: the baseline is better).

    Raises:
        ValueError: too few true cuts to learn from.
    """
    model = MowingModel.train(series, truth, seed)
    learned, baseline = float(model.card["validation_f1"]), float(model.card["validation_baseline_f1"])
    return model, {"learned_f1": learned, "baseline_f1": baseline, "selected": float(learned >= baseline)}


def evaluate(
    train: SeasonSeries,
    train_truth: pd.DataFrame,
    test: SeasonSeries,
    test_truth: pd.DataFrame,
    deadline: date | None = None,
) -> dict[str, float]:
    """Fit the learned model on ``train``, score the baseline and the learned model on the grassland
    parcels of ``test``: event F1 within +-6 days, date MAE of matched cuts, and the share of parcels with
    data whose "mowed by ``deadline``" flag is right (default deadline: 20 June of the test season).

    Returns:
        ``baseline_*`` and ``learned_*`` (f1, precision, recall, mae_days, compliance_accuracy),
        ``validation_learned_f1``, ``validation_baseline_f1``, ``selected`` (1.0 when the learned model won
        on validation inside ``train``, 0.0 for the baseline), ``n_parcels``, ``n_insufficient``.

    Raises:
        ValueError: too few true cuts in ``train`` to learn from (e.g. a season too short).
    """
    model, validation = fit(train, train_truth)
    grass = test.subset(np.flatnonzero(grassland(test)))
    truth = _truth_days(grass, test_truth)
    status = data_status(grass, model.rules).set_index("parcel_id")["status"]
    judged = status.index[status == "ok"].tolist()
    deadline = deadline or date(int(grass.days[0].year), 6, 20)
    true_table = test_truth.assign(confidence=1.0).loc[test_truth["parcel_id"].isin(judged)]
    expected = compliance(true_table, judged, deadline)["mowed_by_deadline"].to_numpy()
    out: dict[str, float] = {}
    for name, events in (("baseline", detect_mowing_rules(grass)), ("learned", model.detect(grass))):
        s = event_scores(_event_days(grass, events), truth)
        out |= {f"{name}_{k}": s[k] for k in ("f1", "precision", "recall", "mae_days")}
        flags = compliance(events_table(events), judged, deadline)["mowed_by_deadline"].to_numpy()
        out[f"{name}_compliance_accuracy"] = float(np.mean(flags == expected)) if judged else float("nan")
    out |= {f"validation_{k}": v for k, v in validation.items() if k != "selected"}
    out["selected"] = validation["selected"]
    out["n_parcels"] = float(len(grass))
    out["n_insufficient"] = float((status == "insufficient_data").sum())
    return out
