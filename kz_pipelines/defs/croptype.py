"""Crop type assets: the model of a season, trained on every tile's tensor, and its predictions per tile."""

import functools
import time

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from kz_pipelines.defs.checks import contract_check, keeps_contract
from kz_pipelines.defs.conditions import season_daily
from kz_pipelines.defs.metadata import image_md, md_table
from kz_pipelines.defs.parcels import declared_parcels, parcel_timeseries, season_tensor
from kz_pipelines.defs.partitions import SEASON_DIMENSION, SEASON_PARTITIONS, SEASON_TILE, TILE_PARTITIONS
from kz_pipelines.defs.resources import ParcelSourceResource, StorageResource
from kz_pipelines.labels import best_labels, declared_labels, load_taxonomy
from kz_pipelines.models.features import MIN_CLEAR_FRACTION, parcel_features
from kz_pipelines.plots import bars_png, category_colours, confusion_png, map_png
from kz_pipelines.splits import SplitSpec, split
from kz_pipelines.storage import atomic_path

OOF_FILE = "oof.parquet"
"""The labelled parcels' out-of-fold class probabilities, in the model folder (columns ``c<class id>``)."""

_crop_asset = functools.partial(dg.asset, group_name="crop_type", owners=["team:models"])
"""The crop type assets: in the crop_type group."""


class CropTypeModelConfig(dg.Config):
    """How the crop type model is trained."""

    period_days: int = 10
    """Composite period of the features, days."""
    min_clear_fraction: float = MIN_CLEAR_FRACTION
    """S2 dates with fewer clear pixels than this fraction of the parcel's best date are left out."""
    anomalies: bool = True
    """Also each feature less the region's median parcel in the same period (robust to the year's
    weather; see kz_pipelines.models.features)."""
    test_ratio: float = 0.1
    validation_ratio: float = 0.1
    """Of all labelled parcels; both take trusted labels only (inspectors check about 20% of parcels)."""
    trusted_confidence: float = 0.9
    """Validation and test take only labels at least this trusted (inspector reports, drones)."""
    models: list[str] = ["lightgbm", "mlp", "tcnn"]
    ensemble: bool = True
    """The mean of the models' probabilities is a candidate too."""
    lgb_rounds: int = 600
    mlp_epochs: int = 150
    shift_periods: int = 1
    """The networks train on series moved in time by up to this many composite periods (0: off)."""
    seed: int = 0
    oof_folds: int = 5
    """The disagreement flags of the labelled parcels come from models trained on the other folds (a
    parcel's own declaration cannot vouch for itself); 0: from the final model (in-sample)."""


def _labels(parcel_source: ParcelSourceResource, storage: StorageResource, season: int) -> pd.DataFrame:
    """The most trusted label per parcel: declarations, and the extra label table when configured."""
    parcels = pd.read_parquet(declared_parcels(storage, season), columns=["parcel_id", "crop_class"])
    tables = [declared_labels(parcels)]
    if parcel_source.extra_labels():
        tables.append(pd.read_parquet(parcel_source.extra_labels()))
    return best_labels(*tables)


def _class_names(classes: list[int]) -> list[str]:
    tax = load_taxonomy()
    return [tax.by_id(c).name for c in classes]


@_crop_asset(
    check_specs=contract_check("crop_type_model"),
    partitions_def=SEASON_PARTITIONS,
    kinds={"lightgbm", "pytorch"},
    code_version="1",
    deps=[dg.AssetDep(parcel_timeseries, partition_mapping=SEASON_DIMENSION)],
    description=(
        "The season's crop type model (28 classes): LightGBM, the dense and the temporal network, and their "
        "mean, on composited, gap-filled series (mostly clouded dates left out), their anomalies against the "
        "region's median parcel, and temporal summaries of every tile's parcel tensor, balanced classes; "
        "validation and test only from trusted labels (inspector reports); of the candidates within 0.005 "
        "of the best validation macro-F1, the cheapest to score kept. Card: macro and weighted F1 on "
        "test, recall per class, confusion matrix, feature importance."
    ),
)
@keeps_contract
def crop_type_model(
    context: dg.AssetExecutionContext,
    config: CropTypeModelConfig,
    parcel_source: ParcelSourceResource,
    storage: StorageResource,
) -> dg.MaterializeResult:
    # LightGBM, scikit-learn and torch load with the step that uses them, not with the code location
    from kz_pipelines.models.crop_type import (
        CropTypeConfig,
        out_of_fold_proba,
        save_crop_model,
        train_crop_model,
    )

    season = int(context.partition_key)
    tiles = context.instance.get_dynamic_partitions(TILE_PARTITIONS.name or "tile")
    ds = season_tensor(storage, season, tiles).load()
    features = parcel_features(
        ds, config.period_days, min_clear_fraction=config.min_clear_fraction, anomalies=config.anomalies
    )
    labels = _labels(parcel_source, storage, season).set_index("parcel_id").reindex(features.parcel_ids)
    known = labels["crop_class"].notna().to_numpy()
    x, y = features.x[known], labels["crop_class"].to_numpy()[known].astype(np.int64)
    trusted = (labels["confidence"].to_numpy()[known] >= config.trusted_confidence).astype(bool)
    if trusted.sum() < 10:
        context.log.warning(f"only {int(trusted.sum())} trusted labels: validation and test use declarations")
        trusted[:] = True
    specs = [
        SplitSpec("test", config.test_ratio, eligible=trusted),
        SplitSpec("validation", config.validation_ratio, eligible=trusted),
        SplitSpec("train", 1 - config.test_ratio - config.validation_ratio),
    ]
    parts = split(y, specs, seed=config.seed)
    cfg = CropTypeConfig(
        lgb_rounds=config.lgb_rounds,
        mlp_epochs=config.mlp_epochs,
        shift_periods=config.shift_periods,
        models=tuple(config.models),
        seed=config.seed,
        ensemble=config.ensemble,
    )
    t0 = time.perf_counter()
    best, _ = train_crop_model(
        x,
        y,
        parts.indices("train"),
        parts.indices("validation"),
        parts.indices("test"),
        features.names,
        cfg,
        data={"season": season, "tiles": sorted(tiles), "parcels": int(known.sum())},
    )
    best.card["period_days"] = config.period_days
    best.card["feature_period"] = [features.start, features.end]
    best.card["min_clear_fraction"] = config.min_clear_fraction
    best.card["anomalies"] = config.anomalies
    folder_parts = ("models", "crop_type", str(season), time.strftime("%Y%m%dT%H%M%S"))
    folder = storage.path(*folder_parts)
    save_crop_model(folder, best)
    oof_note = "off (oof_folds: 0)"
    if config.oof_folds:
        t_oof = time.perf_counter()
        try:
            oof_classes, oof = out_of_fold_proba(
                x, y, np.arange(len(y)), features.names, best.kind, cfg, config.oof_folds
            )
        except ValueError as exc:  # a season too small to split: flags from the final model
            oof_note = str(exc)
            context.log.warning(f"disagreement flags in-sample: {exc}")
        else:
            oof_table = pd.DataFrame(oof, columns=[f"c{c}" for c in oof_classes])
            oof_table.insert(0, "parcel_id", np.asarray(features.parcel_ids)[known])
            with atomic_path(folder / OOF_FILE) as tmp:
                oof_table.to_parquet(tmp)
            oof_note = f"{config.oof_folds} folds, {time.perf_counter() - t_oof:.1f} s"
    model_url = storage.save_pointer(("models", "crop_type", str(season), "current.json"), folder_parts)
    card = best.card
    names = _class_names(list(best.classes))
    test = card["test"]
    report = parts.report()
    return dg.MaterializeResult(
        metadata={
            "selected": card["selected"],
            "test_macro_f1": round(test["macro_f1"], 4),
            "test_weighted_f1": round(test["weighted_f1"], 4),
            "validation": dg.MetadataValue.json(card["validation"]),
            "recall_per_class": dg.MetadataValue.json(
                {load_taxonomy().by_id(int(c)).name: round(r, 3) for c, r in test["recall"].items()}
            ),
            "confusion_matrix": image_md(
                confusion_png(np.array(test["confusion_normalized"]), names, f"test ({test['n']} parcels)"),
                "confusion matrix",
            ),
            **(
                {
                    "feature_importance": image_md(
                        bars_png(dict(list(card["feature_importance"].items())[:20]), "LightGBM", "gain"),
                        "feature importance",
                    )
                }
                if "feature_importance" in card
                else {}
            ),
            "split": dg.MetadataValue.md(md_table(report.reset_index())),
            "training_seconds": dg.MetadataValue.json(card["training_seconds"]),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "out_of_fold_flags": oof_note,
            "model": dg.MetadataValue.path(model_url),
        }
    )


@_crop_asset(
    check_specs=contract_check("crop_type_predictions"),
    partitions_def=SEASON_TILE,
    kinds={"parquet"},
    code_version="1",
    deps=[parcel_timeseries, dg.AssetDep(crop_type_model, partition_mapping=SEASON_DIMENSION)],
    automation_condition=season_daily("crop_type_model"),
    description=(
        "Per parcel of the tile: the predicted crop class, the probability of every class, the declared "
        "class, and `disagrees`: the prediction contradicts the declaration with high confidence "
        "(predicted class probability >= 0.8, declared class <= 0.1): the list a paying agency inspects. "
        "For the parcels the model learned from, the flag uses the out-of-fold probabilities "
        "(`flagged_out_of_fold`): a model trained on a wrong declaration would not contradict it."
    ),
)
@keeps_contract
def crop_type_predictions(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    from kz_pipelines.models.crop_type import disagreements, load_crop_model, score_tensor

    keys = context.partition_key.keys_by_dimension
    season, tile = int(keys["season"]), keys["tile"]
    folder = storage.pointed_folder(
        "models",
        "crop_type",
        str(season),
        "current.json",
        missing=f"no crop type model for season {season}: materialize crop_type_model first",
    )
    model = load_crop_model(folder)
    ds = xr.open_zarr(storage.fetch("timeseries", str(season), f"{tile}.zarr")).load()
    parcel_ids, proba = score_tensor(model, ds)
    classes = np.asarray(model.classes)
    declared = ds["crop_class"].to_numpy().astype(np.int64)
    flags = disagreements(proba, model.classes, declared)
    oof_path = folder / OOF_FILE
    out_of_fold = np.zeros(len(flags), bool)
    if oof_path.is_file():  # the labelled parcels: checked against models that never saw their label
        oof = pd.read_parquet(oof_path).set_index("parcel_id").reindex([str(p) for p in parcel_ids])
        out_of_fold = oof.notna().all(axis=1).to_numpy()
        oof_classes = tuple(int(c[1:]) for c in oof.columns)
        oof_flags = disagreements(oof.fillna(0.0).to_numpy(np.float32), oof_classes, declared)
        flags = np.where(out_of_fold, oof_flags, flags)
    names = _class_names(list(model.classes))
    table = pd.DataFrame(
        {
            "parcel_id": parcel_ids,
            "declared_class": declared,
            "predicted_class": classes[proba.argmax(axis=1)],
            "probability": proba.max(axis=1),
            "disagrees": flags,
            "flagged_out_of_fold": out_of_fold,
        }
    )
    for j, name in enumerate(names):
        table[f"p_{name}"] = proba[:, j]
    path = storage.path("crop_type", str(season), f"{tile}.parquet")
    with atomic_path(path) as tmp:
        table.to_parquet(tmp)
    agree = float((table["predicted_class"] == table["declared_class"]).mean())
    geoms = gpd.read_parquet(declared_parcels(storage, season), columns=["parcel_id", "geometry"])
    shown = geoms.merge(table[["parcel_id", "predicted_class", "disagrees"]], on="parcel_id")
    shown["class"] = [load_taxonomy().by_id(int(c)).name for c in shown["predicted_class"]]
    crop_map = map_png(
        shown,
        "class",
        category_colours(sorted(set(shown["class"]))),
        f"predicted crop type ({tile})",
        overlay=shown.loc[shown["disagrees"]],
        overlay_label="disagrees with the declaration",
    )
    to_inspect = table.loc[flags, ["parcel_id", "declared_class", "predicted_class", "probability"]].head(50)
    return dg.MaterializeResult(
        metadata={
            "parcels": len(table),
            "agrees_with_declaration": round(agree, 4),
            "disagreements": int(flags.sum()),
            "to_inspect": dg.MetadataValue.md(md_table(to_inspect) if len(to_inspect) else "none"),
            "map": image_md(crop_map, "crop type map"),
            "model": model.card.get("selected", model.kind),
            "path": dg.MetadataValue.path(storage.url_of(path)),
        }
    )
