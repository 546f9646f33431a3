"""The code location loads, and its graph is what the design says."""

import dagster as dg

from kz_pipelines.definitions import defs


def test_scene_assets_depend_on_their_items() -> None:
    graph = defs.get_repository_def().asset_graph
    assert graph.get(dg.AssetKey("s2_scenes")).parent_keys == {dg.AssetKey("s2_items")}
    assert graph.get(dg.AssetKey("s1_scenes")).parent_keys == {dg.AssetKey("s1_items")}


def test_definitions_load_with_expected_assets() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"s2_items", "s1_items", "s2_scenes", "s1_scenes", "cloud_mask_model", "s2_cloud_mask"}
    for name in keys - {"cloud_mask_model"}:
        spec = repo.asset_graph.get(dg.AssetKey(name))
        parts = spec.partitions_def
        assert isinstance(parts, dg.MultiPartitionsDefinition)
        assert {d.name for d in parts.partitions_defs} == {"date", "tile"}
        assert spec.code_version
        assert spec.owners
        assert spec.description
        assert spec.kinds & {"stac", "zarr", "cog"}


def test_resources_come_from_the_environment() -> None:
    resources = defs.resources or {}
    assert set(resources) == {"stac", "storage", "masker"}
