"""Cloud-mask assets: the model trained on labelled chips, and the mask of every Sentinel-2 scene."""

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from kz_pipelines.cloudmask.card import code_version, load_model, save_model
from kz_pipelines.cloudmask.chips import chips_from_region, load_chip
from kz_pipelines.cloudmask.net import model_spec
from kz_pipelines.defs.assets import s2_scenes
from kz_pipelines.defs.checks import contract_check, keeps_contract
from kz_pipelines.defs.conditions import GPU_RETRY
from kz_pipelines.defs.metadata import image_md
from kz_pipelines.defs.partitions import DAY_TILE
from kz_pipelines.defs.resources import StacResource, StorageResource, setting
from kz_pipelines.scenes import open_scenes, store_grid
from kz_pipelines.storage import write_bytes, write_cog

_POINTER = ("models", "cloud_mask", "current.json")
"""Names the newest model folder (written by `cloud_mask_model`)."""

GPU_TAGS: dict[str, Any] = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
        },
        "pod_spec_config": {
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
}
"""Kubernetes resources of the masking step (read by dagster-k8s): one GPU, a GPU node, its taint."""


class CloudMaskModelConfig(dg.Config):
    """How the cloud-mask model is trained."""

    region: str = ""
    """A simulated region with true masks to cut labelled chips from; empty: the `stac` catalog."""
    preset: str = "cpu"
    """Network: ``deeplabv3plus`` (GPU), ``cpu`` (light U-Net) or ``tiny``."""
    bands: str = "L2A"
    """Input bands: ``L2A`` (12, what `s2_scenes` stores), ``S6`` (6-band subset) or ``L1C`` (13)."""
    chip_size: int = 256
    max_scenes: int = 0
    """Cut chips from at most this many scenes (0: all)."""
    epochs: int = 30
    val_fraction: float = 0.25
    seed: int = 0


class CloudMaskResource(dg.ConfigurableResource):
    """Runs the cloud-mask model: where it is, on which device, how many sub-tiles per batch."""

    model_dir: str = ""
    """A saved model folder; empty: the one `cloud_mask_model` published under the storage root."""
    device: str = ""
    """``auto`` (CUDA when there is one), ``cuda`` or ``cpu``; empty: ``KZ_CLOUDMASK_DEVICE``, else auto."""
    batch_size: int = 0
    """512 x 512 sub-tiles per forward pass (halved on CUDA out-of-memory); 0: ``KZ_CLOUDMASK_BATCH``, else
    8."""

    def device_name(self) -> str:
        """The device setting."""
        return setting(self.device, "KZ_CLOUDMASK_DEVICE", "auto")

    def batch(self) -> int:
        """The batch size."""
        return self.batch_size or int(setting("", "KZ_CLOUDMASK_BATCH", "8"))

    def folder(self, storage: StorageResource) -> Path:
        """The model folder to use."""
        if self.model_dir:
            return Path(self.model_dir)
        return storage.pointed_folder(
            *_POINTER, missing="no cloud-mask model yet: materialize cloud_mask_model first"
        )


@dg.asset(
    check_specs=contract_check("cloud_mask_model"),
    group_name="cloud_mask",
    owners=["team:cloud-mask"],
    kinds={"pytorch", "safetensors"},
    code_version=code_version(),
    description=(
        "The cloud-mask network (KappaMask's 5 classes) trained on labelled 10 m chips cut from a simulated "
        "region's scenes and true masks; weights as safetensors with a JSON model card, one folder per "
        "training under models/cloud_mask/, the newest named by models/cloud_mask/current.json."
    ),
)
@keeps_contract
def cloud_mask_model(
    context: dg.AssetExecutionContext,
    config: CloudMaskModelConfig,
    stac: StacResource,
    storage: StorageResource,
) -> dg.MaterializeResult:
    # torch and matplotlib are imported by the steps that use them, not by the code location (see
    # kz_pipelines.cloudmask)
    from kz_pipelines.cloudmask.report import confusion_png, training_curve_png
    from kz_pipelines.cloudmask.train import TrainConfig, evaluate, split_by_source, train

    region = Path(config.region or stac.catalog)
    chips_dir = storage.path("cloud_mask", "chips", context.run.run_id)  # this run's, removed after training
    try:
        chips = chips_from_region(
            region,
            chips_dir,
            level="L2A",
            bands=config.bands,
            chip_size=config.chip_size,
            max_scenes=config.max_scenes or None,
        )
        train_chips, val_chips = split_by_source(chips, config.val_fraction, config.seed)
        context.log.info(
            f"training {config.preset} on {len(train_chips)} chips, validating on {len(val_chips)}"
        )
        result = train(
            model_spec(config.preset, config.bands),
            train_chips,
            val_chips,
            TrainConfig(epochs=config.epochs, seed=config.seed),
            data={"region": str(region), "chip_size": config.chip_size, "max_scenes": config.max_scenes},
        )
        val_set = [load_chip(p) for p in val_chips]
        cm, _ = evaluate(result.model, val_set, result.card.normalization, result.card.spec.bands)
    finally:
        shutil.rmtree(chips_dir, ignore_errors=True)
    folder = ("models", "cloud_mask", result.card.created.replace(":", ""))
    save_model(storage.path(*folder), result.model, result.card)
    model_url = storage.save_pointer(_POINTER, folder)
    dice = result.card.metrics["val_dice"]
    return dg.MaterializeResult(
        metadata={
            "validation_dice": dg.MetadataValue.json({k: round(v, 4) for k, v in dice.items()}),
            "validation_mean_dice": round(float(result.card.metrics["val_mean_dice"]), 4),
            "best_epoch": result.best_epoch,
            "train_chips": len(train_chips),
            "validation_chips": len(val_chips),
            "confusion_matrix": image_md(confusion_png(cm, "validation scenes"), "confusion matrix"),
            "training_curve": image_md(training_curve_png(result.history), "training curve"),
            "model": dg.MetadataValue.path(model_url),
            "network": f"{config.preset}, bands {config.bands}",
        }
    )


@dg.asset(
    check_specs=contract_check("s2_cloud_mask"),
    partitions_def=DAY_TILE,
    group_name="cloud_mask",
    owners=["team:cloud-mask"],
    kinds={"pytorch", "cog"},
    code_version="1",
    deps=[s2_scenes, cloud_mask_model],
    pool="gpu",
    op_tags=GPU_TAGS,
    retry_policy=GPU_RETRY,
    description=(
        "The 5-class cloud mask (0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud) of "
        "every Sentinel-2 scene of the day and tile, one uint8 COG per scene on the scene grid. Runs in the "
        "`gpu` concurrency pool."
    ),
)
@keeps_contract
def s2_cloud_mask(
    context: dg.AssetExecutionContext, masker: CloudMaskResource, storage: StorageResource
) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    day, tile = date.fromisoformat(keys["date"]), keys["tile"]
    store = storage.fetch("scenes", "s2_l2a", tile, f"{day}.zarr", missing_ok=True)
    if not store.exists():
        context.log.info("no S2 scene for this day and tile: nothing to mask")
        return dg.MaterializeResult(metadata={"scenes": 0, "empty": True})
    # torch loads only on a day with a scene to mask
    from kz_pipelines.cloudmask.predict import predict_scene
    from kz_pipelines.cloudmask.report import class_fractions, mask_overlay_png

    model, card = load_model(masker.folder(storage))
    ds = open_scenes(store)
    grid = store_grid(ds)
    missing = [b for b in card.spec.bands if b not in ds.band.values]
    if missing:
        raise ValueError(f"the model needs bands {missing} that {store} does not have")
    fractions: dict[str, dict[str, float]] = {}
    overlay = b""
    for t in range(ds.sizes["time"]):
        scene = ds.isel(time=t)
        bands = scene.reflectance.sel(band=list(card.spec.bands)).values.astype(np.float32)
        prediction = predict_scene(
            model, bands, card.normalization, device=masker.device_name(), batch_size=masker.batch()
        )
        item_id = str(scene.item_id.values)
        write_cog(
            storage.path("cloud_mask", tile, str(day), f"{item_id}.tif"), prediction.classes, grid, nodata=0
        )
        fractions[item_id] = class_fractions(prediction.classes)
        if not overlay:
            rgb = np.stack([scene.reflectance.sel(band=b).values for b in ("B04", "B03", "B02")], axis=-1)
            overlay = mask_overlay_png(rgb, prediction.classes)
            write_bytes(storage.path("cloud_mask", tile, str(day), "quicklook.png"), overlay)
            storage.publish("cloud_mask", tile, str(day), "quicklook.png")
        context.log.info(
            f"{item_id}: {fractions[item_id]} on {prediction.device}, batch {prediction.batch_size}"
        )
    return dg.MaterializeResult(
        metadata={
            "scenes": len(fractions),
            "class_fractions": dg.MetadataValue.json(fractions),
            "quicklook": image_md(overlay, "scene with its cloud mask"),
            "model": card.code_version,
            "empty": False,
        }
    )
