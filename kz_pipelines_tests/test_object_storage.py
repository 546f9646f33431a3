"""The storage root on an object store: `StorageRoot` publishing and fetching (an in-memory fsspec store),
and the parcel pipeline on S3 (moto's S3 server on loopback, through s3fs) against the same pipeline on a
local folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fsspec.implementations.memory import MemoryFileSystem

from kz_pipelines.definitions import defs
from kz_pipelines.storage import MANIFEST, StorageRoot, atomic_dir, write_json
from kz_pipelines.timeseries import read_observations
from kz_pipelines_tests.conftest import pipeline_resources

TILE = "35VLF"
DAYS = [date(2024, 6, 1) + timedelta(days=i) for i in range(4)]


@pytest.fixture
def memory_root(tmp_path: Path) -> Iterator[StorageRoot]:
    MemoryFileSystem.store.clear()
    yield StorageRoot("memory://bucket/root", staging=tmp_path / "writer")
    MemoryFileSystem.store.clear()


def _store(root: StorageRoot, parts: tuple[str, ...], values: np.ndarray) -> None:
    with atomic_dir(root.path(*parts)) as tmp:
        xr.Dataset({"v": ("x", values)}).to_zarr(tmp, mode="w", consolidated=False)
    root.publish(*parts)


def test_published_values_are_fetched_into_another_staging_folder(
    memory_root: StorageRoot, tmp_path: Path
) -> None:
    write_json(memory_root.path("models", "current.json"), {"folder": "models/a"})
    memory_root.publish("models", "current.json")
    _store(memory_root, ("scenes", "t", "2024-06-01.zarr"), np.arange(5))
    _store(memory_root, ("scenes", "t", "2024-06-02.zarr"), np.arange(3))
    assert memory_root.url("models", "current.json") == "memory:///bucket/root/models/current.json"
    assert memory_root.exists("scenes", "t", "2024-06-01.zarr")
    assert not memory_root.exists("scenes", "t", "2024-06-03.zarr")

    reader = StorageRoot("memory://bucket/root", staging=tmp_path / "reader")
    assert reader.path() != memory_root.path()
    assert json.loads(reader.fetch("models", "current.json").read_text()) == {"folder": "models/a"}
    store = reader.fetch("scenes", "t", "2024-06-01.zarr")
    np.testing.assert_array_equal(xr.open_zarr(store, consolidated=False)["v"], np.arange(5))
    assert not (store / MANIFEST).exists()  # the manifest stays in the object store
    # a prefix: every published value under it
    tile = reader.fetch("scenes", "t")
    assert sorted(p.name for p in tile.iterdir()) == ["2024-06-01.zarr", "2024-06-02.zarr"]
    np.testing.assert_array_equal(
        xr.open_zarr(tile / "2024-06-02.zarr", consolidated=False)["v"], np.arange(3)
    )


def test_a_republished_folder_replaces_the_old_one_whole(memory_root: StorageRoot, tmp_path: Path) -> None:
    folder = memory_root.path("models", "a")
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"old")
    (folder / "extra.json").write_text("{}")
    memory_root.publish("models", "a")
    (folder / "extra.json").unlink()
    (folder / "weights.bin").write_bytes(b"new")
    memory_root.publish("models", "a")
    keys = sorted(memory_root.fs.find(memory_root.base))
    assert keys == ["/bucket/root/models/a/.kz-manifest.json", "/bucket/root/models/a/weights.bin"]
    fetched = StorageRoot("memory://bucket/root", staging=tmp_path / "reader").fetch("models", "a")
    assert [p.name for p in fetched.iterdir()] == ["weights.bin"]
    assert (fetched / "weights.bin").read_bytes() == b"new"


def test_a_failed_upload_leaves_the_previous_value(
    memory_root: StorageRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = ("scenes", "t", "2024-06-01.zarr")
    _store(memory_root, parts, np.arange(5))
    before = sorted(memory_root.fs.find(memory_root.base))
    real_put = memory_root.fs.put

    def put_then_fail(lpath: list[str], rpath: list[str], **kwargs: Any) -> None:
        real_put(lpath[:1], rpath[:1], **kwargs)  # part of the upload lands, then the network fails
        raise OSError("connection reset")

    monkeypatch.setattr(memory_root.fs, "put", put_then_fail)
    with pytest.raises(OSError, match="connection reset"):
        _store(memory_root, parts, np.arange(7))
    assert sorted(memory_root.fs.find(memory_root.base)) == before  # no temporary prefix left either
    reader = StorageRoot("memory://bucket/root", staging=tmp_path / "reader")
    np.testing.assert_array_equal(xr.open_zarr(reader.fetch(*parts), consolidated=False)["v"], np.arange(5))


def test_missing_values_and_cut_short_stores_are_named(memory_root: StorageRoot) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"nothing at memory:///bucket/root/items/s1/t/2024-06-01.json"
    ):
        memory_root.fetch("items", "s1", "t", "2024-06-01.json")
    absent = memory_root.fetch("items", "s1", "t", "2024-06-01.json", missing_ok=True)
    assert absent == memory_root.path("items", "s1", "t", "2024-06-01.json")
    assert not absent.exists()
    _store(memory_root, ("scenes", "t", "2024-06-01.zarr"), np.arange(5))
    memory_root.fs.rm_file(f"{memory_root.base}/scenes/t/2024-06-01.zarr/{MANIFEST}")  # a copy cut short
    assert not memory_root.exists("scenes", "t", "2024-06-01.zarr")
    with pytest.raises(FileNotFoundError, match=r"2024-06-01.zarr: a store without \.kz-manifest\.json"):
        memory_root.fetch("scenes", "t")


def test_model_pointers_resolve_on_an_object_store_and_on_old_local_roots(tmp_path: Path) -> None:
    from kz_pipelines.defs.resources import StorageResource

    MemoryFileSystem.store.clear()
    writer = StorageResource(root="memory://bucket/pointers", staging=str(tmp_path / "writer"))
    folder = ("models", "events", "2024", "20240901T120000")
    writer.path(*folder).mkdir(parents=True)
    writer.path(*folder, "model.json").write_text('{"kind": "test"}')
    assert writer.save_pointer(("models", "events", "2024", "current.json"), folder) == (
        "memory:///bucket/pointers/models/events/2024/20240901T120000"
    )
    writer.publish("models", "events", "2024", "current.json")  # what the contract check does
    reader = StorageResource(root="memory://bucket/pointers", staging=str(tmp_path / "reader"))
    found = reader.pointed_folder("models", "events", "2024", "current.json", missing="train it")
    assert found.is_relative_to(tmp_path / "reader")
    assert json.loads((found / "model.json").read_text()) == {"kind": "test"}
    with pytest.raises(FileNotFoundError, match=r"train it \(memory:///bucket/pointers/models/x.json"):
        reader.pointed_folder("models", "x.json", missing="train it")
    MemoryFileSystem.store.clear()
    # a pointer written before object storage names an absolute folder
    local = StorageResource(root=str(tmp_path / "old"))
    write_json(local.path("models", "current.json"), {"folder": str(tmp_path / "somewhere")})
    assert local.pointed_folder("models", "current.json", missing="") == tmp_path / "somewhere"


def test_a_local_root_is_used_in_place(tmp_path: Path) -> None:
    root = StorageRoot(str(tmp_path / "storage"))
    assert not root.remote
    assert root.path("a.json") == tmp_path / "storage" / "a.json"
    write_json(root.path("a.json"), {})
    root.publish("a.json")  # nothing to do
    assert root.fetch("a.json") == root.path("a.json")
    assert root.url("a.json") == str(tmp_path / "storage" / "a.json")
    with pytest.raises(FileNotFoundError, match="nothing at"):
        root.fetch("b.json")
    assert StorageRoot(f"file://{tmp_path}/storage").path("a.json") == root.path("a.json")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on loopback with a bucket, and fsspec's s3 settings pointing at it."""
    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=url, **credentials).create_bucket(Bucket="kz-data")
    saved = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {
        "key": "test",
        "secret": "test",
        "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"},
    }
    yield url
    if saved is None:
        fsspec.config.conf.pop("s3")
    else:
        fsspec.config.conf["s3"] = saved
    server.stop()


def _day_key(day: date) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.isoformat(), "tile": TILE})


def _run_parcel_pipeline(
    region: Path, storage: dict[str, Any], upload_mask: Any, staging_of_step: Any = None
) -> None:
    """Parcels, ingest, the true cloud mask put where the masking step writes its own, observations and the
    tensor of DAYS; ``staging_of_step(name)``: a fresh staging folder per stage (object store roots)."""
    from kz_pipelines.defs.resources import StorageResource

    def resources(stage: str) -> dict[str, Any]:
        res = pipeline_resources(region, Path("/unused"))
        res["storage"] = StorageResource(
            **storage, **({"staging": staging_of_step(stage)} if staging_of_step else {})
        )
        return res

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        ok = dg.materialize(
            defs.assets,
            selection=["parcels"],
            partition_key="2024",
            instance=instance,
            resources=resources("parcels"),
        )
        assert ok.success
        for day in DAYS:
            assert dg.materialize(
                defs.assets,
                selection=["s2_items", "s1_items", "s2_scenes", "s1_scenes"],
                partition_key=_day_key(day),
                instance=instance,
                resources=resources(f"ingest-{day}"),
            ).success
        upload_mask(resources("masks")["storage"])
        for day in DAYS:
            assert dg.materialize(
                defs.assets,
                selection=["parcel_observations"],
                partition_key=_day_key(day),
                instance=instance,
                resources=resources(f"observations-{day}"),
            ).success
        assert dg.materialize(
            defs.assets,
            selection=["parcel_timeseries"],
            partition_key=dg.MultiPartitionKey({"season": "2024", "tile": TILE}),
            instance=instance,
            resources=resources("tensor"),
        ).success


def _true_masks(region: Path) -> Any:
    """Puts each ingested S2 scene's true mask where the masking step writes its own, and publishes it."""

    def upload(storage: Any) -> None:
        for day in DAYS:
            if not storage.exists("scenes", "s2_l2a", TILE, f"{day}.zarr"):
                continue
            for item_id in xr.open_zarr(storage.fetch("scenes", "s2_l2a", TILE, f"{day}.zarr"))[
                "item_id"
            ].to_numpy():
                parts = ("cloud_mask", TILE, day.isoformat(), f"{item_id}.tif")
                storage.path(*parts).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(region / "truth" / "cloudmask" / f"{item_id}.tif", storage.path(*parts))
                storage.publish(*parts)

    return upload


@pytest.mark.slow
def test_parcel_pipeline_on_s3_matches_the_local_folder(
    region: Path, tmp_path: Path, s3_endpoint: str
) -> None:
    local = tmp_path / "local"
    _run_parcel_pipeline(region, {"root": str(local)}, _true_masks(region))
    # every stage in a staging folder of its own: each reads only what the stages before it published
    _run_parcel_pipeline(
        region,
        {"root": "s3://kz-data/storage"},
        _true_masks(region),
        staging_of_step=lambda stage: str(tmp_path / "staging" / stage),
    )
    remote = StorageRoot("s3://kz-data/storage", staging=tmp_path / "check")
    assert remote.exists("parcels", "2024", "parcels.parquet")
    observed = 0
    for day in DAYS:
        got, got_scenes = read_observations(remote.fetch("observations", TILE, f"{day}.parquet"))
        want, want_scenes = read_observations(local / "observations" / TILE / f"{day}.parquet")
        pd.testing.assert_frame_equal(got, want)
        assert got_scenes == want_scenes
        observed += len(got_scenes)
    assert observed > 0
    tensor = ("timeseries", "2024", f"{TILE}.zarr")
    xr.testing.assert_identical(
        xr.open_zarr(remote.fetch(*tensor)).load(), xr.open_zarr(local.joinpath(*tensor)).load()
    )
    # the quicklooks beside the stores, published too
    pngs = remote.fs.glob(f"{remote.base}/scenes/*/{TILE}/*.png")
    assert len(pngs) == len(list((local / "scenes").glob(f"*/{TILE}/*.png"))) > 0
