"""Partitions: acquisition day (UTC) x Sentinel-2 tile."""

import dagster as dg

TILE_PARTITIONS = dg.DynamicPartitionsDefinition(name="tile")
"""MGRS tiles of the configured region (added when a region is registered, e.g. by `kz demo`)."""

DAY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2017-01-01", timezone="UTC", end_offset=1)
"""Acquisition days from 2017 (global S2 L2A): 25 tiles x 10 years stays under ~100k partitions."""

DAY_TILE = dg.MultiPartitionsDefinition({"date": DAY_PARTITIONS, "tile": TILE_PARTITIONS})
"""Per-scene assets: one partition per acquisition day and tile."""
