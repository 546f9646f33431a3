"""`kz bench croptype`: training time and scoring throughput of the crop type model at national scale.

A synthetic season: ``n_parcels`` parcels x ``dates`` regular dates x ``n_features`` features, 28 classes with
the taxonomy's (Estonian-like) frequencies; each class has its own seasonal profile per feature (a
Gaussian bump at a class-specific date and height) plus parcel-level noise, so the model has something to
learn and early stopping behaves as on real data. The features are built as for real tensors
(:func:`kz_pipelines.models.features.series_features`: the series plus temporal summaries).

Timed, in one process on this machine:

- building the feature matrix;
- training LightGBM as `crop_type_model` does (balanced: at most ``cap`` parcels per class, noisy
  oversampling of small classes; early stopping on a validation split; all cores);
- training the dense and the temporal network on the same data (on CUDA where torch sees a GPU, else on
  the CPU), and forming their ensemble with LightGBM (the models close to the best on validation);
- scoring every parcel with each trained model (parcels per second).

Targets (issue: crop type): LightGBM training <= 10 minutes on 2 cores; scoring >= 100,000 parcels/s with
the model selected on validation (the one `crop_type_predictions` uses).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.devices import resolve_device
from kz_pipelines.labels import load_taxonomy
from kz_pipelines.models.crop_type import CropTypeConfig, scores, train_crop_model
from kz_pipelines.models.features import series_features
from kz_pipelines.splits import SplitSpec, split

__all__ = ["run", "synthetic_season"]

TRAIN_TARGET_S = 600.0
SCORE_TARGET = 100_000.0
MLP_EPOCHS = 20
"""The network's epochs here (its speed per epoch is the figure; the model's default is up to 150)."""


def synthetic_season(
    n_parcels: int, dates: int, n_features: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(parcels, dates, features) float32 series and the class of each parcel (taxonomy frequencies)."""
    rng = np.random.default_rng(seed)
    tax = load_taxonomy()
    ids = np.array([c.id for c in tax.classes])
    freq = np.array([c.frequency for c in tax.classes])
    y = rng.choice(ids, n_parcels, p=freq / freq.sum())
    t = np.linspace(0, 1, dates, dtype=np.float32)
    peak = rng.uniform(0.1, 0.9, (len(ids) + 1, n_features)).astype(np.float32)
    height = rng.uniform(0.2, 1.0, (len(ids) + 1, n_features)).astype(np.float32)
    series = np.empty((n_parcels, dates, n_features), np.float32)
    for start in range(0, n_parcels, 20_000):  # in blocks: bounded temporary memory
        yb = y[start : start + 20_000]
        shift = rng.normal(0, 0.04, (len(yb), 1, 1)).astype(np.float32)  # the parcel's own timing
        bump = np.exp(-((t[None, :, None] - peak[yb][:, None, :] - shift) ** 2) / 0.01)
        noise = rng.normal(0, 0.15, (len(yb), dates, n_features)).astype(np.float32)
        series[start : start + len(yb)] = height[yb][:, None, :] * bump + noise
    return series, y


def run(
    n_parcels: int = 200_000,
    dates: int = 40,
    n_features: int = 30,
    log: Callable[[str], Any] = print,
) -> BenchResult:
    """Run the benchmark (see the module docstring)."""
    log(f"synthetic season: {n_parcels} parcels x {dates} dates x {n_features} features")
    series, y = synthetic_season(n_parcels, dates, n_features)
    t0 = time.perf_counter()
    x, names = series_features(series, [f"f{i:02d}" for i in range(n_features)])
    features_s = time.perf_counter() - t0
    del series
    parts = split(y, [SplitSpec("test", 0.1), SplitSpec("validation", 0.1), SplitSpec("train", 0.8)], seed=0)
    train, val, test = parts.indices("train"), parts.indices("validation"), parts.indices("test")
    log("training LightGBM and the network")
    cfg = CropTypeConfig(mlp_epochs=MLP_EPOCHS)
    best, models = train_crop_model(x, y, train, val, test, names, cfg)
    seconds = best.card["training_seconds"]
    rate: dict[str, float] = {}
    for kind, model in models.items():
        log(f"scoring every parcel with {kind}")
        t0 = time.perf_counter()
        model.predict_proba(x)
        rate[kind] = n_parcels / (time.perf_counter() - t0)
    lgbm = models["lightgbm"]
    test_scores = {k: scores(y[test], m.predict(x[test]), lgbm.classes) for k, m in models.items()}
    figures: dict[str, float | int | str] = {
        "parcels": n_parcels,
        "dates": dates,
        "features": n_features,
        "columns": x.shape[1],
        "classes": len(lgbm.classes),
        "feature_build_s": round(features_s, 1),
        "lightgbm_rounds": int(lgbm.booster.best_iteration) if lgbm.booster is not None else 0,
        "network_device": str(resolve_device(cfg.device)),
        "network_epochs_max": MLP_EPOCHS,
        "selected_on_validation": best.kind,
    }
    for kind in models:
        if kind in seconds:  # an ensemble trains nothing of its own
            figures[f"{kind}_train_s"] = round(seconds[kind], 1)
        figures[f"{kind}_parcels_per_s"] = round(rate[kind])
        figures[f"{kind}_test_macro_f1"] = round(test_scores[kind]["macro_f1"], 4)
    if "ensemble" in models:
        figures["ensemble_members"] = "+".join(m.kind for m in models["ensemble"].members)
    targets = {
        "lightgbm_train_s": Target(seconds["lightgbm"], "<=", TRAIN_TARGET_S),
        # the model crop_type_predictions would score with: the one selected on validation
        "score_parcels_per_s": Target(rate[best.kind], ">=", SCORE_TARGET),
    }
    return BenchResult(name="croptype", figures=figures, targets=targets)
