"""A season backfilled the way the UI does it: a real `dagster-webserver` and `dagster-daemon` on
PostgreSQL with the repo's dagster.yaml and workspace.yaml; the backfill launched through the webserver's
GraphQL API, the daemon running it through the run queue; every partition materialized."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kz_pipelines.bench.deployment import Services, days, deployment
from kz_pipelines_tests.conftest import DEPLOYED

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ASSETS = ["s2_items", "s1_items", "s2_scenes", "s1_scenes"]
"""The backfilled assets: everything of a day x tile that needs no trained model."""


@pytest.fixture(scope="module")
def services(postgres: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with deployment(tmp_path_factory.mktemp("graphql"), postgres, "kz_backfill_graphql", DEPLOYED) as running:
        yield running


def test_season_backfill_through_graphql_materializes_every_partition(services: Services) -> None:
    keys = [f"{day}|{tile}" for day in days(DEPLOYED) for tile in DEPLOYED.tile_ids]
    backfill = services.launch_backfill(keys, ASSETS, {"kz/test": "graphql-backfill"})
    deadline = time.monotonic() + 900
    status = None
    while time.monotonic() < deadline:
        status = services.backfill_status(backfill)
        if status not in ("REQUESTED", "CANCELING"):
            break
        time.sleep(3)
    logs = (services.logs / "daemon.log").read_text()[-3000:]
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill {status}; daemon log: {logs}"
    for asset in ASSETS:
        stats = services.partition_stats(asset)
        assert stats == {"numMaterialized": len(keys), "numFailed": 0, "numMaterializing": 0}, asset
    written = sorted(p.stem for p in (services.storage / "items" / "s2_l2a" / "35VLF").glob("*.json"))
    assert written == days(DEPLOYED)
    scenes = list(Path(services.storage / "scenes" / "s2_l2a" / "35VLF").glob("*.zarr"))
    assert scenes  # the region's S2 acquisitions, loaded by the daemon's runs
