"""The runs of `kz eval faults`' PostgreSQL restart, in a process of their own (the suite restarts the
server while this runs).

``run``: create the database ``KZ_FAULTS_DB`` afresh, then materialize the fault region's items day by
day on a Dagster instance stored in it, printing ``started`` before the first run and, at the end, a JSON
line with the runs that failed. ``retry``: run again every day not materialized, and print what the
instance and the storage hold.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg
from psycopg import sql

from kz_pipelines.defs.faults import REGION, _days

_CONFIG = """
storage:
  postgres:
    postgres_db:
      hostname: {env: KZ_PG_HOST}
      port: {env: KZ_PG_PORT}
      username: {env: KZ_PG_USER}
      password: {env: KZ_PG_PASSWORD}
      db_name: {env: KZ_PG_DB}
telemetry:
  enabled: false
"""


def _instance(work: Path, db: str) -> dg.DagsterInstance:
    for k, v in {
        "KZ_PG_HOST": "127.0.0.1",
        "KZ_PG_PORT": "5432",
        "KZ_PG_USER": "postgres",
        "KZ_PG_PASSWORD": "",
    }.items():
        os.environ.setdefault(k, v)
    os.environ["KZ_PG_DB"] = db
    home = work / "pg-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(_CONFIG)
    return dg.DagsterInstance.from_config(str(home))


def _job(work: Path) -> dg.JobDefinition:
    from kz_pipelines.definitions import defs
    from kz_pipelines.defs.demo import _resources

    resources = _resources(work / "region", work / "pg-storage")
    return dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources).resolve_job_def("ingest")


def _materialize(instance: dg.DagsterInstance, job: dg.JobDefinition, day: str) -> bool:
    key = dg.MultiPartitionKey({"date": day, "tile": REGION.tile_ids[0]})
    try:
        return job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, op_selection=["s2_items", "s1_items"]
        ).success
    except Exception:  # the database went away under the run: the run failed, nothing else
        return False


def main() -> None:
    mode, work, db = sys.argv[1], Path(os.environ["KZ_FAULTS_WORK"]), os.environ["KZ_FAULTS_DB"]
    days = [d.isoformat() for d in _days(REGION)]
    job = _job(work)
    if mode == "run":
        admin = (
            f"host={os.environ.get('KZ_PG_HOST', '127.0.0.1')} port={os.environ.get('KZ_PG_PORT', '5432')} "
        )
        admin += f"user={os.environ.get('KZ_PG_USER', 'postgres')} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        instance = _instance(work, db)
        instance.add_dynamic_partitions("tile", list(REGION.tile_ids))
        print("started", flush=True)
        failed = 0
        for day in days:
            if not _materialize(instance, job, day):
                failed += 1
                time.sleep(1.0)
        print(json.dumps({"failed": failed}), flush=True)
        return
    for _ in range(30):  # the server may still be starting
        try:
            instance = _instance(work, db)
            done = instance.get_materialized_partitions(dg.AssetKey("s2_items"))
            break
        except Exception:
            time.sleep(1.0)
    else:
        raise RuntimeError("PostgreSQL did not come back")
    for day in days:
        if f"{day}|{REGION.tile_ids[0]}" not in done:
            _materialize(instance, job, day)
    materialized = instance.get_materialized_partitions(dg.AssetKey("s2_items"))
    storage = work / "pg-storage"
    items = sorted(p.stem for p in (storage / "items" / "s2_l2a" / REGION.tile_ids[0]).glob("*.json"))
    print(json.dumps({
        "expected": len(days),
        "materialized": len(materialized),
        "stray_tmp": len(list(storage.rglob(".*.tmp"))),
        "lost": len(set(days) - set(items)),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
