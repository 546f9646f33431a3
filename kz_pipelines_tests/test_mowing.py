"""Mowing: the rule baseline and the learned model find cuts on synthetic grassland series (also under
cloud, from S1 alone), out-of-scope and unobserved parcels get no dates, compliance, and safe saving."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kz_pipelines.models.events import S1_FEATURES, Event, SeasonSeries, event_scores, events_table
from kz_pipelines.models.mowing import (
    MowingModel,
    MowingRules,
    compliance,
    data_status,
    detect_mowing_rules,
    evaluate,
    grassland,
    window_features,
)

GRASS, WHEAT = 24, 1  # permanent_grassland, an arable class


def synthetic(n: int, seed: int, cloud: float = 0.4) -> tuple[SeasonSeries, pd.DataFrame]:
    """``n`` grassland parcels over 2024 cut 1-3 times (NDVI and VH dip, then regrow), S2 every 5 days
    minus clouded dates, S1 every 12 days per orbit; and their true cuts."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-01-01", "2024-12-31")
    t = np.arange(len(days), dtype=np.float64)
    data: dict[str, np.ndarray] = {f: np.full((n, len(days)), np.nan, np.float32) for f in ("NDVI", "NDTI")}
    data |= {f: np.full((n, len(days)), np.nan, np.float32) for f in S1_FEATURES}
    truth = []
    for p in range(n):
        green = 0.2 + 0.6 / (1.0 + np.exp(-(t - 120.0) / 8.0))
        d = rng.uniform(152, 185)
        for _ in range(int(rng.integers(1, 4))):
            after = t >= d
            green = green * np.where(after, 1.0 - rng.uniform(0.7, 0.85) * np.exp(-(t - d) / 7.0), 1.0)
            truth.append((f"P{p}", "mowing", days[int(np.ceil(d))]))
            d += rng.uniform(35, 55)
        s2 = (t % 5 == p % 5) & (rng.random(len(t)) > cloud)
        data["NDVI"][p, s2] = (0.1 + 0.8 * green[s2] + rng.normal(0, 0.02, s2.sum())).astype(np.float32)
        data["NDTI"][p, s2] = (0.05 - 0.05 * green[s2]).astype(np.float32)
        for orbit, phase, off in (("asc", 3, 0.0), ("desc", 9, 1.5)):
            s1 = t % 12 == phase
            vh = -24.0 + 9.0 * green[s1] + off + rng.normal(0, 0.3, s1.sum())
            data[f"VH_{orbit}"][p, s1] = vh
            data[f"VV_{orbit}"][p, s1] = vh + 7.0 - 3.0 * green[s1]
            data[f"VH_VV_{orbit}"][p, s1] = -7.0 + 3.0 * green[s1]
    counts = {f: np.where(np.isnan(v), 0.0, 50.0).astype(np.float32) for f, v in data.items()}
    series = SeasonSeries(
        parcel_ids=np.array([f"P{p}" for p in range(n)]),
        days=days,
        data=data,
        counts=counts,
        crop_class=np.full(n, GRASS, np.int64),
        area_ha=np.full(n, 2.0, np.float32),
    )
    return series, pd.DataFrame(truth, columns=["parcel_id", "event", "date"])


def scores(series: SeasonSeries, events: list[Event], truth: pd.DataFrame) -> dict[str, float]:
    """Event scores of ``events`` against ``truth`` (day numbers on the series axis)."""
    pred: dict[str, list[int]] = {}
    for e in events:
        pred.setdefault(e.parcel_id, []).append(series.day_index(e.day))
    true: dict[str, list[int]] = {}
    for pid, day in zip(truth["parcel_id"], truth["date"], strict=True):
        true.setdefault(pid, []).append(series.day_index(day))
    return event_scores(pred, true)


def test_rules_find_the_cuts() -> None:
    series, truth = synthetic(30, seed=1)
    events = detect_mowing_rules(series)
    assert {e.kind for e in events} == {"mowing"}
    assert all(0.0 <= e.confidence <= 1.0 for e in events)
    assert scores(series, events, truth)["f1"] >= 0.85


def test_s1_alone_finds_a_cut_under_cloud() -> None:
    series, truth = synthetic(10, seed=2, cloud=0.0)
    cut = series.day_index(truth["date"].iloc[0])
    ndvi = series.data["NDVI"].copy()
    ndvi[0, cut - 15 : cut + 20] = np.nan  # a month of cloud around the first cut of P0
    cloudy = SeasonSeries(series.parcel_ids, series.days, series.data | {"NDVI": ndvi}, series.counts,
                          series.crop_class, series.area_ha)  # fmt: skip
    found = [series.day_index(e.day) for e in detect_mowing_rules(cloudy) if e.parcel_id == "P0"]
    assert any(abs(d - cut) <= 6 for d in found)


def test_out_of_scope_and_unobserved_parcels_get_no_dates() -> None:
    series, _ = synthetic(4, seed=3)
    crop = series.crop_class.copy()
    crop[1] = WHEAT
    ndvi = series.data["NDVI"].copy()
    ndvi[2] = np.nan  # no S2 at all
    counts = dict(series.counts)
    counts["NDVI"] = np.where(np.isnan(ndvi), 0.0, 50.0).astype(np.float32)
    odd = SeasonSeries(series.parcel_ids, series.days, series.data | {"NDVI": ndvi}, counts, crop,
                       series.area_ha)  # fmt: skip
    assert grassland(odd).tolist() == [True, False, True, True]
    status = data_status(odd)
    assert status["status"].tolist() == ["ok", "not_grassland", "insufficient_data", "ok"]
    found = {e.parcel_id for e in detect_mowing_rules(odd)}
    assert found == {"P0", "P3"}


def test_compliance_flags() -> None:
    events = events_table([
        Event("A", "mowing", date(2024, 6, 20), 0.9),
        Event("A", "mowing", date(2024, 8, 1), 0.8),
        Event("B", "mowing", date(2024, 7, 20), 0.9),
    ])  # fmt: skip
    status = {"A": "ok", "B": "ok", "C": "ok", "D": "insufficient_data"}
    table = compliance(events, ["A", "B", "C", "D"], date(2024, 7, 15), status)
    assert table["mowed_by_deadline"].tolist() == [True, False, False, None]
    assert table["n_events"].tolist() == [2, 1, 0, 0]
    assert table["first_mowing"].iloc[0] == pd.Timestamp("2024-06-20")
    assert pd.isna(table["first_mowing"].iloc[3])
    assert table["status"].iloc[3] == "insufficient_data"


def test_training_needs_true_cuts() -> None:
    series, truth = synthetic(12, seed=11)
    with pytest.raises(ValueError, match="true cut"):
        MowingModel.train(series, truth.iloc[:0])


def test_rules_reject_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="first_doy"):
        MowingRules(first_doy=300, last_doy=200)


def test_window_features_see_the_drop() -> None:
    series, truth = synthetic(3, seed=4, cloud=0.0)
    x, names = window_features(series)
    assert x.shape == (3, len(series.days), len(names))
    cut = series.day_index(truth["date"].iloc[0])
    drop = x[0, :, names.index("NDVI_drop")]
    assert drop[cut] < -0.2  # the cut day sees the dip ahead of it
    assert np.nanmin(drop[cut - 40 : cut - 10]) > -0.1  # steady grass before it


@pytest.fixture(scope="module")
def model() -> MowingModel:
    series, truth = synthetic(40, seed=5)
    return MowingModel.train(series, truth, seed=0)


def test_learned_model_finds_the_cuts_on_unseen_parcels(model: MowingModel) -> None:
    series, truth = synthetic(30, seed=6)
    assert scores(series, model.detect(series), truth)["f1"] >= 0.85


def test_learned_model_gives_no_dates_without_s2(model: MowingModel) -> None:
    series, _ = synthetic(5, seed=10)
    empty = {f: np.full_like(v, np.nan) for f, v in series.data.items() if f not in S1_FEATURES}
    none = {f: np.zeros_like(v) for f, v in series.counts.items() if f not in S1_FEATURES}
    no_s2 = SeasonSeries(series.parcel_ids, series.days, series.data | empty, series.counts | none,
                         series.crop_class, series.area_ha)  # fmt: skip
    assert model.detect(no_s2) == []
    assert set(data_status(no_s2)["status"]) == {"insufficient_data"}


def test_model_saves_and_loads_to_identical_predictions(model: MowingModel, tmp_path: Path) -> None:
    series, _ = synthetic(10, seed=7)
    model.save(tmp_path / "mowing")
    loaded = MowingModel.load(tmp_path / "mowing")
    assert loaded.threshold == model.threshold
    assert loaded.rules == model.rules
    assert loaded.detect(series) == model.detect(series)


def test_evaluate_reports_both_detectors() -> None:
    train, train_truth = synthetic(25, seed=8)
    test, test_truth = synthetic(10, seed=9)
    out = evaluate(train, train_truth, test, test_truth)
    assert {
        "baseline_f1",
        "learned_f1",
        "learned_mae_days",
        "selected",
        "learned_compliance_accuracy",
    } <= set(out)
    assert out["learned_compliance_accuracy"] >= 0.8
    assert out["n_parcels"] == 10
    assert 0.0 <= out["learned_f1"] <= 1.0
