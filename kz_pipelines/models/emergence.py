"""Seedling emergence dates (green-up onset) of arable parcels sown in the season.

The product reports the **main crop's spring emergence** (what insurers ask for; the simulated truth's
``parcels.parquet`` ``emergence_date``). Overwintered crops (winter cereals and rapeseed), fallow and
perennials have no emergence in the season and get the status ``not_sown_in_season``; the autumn emergence
of the next winter crop after a harvest is a different event and is not reported here. Every in-scope
parcel (declared arable, or of unknown class) gets one row: a date with a confidence (``emerged``), or an
explicit status with no date (``not_sown_in_season``, ``insufficient_data``, ``no_green_up``).

S2 dates where the parcel's valid-pixel count is under ``min_valid_fraction`` of its best are dropped
(mostly-masked dates carry unmasked haze at cloud edges).

* **Rule-based baseline** (:class:`EmergenceRules`): spring-sown declared crop groups are candidates unless
  their early-season NDVI shows an overwintered canopy. On the NDVI observations (running median of 3),
  the bare-soil level is the minimum before the peak; the green-up day is where NDVI first crosses
  ``bare + fraction x (peak - bare)`` and stays above (linear interpolation between the bracketing
  observations), minus the crop group's lag between emergence and that green-up. Where Sentinel-1 is
  present, the date is averaged with the midpoint of a logistic fitted to the VH rise (both orbits, each
  relative to its early level) minus its own lag; with too few S2 dates the VH estimate is used alone. The
  lags are medians calibrated on training parcels (:func:`calibrate_rules`).
* **Learned model** (:class:`EmergenceModel`): LightGBM regression (L1) of the emergence day relative to a
  reference day (NDVI half-amplitude crossing, else the VH midpoint) from the NDVI crossing days at several
  levels and the gaps around them, NDVI and VH logistic fits, the NDTI step when the seedbed's residue gives
  way to the crop, a logistic fit to the VH rise relative to the other parcels observed the same day
  (`kz_pipelines.models.events.day_anomaly`: a rain's soil moisture moves every field's VH at once, so the
  raw rise shifts from season to season; development seed 3: MAE 3.15 -> 2.86 d) and the declared crop
  group; and a LightGBM classifier of "sown in season" from the declared group and early-season NDVI and VH
  (mis-declared and unknown classes). Both also learn from a copy of the training series with half the S2
  dates dropped.

Days are day numbers on the series' daily axis (index into ``SeasonSeries.days``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from kz_pipelines.labels import load_taxonomy
from kz_pipelines.models.events import SeasonSeries, day_anomalies, drop_s2_dates
from kz_pipelines.storage import atomic_dir

__all__ = [
    "EMERGENCE_FEATURES",
    "EMERGED",
    "INSUFFICIENT",
    "NO_GREENUP",
    "NOT_SOWN",
    "EmergenceModel",
    "EmergenceRules",
    "calibrate_rules",
    "emergence_features",
    "estimate_rules",
    "evaluate",
    "fit",
]

EMERGENCE_FEATURES = ("NDVI", "NDTI", "VH_asc", "VH_desc")
"""Tensor features the product reads (pass them to ``season_series``)."""

EMERGED, NOT_SOWN, INSUFFICIENT, NO_GREENUP = (
    "emerged",
    "not_sown_in_season",
    "insufficient_data",
    "no_green_up",
)
"""Status values of the output table."""

SPRING_GROUPS = ("spring_cereal", "spring_oilseed", "legume", "spring_broadleaf", "maize", "root")
"""Taxonomy groups sown in spring (emerging in the season)."""

_LEVELS = (0.1, 0.2, 0.3, 0.5, 0.7)
_FEATURES = [
    "n_obs", "early_ndvi", "bare", "peak", "anchor", *(f"{k}{lv}" for k in ("x", "gap") for lv in _LEVELS),
    "fit_mid", "fit_width", "ndti_step", "ndti_drop", "ndti_early",
    "vh_early", "vh_rise2", "vh_rise4", "vh_mid", "vh_width", "vha_mid", "vha_width",
]  # fmt: skip
_COLUMNS = ["parcel_id", "emergence_date", "confidence", "status"]


@dataclass(frozen=True)
class EmergenceRules:
    """Thresholds of the rule-based baseline.

    Attributes:
        min_obs: fewest NDVI observations (before ``search_end_doy``) to estimate anything.
        min_amplitude: smallest NDVI rise (peak - bare soil) counted as a green-up.
        fraction: NDVI level of the green-up day, as a fraction of the rise above bare soil, 0..1.
        lag_days: days from emergence to that green-up day, per crop group (``default``: other groups);
            calibrated as the median lag on training parcels (:func:`calibrate_rules`).
        s1_lag_days: days from emergence to the midpoint of the VH rise (the fallback when S2 has too
            few dates), per crop group, calibrated likewise.
        early_days: days from the first observation that count as early season.
        overwintered_ndvi: median early NDVI at or above which a canopy is overwintered (not sown).
        search_end_doy: day of year after which no green-up is searched (avoids autumn crops).
        min_valid_fraction: an S2 date counts only with at least this share of the parcel's largest
            valid-pixel count (dates mostly masked as cloud carry unmasked haze at the cloud edges).
    """

    min_obs: int = 4
    min_amplitude: float = 0.2
    fraction: float = 0.3
    lag_days: tuple[tuple[str, float], ...] = (("default", 13.0),)
    s1_lag_days: tuple[tuple[str, float], ...] = (("default", 26.0),)
    early_days: int = 20
    overwintered_ndvi: float = 0.4
    search_end_doy: int = 230
    min_valid_fraction: float = 0.6

    def __post_init__(self) -> None:
        if self.fraction not in _LEVELS:
            raise ValueError(f"fraction must be one of the crossing levels {_LEVELS}")
        if self.min_obs < 3:
            raise ValueError("min_obs must be at least 3")

    def lag(self, group: str, s1: bool = False) -> float:
        """The lag (days) of a crop group after its NDVI green-up day (``s1``: its VH rise midpoint)."""
        lags = dict(self.s1_lag_days if s1 else self.lag_days)
        return float(lags.get(group, lags.get("default", 0.0)))


def _groups(crop_class: npt.NDArray[np.int64]) -> tuple[list[str], npt.NDArray[np.bool_]]:
    """Group name per parcel (``unknown`` for class 0 or ids not in the taxonomy) and the in-scope mask
    (declared arable or unknown)."""
    tax = {c.id: c for c in load_taxonomy().classes}
    groups = [tax[int(c)].group if int(c) in tax else "unknown" for c in crop_class]
    scope = np.array([int(c) not in tax or tax[int(c)].arable for c in crop_class], bool)
    return groups, scope


def _smooth(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Running median of 3 observations (ends kept)."""
    if v.size < 3:
        return v
    out = v.copy()
    out[1:-1] = np.median(np.stack([v[:-2], v[1:-1], v[2:]]), axis=0)
    return out


def _crossing(
    d: npt.NDArray[np.float64], v: npt.NDArray[np.float64], level: float, i0: int
) -> tuple[float, float]:
    """First day from index ``i0`` where ``v`` rises through ``level`` and the next observation stays
    above (interpolated), and the gap (days) between the bracketing observations; NaN if none."""
    for i in range(max(i0, 1), len(v)):
        if v[i] >= level and v[i - 1] < level and (i + 1 == len(v) or v[i + 1] >= level):
            t = d[i - 1] + (level - v[i - 1]) / (v[i] - v[i - 1]) * (d[i] - d[i - 1])
            return float(t), float(d[i] - d[i - 1])
    return float("nan"), float("nan")


def _obs(
    series: SeasonSeries, feature: str, row: int, end: int, min_valid: float = 0.0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Observation days and values of one parcel before ``end``, keeping only those with at least
    ``min_valid`` x the parcel's largest valid-pixel count (partly clouded dates carry unmasked haze)."""
    v = series.data[feature][row, :end].astype(np.float64)
    c = series.counts[feature][row, :end]
    d = np.flatnonzero(np.isfinite(v) & (c >= min_valid * max(float(c.max(initial=0.0)), 1.0)))
    return d.astype(np.float64), v[d]


_WIDTHS = np.array([3.0, 4.5, 6.0, 8.0, 11.0, 15.0])


def _fit_rise(d: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Midpoint (day) and width (days) of the logistic rise ``b + a / (1 + exp(-(t - m) / w))`` that best
    fits the observations (least squares; ``m`` on a 1-day grid from 30 days before the first observation
    to 10 after the last, ``w`` in ``_WIDTHS``, ``a > 0``); NaN with under 5 observations."""
    if d.size < 5:
        return float("nan"), float("nan")
    mids = np.arange(d[0] - 30.0, d[-1] + 11.0)
    z = (d[None, None, :] - mids[:, None, None]) / _WIDTHS[None, :, None]  # (mids, widths, obs)
    g = 1.0 / (1.0 + np.exp(-z))
    gc = g - g.mean(axis=-1, keepdims=True)
    vc = v - v.mean()
    a = (gc * vc).sum(-1) / np.maximum((gc * gc).sum(-1), 1e-9)
    sse = ((vc - np.maximum(a, 0.0)[..., None] * gc) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return float(mids[i]), float(_WIDTHS[j])


def _ndvi_features(series: SeasonSeries, r: int, end: int, rules: EmergenceRules) -> dict[str, float]:
    """NDVI levels, crossing days, logistic fit and the NDTI step of parcel row ``r``."""
    d, v = _obs(series, "NDVI", r, end, rules.min_valid_fraction)
    f = {"n_obs": float(d.size)}
    if d.size < 3:
        return f
    s = _smooth(v)
    f["early_ndvi"] = float(np.median(s[d <= d[0] + rules.early_days]))
    ip = int(np.argmax(s))
    ib = int(np.argmin(s[: ip + 1]))
    f["bare"], f["peak"] = float(s[ib]), float(s[ip])
    for lv in _LEVELS:
        f[f"x{lv}"], f[f"gap{lv}"] = _crossing(d, s, f["bare"] + lv * (f["peak"] - f["bare"]), ib)
    f["anchor"] = f["x0.5"]
    f["fit_mid"], f["fit_width"] = _fit_rise(d[: ip + 2], v[: ip + 2])
    if "NDTI" in series.data and np.isfinite(f["anchor"]):
        dn, vn = _obs(series, "NDTI", r, end, rules.min_valid_fraction)
        keep = dn < f["anchor"]
        dn, vn = dn[keep], vn[keep]
        if dn.size >= 2:
            k = int(np.argmin(np.diff(vn)))
            f["ndti_step"], f["ndti_drop"] = float((dn[k] + dn[k + 1]) / 2), float(vn[k + 1] - vn[k])
            f["ndti_early"] = float(np.median(vn[:3]))
    return f


def _vh_features(series: SeasonSeries, r: int, end: int) -> dict[str, float]:
    """Sentinel-1 VH: early level, rise days (+2 / +4 dB over the early level, mean over orbits) and a
    logistic fit to both orbits' rise (each relative to its early level) of parcel row ``r``."""
    rises: dict[float, list[float]] = {2.0: [], 4.0: []}
    early: list[float] = []
    days, values = [], []
    for orbit in ("VH_asc", "VH_desc"):
        if orbit not in series.data:
            continue
        ds, vs = _obs(series, orbit, r, end)
        if ds.size < 5:
            continue
        base = float(np.median(vs[:4]))
        early.append(base)
        sm = _smooth(vs)
        for db in rises:
            rises[db].append(_crossing(ds, sm, base + db, 3)[0])
        days.append(ds)
        values.append(vs - base)
    f = {"vh_early": float(np.mean(early)) if early else float("nan")}
    for db, xs in rises.items():
        f[f"vh_rise{db:g}"] = float(np.nanmean(xs)) if np.isfinite(xs).any() else float("nan")
    f["vh_mid"] = float("nan")
    if days:
        d, v = np.concatenate(days), np.concatenate(values)
        order = np.argsort(d)
        d, v = d[order], v[order]
        top = int(np.argmax(_smooth(v)))
        f["vh_mid"], f["vh_width"] = _fit_rise(d[: top + 3], v[: top + 3])
    return f


def emergence_features(series: SeasonSeries, rules: EmergenceRules = EmergenceRules()) -> pd.DataFrame:
    """Per parcel, the quantities both estimators use (days are day numbers on the series' axis).

    Returns:
        One row per parcel, index parcel_id: ``group``, ``in_scope``, ``n_obs``, ``early_ndvi``,
        ``bare``, ``peak``, ``anchor`` (half-amplitude crossing day), ``x<level>`` and ``gap<level>`` for
        each crossing level, ``ndti_step``/``ndti_drop`` (largest NDTI fall before the anchor), ``vh_early``,
        ``vh_rise2``/``vh_rise4`` (first days VH exceeds its early level by 2 / 4 dB; mean over orbits),
        ``vh_mid``/``vh_width`` (logistic fit to the VH rise) and ``vha_mid``/``vha_width`` (the same fit
        to VH's per-day anomaly).
    """
    groups, scope = _groups(series.crop_class)
    doy = series.days.dayofyear.to_numpy()
    end = int(np.searchsorted(doy, rules.search_end_doy, side="right"))
    anomalies = day_anomalies(series, [o for o in ("VH_asc", "VH_desc") if o in series.data])
    rows = []
    for r in range(len(series)):
        f = _ndvi_features(series, r, end, rules)
        f |= _vh_features(series, r, end)
        relative = _vh_features(anomalies, r, end)
        f |= {"vha_mid": relative["vh_mid"], "vha_width": relative.get("vh_width", np.nan)}
        rows.append(f)
    table = pd.DataFrame(rows, index=pd.Index(series.parcel_ids, name="parcel_id"), columns=_FEATURES)
    table.insert(0, "in_scope", scope)
    table.insert(0, "group", groups)
    return table


def _table(
    ids: npt.ArrayLike,
    days: pd.DatetimeIndex,
    day: npt.NDArray[np.float64],
    conf: npt.NDArray[np.float64],
    status: list[str],
) -> pd.DataFrame:
    ok = np.isfinite(day) & (np.array(status) == EMERGED)
    idx = np.clip(np.round(np.nan_to_num(day)).astype(int), 0, len(days) - 1)
    dates = pd.Series(days[idx], dtype="datetime64[ns]").where(ok)
    return pd.DataFrame(
        {
            "parcel_id": np.asarray(ids, dtype=str),
            "emergence_date": dates.to_numpy(),
            "confidence": np.where(ok, conf, np.nan),
            "status": status,
        }
    )[_COLUMNS]


def estimate_rules(
    series: SeasonSeries, rules: EmergenceRules = EmergenceRules(), features: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Emergence dates by the rule-based baseline.

    Args:
        series: daily series with at least NDVI (``EMERGENCE_FEATURES`` for everything).
        rules: thresholds.
        features: :func:`emergence_features` of ``series`` when already computed.

    Returns:
        One row per in-scope parcel: parcel_id, emergence_date (NaT without a date), confidence (0..1,
        NaN without a date), status.
    """
    f = emergence_features(series, rules) if features is None else features
    f = f.loc[f["in_scope"]]
    day = np.full(len(f), np.nan)
    conf = np.zeros(len(f))
    status: list[str] = []
    for i, (_, p) in enumerate(f.iterrows()):
        s2, s1 = p["n_obs"] >= rules.min_obs, np.isfinite(p["vh_mid"])
        green = s2 and p["peak"] - p["bare"] >= rules.min_amplitude and np.isfinite(p[f"x{rules.fraction}"])
        if not s2 and not s1:
            status.append(INSUFFICIENT)
        elif (p["group"] not in SPRING_GROUPS and p["group"] != "unknown") or (
            s2 and p["early_ndvi"] >= rules.overwintered_ndvi
        ):
            status.append(NOT_SOWN)
        elif green:
            status.append(EMERGED)
            day[i] = p[f"x{rules.fraction}"] - rules.lag(str(p["group"]))
            if s1:  # both sensors: the mean of the two estimates
                day[i] = (day[i] + p["vh_mid"] - rules.lag(str(p["group"]), s1=True)) / 2
            conf[i] = float(np.exp(-np.nan_to_num(p[f"gap{rules.fraction}"], nan=30.0) / 15.0))
        elif not s2 and p["group"] != "unknown":
            status.append(EMERGED)  # S2 clouded out: the VH rise of the growing canopy
            day[i] = p["vh_mid"] - rules.lag(str(p["group"]), s1=True)
            conf[i] = 0.3
        else:
            status.append(NO_GREENUP if s2 else INSUFFICIENT)
    return _table(f.index, series.days, day, conf, status)


_REG = [  # not the VH rise days nor the early VH level: soil moisture moves them, so across seasons they
    # mislead (dev seed 3: MAE 3.37 with them, 3.09 without, mean of three training seeds); the VH fit on
    # the per-day anomaly, not on raw VH (dev seed 3: 3.15 -> 2.86)
    "group_code",
    "ref_doy",
    "ref_is_s1",
    "n_obs",
    "bare",
    "peak",
    "early_ndvi",
    "ndti_drop",
    *[f"x{lv}" for lv in _LEVELS],
    *[f"gap{lv}" for lv in _LEVELS],
    "ndti_step",
    "fit_mid",
    "fit_width",
    "vha_mid",
    "vha_width",
    "ndti_early",
]
_RELATIVE = {
    *(f"x{lv}" for lv in _LEVELS),
    "ndti_step",
    "vh_rise2",
    "vh_rise4",
    "fit_mid",
    "vh_mid",
    "vha_mid",
}
_CLS = ["group_code", "early_ndvi", "bare", "peak", "x0.5", "vh_early", "vh_rise4"]


def _design(f: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Model inputs: crossing days relative to the reference day (NDVI half-amplitude crossing, else the
    VH logistic midpoint, else its +2 dB rise), the reference's day of year, the crop group code (index in
    ``SPRING_GROUPS``; their count for any other group)."""
    x = f.copy()
    x["group_code"] = [
        SPRING_GROUPS.index(g) if g in SPRING_GROUPS else len(SPRING_GROUPS) for g in f["group"]
    ]
    x["ref_is_s1"] = (~np.isfinite(f["anchor"])).astype(float)
    ref = f["anchor"].fillna(f["vh_mid"]).fillna(f["vh_rise2"]).to_numpy(float)
    x["ref"] = ref
    x["ref_doy"] = ref + days[0].dayofyear
    for c in _RELATIVE:
        x[c] = f[c] - ref
    return x


def _truth_days(truth: pd.DataFrame, ids: pd.Index, days: pd.DatetimeIndex) -> npt.NDArray[np.float64]:
    """True emergence day number per parcel of ``ids`` (NaN: none)."""
    dates = pd.to_datetime(truth.set_index("parcel_id")["emergence_date"]).reindex(ids)
    return np.asarray((dates - days[0]).dt.days, dtype=np.float64)


_PARAMS = {  # few features per tree and L2 shrinkage: less reliance on what one training season shows
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.4,
    "lambda_l2": 5.0,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "verbose": -1,
    "num_threads": 2,
    "deterministic": True,
}


def _fit(
    x: pd.DataFrame, y: npt.NDArray[np.float64], val: npt.NDArray[np.bool_], objective: str, seed: int
) -> lgb.Booster:
    """LightGBM with early stopping on the ``val`` rows."""
    params = {**_PARAMS, "objective": objective, "seed": seed}
    train = lgb.Dataset(x[~val], y[~val], categorical_feature=["group_code"])
    valid = lgb.Dataset(x[val], y[val], reference=train)
    return lgb.train(
        params, train, 1000, valid_sets=[valid], callbacks=[lgb.early_stopping(50, verbose=False)]
    )


@dataclass
class EmergenceModel:
    """Learned emergence model: a LightGBM regressor of the emergence day (relative to the reference
    green-up day) and a LightGBM classifier of "sown in season".

    Attributes:
        regressor: days from the reference day to emergence.
        classifier: probability that the parcel's main crop emerges in the season.
        rules: the thresholds shared with the baseline (observation counts, search window).
    """

    regressor: lgb.Booster
    classifier: lgb.Booster
    rules: EmergenceRules = EmergenceRules()

    @classmethod
    def train(
        cls,
        series: SeasonSeries,
        truth_parcels: pd.DataFrame,
        seed: int = 0,
        rules: EmergenceRules = EmergenceRules(),
        features: pd.DataFrame | None = None,
        augment: float = 0.5,
    ) -> EmergenceModel:
        """Fit on a series and its truth (parcel_id, emergence_date: NaT/None where none in season).

        Args:
            series: training parcels.
            truth_parcels: parcel_id, emergence_date (NaT/None where no emergence in the season).
            seed: random seed (validation parcels, bagging; ``seed + 7919`` picks the dropped dates).
            rules: thresholds shared with the baseline.
            features: :func:`emergence_features` of ``series`` when already computed.
            augment: the model also learns from a copy of the series with this share of S2 dates dropped
                (cloudier seasons; 0: none).
        """
        f = emergence_features(series, rules) if features is None else features
        cloudy = (
            emergence_features(drop_s2_dates(series, augment, seed + 7919), rules)
            if augment > 0
            else f.iloc[:0]
        )
        f = pd.concat([f, cloudy])
        f = f.loc[f["in_scope"]]
        x = _design(f, series.days)
        y = _truth_days(truth_parcels, f.index, series.days)
        has = np.isfinite(y) & np.isfinite(x["ref"].to_numpy())
        if has.sum() < 10:
            raise ValueError(
                f"only {int(has.sum())} training parcel(s) with a spring emergence and a green-up in the "
                "series: too few to train the emergence model (a season from sowing to summer is needed)"
            )
        ids = f.index.to_numpy()
        val = np.isin(
            ids, np.random.default_rng(seed).permutation(np.unique(ids))[: len(np.unique(ids)) // 5]
        )
        target = y - x["ref"].to_numpy()
        regressor = _fit(x.loc[has, _REG], target[has], val[has], "regression_l1", seed)
        classifier = _fit(x[_CLS], np.isfinite(y).astype(float), val, "binary", seed)
        return cls(regressor, classifier, rules)

    def estimate(self, series: SeasonSeries, features: pd.DataFrame | None = None) -> pd.DataFrame:
        """Emergence dates (same table as :func:`estimate_rules`)."""
        f = emergence_features(series, self.rules) if features is None else features
        f = f.loc[f["in_scope"]]
        x = _design(f, series.days)
        prob = np.asarray(self.classifier.predict(x[self.classifier.feature_name()]), dtype=np.float64)
        sown = prob >= 0.5
        ref = x["ref"].to_numpy()
        day = ref + np.asarray(self.regressor.predict(x[self.regressor.feature_name()]), dtype=np.float64)
        gap = np.nan_to_num(x["gap0.5"].to_numpy(), nan=30.0)
        s2_ok = x["n_obs"].to_numpy() >= self.rules.min_obs
        status = [
            INSUFFICIENT
            if not s2_ok[i] and not np.isfinite(x["vh_early"].iloc[i])
            else NOT_SOWN
            if not sown[i]
            else EMERGED
            if np.isfinite(ref[i])
            else NO_GREENUP
            if s2_ok[i]
            else INSUFFICIENT
            for i in range(len(x))
        ]
        return _table(f.index, series.days, day, prob * np.exp(-gap / 15.0), status)

    def save(self, folder: Path) -> None:
        """Write ``regressor.txt``, ``classifier.txt`` (LightGBM text) and ``model.json`` atomically."""
        with atomic_dir(Path(folder)) as tmp:
            self.regressor.save_model(str(tmp / "regressor.txt"))
            self.classifier.save_model(str(tmp / "classifier.txt"))
            meta = {"rules": asdict(self.rules), "regressor_features": _REG, "classifier_features": _CLS}
            (tmp / "model.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> EmergenceModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((Path(folder) / "model.json").read_text())
        raw = meta["rules"]
        lags = {k: tuple((str(g), float(v)) for g, v in raw[k]) for k in ("lag_days", "s1_lag_days")}
        rules = EmergenceRules(**{**raw, **lags})
        reg = lgb.Booster(model_file=str(Path(folder) / "regressor.txt"))
        clf = lgb.Booster(model_file=str(Path(folder) / "classifier.txt"))
        return cls(reg, clf, rules)


def _scores(est: pd.DataFrame, truth: pd.DataFrame, days: pd.DatetimeIndex) -> dict[str, float]:
    """MAE (days) of dated truth parcels given a date, shares within 3 / 6 days and coverage (over every
    in-scope parcel with a true emergence, undated ones counted as misses), accuracy of "sown in season"
    (over parcels with a decision) and the share of parcels without a true emergence given a date."""
    t = pd.Series(_truth_days(truth, pd.Index(est["parcel_id"]), days))
    p = pd.Series((pd.to_datetime(est["emergence_date"]) - days[0]).dt.days.to_numpy(float))
    err = (p - t).abs()
    dated, true = p.notna(), t.notna()
    decided = (est["status"] != INSUFFICIENT).to_numpy()
    n = max(int(true.sum()), 1)
    return {
        "mae_days": float(err[dated & true].mean()),
        "within3": float((err[true] <= 3).sum() / n),
        "within6": float((err[true] <= 6).sum() / n),
        "coverage": float((dated & true).sum() / n),
        "sown_accuracy": float(((est["status"] == EMERGED).to_numpy() == true.to_numpy())[decided].mean()),
        "false_dates": float((dated & ~true).sum() / max(int((~true).sum()), 1)),
        "n_true": float(true.sum()),
    }


def calibrate_rules(
    series: SeasonSeries,
    truth_parcels: pd.DataFrame,
    rules: EmergenceRules = EmergenceRules(),
    features: pd.DataFrame | None = None,
) -> EmergenceRules:
    """The rules with ``lag_days`` and ``s1_lag_days`` set to the median lags per crop group (groups with
    at least 10 dated parcels; ``default``: all) on ``series`` (training parcels)."""
    f = emergence_features(series, rules) if features is None else features
    truth = _truth_days(truth_parcels, f.index, series.days)
    lags: dict[str, tuple[tuple[str, float], ...]] = {}
    for name, column in (("lag_days", f"x{rules.fraction}"), ("s1_lag_days", "vh_mid")):
        lag = (f[column] - truth)[f["in_scope"] & np.isfinite(f[column] - truth)]
        per = lag.groupby(f.loc[lag.index, "group"]).agg(["median", "size"])
        lags[name] = (("default", round(float(lag.median()), 1)),) + tuple(
            (str(g), round(float(m), 1)) for g, (m, n) in per.iterrows() if n >= 10
        )
    return EmergenceRules(**{**asdict(rules), **lags})


def fit(
    series: SeasonSeries, truth_parcels: pd.DataFrame, seed: int = 0
) -> tuple[EmergenceModel, dict[str, float]]:
    """Calibrate the rules' lags and train the learned model on 75% of ``series``' parcels; compare the
    calibrated baseline and the learned model on the other 25%.

    Returns:
        The model (its ``rules``: the calibrated baseline), and the validation figures
        ``{baseline,learned}_*`` (see ``_scores``) with ``selected`` (1.0: the learned model's MAE is at
        most the baseline's, 0.0: the baseline).

    Raises:
        ValueError: too few parcels with a spring emergence to train on.
    """
    val = np.random.default_rng(seed).random(len(series)) < 0.25
    train, hold = series.subset(~val), series.subset(val)
    features = emergence_features(train)
    rules = calibrate_rules(train, truth_parcels, features=features)
    model = EmergenceModel.train(train, truth_parcels, seed=seed, rules=rules, features=features)
    figures = _both(model, hold, truth_parcels)
    return model, {**figures, "selected": float(figures["learned_mae_days"] <= figures["baseline_mae_days"])}


def _both(model: EmergenceModel, series: SeasonSeries, truth_parcels: pd.DataFrame) -> dict[str, float]:
    """``{baseline,learned}_*`` scores of the model's rules and of the model on ``series``."""
    f = emergence_features(series, model.rules)
    out: dict[str, float] = {}
    for name, est in (
        ("baseline", estimate_rules(series, model.rules, f)),
        ("learned", model.estimate(series, f)),
    ):
        out |= {f"{name}_{k}": v for k, v in _scores(est, truth_parcels, series.days).items()}
    return out


def evaluate(
    train: SeasonSeries,
    train_truth_parcels: pd.DataFrame,
    test: SeasonSeries,
    test_truth_parcels: pd.DataFrame,
    seed: int = 0,
) -> dict[str, float]:
    """Fit on ``train`` (:func:`fit`: 75% of its parcels; the other 25% choose between baseline and
    learned), score both on ``test``.

    Returns:
        ``baseline_*`` and ``learned_*`` scores (see ``_scores``) on test, ``val_baseline_mae_days``,
        ``val_learned_mae_days``, ``selected`` (1.0 if the learned model won on validation, as every
        product's ``evaluate`` says it), ``n_test_emergences``.
    """
    model, validation = fit(train, train_truth_parcels, seed)
    out = {f"val_{k}": v for k, v in validation.items() if k != "selected" and not k.endswith("n_true")}
    out |= _both(model, test, test_truth_parcels)
    out["selected"] = validation["selected"]
    out["n_test_emergences"] = out.pop("baseline_n_true")
    out.pop("learned_n_true")
    return out
