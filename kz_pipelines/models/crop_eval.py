"""`kz eval croptype`: our crop type model against the baselines users would pick, on real parcels.

Real data (``../shared/data/worldcereal_lpis``, the two French LPIS sets): each table becomes a parcel
tensor (:func:`kz_pipelines.worldcereal.load_worldcereal`), then the same features as `crop_type_model`
(:func:`kz_pipelines.models.features.parcel_features`, periods of the table's own step: 10 days for the
dekad set, 30 for the monthly one). Parcels whose ``ewoc_code`` maps to a class of the taxonomy are
scored. Stratified 5-fold cross-validation through the splitter (:func:`kz_pipelines.splits.kfold`); in
each fold, on the same features:

- **ours**: `train_crop_model` (balanced LightGBM and the dense network, selected on an inner validation
  split of the training folds cut by the splitter);
- **random forest** (Sen4CAP's choice): scikit-learn, 500 trees, missing values handled natively;
- **plain LightGBM**: default multiclass settings, no balancing, no early stopping.

Weighted and macro F1 over the pooled out-of-fold predictions. Target (issue: crop type): ours >= the best
baseline on each set, for macro and for weighted F1.

Simulated region, held-out seed: the whole pipeline (`kz_pipelines.defs.demo.heldout_runs`: cloud-mask model,
parcels, observations, season tensors, `crop_type_model` with its own trusted-label validation and test)
runs on a region simulated with seed 1; the model it trained then scores every parcel of a region simulated
with the held-out seed (`HELDOUT_SEEDS`, seed 4: same tiles, other parcels, crops, weather and clouds)
through the same pipeline up to the tensors, against its true crop classes. Target: macro-F1 >= 0.90.
The full run simulates two tiles of 11 km with 6000 parcels each (every class with test parcels);
``quick`` one small tile over three weeks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import xarray as xr
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.labels import load_taxonomy
from kz_pipelines.models.crop_type import (
    CropTypeConfig,
    load_crop_model,
    score_tensor,
    scores,
    train_crop_model,
)
from kz_pipelines.models.features import parcel_features
from kz_pipelines.plots import confusion_png
from kz_pipelines.splits import SplitSpec, kfold, split
from kz_pipelines.worldcereal import load_worldcereal

__all__ = ["REAL_SETS", "SIM_TARGET", "run", "simulated_heldout"]

REAL_SETS = {"fra_2023_dekad": 10, "fra_2022_month": 30}
"""The real tables scored, with their composite period (days)."""

SIM_TARGET = 0.90
"""Macro-F1 on the simulated region's held-out seed."""

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _models(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    names: tuple[str, ...],
    seed: int,
    quick: bool,
) -> dict[str, np.ndarray]:
    """Predictions on ``test`` of ours and the two baselines, each trained on ``train``."""
    inner = split(y[train], [SplitSpec("validation", 0.15), SplitSpec("train", 0.85)], seed=seed)
    cfg = CropTypeConfig(seed=seed, lgb_rounds=100 if quick else 600, mlp_epochs=10 if quick else 150)
    inner_train, inner_val = train[inner.indices("train")], train[inner.indices("validation")]
    ours, _ = train_crop_model(x, y, inner_train, inner_val, inner_val, names, cfg)
    forest = RandomForestClassifier(n_estimators=100 if quick else 500, n_jobs=-1, random_state=seed)
    forest.fit(x[train], y[train])
    plain = lgb.LGBMClassifier(n_estimators=50 if quick else 100, random_state=seed, verbose=-1)
    plain.fit(x[train], y[train])
    return {
        "ours": ours.predict(x[test]),
        "random_forest": forest.predict(x[test]),
        "lightgbm_plain": np.asarray(plain.predict(x[test])),
    }


def run(
    shared_data: Path | None = None,
    log: Callable[[str], Any] = print,
    quick: bool = False,
    folds: int = 5,
    work: Path | None = None,
    reuse: bool = False,
) -> BenchResult:
    """Run the evaluation (see the module docstring); ``quick``: fewer trees and epochs and a small simulated
    region (a smoke run); ``work``: where the simulated held-out evaluation runs (None: not run);
    ``reuse``: keep its complete pipeline runs from an earlier call."""
    shared = Path(shared_data) if shared_data is not None else SHARED_DATA
    figures: dict[str, float | int | str] = {"folds": folds, "quick": int(quick)}
    targets: dict[str, Target] = {}
    t_start = time.perf_counter()
    for name, period in REAL_SETS.items():
        path = shared / "worldcereal_lpis" / f"{name}.parquet"
        if not path.is_file():
            figures[f"{name}"] = f"not measured: {path} not found"
            continue
        ds = load_worldcereal(path)
        features = parcel_features(ds, period_days=period)
        y_all = ds["crop_class"].to_numpy().astype(np.int64)
        keep = y_all > 0
        x, y = features.x[keep], y_all[keep]
        log(
            f"{name}: {len(y)} parcels in {len(np.unique(y))} classes, {x.shape[1]} features, {folds}-fold CV"
        )
        predicted: dict[str, np.ndarray] = {}
        for i, (train, test) in enumerate(kfold(y, folds, seed=0)):
            log(f"  fold {i + 1}/{folds}")
            for model, pred in _models(x, y, train, test, features.names, i, quick).items():
                predicted.setdefault(model, np.zeros_like(y))[test] = pred
        figures[f"{name}_parcels"] = int(len(y))
        figures[f"{name}_classes"] = int(len(np.unique(y)))
        best: dict[str, float] = {"macro": 0.0, "weighted": 0.0}
        ours: dict[str, float] = {}
        for model, pred in predicted.items():
            for avg in ("macro", "weighted"):
                f1 = float(f1_score(y, pred, average=avg, zero_division=0))
                figures[f"{name}_{model}_{avg}_f1"] = round(f1, 4)
                if model == "ours":
                    ours[avg] = f1
                else:
                    best[avg] = max(best[avg], f1)
        for avg in ("macro", "weighted"):
            targets[f"{name}_ours_minus_best_baseline_{avg}_f1"] = Target(ours[avg] - best[avg], ">=", 0.0)
    if work is not None:
        sim = simulated_heldout(work, log, quick, reuse)
        figures.update({f"sim_{k}": v for k, v in sim.items()})
        targets["sim_heldout_macro_f1"] = Target(float(sim["heldout_macro_f1"]), ">=", SIM_TARGET)
    else:
        figures["sim_heldout"] = "not measured: no work folder given"
        targets["sim_heldout_macro_f1"] = Target(None, ">=", SIM_TARGET)
    figures["seconds"] = round(time.perf_counter() - t_start, 1)
    return BenchResult(name="croptype", figures=figures, targets=targets)


def simulated_heldout(
    work: Path, log: Callable[[str], Any] = print, quick: bool = False, reuse: bool = False
) -> dict[str, Any]:
    """Train through the pipeline on one simulated seed, score another (see the module docstring).

    The runs are `kz_pipelines.defs.demo.heldout_runs` (``reuse``: keep complete runs of an earlier call).
    Writes the held-out confusion matrix to ``work/heldout_confusion.png``.

    Returns:
        Figures: parcels, classes, macro and weighted F1 on the held-out seed, recall per class, the training
        seed's own test macro-F1 (from its model card), pipeline seconds.
    """
    from kz_pipelines.defs.demo import HELDOUT_SEEDS, heldout_runs  # the Dagster pipeline, only for this part

    work = Path(work).resolve()
    t0 = time.perf_counter()
    runs = heldout_runs(work, quick=quick, reuse=reuse, log=log)
    pipeline_s = time.perf_counter() - t0
    train_seed, test_seed = HELDOUT_SEEDS
    regions = {seed: run.region for seed, run in runs.items()}
    storages = {seed: run.storage for seed, run in runs.items()}
    season = json.loads((regions[test_seed] / "region.json").read_text())["config"]["start"][:4]
    pointer = storages[train_seed] / "models" / "crop_type" / season / "current.json"
    model = load_crop_model(pointer.parent / json.loads(pointer.read_text())["folder"])
    tensors = sorted((storages[test_seed] / "timeseries" / season).glob("*.zarr"))
    ds = xr.concat([xr.open_zarr(p) for p in tensors], dim="parcel", coords="minimal", compat="override")
    parcel_ids, proba = score_tensor(model, ds.load())
    truth = pd.read_parquet(
        regions[test_seed] / "truth" / "parcels.parquet", columns=["parcel_id", "crop_class"]
    )
    y_true = truth.set_index("parcel_id")["crop_class"].reindex(parcel_ids).to_numpy().astype(np.int64)
    y_pred = np.asarray(model.classes, np.int64)[proba.argmax(axis=1)]
    present = tuple(int(c) for c in np.unique(y_true))
    result = scores(y_true, y_pred, present)
    names = [load_taxonomy().by_id(c).name for c in present]
    title = f"held-out seed {test_seed} ({len(y_true)} parcels)"
    png = confusion_png(np.array(result["confusion_normalized"]), names, title)
    (work / "heldout_confusion.png").write_bytes(png)
    recall = {load_taxonomy().by_id(int(c)).name: round(r, 3) for c, r in result["recall"].items()}
    return {
        "train_parcels": int(model.card["data"].get("parcels", 0)),
        "heldout_parcels": len(y_true),
        "heldout_parcels_dropped": int(len(truth) - len(y_true)),
        "heldout_classes": len(present),
        "heldout_macro_f1": round(result["macro_f1"], 4),
        "heldout_weighted_f1": round(result["weighted_f1"], 4),
        "heldout_recall_per_class": json.dumps(recall),
        "train_seed_test_macro_f1": round(model.card["test"]["macro_f1"], 4),
        "selected_model": str(model.card["selected"]),
        "confusion_png": str(work / "heldout_confusion.png"),
        "pipeline_s": round(pipeline_s, 1),
    }
