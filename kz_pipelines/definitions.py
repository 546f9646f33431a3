"""The kz_pipelines code location."""

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
from kz_pipelines.defs.resources import DaskResource, ParcelSourceResource, StacResource, StorageResource

ASSETS: list[dg.AssetsDefinition] = [
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
]


def build_definitions(executor: dg.ExecutorDefinition) -> dg.Definitions:
    """The code location with ``executor`` running each run's steps."""
    return dg.Definitions(
        assets=ASSETS,
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
        executor=executor,
        schedules=[daily_schedule],
        sensors=[late_items_sensor],
        resources={
            # required settings resolve when a run starts; optional ones (provider, labels, coding scheme,
            # cloud-mask device and batch, Dask scheduler) are read from the environment by the resources at
            # run time
            "stac": StacResource(catalog=dg.EnvVar("KZ_STAC")),
            "storage": StorageResource(root=dg.EnvVar("KZ_STORAGE")),
            "parcel_source": ParcelSourceResource(url=dg.EnvVar("KZ_PARCELS")),
            "masker": CloudMaskResource(),
            "dask": DaskResource(),
        },
    )


# a run's steps in its own process, one after the other: a day x tile's steps are a short chain of seconds
# each, which a subprocess per step (the multiprocess default) would pay ~5 s of imports for; runs go in
# parallel instead (the run queue in dagster.yaml). On Kubernetes: `kz_pipelines.definitions_k8s`.
defs = build_definitions(dg.in_process_executor)
