"""Partitions: acquisition day (UTC) x Sentinel-2 tile, and season (calendar year) x tile."""

import warnings

import dagster as dg

TILE_PARTITIONS = dg.DynamicPartitionsDefinition(name="tile")
"""MGRS tiles of the configured region (added when a region is registered, e.g. by `kz demo`)."""

DAY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2017-01-01", timezone="UTC", end_offset=1)
"""Acquisition days from 2017 (global S2 L2A): 25 tiles x 10 years stays under ~100k partitions."""

DAY_TILE = dg.MultiPartitionsDefinition({"date": DAY_PARTITIONS, "tile": TILE_PARTITIONS})
"""Per-scene assets: one partition per acquisition day and tile."""

SEASON_PARTITIONS = dg.TimeWindowPartitionsDefinition(
    start="2017", fmt="%Y", cron_schedule="0 0 1 1 *", timezone="UTC", end_offset=1
)
"""Seasons: calendar years, the current one included (days map to the season of their year)."""

SEASON_TILE = dg.MultiPartitionsDefinition({"season": SEASON_PARTITIONS, "tile": TILE_PARTITIONS})
"""Season assets of a tile (the parcel tensor, models' scores, events)."""

with warnings.catch_warnings():  # both mappings are beta in Dagster 1.12; their behaviour is tested here
    warnings.simplefilter("ignore", dg.BetaWarning)
    DAY_TO_SEASON: dg.PartitionMapping = dg.MultiToSingleDimensionPartitionMapping("date")
    """A day x tile partition depends on the season (year) its date falls in."""

    SEASON_OF_ALL_TILES: dg.PartitionMapping = dg.MultiPartitionMapping(
        {
            "date": dg.DimensionPartitionMapping("season", dg.TimeWindowPartitionMapping()),
            "tile": dg.DimensionPartitionMapping("tile", dg.AllPartitionMapping()),
        }
    )
    """A season x tile partition depends on every day of its season on every tile (parcels straddling
    tiles are observed by the neighbours)."""

    SEASON_OF_TILE: dg.PartitionMapping = dg.MultiPartitionMapping(
        {
            "date": dg.DimensionPartitionMapping("season", dg.TimeWindowPartitionMapping()),
            "tile": dg.DimensionPartitionMapping("tile", dg.IdentityPartitionMapping()),
        }
    )
    """A season x tile partition depends on every day of its season on its own tile."""

    SEASON_DIMENSION: dg.PartitionMapping = dg.MultiToSingleDimensionPartitionMapping("season")
    """A season asset and the season x tile partitions of that season (either way round)."""


def register_tiles(tiles: list[str]) -> list[str]:
    """Add ``tiles`` to the tile partitions of the instance of DAGSTER_HOME; every tile registered there."""
    with dg.DagsterInstance.get() as instance:
        name = TILE_PARTITIONS.name or "tile"
        instance.add_dynamic_partitions(name, tiles)
        return list(instance.get_dynamic_partitions(name))
