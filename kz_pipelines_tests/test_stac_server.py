"""The local STAC API (pgSTAC + stac-fastapi-pgstac) answers searches over loaded items.

Needs PostgreSQL on 127.0.0.1:5432 with PostGIS; skipped when the server cannot be reached.
Uses its own database, ``kz_stac_test``, dropped and recreated once per test module.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pystac_client import Client

from kz_pipelines.stac_server import (
    PgConnection,
    PortInUseError,
    ServerStartError,
    bind_port,
    load_catalog,
    prepare_database,
    running_server,
)

TEST_DB = "kz_stac_test"
COLLECTION_ID = "sentinel-2-l2a"

# Two scenes over Astana, one over Almaty, and one cloudy Astana scene.
ASTANA_BBOX = [70.9, 50.9, 72.0, 51.6]
_SCENES: list[tuple[str, str, list[float], float]] = [
    ("S2B_42UXG_20250705_0_L2A", "2025-07-05T06:31:21.000000Z", [71.0, 51.0, 71.5, 51.5], 4.2),
    ("S2A_42UXG_20250715_0_L2A", "2025-07-15T06:31:19.000000Z", [71.4, 51.0, 71.9, 51.5], 25.0),
    ("S2B_42UXG_20250725_0_L2A", "2025-07-25T06:31:22.000000Z", [71.0, 51.0, 71.5, 51.5], 61.7),
    ("S2A_43TGH_20250710_0_L2A", "2025-07-10T05:41:11.000000Z", [76.8, 43.1, 77.3, 43.6], 1.5),
]


def _asset(href: str, title: str, band: str | None, roles: list[str]) -> dict[str, Any]:
    asset: dict[str, Any] = {
        "href": href,
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": title,
        "roles": roles,
    }
    if band is not None:
        asset["eo:bands"] = [{"name": band}]
        asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]
    return asset


def _item(item_id: str, dt: str, bbox: list[float], cloud_cover: float) -> dict[str, Any]:
    """A small item shaped like an Earth Search v1 ``sentinel-2-l2a`` item."""
    west, south, east, north = bbox
    root = f"/data/sentinel-2-l2a/{item_id}"
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": item_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
        },
        "bbox": bbox,
        "properties": {
            "datetime": dt,
            "platform": "sentinel-2b" if item_id.startswith("S2B") else "sentinel-2a",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": cloud_cover,
            "proj:epsg": 32642,
            "mgrs:utm_zone": 42,
            "s2:processing_baseline": "05.11",
        },
        "links": [],
        "assets": {
            "red": _asset(f"{root}/B04.tif", "Red - 10m", "B04", ["data", "reflectance"]),
            "nir": _asset(f"{root}/B08.tif", "NIR 1 - 10m", "B08", ["data", "reflectance"]),
            "scl": _asset(f"{root}/SCL.tif", "Scene classification map (SCL)", None, ["data"]),
        },
        "collection": COLLECTION_ID,
    }


ITEMS = [_item(*scene) for scene in _SCENES]

COLLECTION: dict[str, Any] = {
    "type": "Collection",
    "stac_version": "1.0.0",
    "id": COLLECTION_ID,
    "description": "Sentinel-2 L2A test scenes",
    "license": "proprietary",
    "extent": {
        "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
        "temporal": {"interval": [["2015-06-27T10:25:31Z", None]]},
    },
    "links": [],
}


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def _count_items(conn: PgConnection) -> int:
    with psycopg.connect(conn.dsn) as db:
        row = db.execute("SELECT count(*) FROM pgstac.items").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def pg_conn() -> PgConnection:
    if not _postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    conn = PgConnection(dbname=TEST_DB)
    with psycopg.connect(conn._uri("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEST_DB)))
    prepare_database(conn)
    prepare_database(conn)  # idempotent
    assert load_catalog(conn, [COLLECTION], copy.deepcopy(ITEMS)) == len(ITEMS)
    return conn


@pytest.fixture(scope="module")
def stac_url(pg_conn: PgConnection) -> Iterator[str]:
    with running_server(pg_conn) as url:
        yield url


def _search_ids(url: str, **kwargs: Any) -> list[str]:
    client = Client.open(url)
    return sorted(item.id for item in client.search(collections=[COLLECTION_ID], **kwargs).items())


@pytest.mark.postgres
@pytest.mark.slow
def test_search_bbox_datetime_and_cloud_cover(stac_url: str) -> None:
    ids = _search_ids(
        stac_url,
        bbox=ASTANA_BBOX,
        datetime="2025-07-01T00:00:00Z/2025-07-31T23:59:59Z",
        query={"eo:cloud_cover": {"lt": 30}},
    )
    assert ids == ["S2A_42UXG_20250715_0_L2A", "S2B_42UXG_20250705_0_L2A"]

    ids = _search_ids(
        stac_url,
        bbox=ASTANA_BBOX,
        datetime="2025-07-10T00:00:00Z/2025-07-31T23:59:59Z",
        query={"eo:cloud_cover": {"lt": 30}},
    )
    assert ids == ["S2A_42UXG_20250715_0_L2A"]


@pytest.mark.postgres
@pytest.mark.slow
def test_search_cql2_filter(stac_url: str) -> None:
    ids = _search_ids(
        stac_url,
        filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]},
        filter_lang="cql2-json",
    )
    assert ids == ["S2A_43TGH_20250710_0_L2A", "S2B_42UXG_20250705_0_L2A"]


@pytest.mark.postgres
@pytest.mark.slow
def test_bbox_missing_all_items_returns_none(stac_url: str) -> None:
    assert _search_ids(stac_url, bbox=[10.0, 10.0, 11.0, 11.0]) == []


@pytest.mark.postgres
@pytest.mark.slow
def test_items_come_back_with_their_asset_hrefs(stac_url: str) -> None:
    item = next(
        Client.open(stac_url).search(ids=["S2B_42UXG_20250705_0_L2A"], collections=[COLLECTION_ID]).items()
    )
    assert item.assets["red"].href == "/data/sentinel-2-l2a/S2B_42UXG_20250705_0_L2A/B04.tif"
    assert item.properties["eo:cloud_cover"] == pytest.approx(4.2)


@pytest.mark.postgres
@pytest.mark.slow
def test_loading_twice_does_not_duplicate(pg_conn: PgConnection, stac_url: str) -> None:
    assert load_catalog(pg_conn, [COLLECTION], copy.deepcopy(ITEMS)) == len(ITEMS)
    assert _count_items(pg_conn) == len(ITEMS)
    ids = _search_ids(stac_url)
    assert ids == sorted(item["id"] for item in ITEMS)


def test_binding_a_busy_port_raises_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=rf"^port {port} on 127\.0\.0\.1 is already in use$"):
            bind_port("127.0.0.1", port)


@pytest.mark.postgres
def test_running_server_reports_a_failed_startup() -> None:
    if not _postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    missing = PgConnection(dbname="kz_stac_test_does_not_exist")
    with (
        pytest.raises(ServerStartError, match="does not exist"),
        running_server(missing, log_level="critical"),
    ):
        pytest.fail("the server should not have started")
