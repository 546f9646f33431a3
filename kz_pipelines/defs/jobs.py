"""The jobs of the code location: what a person launches, and what the schedule and sensor run."""

import dagster as dg

from kz_pipelines.defs.assets import s1_items, s1_scenes, s2_items, s2_scenes
from kz_pipelines.defs.cloudmask import cloud_mask_model, s2_cloud_mask
from kz_pipelines.defs.croptype import crop_type_model, crop_type_predictions
from kz_pipelines.defs.events import EVENT_PRODUCTS, event_models
from kz_pipelines.defs.parcels import parcel_observations, parcel_timeseries, parcels

ingest_job = dg.define_asset_job(
    "ingest",
    selection=[s2_items, s1_items, s2_scenes, s1_scenes],
    description="Find the S2 and S1 items of one day x tile partition and load them onto the tile grid.",
)
daily_job = dg.define_asset_job(
    "daily",
    selection=[s2_items, s1_items, s2_scenes, s1_scenes, s2_cloud_mask, parcel_observations],
    description=(
        "Everything of one day x tile partition: items, scenes, the cloud mask of the S2 scenes, and the "
        "parcel statistics of the day."
    ),
)
parcels_job = dg.define_asset_job(
    "load_parcels", selection=[parcels], description="Load and clean the declared parcels of a season."
)
crop_type_model_job = dg.define_asset_job(
    "train_crop_type", selection=[crop_type_model], description="Train the season's crop type model."
)
crop_type_job = dg.define_asset_job(
    "score_crop_type",
    selection=[crop_type_predictions],
    description="Predict the crop type of a season x tile's parcels and list confident disagreements.",
)
timeseries_job = dg.define_asset_job(
    "timeseries",
    selection=[parcel_timeseries],
    description="Bring a season x tile parcel tensor up to date with the days observed so far.",
)
event_models_job = dg.define_asset_job(
    "train_events",
    selection=[event_models],
    description="Train the season's event models (mowing, ploughing/harvest, emergence, tillage, damage).",
)
events_job = dg.define_asset_job(
    "score_events",
    selection=EVENT_PRODUCTS,
    description=(
        "Mowing events and compliance, harvest and ploughing, emergence, tillage and damaged areas of a "
        "season x tile's parcels."
    ),
)
cloud_mask_model_job = dg.define_asset_job(
    "train_cloud_mask", selection=[cloud_mask_model], description="Train the cloud-mask model."
)
