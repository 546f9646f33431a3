"""A deployment on this machine: `dagster-webserver` and `dagster-daemon` on its PostgreSQL, with the repo's
dagster.yaml and workspace.yaml, over a simulated region; and a GraphQL client for what the UI calls. The
backfill and UI tests and `kz bench orchestration` run on it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from kz_pipelines.sim import SimConfig, simulate

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Services:
    """A running deployment.

    Attributes:
        url: the webserver's base URL.
        home: DAGSTER_HOME (the repo's dagster.yaml).
        env: the environment the services run with (KZ_* and DAGSTER_HOME).
        region: the simulated region.
        storage: the storage root.
        logs: where the services' output goes.
    """

    url: str
    home: Path
    env: dict[str, str]
    region: Path
    storage: Path
    logs: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        """POST a GraphQL query to the webserver (as the UI does); the ``data`` of the answer."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"GraphQL {exc.code}: {exc.read().decode()[:2000]}") from None
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def launch_backfill(self, partitions: list[str], assets: list[str], tags: dict[str, str]) -> str:
        """Launch a backfill of ``assets`` over ``partitions`` as the UI's dialog does; its id."""
        launched = self.graphql(
            _LAUNCH,
            {
                "params": {
                    "partitionNames": partitions,
                    "assetSelection": [{"path": [a]} for a in assets],
                    "fromFailure": False,
                    "tags": [{"key": k, "value": v} for k, v in tags.items()],
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"the backfill was not launched: {launched}")
        return str(launched["backfillId"])

    def backfill_status(self, backfill: str) -> str:
        """REQUESTED while running, then COMPLETED_SUCCESS, COMPLETED_FAILED, FAILED, CANCELED..."""
        return str(self.graphql(_STATUS, {"id": backfill})["partitionBackfillOrError"]["status"])

    def cancel_backfill(self, backfill: str) -> None:
        """Cancel a backfill: no new runs; runs in flight finish."""
        self.graphql(
            "mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }",
            {"id": backfill},
        )

    def partition_stats(self, asset: str) -> dict[str, int]:
        """numMaterialized, numFailed and numMaterializing of an asset's partitions (the UI's partition
        bar)."""
        return dict(self.graphql(_STATS, {"path": [asset]})["assetNodeOrError"]["partitionStats"])

    def unhealthy_daemons(self) -> list[str]:
        """The required daemons the instance does not call healthy (no heartbeat within its tolerance), as
        the UI's Deployment > Daemons page shows them."""
        statuses = self.graphql(_DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return sorted(d["daemonType"] for d in statuses if d["required"] and not d["healthy"])


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

_DAEMONS = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""

_STATS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed numMaterializing } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for the webserver to answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the webserver exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise RuntimeError(f"the webserver did not answer in {timeout} s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextmanager
def deployment(work: Path, postgres: dict[str, str], db: str, region_config: SimConfig) -> Iterator[Services]:
    """Simulate ``region_config`` into ``work``, create the database ``db`` afresh, start the webserver and
    the daemon (the repo's dagster.yaml and workspace.yaml), register the region's tiles; stop both after.

    Args:
        work: an empty folder for the region, the storage root, DAGSTER_HOME and the services' logs.
        postgres: host, port, user and password of the PostgreSQL server.
        db: the database of the instance (dropped and created).
        region_config: the simulated region.
    """
    region, storage, home, logs = work / "region", work / "storage", work / "home", work / "logs"
    simulate(region_config, region)
    for folder in (storage, home, logs):
        folder.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    admin = f"host={postgres['host']} port={postgres['port']} user={postgres['user']} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KZ_PG_HOST": postgres["host"],
        "KZ_PG_PORT": postgres["port"],
        "KZ_PG_USER": postgres["user"],
        "KZ_PG_PASSWORD": postgres["password"],
        "KZ_PG_DB": db,
        "KZ_STAC": str(region),
        "KZ_STORAGE": str(storage),
        "KZ_PARCELS": str(region / "parcels.parquet"),
        "KZ_CLOUDMASK_DEVICE": "cpu",
    }
    port = free_port()
    bin_dir = Path(sys.executable).parent
    common = {"cwd": REPO, "env": env, "start_new_session": True, "stderr": subprocess.STDOUT}
    web_log, daemon_log = logs / "webserver.log", logs / "daemon.log"
    with web_log.open("wb") as w, daemon_log.open("wb") as d:
        web = subprocess.Popen(
            [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            stdout=w,
            **common,  # type: ignore[call-overload]
        )
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            stdout=d,
            **common,  # type: ignore[call-overload]
        )
    services = Services(f"http://127.0.0.1:{port}", home, env, region, storage, logs)
    try:
        _wait(services.url, web, web_log, timeout=180)
        for tile in region_config.tile_ids:  # the region registers its tiles, as a person would in the UI
            added = services.graphql(
                "mutation($p: String!, $k: String!, $l: RepositorySelector!) {"
                " addDynamicPartition(partitionsDefName: $p, partitionKey: $k, repositorySelector: $l)"
                " { __typename } }",
                {
                    "p": "tile",
                    "k": tile,
                    "l": {"repositoryLocationName": "kz_pipelines", "repositoryName": "__repository__"},
                },
            )
            if added["addDynamicPartition"]["__typename"] != "AddDynamicPartitionSuccess":
                raise RuntimeError(f"registering tile {tile} failed: {added}")
        yield services
    finally:
        _stop(daemon)
        _stop(web)


def days(cfg: SimConfig) -> list[str]:
    """The region's days (ISO)."""
    n = (cfg.end - cfg.start).days + 1
    return [date.fromordinal(cfg.start.toordinal() + k).isoformat() for k in range(n)]
