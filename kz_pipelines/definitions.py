"""The kz_pipelines code location."""

import dagster as dg

from kz_pipelines.defs.assets import s1_items, s2_items
from kz_pipelines.defs.resources import StacResource, StorageResource

scene_items_job = dg.define_asset_job(
    "scene_items",
    selection=[s2_items, s1_items],
    description="Find the S2 and S1 items of one day x tile partition.",
)

defs = dg.Definitions(
    assets=[s2_items, s1_items],
    jobs=[scene_items_job],
    resources={
        "stac": StacResource(catalog=dg.EnvVar("KZ_STAC")),
        "storage": StorageResource(root=dg.EnvVar("KZ_STORAGE")),
    },
)
