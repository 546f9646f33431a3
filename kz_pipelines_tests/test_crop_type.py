"""Crop type: features from the tensor, balancing, both models trained and selected, safe saving, and the
disagreement list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from kz_pipelines.models.crop_type import (
    SCORING_COST,
    CropTypeConfig,
    balance,
    disagreements,
    load_crop_model,
    out_of_fold_proba,
    save_crop_model,
    train_crop_model,
)
from kz_pipelines.models.crop_type import _time_shift as time_shift
from kz_pipelines.models.features import composites, fill_gaps, parcel_features
from kz_pipelines.splits import SplitSpec, split
from kz_pipelines.timeseries import TENSOR_FEATURES
from kz_pipelines.zonal import STATS


@settings(max_examples=50, deadline=None)
@given(
    slope=st.floats(-2, 2),
    offset=st.floats(-5, 5),
    mask=st.lists(st.booleans(), min_size=8, max_size=30),
)
def test_fill_gaps_is_exact_on_lines_and_nearest_at_the_ends(
    slope: float, offset: float, mask: list[bool]
) -> None:
    t = np.arange(len(mask), dtype=np.float64)
    line = offset + slope * t
    gappy = np.where(mask, line, np.nan)[None, :]
    filled = fill_gaps(gappy)[0]
    if not any(mask):
        assert np.isnan(filled).all()
        return
    first, last = mask.index(True), len(mask) - 1 - mask[::-1].index(True)
    np.testing.assert_allclose(filled[first : last + 1], line[first : last + 1], atol=1e-9)
    assert (filled[:first] == line[first]).all()
    assert (filled[last + 1 :] == line[last]).all()


def _tensor(values: np.ndarray, days: list[str]) -> xr.Dataset:
    """A tensor of one feature (NDVI, as the median) for parcels x days."""
    obs = np.full((values.shape[0], len(days), len(TENSOR_FEATURES), len(STATS)), np.nan, np.float32)
    obs[:, :, TENSOR_FEATURES.index("NDVI"), STATS.index("median")] = values
    return xr.Dataset(
        {"obs": (("parcel", "time", "feature", "stat"), obs)},
        coords={
            "parcel": [f"p{i}" for i in range(values.shape[0])],
            "time": pd.to_datetime(days),
            "feature": list(TENSOR_FEATURES),
            "stat": list(STATS),
        },
    )


def test_composites_average_each_period_and_fill_the_gaps() -> None:
    days = ["2024-05-01", "2024-05-03", "2024-05-25", "2024-06-10"]
    ds = _tensor(np.array([[0.2, 0.4, 0.5, 0.9]]), days)
    series, periods = composites(ds, period_days=10, features=("NDVI", "VV_asc"))
    assert list(periods.strftime("%m-%d")) == ["05-01", "05-11", "05-21", "05-31", "06-10"]
    ndvi = series[0, :, 0]
    np.testing.assert_allclose(ndvi, [0.3, 0.4, 0.5, 0.7, 0.9], atol=1e-6)  # 05-11 and 05-31 interpolated
    assert np.isnan(series[0, :, 1]).all()  # never observed
    fs = parcel_features(ds, features=("NDVI",))
    cols = dict(zip(fs.names, fs.x[0], strict=True))
    assert cols["NDVI@p00"] == pytest.approx(0.3)
    assert cols["NDVI:max"] == pytest.approx(0.9)
    assert cols["NDVI:argmax"] == pytest.approx(1.0)


def test_composites_leave_out_mostly_masked_s2_dates() -> None:
    days = ["2024-05-01", "2024-05-04", "2024-05-07"]
    ds = _tensor(np.array([[0.2, 0.9, 0.4]]), days)
    ndvi, vv = TENSOR_FEATURES.index("NDVI"), TENSOR_FEATURES.index("VV_asc")
    count = STATS.index("count")
    obs = ds["obs"].to_numpy()
    obs[0, :, ndvi, count] = [100, 30, 80]  # 05-04: 30 clear pixels, under half of the best date's 100
    obs[0, :, vv, STATS.index("mean")] = [-12.0, -9.0, -12.0]
    series, _ = composites(ds, period_days=10, features=("NDVI", "VV_asc"), min_clear_fraction=0.5)
    assert series[0, 0, 0] == pytest.approx(0.3)  # (0.2 + 0.4) / 2: the hazy 0.9 left out
    assert series[0, 0, 1] == pytest.approx(-11.0)  # radar sees through clouds: every date kept
    kept, _ = composites(ds, period_days=10, features=("NDVI",), min_clear_fraction=0.0)
    assert kept[0, 0, 0] == pytest.approx(0.5)


def test_anomalies_are_blind_to_a_shift_of_the_whole_region() -> None:
    """A wet period raises every parcel's value alike: the raw series move, the anomalies do not."""
    rng = np.random.default_rng(4)
    days = [f"2024-05-{d:02d}" for d in range(1, 31, 3)]
    values = rng.uniform(0.1, 0.9, (25, len(days)))
    weather = np.linspace(0.0, 0.3, len(days))
    dry = parcel_features(_tensor(values, days), features=("NDVI",), anomalies=True)
    wet = parcel_features(_tensor(values + weather, days), features=("NDVI",), anomalies=True)
    assert dry.names == wet.names
    anom = [i for i, n in enumerate(dry.names) if n.startswith("NDVI_anom@")]
    raw = [i for i, n in enumerate(dry.names) if n.startswith("NDVI@")]
    assert len(anom) == len(raw) == 3  # three 10-day periods
    np.testing.assert_allclose(wet.x[:, anom], dry.x[:, anom], atol=1e-5)
    assert not np.allclose(wet.x[:, raw], dry.x[:, raw], atol=1e-2)
    # each period's anomaly is the parcel's value less the median parcel's
    series, _ = composites(_tensor(values, days), features=("NDVI",))
    expected = series[:, :, 0] - np.median(series[:, :, 0], axis=0)
    np.testing.assert_allclose(dry.x[:, anom], expected, atol=1e-6)
    plain = parcel_features(_tensor(values, days), features=("NDVI",), anomalies=False)
    assert not any("_anom" in n for n in plain.names)


def test_balance_caps_and_oversamples_with_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 3))
    y = np.array([1] * 100 + [2] * 25 + [3] * 5)
    xb, yb = balance(x, y, cap=40, min_count=20, noise=0.05, rng=rng)
    assert np.bincount(yb).tolist() == [0, 40, 25, 20]
    small = xb[yb == 3]
    assert len({tuple(r) for r in small.round(6)}) == 20  # the copies are not exact duplicates


def _separable(n_per_class: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes with distinct mean profiles over 12 periods plus noise (a crop-calendar caricature)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 12)
    xs, ys = [], []
    for c in range(classes):
        peak = 0.15 + 0.7 * c / max(1, classes - 1)
        profile = np.exp(-((t - peak) ** 2) / 0.02)
        xs.append(profile + rng.normal(0, 0.15, (n_per_class, 12)))
        ys += [c + 1] * n_per_class
    return np.concatenate(xs).astype(np.float32), np.array(ys)


def test_models_trained_selected_on_validation_and_scored_on_test(tmp_path: Path) -> None:
    x, y = _separable(60, 6, seed=1)
    x = np.column_stack([x, np.full(len(x), np.nan, np.float32)])  # a feature never observed (e.g. B8A)
    res = split(y, [SplitSpec("test", 0.2), SplitSpec("validation", 0.2), SplitSpec("train", 0.6)], seed=2)
    cfg = CropTypeConfig(
        lgb_rounds=150, mlp_epochs=60, min_count=10, threads=2, models=("lightgbm", "mlp", "tcnn")
    )
    # the columns as parcel_features lays them out: the series (12 periods of one feature), then a summary
    names = tuple(f"ndvi@p{p:02d}" for p in range(12)) + ("b8a:mean",)
    best, models = train_crop_model(
        x, y, res.indices("train"), res.indices("validation"), res.indices("test"), names, cfg
    )
    assert set(models) <= {"lightgbm", "mlp", "tcnn", "ensemble"}
    assert {"lightgbm", "mlp", "tcnn"} <= set(models)
    card_val = best.card["validation"]
    top = max(card_val[k]["macro_f1"] for k in ("lightgbm", "mlp", "tcnn"))
    close = {k for k in ("lightgbm", "mlp", "tcnn") if card_val[k]["macro_f1"] >= top - cfg.ensemble_margin}
    if len(close) > 1:  # the mean of the models close to the best
        ensemble = models["ensemble"]
        assert {m.kind for m in ensemble.members} == close
        mean = np.mean([models[k].predict_proba(x) for k in sorted(close)], axis=0)
        np.testing.assert_allclose(ensemble.predict_proba(x), mean, atol=1e-6)
    else:
        assert "ensemble" not in models
    card = best.card
    assert card["selected"] == best.kind
    # the cheapest to score of the candidates within the tolerance of the best on validation
    top = max(v["macro_f1"] for v in card["validation"].values())
    close_enough = [
        k
        for k in SCORING_COST
        if card["validation"].get(k, {}).get("macro_f1", -1) >= top - cfg.select_tolerance
    ]
    assert best.kind == close_enough[0]
    assert card["test"]["macro_f1"] > 0.9  # held-out samples of well separated classes
    assert card["test"]["n"] == len(res.indices("test"))
    assert set(card["test"]["recall"]) == {str(c) for c in range(1, 7)}
    assert np.allclose(np.sum(card["test"]["confusion_normalized"], axis=1), 1)
    for kind, model in models.items():  # safe formats, identical predictions after loading
        folder = tmp_path / kind
        save_crop_model(folder, model)
        assert not list(folder.glob("*.pkl"))
        back = load_crop_model(folder)
        np.testing.assert_allclose(back.predict_proba(x), model.predict_proba(x), atol=1e-6)
    # a temporal network saved when its convolutions were Conv1d (3D weights) loads to the same model
    weights = load_file(str(tmp_path / "tcnn" / "net.safetensors"))
    save_file(
        {k: v[:, :, 0, :] if v.dim() == 4 else v for k, v in weights.items()},
        str(tmp_path / "tcnn" / "net.safetensors"),
    )
    old = load_crop_model(tmp_path / "tcnn")
    np.testing.assert_allclose(old.predict_proba(x), models["tcnn"].predict_proba(x), atol=1e-6)


def test_dense_scoring_is_the_network_with_its_normalization_folded_in() -> None:
    x, y = _separable(40, 4, seed=5)
    x[::7, 3] = np.nan  # missing values score as the training mean
    res = split(y, [SplitSpec("test", 0.2), SplitSpec("validation", 0.2), SplitSpec("train", 0.6)], seed=0)
    cfg = CropTypeConfig(mlp_epochs=5, min_count=10, models=("mlp",), ensemble=False)
    names = tuple(f"ndvi@p{p:02d}" for p in range(12))
    best, _ = train_crop_model(
        x, y, res.indices("train"), res.indices("validation"), res.indices("test"), names, cfg
    )
    assert best.net is not None
    assert best.mean is not None
    assert best.std is not None
    z = np.nan_to_num((x - best.mean) / best.std, nan=0.0)
    best.net.eval()
    with torch.no_grad():
        direct = torch.softmax(best.net(torch.from_numpy(z.astype(np.float32))), dim=1).numpy()
    np.testing.assert_allclose(best.predict_proba(x), direct, atol=1e-5)


def test_time_shift_moves_the_series_and_the_peak_positions() -> None:
    # 4 periods x 2 features, then one summary column that moves (an argmax) and one that does not
    z = torch.arange(10, dtype=torch.float32).repeat(3, 1)
    step = torch.tensor([0.0] * 8 + [0.5, 0.0])
    moved = time_shift(z, torch.tensor([1, -1, 0]), periods=4, features=2, step=step)
    assert moved[0].tolist() == [0, 1, 0, 1, 2, 3, 4, 5, 8.5, 9]  # a period later, the first repeated
    assert moved[1].tolist() == [2, 3, 4, 5, 6, 7, 6, 7, 7.5, 9]  # a period earlier, the last repeated
    assert moved[2].tolist() == z[2].tolist()


def test_disagreements_need_confident_contradiction() -> None:
    proba = np.array([[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.85, 0.12, 0.03], [0.95, 0.03, 0.02]])
    classes = (1, 7, 24)
    declared = np.array([7, 7, 7, 99])  # 99: a class the model does not know
    flags = disagreements(proba, classes, declared)
    assert flags.tolist() == [True, False, False, True]


def test_out_of_fold_probabilities_do_not_vouch_for_a_wrong_label() -> None:
    x, y = _separable(100, 4, seed=3)
    wrong = np.array([5, 60, 305, 350])  # two parcels of class 1 declared as 4, two of class 4 as 1
    truth = y.copy()
    y = y.copy()
    y[wrong] = 5 - y[wrong]
    names = tuple(f"ndvi@p{p:02d}" for p in range(12))
    cfg = CropTypeConfig(lgb_rounds=300, min_count=10, threads=2, models=("lightgbm",))
    samples = np.arange(len(y))
    classes, oof = out_of_fold_proba(x, y, samples, names, "lightgbm", cfg, folds=5)
    assert classes == (1, 2, 3, 4)
    np.testing.assert_allclose(oof.sum(axis=1), 1, atol=1e-5)
    assert (np.asarray(classes)[oof[wrong].argmax(axis=1)] == truth[wrong]).all()  # never saw the label
    # a model trained on every declaration, the wrong ones included, vouches for them more
    every, _ = train_crop_model(x, y, samples, samples[::10], samples[::10], names, cfg)
    declared = [every.classes.index(int(c)) for c in y[wrong]]
    in_sample = every.predict_proba(x[wrong])[np.arange(len(wrong)), declared]
    assert (oof[wrong, declared] < in_sample).all()
    # an ensemble is scored out of fold by ensembles of its member kinds
    both = CropTypeConfig(lgb_rounds=100, mlp_epochs=15, min_count=10, threads=2, models=("lightgbm", "mlp"))
    _, mean_oof = out_of_fold_proba(x, y, samples, names, "ensemble", both, folds=2)
    np.testing.assert_allclose(mean_oof.sum(axis=1), 1, atol=1e-5)
    assert (np.asarray(classes)[mean_oof.argmax(axis=1)] == truth).mean() > 0.95
    # a fold forming no ensemble (no second model close enough to the best) is scored by its best model
    apart = replace(both, ensemble_margin=-1.0)
    _, fallback = out_of_fold_proba(x, y, samples, names, "ensemble", apart, folds=2)
    np.testing.assert_allclose(fallback.sum(axis=1), 1, atol=1e-5)
    assert (np.asarray(classes)[fallback.argmax(axis=1)] == truth).mean() > 0.95
    with pytest.raises(ValueError, match="at least 2 folds"):
        out_of_fold_proba(x, y, samples, names, "lightgbm", cfg, folds=1)
