"""Tillage practice per arable parcel and season: conventional (residue ploughed under, bare rough soil) or
conservation (residue, and some volunteer green, left on the surface).

Two windows carry the signal. Before spring sowing the seedbed is bare after conventional tillage and
residue-covered after conservation tillage; after harvest the residue stays on the surface under
conservation and is ploughed under (within about a month) under conventional tillage, which also roughens
the soil and raises the radar backscatter. Both windows are found per parcel from its own NDVI: the spring
window runs from the first day of the series to the green-up (first NDVI above ``green_ndvi``); the
post-harvest windows are counted from the NDVI drop (first NDVI below ``drop_ndvi`` after a canopy peak).

* **Rules** (:func:`classify_rules`): the median BI1 (B11 - B12, the cellulose absorption depth; linear in
  the cover fractions, so less sensitive to soil brightness than NDTI, which separated the practices less
  well on the training seed) of the low-NDVI observations of each window, compared with bare soil (about
  0.037; straw raises it). Below ``bare_level + residue_margin`` (mean over the windows observed) the
  surface is bare: conventional. The probability is a logistic of the distance to that threshold.
  Thresholds were read off the training seed's quantiles (70% of its parcels).
* **Learned** (:class:`TillageModel`): LightGBM (binary, early stopping) on window medians of NDVI, the
  residue indices and S1 (absolute and relative to the weeks before the drop) in the spring, post-drop and
  calendar-month (August-October) windows, plus the declared class; trained with extra copies of the
  parcels with half and all of their S2 dates dropped, so that it answers from S1 through cloudy spells.

Scope: parcels whose declared class is arable with a harvest (taxonomy ``arable``, not fallow); other
parcels get status ``not_arable``; parcels with no observation in any window the classifier reads (the
rules read S2 only, the model S2 and S1) ``insufficient_data``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from kz_pipelines.labels import load_taxonomy
from kz_pipelines.models.events import S1_FEATURES, SeasonSeries, drop_s2_dates
from kz_pipelines.storage import atomic_dir

__all__ = [
    "RESIDUE_FEATURES",
    "TILLAGE_FEATURES",
    "TillageModel",
    "TillageRules",
    "classify_rules",
    "evaluate",
    "fit",
    "in_scope",
    "tillage_features",
    "tillage_scores",
]

RESIDUE_FEATURES = ("NDTI", "CRC", "NDI5", "NDI7", "NDRI", "BI1", "BI2")
"""The tensor's crop residue indices."""

TILLAGE_FEATURES = ("NDVI", *RESIDUE_FEATURES, *S1_FEATURES)
"""The features a tillage series must hold (``season_series(ds, TILLAGE_FEATURES)``)."""

_WINDOWS = (("pre", -25, 0), ("h0", 0, 20), ("h1", 20, 40), ("h2", 40, 60), ("h3", 60, 90), ("h4", 90, 999))
"""Post-drop windows: name, first and last (excluded) day after the NDVI drop."""


@dataclass(frozen=True)
class TillageRules:
    """Thresholds of the rule-based baseline (NDVI unitless; the index in its own units; days).

    Attributes:
        green_ndvi: NDVI above which the spring seedbed has greened up (ends the spring window).
        peak_ndvi: a season's canopy peaks at least this high (else no post-harvest window).
        drop_ndvi: NDVI below which the canopy has dropped (senescence and harvest) after its peak.
        settle_days: the post-harvest window opens this many days after the drop (harvest comes about
            three weeks after the drop, ploughing within a month of harvest).
        fallback_days: where no drop was seen, the post-harvest window is the series' last this many days.
        bare_ndvi: only observations with NDVI below this count (sown green excluded).
        index: the residue index the rules read (a tensor feature).
        bare_level: the index over bare soil (BI1, reflectance units).
        residue_margin: index above bare soil from which the surface counts as residue-covered.
        scale: index width of the logistic that turns the distance to the threshold into a probability.
    """

    green_ndvi: float = 0.35
    peak_ndvi: float = 0.5
    drop_ndvi: float = 0.4
    settle_days: int = 50
    fallback_days: int = 31
    bare_ndvi: float = 0.45
    index: str = "BI1"
    bare_level: float = 0.037
    residue_margin: float = 0.021
    scale: float = 0.005

    def __post_init__(self) -> None:
        if (
            not 0 < self.drop_ndvi < self.peak_ndvi
            or self.scale <= 0
            or min(self.settle_days, self.fallback_days) < 0
        ):
            raise ValueError("TillageRules: need 0 < drop_ndvi < peak_ndvi, scale > 0, days >= 0")


def in_scope(series: SeasonSeries) -> npt.NDArray[np.bool_]:
    """(parcels,) whether the declared class is arable and harvested (not fallow): tillage applies."""
    tax = load_taxonomy()
    ok = {c.id for c in tax.classes if c.arable and c.group != "fallow"}
    return np.isin(series.crop_class, sorted(ok))


def _anchors(series: SeasonSeries, rules: TillageRules) -> tuple[npt.NDArray[np.int64], ...]:
    """Per parcel: the green-up day (end of the spring window: the first NDVI above ``green_ndvi``; 0 when
    none) and the NDVI drop day (the first NDVI below ``drop_ndvi`` after a peak of at least ``peak_ndvi``,
    confirmed by the next observation, so that one unmasked cloud is no drop; -1 when none), as day
    indices. Clouds only lower NDVI, so the peak and the green-up are read from the raw observations."""
    ndvi = series.data["NDVI"]
    green_up = np.zeros(len(series), np.int64)
    drop = np.full(len(series), -1, np.int64)
    for i in range(len(series)):
        days = np.flatnonzero(np.isfinite(ndvi[i]))
        if days.size == 0:
            continue
        v = ndvi[i, days]
        green = np.flatnonzero(v > rules.green_ndvi)
        green_up[i] = days[green[0]] if green.size else days[-1] + 1
        peak = int(np.argmax(v))
        low = v[peak:] < rules.drop_ndvi
        confirmed = np.flatnonzero(low & np.r_[low[1:], True])
        if v[peak] >= rules.peak_ndvi and confirmed.size:
            drop[i] = days[peak + confirmed[0]]
    return green_up, drop


def _window_median(
    values: npt.NDArray[np.float32], lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """(parcels,) median of each row's finite values on days [lo, hi) (NaN where none)."""
    day = np.arange(values.shape[1])
    inside = (day >= lo[:, None]) & (day < hi[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN is the answer
        return np.nanmedian(np.where(inside, values, np.nan), axis=1)


def _residue_levels(series: SeasonSeries, rules: TillageRules) -> npt.NDArray[np.float64]:
    """(parcels, 2) median residue index of the low-NDVI observations in the spring and post-harvest
    windows."""
    green_up, drop = _anchors(series, rules)
    bare = np.where(series.data["NDVI"] < rules.bare_ndvi, series.data[rules.index], np.nan).astype(
        np.float32
    )
    zero = np.zeros(len(series), np.int64)
    late = len(series.days) - rules.fallback_days  # no drop seen: the last weeks of the series
    after = np.where(drop >= 0, drop + rules.settle_days, max(late, 0))
    end = np.full(len(series), len(series.days), np.int64)
    return np.stack([_window_median(bare, zero, green_up), _window_median(bare, after, end)], axis=1)


def _status(series: SeasonSeries, observed: npt.NDArray[np.bool_]) -> npt.NDArray[np.str_]:
    scope = in_scope(series)
    return np.where(~scope, "not_arable", np.where(observed, "ok", "insufficient_data"))


def _table(series: SeasonSeries, p: npt.NDArray[np.float64], status: npt.NDArray[np.str_]) -> pd.DataFrame:
    ok = status == "ok"
    practice = np.where(p >= 0.5, "conventional", "conservation")
    return pd.DataFrame(
        {
            "parcel_id": series.parcel_ids,
            "practice": [str(v) if k else None for v, k in zip(practice, ok, strict=True)],
            "p_conventional": np.where(ok, p, np.nan),
            "status": status,
        }
    )


def classify_rules(series: SeasonSeries, rules: TillageRules = TillageRules()) -> pd.DataFrame:  # noqa: B008
    """Rule-based tillage practice.

    Args:
        series: parcels' season series with at least NDVI and ``rules.index``.
        rules: thresholds.

    Returns:
        One row per parcel: ``parcel_id``, ``practice`` (conventional / conservation; None unless ok),
        ``p_conventional`` (0..1, NaN unless ok), ``status`` (ok, not_arable, insufficient_data).
    """
    levels = _residue_levels(series, rules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        excess = np.nanmean(levels - (rules.bare_level + rules.residue_margin), axis=1)
    p = 1.0 / (1.0 + np.exp(np.clip(np.nan_to_num(excess) / rules.scale, -50, 50)))
    return _table(series, p, _status(series, np.isfinite(excess)))


def tillage_features(series: SeasonSeries, rules: TillageRules = TillageRules()) -> pd.DataFrame:  # noqa: B008
    """Window summaries per parcel (rows in series order): medians of NDVI and the residue indices in the
    spring window, the windows after the NDVI drop (``_WINDOWS``) and the calendar months August to
    October; S1 medians in the same windows but spring (post-drop ones also minus the pre-drop window);
    S2 observation counts per window; the anchor days (day of year) and the declared class."""
    green_up, drop = _anchors(series, rules)
    n = len(series)
    doy0 = series.days[0].dayofyear if len(series.days) else 0  # anchors as days of year
    cols: dict[str, npt.NDArray[np.float64]] = {
        "crop_class": series.crop_class.astype(np.float64),
        "green_up": (green_up + doy0).astype(np.float64),
        "drop": np.where(drop >= 0, drop + doy0, np.nan),
    }
    windows = {"spring": (np.zeros(n, np.int64), green_up)}
    for name, start, stop in _WINDOWS:
        windows[name] = (np.where(drop >= 0, drop + start, 0), np.where(drop >= 0, drop + stop, 0))
    for month in (8, 9, 10):  # calendar months: a fallback where the drop was not seen
        inside = np.flatnonzero(series.days.month == month)
        lo, hi = (inside[0], inside[-1] + 1) if inside.size else (0, 0)
        windows[f"m{month}"] = (np.full(n, lo, np.int64), np.full(n, hi, np.int64))
    for f in TILLAGE_FEATURES:
        if f not in series.data:
            continue
        for name, (lo, hi) in windows.items():
            if name == "spring" and f in S1_FEATURES:
                continue
            cols[f"{f}_{name}"] = _window_median(series.data[f], lo, hi)
            if f in S1_FEATURES and name[0] == "h":
                cols[f"{f}_{name}_rel"] = cols[f"{f}_{name}"] - cols[f"{f}_pre"]
    for name, (lo, hi) in windows.items():
        day = np.arange(len(series.days))
        seen = np.isfinite(series.data["NDVI"]) & (day >= lo[:, None]) & (day < hi[:, None])
        cols[f"n_s2_{name}"] = seen.sum(axis=1).astype(np.float64)
    return pd.DataFrame(cols)


def _observed(features: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Whether a parcel has any S2 observation in its spring window or any observation after its drop or
    from August on."""
    late = ("h0", "h1", "h2", "h3", "h4", "m8", "m9", "m10")
    after = [c for c in features.columns if c.split("_")[-1] in late and not c.startswith("n_")]
    return np.asarray((features["n_s2_spring"] > 0) | features[after].notna().any(axis=1))


def tillage_scores(table: pd.DataFrame, truth_parcels: pd.DataFrame) -> dict[str, float]:
    """F1 (conventional positive), macro F1, accuracy and AUC of a practice table against the truth
    (``parcel_id``, ``tillage``), on the parcels with a true practice and status ok; ``coverage``: the
    share of the parcels with a true practice that got status ok."""
    truth = truth_parcels.loc[truth_parcels["tillage"].notna(), ["parcel_id", "tillage"]]
    both = truth.merge(table, on="parcel_id", how="inner")
    ok = both.loc[both["status"] == "ok"]
    y = (ok["tillage"] == "conventional").to_numpy()
    pred = (ok["practice"] == "conventional").to_numpy()
    if not len(y):
        nan = float("nan")
        return {"f1": nan, "f1_macro": nan, "accuracy": nan, "auc": nan, "coverage": 0.0, "n": 0.0}
    auc = roc_auc_score(y, ok["p_conventional"]) if 0 < y.sum() < len(y) else float("nan")
    return {
        "f1": float(f1_score(y, pred, zero_division=0.0)),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0.0)),
        "accuracy": float(accuracy_score(y, pred)),
        "auc": float(auc),
        "coverage": len(ok) / len(both),
        "n": float(len(ok)),
    }


def _labelled(
    series: SeasonSeries, truth_parcels: pd.DataFrame
) -> tuple[pd.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Features and 0/1 labels (1: conventional) of the in-scope, observed parcels with a true practice,
    and the (parcels,) mask of those parcels."""
    truth = truth_parcels.set_index("parcel_id")["tillage"]
    label = pd.Series(series.parcel_ids).map(truth)
    feats = tillage_features(series)
    keep = np.asarray(label.notna()) & in_scope(series) & _observed(feats)
    y = np.asarray(label[keep] == "conventional", np.int64)
    return feats.loc[keep].reset_index(drop=True), y, keep


@dataclass
class TillageModel:
    """LightGBM tillage classifier on :func:`tillage_features`.

    Attributes:
        booster: the binary LightGBM model (probability of conventional).
        feature_names: its input columns, in order.
        card: training facts (parcels, rounds, validation scores).
        rules: the anchor thresholds its windows were found with.
    """

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    card: dict[str, float] = field(default_factory=dict)
    rules: TillageRules = field(default_factory=TillageRules)

    @classmethod
    def train(
        cls,
        series: SeasonSeries,
        truth_parcels: pd.DataFrame,
        seed: int = 0,
        augment: tuple[float, ...] = (0.5, 1.0),
    ) -> TillageModel:
        """Fit on the labelled parcels of ``series`` (truth: ``parcel_id``, ``tillage``), 20% of the parcels
        (by ``seed``) held out for early stopping. For each fraction in ``augment`` a copy of every parcel
        with that fraction of its S2 dates dropped (:func:`drop_s2_dates`) is added, so that the model
        has seen the sparse series of a cloudy season (1.0: S1 only)."""
        held = np.random.default_rng(seed).random(len(series)) < 0.2
        copies = [series] + [drop_s2_dates(series, f, seed + k + 1) for k, f in enumerate(augment)]
        parts = [_labelled(c, truth_parcels) for c in copies]
        x = pd.concat([p[0] for p in parts], ignore_index=True)
        y = np.concatenate([p[1] for p in parts])
        valid = np.concatenate([held[p[2]] for p in parts])
        if len(np.unique(y[valid])) < 2 or len(np.unique(y[~valid])) < 2:
            raise ValueError("tillage training needs parcels of both practices")
        params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 10,
                  "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed,
                  "deterministic": True, "num_threads": 1, "verbose": -1}  # fmt: skip
        fit = lgb.Dataset(x[~valid], y[~valid])
        val = lgb.Dataset(x[valid], y[valid], reference=fit)
        booster = lgb.train(
            params, fit, 600, valid_sets=[val], callbacks=[lgb.early_stopping(40, verbose=False)]
        )
        p = np.asarray(booster.predict(x[valid], num_iteration=booster.best_iteration), np.float64)
        card = {"n_train": float((~valid).sum()), "n_valid": float(valid.sum()),
                "rounds": float(booster.best_iteration),
                "valid_f1": float(f1_score(y[valid], p >= 0.5)),
                "valid_auc": float(roc_auc_score(y[valid], p))}  # fmt: skip
        return cls(booster, tuple(x.columns), card)

    def classify(self, series: SeasonSeries) -> pd.DataFrame:
        """Practice per parcel (columns as :func:`classify_rules`)."""
        feats = tillage_features(series, self.rules)
        x = feats.reindex(columns=list(self.feature_names))
        p = np.asarray(self.booster.predict(x, num_iteration=self.booster.best_iteration), np.float64)
        return _table(series, p, _status(series, _observed(feats)))

    def save(self, folder: Path) -> None:
        """Write ``lightgbm.txt`` and ``model.json`` (features, card, rules) atomically into ``folder``."""
        with atomic_dir(Path(folder)) as tmp:
            self.booster.save_model(str(tmp / "lightgbm.txt"), num_iteration=self.booster.best_iteration)
            meta = {"features": list(self.feature_names), "card": self.card, "rules": asdict(self.rules)}
            (tmp / "model.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> TillageModel:
        """Read a model written by :meth:`save`."""
        meta = json.loads((Path(folder) / "model.json").read_text())
        booster = lgb.Booster(model_file=str(Path(folder) / "lightgbm.txt"))
        return cls(booster, tuple(meta["features"]), dict(meta["card"]), TillageRules(**meta["rules"]))


def fit(
    series: SeasonSeries, truth_parcels: pd.DataFrame, seed: int = 0
) -> tuple[TillageModel, dict[str, float]]:
    """Train the learned model on 80% of ``series``' parcels; compare it with the rules on the other 20%.

    Returns:
        The model, and the validation figures ``{baseline,learned}_*`` (:func:`tillage_scores`) with
        ``selected`` (1.0: the learned model's F1 is at least the rules', 0.0: the rules).

    Raises:
        ValueError: the training parcels do not hold both practices.
    """
    valid = np.random.default_rng(seed).random(len(series)) < 0.2
    model = TillageModel.train(series.subset(~valid), truth_parcels)
    held = series.subset(valid)
    out = {f"baseline_{k}": v for k, v in tillage_scores(classify_rules(held), truth_parcels).items()}
    out |= {f"learned_{k}": v for k, v in tillage_scores(model.classify(held), truth_parcels).items()}
    return model, {**out, "selected": float(out["learned_f1"] >= out["baseline_f1"])}


def evaluate(
    train: SeasonSeries,
    train_truth_parcels: pd.DataFrame,
    test: SeasonSeries,
    test_truth_parcels: pd.DataFrame,
) -> dict[str, float]:
    """Fit the learned model on ``train``, choose rules or learned on a 20% validation split of ``train``
    (:func:`fit`; ``selected``: 1 learned, 0 rules), and score both on ``test`` (``baseline_*``,
    ``learned_*``)."""
    model, validation = fit(train, train_truth_parcels)
    out = {"selected": validation["selected"], "valid_baseline_f1": validation["baseline_f1"],
           "valid_learned_f1": validation["learned_f1"]}  # fmt: skip
    for name, table in (("baseline", classify_rules(test)), ("learned", model.classify(test))):
        out |= {f"{name}_{k}": v for k, v in tillage_scores(table, test_truth_parcels).items()}
    return out
