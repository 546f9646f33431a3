"""Harvest and ploughing events: baseline and learned detector on small synthetic series."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kz_pipelines.models.events import SeasonSeries
from kz_pipelines.models.ploughing_harvest import (
    S1_INPUTS,
    S2_INPUTS,
    HarvestPloughModel,
    HarvestPloughRules,
    arable,
    candidate_features,
    detect_rules,
    evaluate,
    event_figures,
    parcel_status,
    ploughed_classifier,
)

DAYS = pd.date_range("2024-04-01", "2024-10-31", freq="D")


def synthetic(n: int, seed: int) -> tuple[SeasonSeries, pd.DataFrame]:
    """``n`` parcels of winter wheat (class 1; about half ploughed after harvest) and a few grassland
    parcels (class 24): green canopy, senescence, harvest to residue, ploughing to rough bare soil; S2 every
    5 days with cloudy gaps, S1 every 12 days per orbit (offset 6 days), with noise. Returns the series and
    the true events."""
    rng = np.random.default_rng(seed)
    t = np.arange(len(DAYS), dtype=np.float64)
    data = {f: np.full((n, len(DAYS)), np.nan, np.float32) for f in (*S2_INPUTS, *S1_INPUTS)}
    crop = np.where(np.arange(n) % 5 == 4, 24, 1)
    truth = []
    for i in range(n):
        harvest, plough = rng.uniform(100, 140), rng.uniform(4, 30)
        ploughed = crop[i] == 1 and rng.random() < 0.5
        plough += harvest
        green = 0.8 / (1 + np.exp(-(t - 40) / 8)) * (1 - 0.85 / (1 + np.exp(-(t - harvest + 25) / 6)))
        dry = 0.7 / (1 + np.exp(-(t - harvest + 25) / 6))
        rough = np.zeros_like(t)
        if crop[i] == 1:
            green, dry = np.where(t >= harvest, 0.03, green), np.where(t >= harvest, 0.4, dry)
            truth.append((f"P{i}", "harvest", DAYS[int(round(harvest))]))
        if ploughed:
            dry, rough = (
                np.where(t >= plough, 0.03, dry),
                np.where(t >= plough, np.exp(-(t - plough) / 40), 0),
            )
            truth.append((f"P{i}", "ploughing", DAYS[int(round(plough))]))
        soil = 1 - green - dry
        noise = lambda: rng.normal(0, 0.01, t.size)  # noqa: E731
        s2 = {
            "NDVI": 0.85 * green + 0.25 * dry + 0.12 * soil,
            "NDTI": 0.02 * green + 0.25 * dry + 0.02 * soil,
            "CRC": 0.1 * green + 0.3 * dry + 0.05 * soil,
            "NDI7": 0.3 * green + 0.2 * dry + 0.05 * soil,
            "BI1": 0.1 * (green + dry) + 0.03 * soil * (1 - 0.5 * rough),
            "BI2": 0.2 * green + 0.35 * dry + 0.25 * soil * (1 - 0.25 * rough),
        }
        clear = (np.arange(t.size) % 5 == i % 5) & (rng.random(t.size) < 0.6)
        for f, v in s2.items():
            data[f][i, clear] = (v + noise())[clear]
        veg = green + 0.5 * dry
        for orbit, offset in (("asc", 0), ("desc", 6)):
            seen = np.arange(t.size) % 12 == offset
            vv = -12 + 3 * veg + 3 * rough + rng.normal(0, 0.3, t.size)
            vh = -20 + 6 * veg + 3 * rough + rng.normal(0, 0.3, t.size)
            for f, v in ((f"VV_{orbit}", vv), (f"VH_{orbit}", vh), (f"VH_VV_{orbit}", vh - vv)):
                data[f][i, seen] = v[seen]
    counts = {f: np.where(np.isfinite(v), 50.0, 0.0).astype(np.float32) for f, v in data.items()}
    series = SeasonSeries(
        np.array([f"P{i}" for i in range(n)]),
        DAYS,
        data,
        counts,
        crop.astype(np.int64),
        np.ones(n, np.float32),
    )
    return series, pd.DataFrame(truth, columns=["parcel_id", "event", "date"])


@pytest.fixture(scope="module")
def trained() -> tuple[HarvestPloughModel, SeasonSeries, pd.DataFrame]:
    train, train_truth = synthetic(150, seed=1)
    test, test_truth = synthetic(60, seed=2)
    return HarvestPloughModel.train(train, train_truth, seed=0, rounds=60), test, test_truth


def test_scope_and_insufficient_data() -> None:
    series, _ = synthetic(10, seed=3)
    for f in S2_INPUTS:
        series.data[f][0] = np.nan
        series.counts[f][0] = 0.0
    status = parcel_status(series)
    assert status[0] == "insufficient_data"
    assert list(status[arable(series) == 0]) == ["out_of_scope"] * 2
    assert all(e.parcel_id not in ("P0", "P4", "P9") for e in detect_rules(series))


def test_features_look_only_at_neighbouring_observations() -> None:
    series, _ = synthetic(3, seed=4)
    x, names = candidate_features(series)
    assert x.shape == (3 * len(DAYS), len(names))
    ndvi = series.data["NDVI"][1]
    seen = np.flatnonzero(np.isfinite(ndvi))
    day = int(seen[3]) + 1  # the day after an observation: it is the last one before
    row = x[len(DAYS) + day]
    assert row[names.index("NDVI_before")] == pytest.approx(ndvi[seen[3]])
    assert row[names.index("NDVI_after")] == pytest.approx(ndvi[seen[4]])
    assert row[names.index("NDVI_since")] == 1


def test_rules_find_events_on_time() -> None:
    series, truth = synthetic(60, seed=5)
    figures = event_figures(series, detect_rules(series, HarvestPloughRules()), truth)
    assert figures["harvest_f1"] > 0.3
    assert figures["ploughing_precision"] > 0.8
    assert figures["mae_days"] <= 4


def test_no_events_without_change() -> None:
    series, _ = synthetic(10, seed=8)
    flat = {
        f: np.where(np.isfinite(v), np.nanmedian(v, axis=1, keepdims=True), np.nan)
        for f, v in series.data.items()
    }
    still = SeasonSeries(series.parcel_ids, DAYS, flat, series.counts, series.crop_class, series.area_ha)
    assert detect_rules(still) == []


def test_learned_model_detects_events_on_unseen_parcels(trained) -> None:  # type: ignore[no-untyped-def]
    model, test, truth = trained
    events = model.detect(test)
    assert {e.kind for e in events} == {"harvest", "ploughing"}
    assert all(0 <= e.confidence <= 1 for e in events)
    figures = event_figures(test, events, truth)
    assert figures["harvest_f1"] > 0.8
    assert figures["ploughing_f1"] > 0.8
    assert figures["mae_days"] <= 3
    assert model.card is not None
    assert model.card["n_validation_parcels"] > 0


def test_save_load_identical(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, test, _ = trained
    model.save(tmp_path / "model")
    again = HarvestPloughModel.load(tmp_path / "model")
    assert again.thresholds == model.thresholds
    np.testing.assert_array_equal(again.probabilities(test), model.probabilities(test))
    assert again.detect(test) == model.detect(test)


def test_ploughing_vetoed_where_the_parcel_is_called_unploughed(trained) -> None:  # type: ignore[no-untyped-def]
    model, test, truth = trained
    assert model.ploughed is not None
    ploughed = set(truth.loc[truth["event"] == "ploughing", "parcel_id"])
    kept = {e.parcel_id for e in model.detect(test) if e.kind == "ploughing"}
    assert len(kept & ploughed) >= 0.8 * len(ploughed)
    # a classifier taught the opposite (ploughings on the unploughed harvested parcels, none on the others)
    train, train_truth = synthetic(150, seed=1)
    harvested = train_truth.loc[train_truth["event"] == "harvest"]
    was_ploughed = set(train_truth.loc[train_truth["event"] == "ploughing", "parcel_id"])
    opposite = harvested.loc[~harvested["parcel_id"].isin(was_ploughed)].assign(event="ploughing")
    contrary = replace(model, ploughed=ploughed_classifier(train, opposite, seed=0))
    vetoed = {e.parcel_id for e in contrary.detect(test) if e.kind == "ploughing"}
    assert len(vetoed & ploughed) <= 0.1 * len(ploughed)
    harvests = [e for e in model.detect(test) if e.kind == "harvest"]
    assert [e for e in contrary.detect(test) if e.kind == "harvest"] == harvests  # harvests untouched


def test_evaluate_reports_both_models_per_type() -> None:
    train, train_truth = synthetic(80, seed=6)
    test, test_truth = synthetic(30, seed=7)
    figures = evaluate(train, train_truth, test, test_truth)
    for model in ("baseline", "learned"):
        for key in ("f1", "mae_days", "harvest_f1", "harvest_mae_days", "ploughing_f1", "ploughing_mae_days"):
            assert f"{model}_{key}" in figures
    assert figures["selected"] in (0.0, 1.0)
    assert 0 <= figures["learned_f1"] <= 1
