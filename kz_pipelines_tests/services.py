"""The deployment under test: `dagster-webserver` and `dagster-daemon` on the machine's PostgreSQL, with
the repo's dagster.yaml and workspace.yaml, over a small simulated region; and a GraphQL client for what
the UI calls."""

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

REPO = Path(__file__).resolve().parents[1]

REGION = SimConfig(
    seed=4,
    tiles=("35VLF",),
    size_px=240,
    start=date(2024, 6, 1),
    end=date(2024, 6, 6),
    n_parcels=20,
    l1c=False,
)
"""The backfilled region: one small tile over six days."""


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
            raise AssertionError(f"GraphQL {exc.code}: {exc.read().decode()[:2000]}") from None
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the webserver exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise AssertionError(f"the webserver did not answer in {timeout} s: {log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextmanager
def deployment(work: Path, postgres: dict[str, str], db: str) -> Iterator[Services]:
    """Simulate `REGION` into ``work``, create the database ``db`` afresh, start the webserver and the
    daemon (the repo's dagster.yaml and workspace.yaml), register the region's tile; stop both after."""
    region, storage, home, logs = work / "region", work / "storage", work / "home", work / "logs"
    simulate(REGION, region)
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
        for tile in REGION.tile_ids:  # the region registers its tiles, as a person would in the UI
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
            assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added
        yield services
    finally:
        _stop(daemon)
        _stop(web)


def days() -> list[str]:
    """The region's days (ISO)."""
    n = (REGION.end - REGION.start).days + 1
    return [date.fromordinal(REGION.start.toordinal() + k).isoformat() for k in range(n)]
