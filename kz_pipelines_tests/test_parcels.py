"""Parcel loading and hygiene: each rule on a case made for it, every format the asset accepts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from kz_pipelines.parcels import (
    EQUAL_AREA_EPSG,
    UNKNOWN_CLASS,
    ParcelError,
    clean_parcels,
    home_tiles,
    read_parcels,
    tile_parcels,
)
from kz_pipelines.raster import GridSpec

X0, Y0 = 500000.0, 6500000.0
"""Upper-left corner of the test parcels (EPSG:32635)."""

MALAWI = Path(__file__).resolve().parents[2] / "shared" / "data" / "openeo_malawi_2023"


def _square(col: int, row: int, size: float = 100.0) -> shapely.Polygon:
    x, y = X0 + col * 200.0, Y0 - row * 200.0
    return shapely.box(x, y - size, x + size, y)


@pytest.fixture
def messy() -> gpd.GeoDataFrame:
    """Parcels with one case of each hygiene rule."""
    bowtie = shapely.Polygon([(X0, Y0 - 400), (X0 + 100, Y0 - 500), (X0 + 100, Y0 - 400), (X0, Y0 - 500)])
    rows = [
        ("ok", "1101", _square(0, 0)),
        ("multi", "1202", shapely.MultiPolygon([_square(1, 0), _square(2, 0)])),
        ("bowtie", "3101", bowtie),  # self-intersecting: repaired into two triangles
        ("line", "3101", shapely.LineString([(X0, Y0), (X0 + 100, Y0 - 100)])),  # not a polygon
        ("empty", "1101", shapely.Polygon()),
        ("tiny", "1101", _square(3, 0, size=10.0)),  # 100 m2: a sliver by area
        ("thin", "1101", shapely.box(X0, Y0 - 1000, X0 + 400, Y0 - 1002)),  # 2 m wide: a sliver by width
        ("dup", "1101", _square(0, 3)),
        ("dup", "1102", _square(1, 3)),
        ("odd", "9999", _square(2, 3)),  # unknown crop code
        ("odd2", "9999", _square(3, 3)),
    ]
    return gpd.GeoDataFrame(
        {"parcel_id": [r[0] for r in rows], "declared_code": [r[1] for r in rows]},
        geometry=[r[2] for r in rows],
        crs=32635,
    )


def test_hygiene_rules_each_counted(messy: gpd.GeoDataFrame) -> None:
    parcels, report = clean_parcels(messy)
    assert list(parcels["parcel_id"]) == ["bowtie", "multi", "odd", "odd2", "ok"]
    assert report.repaired == ["bowtie"]
    assert report.rejected_invalid == ["line"]
    assert report.dropped_empty == ["empty"]
    assert report.dropped_sliver == ["thin", "tiny"]
    assert report.rejected_duplicate == ["dup"]
    assert report.multipolygons == 2  # the declared multipolygon and the repaired bow-tie
    assert report.unknown_codes == {"9999": 2}
    assert report.counts()["kept"] == 5
    assert report.counts()["rows_in"] == 11
    by_id = parcels.set_index("parcel_id")
    assert by_id.loc["ok", "crop_name"] == "winter_wheat"
    assert by_id.loc["multi", "crop_name"] == "spring_barley"
    assert by_id.loc["odd", "crop_class"] == UNKNOWN_CLASS
    assert by_id.loc["odd", "crop_name"] == "unknown"
    assert by_id.loc["bowtie", "geometry"].is_valid
    # areas on the equal-area grid: 1 ha squares (UTM scale error at this longitude is under 0.1%)
    assert by_id.loc["ok", "area_ha"] == pytest.approx(1.0, rel=2e-3)
    assert by_id.loc["multi", "area_ha"] == pytest.approx(2.0, rel=2e-3)
    assert parcels.crs.to_epsg() == 32635


def test_only_bad_rows_is_an_error(messy: gpd.GeoDataFrame) -> None:
    bad = messy[messy["parcel_id"].isin(["line", "empty", "tiny"])]
    with pytest.raises(ParcelError, match="no usable parcel left of 3"):
        clean_parcels(bad)
    with pytest.raises(ParcelError, match="no column 'crop'"):
        clean_parcels(messy, code_column="crop")


def test_result_independent_of_row_order(messy: gpd.GeoDataFrame) -> None:
    a, _ = clean_parcels(messy)
    b, _ = clean_parcels(messy.iloc[::-1])
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))


@pytest.mark.parametrize("suffix", [".parquet", ".gpkg", ".shp"])
def test_read_file_formats(tmp_path: Path, messy: gpd.GeoDataFrame, suffix: str) -> None:
    # Shapefile column names have at most 10 characters: the code column is named for it
    good = messy[messy["parcel_id"].isin(["ok", "multi", "odd"])].rename(
        columns={"declared_code": "crop_code"}
    )
    path = tmp_path / f"parcels{suffix}"
    if suffix == ".parquet":
        good.to_parquet(path)
    else:
        good.to_file(path)
    parcels, report = clean_parcels(read_parcels(str(path)), code_column="crop_code")
    assert sorted(parcels["parcel_id"]) == ["multi", "odd", "ok"]
    assert report.kept == 3


def test_read_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ParcelError, match="nope.gpkg does not exist"):
        read_parcels(str(tmp_path / "nope.gpkg"))
    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"not a geopackage")
    with pytest.raises(ParcelError, match="cannot read .*broken.gpkg"):
        read_parcels(str(bad))
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(ParcelError, match="unknown format '.csv'"):
        read_parcels(str(tmp_path / "p.csv"))


def test_real_field_polygons() -> None:
    """Real crop fields (Malawi, openEO GFMap fixtures) pass hygiene and get areas."""
    path = MALAWI / next((p.name for p in MALAWI.glob("*.gpkg")), "missing.gpkg")
    if not path.is_file():
        pytest.skip(f"{MALAWI} not found")
    raw = read_parcels(str(path))
    raw = raw.assign(parcel_id=range(len(raw)), declared_code="x")
    parcels, report = clean_parcels(raw)
    assert report.rows_in == len(raw)
    assert report.kept + len(report.dropped_sliver) + len(report.rejected_invalid) + len(
        report.dropped_empty
    ) == len(raw)
    assert report.unknown_codes == {"x": report.kept}
    assert (parcels["area_ha"] > 0).all()
    assert parcels.to_crs(EQUAL_AREA_EPSG).area.div(1e4).to_numpy() == pytest.approx(
        parcels["area_ha"].to_numpy()
    )


# ---------------------------------------------------------------------------------------------- PostGIS


@pytest.fixture
def postgis_table(messy: gpd.GeoDataFrame) -> Iterator[str]:
    """The messy parcels as a PostGIS table in the machine's ``test`` database (skipped without PostGIS)."""
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    table = f"parcels_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        pytest.skip(f"PostGIS not available on 127.0.0.1:5432: {exc.__class__.__name__}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f'CREATE TABLE public."{table}" '
                "(parcel_id text, declared_code text, geom geometry(Geometry, 32635))"
            )
        )
        conn.execute(
            sa.text(f'INSERT INTO public."{table}" VALUES (:pid, :code, ST_GeomFromWKB(:wkb, 32635))'),
            [
                {"pid": pid, "code": code, "wkb": shapely.to_wkb(g)}
                for pid, code, g in zip(
                    messy["parcel_id"], messy["declared_code"], messy.geometry, strict=True
                )
            ],
        )
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/test?table=public.{table}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS public."{table}"'))
        engine.dispose()


def test_read_postgis_table(postgis_table: str) -> None:
    parcels, report = clean_parcels(read_parcels(postgis_table))
    assert list(parcels["parcel_id"]) == ["bowtie", "multi", "odd", "odd2", "ok"]
    assert report.rejected_duplicate == ["dup"]
    assert parcels.crs.to_epsg() == 32635


def test_postgis_errors_name_the_table() -> None:
    with pytest.raises(ParcelError, match="names no table"):
        read_parcels("postgresql://postgres@127.0.0.1:5432/test")
    with pytest.raises(ParcelError, match="no geometry column in table public.no_such_table"):
        read_parcels("postgresql://postgres@127.0.0.1:5432/test?table=public.no_such_table")


# ------------------------------------------------------------------------------------------------ tiles


def test_straddling_parcel_is_in_both_tiles_with_one_home() -> None:
    west = GridSpec(32635, X0 - 1000, Y0, 10.0, 100, 100)  # x up to X0
    east = GridSpec(32635, X0 - 300, Y0, 10.0, 100, 100)  # overlaps west by 300 m
    parcels = gpd.GeoDataFrame(
        {"parcel_id": ["w", "both", "e"]},
        geometry=[
            shapely.box(X0 - 900, Y0 - 100, X0 - 800, Y0),  # only in west
            shapely.box(X0 - 100, Y0 - 100, X0 + 100, Y0),  # half in west, all in east
            shapely.box(X0 + 200, Y0 - 100, X0 + 300, Y0),  # only in east
        ],
        crs=32635,
    )
    in_west = tile_parcels(parcels, west).set_index("parcel_id")["inside_fraction"]
    in_east = tile_parcels(parcels, east).set_index("parcel_id")["inside_fraction"]
    assert dict(in_west) == pytest.approx({"w": 1.0, "both": 0.5})
    assert dict(in_east) == pytest.approx({"both": 1.0, "e": 1.0})
    assert list(home_tiles(parcels, {"W": west, "E": east})) == ["W", "E", "E"]
    # a parcel wholly inside the overlap: a tie, the first tile id wins
    tie = parcels.assign(geometry=[shapely.box(X0 - 250, Y0 - 100, X0 - 150, Y0)] * 3)
    assert list(home_tiles(tie, {"W": west, "E": east})) == ["E", "E", "E"]
