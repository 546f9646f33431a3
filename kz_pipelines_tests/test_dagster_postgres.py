"""A real Dagster instance on PostgreSQL, configured by the repo's dagster.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from kz_pipelines.definitions import defs
from kz_pipelines.defs.resources import StacResource, StorageResource

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
DB = "kz_dagster_test"


def test_materialize_item_partition_on_postgres(
    region: Path, postgres: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = f"host={postgres['host']} port={postgres['port']} user={postgres['user']} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    env = {
        "KZ_PG_HOST": postgres["host"],
        "KZ_PG_PORT": postgres["port"],
        "KZ_PG_USER": postgres["user"],
        "KZ_PG_PASSWORD": postgres["password"],
        "KZ_PG_DB": DB,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # the repo's dagster.yaml, in a home of its own so local artifacts and compute logs stay out of the repo
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        item = next(p for p in (region / "stac" / "sentinel-2-l2a" / "35VLF").glob("*/*/*") if p.is_dir())
        day = f"{item.name.split('_')[2][:4]}-{item.name.split('_')[2][4:6]}-{item.name.split('_')[2][6:]}"
        key = dg.MultiPartitionKey({"date": day, "tile": "35VLF"})
        s2_items = next(
            a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and a.key.path == ["s2_items"]
        )
        result = dg.materialize(
            [s2_items],
            partition_key=key,
            instance=instance,
            resources={
                "stac": StacResource(catalog=str(region)),
                "storage": StorageResource(root=str(tmp_path)),
            },
        )
        assert result.success
        run_id = result.run_id
    finally:
        instance.dispose()
    dsn = f"host={postgres['host']} port={postgres['port']} user={postgres['user']} dbname={DB}"
    with psycopg.connect(dsn) as c:
        status = c.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        assert status == ("SUCCESS",)
        events = {
            r[0] for r in c.execute("SELECT dagster_event_type FROM event_logs WHERE run_id = %s", (run_id,))
        }
        # run-level events keep their historical names in storage
        assert {"PIPELINE_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION", "PIPELINE_SUCCESS"} <= events
        mat = c.execute(
            "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = "
            "'ASSET_MATERIALIZATION'",
            (run_id,),
        ).fetchone()
        assert mat is not None
        assert "s2_items" in mat[0]
        assert mat[1] == str(key)
    assert (tmp_path / "items" / "s2_l2a" / "35VLF" / f"{day}.json").is_file()
