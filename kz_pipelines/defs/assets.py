"""Scene item assets: what each provider published for a tile on a day."""

from datetime import date

import dagster as dg

from kz_pipelines.defs.partitions import DAY_TILE
from kz_pipelines.defs.resources import StacResource, StorageResource
from kz_pipelines.scenes import S1_COLLECTION, S2_COLLECTION, find_scene_items, write_item_collection


def _items_asset(name: str, collection: str, sensor: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=DAY_TILE,
        group_name="ingest",
        owners=["team:ingest"],
        kinds={"stac", "json"},
        code_version="1",
        description=(
            f"{sensor} STAC items ({collection}) acquired over the tile on the day. An empty list is a valid "
            "result (no overpass, or nothing published yet) and is recorded as such."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext, stac: StacResource, storage: StorageResource
    ) -> dg.MaterializeResult:
        keys = context.partition_key.keys_by_dimension
        day, tile = date.fromisoformat(keys["date"]), keys["tile"]
        items = find_scene_items(stac.searcher(), collection, tile, day)
        path = storage.path("items", collection, tile, f"{day.isoformat()}.json")
        summary = write_item_collection(path, items)
        context.log.info(f"{len(items)} {collection} item(s) for {tile} on {day}")
        return dg.MaterializeResult(
            metadata={
                "items": dg.MetadataValue.int(summary["items"]),
                "item_ids": dg.MetadataValue.json(summary["ids"]),
                "eo_cloud_cover": dg.MetadataValue.json(summary["cloud_cover"]),
                "path": dg.MetadataValue.path(str(path)),
                "empty": dg.MetadataValue.bool(summary["items"] == 0),
            }
        )

    return _asset


s2_items = _items_asset("s2_items", S2_COLLECTION, "Sentinel-2 L2A")
s1_items = _items_asset("s1_items", S1_COLLECTION, "Sentinel-1 GRD")
