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
    partitions = {
        "s2_items": {"date", "tile"},
        "s1_items": {"date", "tile"},
        "s2_scenes": {"date", "tile"},
        "s1_scenes": {"date", "tile"},
        "s2_cloud_mask": {"date", "tile"},
        "parcel_observations": {"date", "tile"},
        "parcel_timeseries": {"season", "tile"},
        "parcels": {"season"},
        "crop_type_model": {"season"},
        "crop_type_predictions": {"season", "tile"},
        "cloud_mask_model": set(),
        "event_models": {"season"},
        "mowing_events": {"season", "tile"},
        "ploughing_harvest_events": {"season", "tile"},
        "emergence_dates": {"season", "tile"},
        "tillage_practice": {"season", "tile"},
        "damage_areas": {"season", "tile"},
    }
    assert keys == set(partitions)
    for name, dims in partitions.items():
        spec = repo.asset_graph.get(dg.AssetKey(name))
        parts = spec.partitions_def
        if isinstance(parts, dg.MultiPartitionsDefinition):
            assert {d.name for d in parts.partitions_defs} == dims
        else:
            assert (parts is not None) == bool(dims), name
        assert spec.code_version
        assert spec.owners
        assert spec.description
        assert spec.kinds


def test_parcel_assets_map_days_to_seasons() -> None:
    graph = defs.get_repository_def().asset_graph
    obs = graph.get(dg.AssetKey("parcel_observations"))
    assert obs.parent_keys == {dg.AssetKey(k) for k in ("parcels", "s2_scenes", "s2_cloud_mask", "s1_scenes")}
    assert graph.get(dg.AssetKey("parcel_timeseries")).parent_keys == {dg.AssetKey("parcel_observations")}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        from dagster._core.definitions.partitions.context import partition_loading_context

        with partition_loading_context(dynamic_partitions_store=instance):
            day = dg.MultiPartitionKey({"date": "2024-05-03", "tile": "35VLF"})
            season = graph.get_parent_partition_keys_for_child(
                day, parent_asset_key=dg.AssetKey("parcels"), child_asset_key=obs.key
            )
            assert set(season.partitions_subset.get_partition_keys()) == {"2024"}
            tensor = dg.MultiPartitionKey({"season": "2024", "tile": "35VLF"})
            days = graph.get_parent_partition_keys_for_child(
                tensor, parent_asset_key=obs.key, child_asset_key=dg.AssetKey("parcel_timeseries")
            )
            keys = set(days.partitions_subset.get_partition_keys())
            assert len(keys) == 366 * 2  # every day of 2024 on both tiles
            assert dg.MultiPartitionKey({"date": "2024-12-31", "tile": "35VMF"}) in keys


def test_damage_reads_the_days_of_its_own_tile() -> None:
    graph = defs.get_repository_def().asset_graph
    damage = graph.get(dg.AssetKey("damage_areas"))
    assert damage.parent_keys == {dg.AssetKey(k) for k in ("s2_scenes", "s2_cloud_mask", "event_models")}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        from dagster._core.definitions.partitions.context import partition_loading_context

        with partition_loading_context(dynamic_partitions_store=instance):
            key = dg.MultiPartitionKey({"season": "2024", "tile": "35VMF"})
            days = graph.get_parent_partition_keys_for_child(
                key, parent_asset_key=dg.AssetKey("s2_scenes"), child_asset_key=damage.key
            )
            keys = set(days.partitions_subset.get_partition_keys())
            assert len(keys) == 366
            assert {k.keys_by_dimension["tile"] for k in keys} == {"35VMF"}


def test_resources_come_from_the_environment() -> None:
    resources = defs.resources or {}
    assert set(resources) == {"stac", "storage", "masker", "parcel_source", "dask"}


def test_kubernetes_location_is_the_same_location_with_a_pod_per_step() -> None:
    from kz_pipelines.definitions_k8s import defs as k8s

    here, there = defs.get_repository_def(), k8s.get_repository_def()
    assert there.asset_graph.get_all_asset_keys() == here.asset_graph.get_all_asset_keys()
    assert {j.name for j in there.get_all_jobs()} == {j.name for j in here.get_all_jobs()}
    assert {s.name for s in there.schedule_defs} == {s.name for s in here.schedule_defs}
    assert {s.name for s in there.sensor_defs} == {s.name for s in here.sensor_defs}
    assert set(k8s.resources or {}) == set(defs.resources or {})
    assert {j.executor_def.name for j in there.get_all_jobs()} == {"kz_k8s"}
    assert {j.executor_def.name for j in here.get_all_jobs()} == {"in_process"}


def test_code_location_validates() -> None:
    """What `dagster definitions validate` checks: unique op and job names, resources, partitions."""
    repo = defs.get_repository_def()
    repo.load_all_definitions()
    names = [job.name for job in repo.get_all_jobs()]
    ops = {node.name for job in repo.get_all_jobs() for node in job.graph.nodes}
    assert not (set(names) - {"__ASSET_JOB"}) & ops
