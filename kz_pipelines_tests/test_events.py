"""The event products' shared core: series from the tensor, event matching and scores, S2 dropping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kz_pipelines.models.events import (
    Event,
    day_anomalies,
    day_anomaly,
    drop_s2_dates,
    event_scores,
    events_table,
    match_days,
    season_series,
)


def _tensor(n: int = 3, days: int = 10) -> xr.Dataset:
    rng = np.random.default_rng(0)
    features = ["NDVI", "VH_asc"]
    stats = ["mean", "median", "min", "max", "std", "count"]
    obs = rng.uniform(0.1, 0.9, (n, days, len(features), len(stats))).astype(np.float32)
    obs[:, ::2, 0, :] = np.nan  # S2 unseen every other day
    obs[:, :, :, -1] = np.where(np.isnan(obs[:, :, :, 0]), 0, 50)  # the count: 0 where nothing was seen
    return xr.Dataset(
        {"obs": (("parcel", "time", "feature", "stat"), obs)},
        coords={
            "parcel": [f"P{i}" for i in range(n)],
            "time": pd.date_range("2024-04-01", periods=days, freq="D"),
            "feature": features,
            "stat": stats,
            "crop_class": ("parcel", np.array([24, 7, 0], np.int16)[:n]),
            "area_ha": ("parcel", np.ones(n, np.float32)),
        },
    )


def test_series_take_the_median_for_s2_the_mean_for_s1_and_nan_where_unseen() -> None:
    ds = _tensor()
    s = season_series(ds, ["NDVI", "VH_asc"], "2024-04-02", "2024-04-09")
    assert len(s) == 3
    assert s.days[0] == pd.Timestamp("2024-04-02")
    assert s.data["NDVI"].shape == (3, 8)
    expected = ds["obs"].sel(feature="NDVI", stat="median", time=slice("2024-04-02", "2024-04-09")).to_numpy()
    np.testing.assert_array_equal(s.data["NDVI"], expected)  # NaN on the unseen days too
    mean = ds["obs"].sel(feature="VH_asc", stat="mean", time=slice("2024-04-02", "2024-04-09")).to_numpy()
    np.testing.assert_array_equal(s.data["VH_asc"], mean)
    assert (s.counts["NDVI"][:, 1::2] == 0).all()  # 2024-04-03, -05, ... are the unseen days
    assert s.day_index(pd.Timestamp("2024-04-05")) == 3
    assert list(s.subset(np.array([True, False, True])).parcel_ids) == ["P0", "P2"]
    with pytest.raises(KeyError, match="B8A"):
        season_series(ds, ["NDVI", "B8A"])


def test_dropping_s2_days_removes_whole_acquisitions_and_keeps_s1() -> None:
    s = season_series(_tensor(days=20), ["NDVI", "VH_asc"])
    dropped = drop_s2_dates(s, 0.5, seed=1)
    seen = (s.counts["NDVI"] > 0).any(axis=0)
    kept = (dropped.counts["NDVI"] > 0).any(axis=0)
    assert kept.sum() == seen.sum() - round(0.5 * seen.sum())
    assert ((dropped.counts["NDVI"] > 0) == kept[None, :]).all()  # every parcel loses the same days
    assert np.isnan(dropped.data["NDVI"][:, seen & ~kept]).all()
    np.testing.assert_array_equal(dropped.data["VH_asc"], s.data["VH_asc"])
    assert (s.counts["NDVI"] > 0).sum() == 3 * seen.sum()  # the original is untouched


def test_day_anomalies_remove_what_moves_every_parcel_and_keep_a_parcels_own_change() -> None:
    rng = np.random.default_rng(3)
    own = rng.normal(-15.0, 1.0, (9, 30)).astype(np.float32)
    own[4, 12:] += 3.0  # one parcel ploughed on day 12: its roughness jump
    rain = np.where(np.arange(30) % 7 == 3, 4.0, 0.0).astype(np.float32)  # rain wets every field at once
    seen = rng.random((9, 30)) < 0.6
    seen[:, 5] = False  # a day nobody was observed
    values = np.where(seen, own + rain, np.nan).astype(np.float32)
    anomaly = day_anomaly(values)
    np.testing.assert_allclose(anomaly, day_anomaly(np.where(seen, own, np.nan)), atol=1e-5)  # blind to rain
    assert np.isnan(anomaly[~seen]).all()
    assert np.isfinite(anomaly[seen]).all()
    median = np.nanmedian(values[:, 20])
    np.testing.assert_allclose(anomaly[:, 20], values[:, 20] - median, atol=1e-6)  # value minus the median
    after, before = (np.nanmean(anomaly[4, a:b]) for a, b in ((12, 30), (0, 12)))
    assert after - before > 2.0  # the ploughing stays
    s = season_series(_tensor(), ["NDVI", "VH_asc"])
    shifted = day_anomalies(s, ["VH_asc"])
    np.testing.assert_array_equal(shifted.data["VH_asc"], day_anomaly(s.data["VH_asc"]))
    np.testing.assert_array_equal(shifted.data["NDVI"], s.data["NDVI"])
    assert shifted.counts is s.counts


def test_matching_is_one_to_one_and_closest_first() -> None:
    assert match_days([10, 12], [11]) == [(10, 11)]  # a tie goes to the earlier prediction
    assert match_days([10, 30], [12, 20, 31]) == [(30, 31), (10, 12)]
    assert match_days([10], [17]) == []  # beyond 6 days
    assert match_days([10], [16]) == [(10, 16)]


def test_event_scores_pool_parcels() -> None:
    scores = event_scores({"a": [10, 20], "b": [5]}, {"a": [12, 40], "c": [3]})
    # a: 10-12 matched, 20 false, 40 missed; b: 5 false; c: 3 missed
    assert scores["n_matched"] == 1
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert scores["mae_days"] == 2
    assert event_scores({}, {})["f1"] == 1.0  # nothing to find, nothing found
    assert np.isnan(event_scores({"a": [1]}, {"a": [50]})["mae_days"])


def test_events_table_sorted() -> None:
    table = events_table(
        [
            Event("P2", "mowing", pd.Timestamp("2024-06-01").date(), 0.9),
            Event("P1", "harvest", pd.Timestamp("2024-08-01").date(), 0.7),
        ]
    )
    assert list(table.columns) == ["parcel_id", "event", "date", "confidence"]
    assert list(table["parcel_id"]) == ["P1", "P2"]
    assert table["date"].dtype.kind == "M"
