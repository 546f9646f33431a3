"""The cloud-mask assets through Dagster: a small model trained on the simulated region's chips, then
every S2 scene of a partition masked into a COG that agrees with the true mask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
import rasterio

pytest.importorskip("segmentation_models_pytorch")

from kz_pipelines.cloudmask.metrics import dice_per_class  # noqa: E402
from kz_pipelines.definitions import defs  # noqa: E402
from kz_pipelines.defs.cloudmask import GPU_TAGS  # noqa: E402
from kz_pipelines.scenes import find_scene_items  # noqa: E402
from kz_pipelines.stac import open_search  # noqa: E402
from kz_pipelines_tests.conftest import pipeline_resources  # noqa: E402

TILE = "35VLF"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    region: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dg.Definitions, Path, Any]]:
    storage = tmp_path_factory.mktemp("cm-store")
    resources = pipeline_resources(region, storage)
    d = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", [TILE])
        config = {"preset": "tiny", "chip_size": 120, "epochs": 6}
        result = d.resolve_job_def("train_cloud_mask").execute_in_process(
            instance=instance, run_config={"ops": {"cloud_mask_model": {"config": config}}}
        )
        assert result.success
        # the daily job ends with the parcel statistics, which need the season's parcels
        assert (
            d.resolve_job_def("load_parcels")
            .execute_in_process(partition_key="2024", instance=instance)
            .success
        )
        yield d, storage, instance


def test_model_is_trained_saved_and_described(trained: tuple[dg.Definitions, Path, Any]) -> None:
    _, storage, instance = trained
    current = json.loads((storage / "models" / "cloud_mask" / "current.json").read_text())
    # named from the pointer's folder, as a relative link: the root may move, or be an object store
    assert current["folder"] == Path(current["folder"]).name
    folder = storage / "models" / "cloud_mask" / current["folder"]
    assert (folder / "model.safetensors").is_file()
    card = json.loads((folder / "model.json").read_text())
    assert card["spec"]["bands"][:3] == ["B01", "B02", "B03"]
    event = instance.get_latest_materialization_event(dg.AssetKey("cloud_mask_model"))
    meta = event.asset_materialization.metadata
    assert set(meta["validation_dice"].value) == {"clear", "cloud_shadow", "semi_transparent_cloud", "cloud"}
    assert meta["confusion_matrix"].value.startswith("![confusion matrix](data:image/png;base64,")
    assert meta["training_curve"].value.startswith("![training curve](data:image/png;base64,")
    assert meta["validation_chips"].value > 0


def test_scenes_are_masked_into_cogs(region: Path, trained: tuple[dg.Definitions, Path, Any]) -> None:
    d, storage, instance = trained
    search = open_search(str(region))
    days = sorted({i.datetime.date() for i in search.search(["sentinel-2-l2a"])})
    day = next(x for x in days if find_scene_items(search, "sentinel-2-l2a", TILE, x)[1])
    key = dg.MultiPartitionKey({"date": day.isoformat(), "tile": TILE})
    result = d.resolve_job_def("daily").execute_in_process(partition_key=key, instance=instance)
    assert result.success
    event = instance.get_latest_materialization_event(dg.AssetKey("s2_cloud_mask"))
    meta = event.asset_materialization.metadata
    assert meta["scenes"].value == 1
    fractions = next(iter(meta["class_fractions"].value.values()))
    assert abs(sum(fractions.values()) - 1) < 1e-3
    assert meta["quicklook"].value.startswith("![scene with its cloud mask](data:image/png;base64,")
    (cog,) = sorted((storage / "cloud_mask" / TILE / day.isoformat()).glob("*.tif"))
    with rasterio.open(cog) as src:
        mask = src.read(1)
        assert (src.dtypes[0], src.nodata, src.crs.to_epsg()) == ("uint8", 0, 32635)
    with rasterio.open(region / "truth" / "cloudmask" / cog.name) as src:
        truth = src.read(1)
    assert mask.shape == truth.shape
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(mask == 0, truth == 0)  # missing exactly where the scene has no data
    dice = dice_per_class(mask, truth)
    assert dice["clear"] > 0.5  # a 6-epoch tiny network; the real evaluation is `kz eval cloudmask`


def test_masking_step_is_a_gpu_step() -> None:
    spec = defs.get_repository_def().asset_graph.get(dg.AssetKey("s2_cloud_mask"))
    node = defs.get_repository_def().get_job("daily").graph.node_named("s2_cloud_mask")
    assert node.definition.pool == "gpu"
    container = GPU_TAGS["dagster-k8s/config"]["container_config"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert json.loads(node.definition.tags["dagster-k8s/config"]) == GPU_TAGS["dagster-k8s/config"]
    assert spec.partitions_def is not None
