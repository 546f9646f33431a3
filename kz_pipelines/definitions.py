"""The kz_pipelines code location."""

import os

import dagster as dg

from kz_pipelines.defs.assets import s1_items, s1_scenes, s2_items, s2_scenes
from kz_pipelines.defs.cloudmask import CloudMaskResource, cloud_mask_model, s2_cloud_mask
from kz_pipelines.defs.resources import StacResource, StorageResource

ingest_job = dg.define_asset_job(
    "ingest",
    selection=[s2_items, s1_items, s2_scenes, s1_scenes],
    description="Find the S2 and S1 items of one day x tile partition and load them onto the tile grid.",
)
daily_job = dg.define_asset_job(
    "daily",
    selection=[s2_items, s1_items, s2_scenes, s1_scenes, s2_cloud_mask],
    description="Everything of one day x tile partition: items, scenes, and the cloud mask of the S2 scenes.",
)
cloud_mask_model_job = dg.define_asset_job(
    "train_cloud_mask", selection=[cloud_mask_model], description="Train the cloud-mask model."
)

defs = dg.Definitions(
    assets=[s2_items, s1_items, s2_scenes, s1_scenes, cloud_mask_model, s2_cloud_mask],
    jobs=[ingest_job, daily_job, cloud_mask_model_job],
    resources={
        "stac": StacResource(
            catalog=dg.EnvVar("KZ_STAC"), provider=os.environ.get("KZ_STAC_PROVIDER", "local")
        ),
        "storage": StorageResource(root=dg.EnvVar("KZ_STORAGE")),
        "masker": CloudMaskResource(
            device=os.environ.get("KZ_CLOUDMASK_DEVICE", "auto"),
            batch_size=int(os.environ.get("KZ_CLOUDMASK_BATCH", "8")),
        ),
    },
)
