"""The kz_pipelines code location."""

import os

import dagster as dg

from kz_pipelines.defs.assets import s1_items, s1_scenes, s2_items, s2_scenes
from kz_pipelines.defs.automation import daily_schedule, late_items_sensor
from kz_pipelines.defs.cloudmask import CloudMaskResource, cloud_mask_model, s2_cloud_mask
from kz_pipelines.defs.croptype import crop_type_model, crop_type_predictions
from kz_pipelines.defs.events import EVENT_PRODUCTS, event_models
from kz_pipelines.defs.jobs import (
    cloud_mask_model_job,
    crop_type_job,
    crop_type_model_job,
    daily_job,
    event_models_job,
    events_job,
    ingest_job,
    parcels_job,
    timeseries_job,
)
from kz_pipelines.defs.parcels import parcel_observations, parcel_timeseries, parcels
from kz_pipelines.defs.resources import ParcelSourceResource, StacResource, StorageResource

defs = dg.Definitions(
    assets=[
        s2_items,
        s1_items,
        s2_scenes,
        s1_scenes,
        cloud_mask_model,
        s2_cloud_mask,
        parcels,
        parcel_observations,
        parcel_timeseries,
        crop_type_model,
        crop_type_predictions,
        event_models,
        *EVENT_PRODUCTS,
    ],
    jobs=[
        ingest_job,
        daily_job,
        cloud_mask_model_job,
        parcels_job,
        timeseries_job,
        crop_type_model_job,
        crop_type_job,
        event_models_job,
        events_job,
    ],
    schedules=[daily_schedule],
    sensors=[late_items_sensor],
    resources={
        "stac": StacResource(
            catalog=dg.EnvVar("KZ_STAC"), provider=os.environ.get("KZ_STAC_PROVIDER", "local")
        ),
        "storage": StorageResource(root=dg.EnvVar("KZ_STORAGE")),
        "parcel_source": ParcelSourceResource(
            url=dg.EnvVar("KZ_PARCELS"),
            labels=os.environ.get("KZ_LABELS", ""),
            field_labels=os.environ.get("KZ_FIELD_LABELS", ""),
            scheme=os.environ.get("KZ_PARCELS_SCHEME", "sim"),
        ),
        "masker": CloudMaskResource(
            device=os.environ.get("KZ_CLOUDMASK_DEVICE", "auto"),
            batch_size=int(os.environ.get("KZ_CLOUDMASK_BATCH", "8")),
        ),
    },
)
