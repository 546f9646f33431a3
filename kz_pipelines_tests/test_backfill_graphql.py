"""A season backfilled the way the UI does it: a real `dagster-webserver` and `dagster-daemon` on
PostgreSQL with the repo's dagster.yaml and workspace.yaml; the backfill launched through the webserver's
GraphQL API, the daemon running it through the run queue; every partition materialized."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kz_pipelines_tests.services import REGION, Services, days, deployment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ASSETS = ["s2_items", "s1_items", "s2_scenes", "s1_scenes"]
"""The backfilled assets: everything of a day x tile that needs no trained model."""


@pytest.fixture(scope="module")
def services(postgres: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with deployment(tmp_path_factory.mktemp("graphql"), postgres, "kz_backfill_graphql") as running:
        yield running


_LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""

_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}
"""

_STATS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed numMaterializing } }
  }
}
"""


def test_season_backfill_through_graphql_materializes_every_partition(services: Services) -> None:
    keys = [f"{day}|{tile}" for day in days() for tile in REGION.tile_ids]
    launched = services.graphql(
        _LAUNCH,
        {
            "params": {
                "partitionNames": keys,
                "assetSelection": [{"path": [a]} for a in ASSETS],
                "fromFailure": False,
                "tags": [{"key": "kz/test", "value": "graphql-backfill"}],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = launched["backfillId"]
    deadline = time.monotonic() + 900
    status = None
    while time.monotonic() < deadline:
        answer = services.graphql(_STATUS, {"id": backfill})["partitionBackfillOrError"]
        status = answer["status"]
        if status not in ("REQUESTED", "CANCELING"):
            break
        time.sleep(3)
    logs = (services.logs / "daemon.log").read_text()[-3000:]
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill {status}; daemon log: {logs}"
    for asset in ASSETS:
        stats = services.graphql(_STATS, {"path": [asset]})["assetNodeOrError"]["partitionStats"]
        assert stats == {"numMaterialized": len(keys), "numFailed": 0, "numMaterializing": 0}, asset
    written = sorted(p.stem for p in (services.storage / "items" / "s2_l2a" / "35VLF").glob("*.json"))
    assert written == days()
    scenes = list(Path(services.storage / "scenes" / "s2_l2a" / "35VLF").glob("*.zarr"))
    assert scenes  # the region's S2 acquisitions, loaded by the daemon's runs
