"""The simulated region through a real STAC API (stac-fastapi-pgstac): same search results and pixels
as the embedded path, through pystac-client and stackstac."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import stackstac
from psycopg import sql

from kz_pipelines.stac import open_search, read_region_catalog
from kz_pipelines.stac_server import PgConnection, load_catalog, prepare_database, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
DB = "kz_stac_region_test"


@pytest.fixture(scope="module")
def api_url(region: Path, postgres: dict[str, str]) -> Iterator[str]:
    conn = PgConnection(
        host=postgres["host"],
        port=int(postgres["port"]),
        user=postgres["user"],
        password=postgres["password"],
        dbname=DB,
    )
    admin = f"host={conn.host} port={conn.port} user={conn.user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    prepare_database(conn)
    collections, items = read_region_catalog(region)
    assert load_catalog(conn, collections, items) == len(items)
    with running_server(conn) as url:
        yield url


def test_api_and_embedded_search_agree(region: Path, api_url: str) -> None:
    embedded, api = open_search(str(region)), open_search(api_url)
    any_item = embedded.search(["sentinel-2-l2a"], query={"grid:code": {"eq": "MGRS-35VMF"}})[0]
    args = {
        "bbox": any_item.bbox,
        "datetime": "2024-06-01/2024-07-15",
        "query": {"eo:cloud_cover": {"lt": 50}},
    }
    a = [i.id for i in embedded.search(["sentinel-2-l2a"], **args)]  # type: ignore[arg-type]
    b = [i.id for i in api.search(["sentinel-2-l2a"], **args)]  # type: ignore[arg-type]
    assert a == b
    assert a
    assert all(i.properties["eo:cloud_cover"] < 50 for i in api.search(["sentinel-2-l2a"], **args))  # type: ignore[arg-type]
    s1a = [
        i.id
        for i in embedded.search(["sentinel-1-grd"], bbox=any_item.bbox, datetime="2024-06-01/2024-06-30")
    ]
    s1b = [i.id for i in api.search(["sentinel-1-grd"], bbox=any_item.bbox, datetime="2024-06-01/2024-06-30")]
    assert s1a == s1b
    assert s1a
    assert api.search(["sentinel-2-l2a"], bbox=[0.0, 0.0, 0.1, 0.1]) == []


def test_pixels_loaded_through_the_api_equal_embedded(region: Path, api_url: str) -> None:
    q = {"grid:code": {"eq": "MGRS-35VLF"}}
    item_e = open_search(str(region)).search(["sentinel-2-l2a"], datetime="2024-06-10/2024-06-30", query=q)[0]
    item_a = next(
        i
        for i in open_search(api_url).search(["sentinel-2-l2a"], datetime="2024-06-10/2024-06-30", query=q)
        if i.id == item_e.id
    )
    cubes = [
        stackstac.stack(
            [it],
            assets=["red", "swir16"],
            epsg=32635,
            resolution=10,
            rescale=True,
            dtype="float64",
            fill_value=np.nan,
        )
        .compute()
        .values
        for it in (item_e, item_a)
    ]
    assert np.isfinite(cubes[0]).mean() > 0.5
    np.testing.assert_array_equal(cubes[0], cubes[1])
