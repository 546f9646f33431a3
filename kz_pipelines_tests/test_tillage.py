"""Tillage practice: rules and LightGBM on small synthetic season series (linear mixing of green, dry and
soil spectra, as the simulator does), statuses, and a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kz_pipelines.models.events import S1_FEATURES, SeasonSeries
from kz_pipelines.models.tillage import (
    TILLAGE_FEATURES,
    TillageModel,
    TillageRules,
    classify_rules,
    evaluate,
    tillage_scores,
)

# B02, B04, B08, B8A, B11, B12 of green vegetation, dry vegetation and soil
_SPECTRA = np.array(
    [
        [0.035, 0.030, 0.480, 0.500, 0.220, 0.100],
        [0.100, 0.190, 0.320, 0.330, 0.400, 0.280],
        [0.090, 0.160, 0.240, 0.250, 0.330, 0.300],
    ]
)
SPRING_BARLEY, GRASSLAND = 7, 24


def _indices(green: np.ndarray, dry: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the linear mix (days,) of green, dry and the rest soil."""
    soil = 1.0 - green - dry
    b02, b04, b08, b8a, b11, b12 = (green[:, None] * _SPECTRA[0] + dry[:, None] * _SPECTRA[1]
                                    + soil[:, None] * _SPECTRA[2]).T  # fmt: skip
    nd = lambda a, b: (a - b) / (a + b)  # noqa: E731
    return {"NDVI": nd(b08, b04), "NDTI": nd(b11, b12), "CRC": nd(b11, b02), "NDI5": nd(b08, b11),
            "NDI7": nd(b08, b12), "NDRI": nd(b04, b12), "BI1": b11 - b12,
            "BI2": 2 * b11 - b8a - b12}  # fmt: skip


def synthetic(n: int, seed: int, s2_every: int = 5) -> tuple[SeasonSeries, pd.DataFrame]:
    """Spring barley parcels (60% conventional) over 2024-04-01..10-31 and their truth table."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-04-01", "2024-10-31")
    t = np.arange(len(days), dtype=np.float64)
    data = {f: np.full((n, len(days)), np.nan, np.float32) for f in TILLAGE_FEATURES}
    practice = np.where(rng.random(n) < 0.6, "conventional", "conservation")
    for i in range(n):
        conv = practice[i] == "conventional"
        emerge, harvest = 40 + rng.normal(0, 5), 140 + rng.normal(0, 6)
        plough = harvest + rng.uniform(4, 30)
        green = np.where(t < emerge, 0.02, 0.02 + 0.83 / (1 + np.exp(-(t - emerge - 22) / 6)))
        fade = 1 / (1 + np.exp(-(t - harvest + 25) / 6))
        dry = np.where(t < emerge, 0.05 if conv else 0.35, green * 0.85 * fade)
        green = green * (1 - 0.9 * fade)
        volunteer = 0.02 + 0.15 * (1 - np.exp(-np.clip(t - harvest, 0, None) / 30))
        green = np.where(t >= harvest, 0.03 if conv else volunteer, green)
        dry = np.where(t >= harvest, 0.45 * np.exp(-(t - harvest) * 0.003), dry)
        rough = np.zeros_like(t)
        if conv:
            dry, green = np.where(t >= plough, 0.03, dry), np.where(t >= plough, 0.02, green)
            rough = np.where(t >= plough, np.exp(-np.clip(t - plough, 0, None) / 40), 0.0)
        seen = (t % s2_every == i % s2_every) & (rng.random(t.size) < 0.6)
        for f, v in _indices(green, np.clip(dry, 0, 0.95 - green)).items():
            data[f][i, seen] = v[seen] + rng.normal(0, 0.003, seen.sum())
        s1 = t % 3 == 0
        for f in S1_FEATURES:
            vv = -12 - 6 * green + 3 * rough + rng.normal(0, 0.7, t.size)
            data[f][i, s1] = vv[s1]
    counts = {f: np.where(np.isfinite(v), 50.0, 0.0).astype(np.float32) for f, v in data.items()}
    ids = np.array([f"S{seed}P{i:04d}" for i in range(n)])
    series = SeasonSeries(
        ids, days, data, counts, np.full(n, SPRING_BARLEY, np.int64), np.ones(n, np.float32)
    )
    truth = pd.DataFrame({"parcel_id": ids, "tillage": practice})
    return series, truth


def test_rules_validate() -> None:
    with pytest.raises(ValueError, match="drop_ndvi"):
        TillageRules(drop_ndvi=0.8, peak_ndvi=0.6)


def test_rules_separate_practices() -> None:
    series, truth = synthetic(120, seed=1)
    table = classify_rules(series)
    assert list(table.columns) == ["parcel_id", "practice", "p_conventional", "status"]
    assert (table["status"] == "ok").all()
    scores = tillage_scores(table, truth)
    assert scores["f1"] > 0.95
    assert scores["auc"] > 0.95


def test_statuses() -> None:
    series, _ = synthetic(4, seed=2)
    crop = series.crop_class.copy()
    crop[0] = GRASSLAND
    data = {f: v.copy() for f, v in series.data.items()}
    for v in data.values():
        v[1] = np.nan
    odd = SeasonSeries(series.parcel_ids, series.days, data, series.counts, crop, series.area_ha)
    table = classify_rules(odd)
    assert table["status"].tolist() == ["not_arable", "insufficient_data", "ok", "ok"]
    assert table["practice"][:2].isna().all()
    assert table["p_conventional"][:2].isna().all()


@pytest.fixture(scope="module")
def model() -> TillageModel:
    train, train_truth = synthetic(240, seed=3)
    return TillageModel.train(train, train_truth, seed=0)


def test_model_learns_and_round_trips(model: TillageModel, tmp_path: Path) -> None:
    test, test_truth = synthetic(100, seed=4)
    table = model.classify(test)
    assert tillage_scores(table, test_truth)["f1"] > 0.9
    model.save(tmp_path / "tillage")
    assert sorted(p.name for p in (tmp_path / "tillage").iterdir()) == ["lightgbm.txt", "model.json"]
    again = TillageModel.load(tmp_path / "tillage").classify(test)
    pd.testing.assert_frame_equal(table, again)


def test_model_statuses_and_s1_only(model: TillageModel) -> None:
    """No observation at all: insufficient data; S1 only: the model still answers (rules cannot)."""
    series, _ = synthetic(3, seed=7)
    data = {f: v.copy() for f, v in series.data.items()}
    for f, v in data.items():
        v[0] = np.nan
        if f not in S1_FEATURES:
            v[1] = np.nan
    odd = SeasonSeries(series.parcel_ids, series.days, data, series.counts, series.crop_class, series.area_ha)
    assert model.classify(odd)["status"].tolist() == ["insufficient_data", "ok", "ok"]
    assert classify_rules(odd)["status"].tolist() == ["insufficient_data", "insufficient_data", "ok"]


def test_evaluate_reports_both() -> None:
    train, train_truth = synthetic(200, seed=5)
    test, test_truth = synthetic(80, seed=6)
    out = evaluate(train, train_truth, test, test_truth)
    for key in ("baseline_f1", "learned_f1", "learned_auc", "baseline_f1_macro", "selected"):
        assert np.isfinite(out[key])
    assert out["learned_f1"] > 0.85
