"""The kz_pipelines code location."""

import os

import dagster as dg

from kz_pipelines.defs.assets import s1_items, s1_scenes, s2_items, s2_scenes
from kz_pipelines.defs.resources import StacResource, StorageResource

ingest_job = dg.define_asset_job(
    "ingest",
    selection=[s2_items, s1_items, s2_scenes, s1_scenes],
    description="Find the S2 and S1 items of one day x tile partition and load them onto the tile grid.",
)

defs = dg.Definitions(
    assets=[s2_items, s1_items, s2_scenes, s1_scenes],
    jobs=[ingest_job],
    resources={
        "stac": StacResource(
            catalog=dg.EnvVar("KZ_STAC"), provider=os.environ.get("KZ_STAC_PROVIDER", "local")
        ),
        "storage": StorageResource(root=dg.EnvVar("KZ_STORAGE")),
    },
)
