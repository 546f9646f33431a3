"""Declared parcels: loading from files or PostGIS, geometry hygiene, crop classes, and tiles.

A paying agency's declaration set arrives as GeoParquet, GeoPackage, Shapefile or a PostGIS table and is
never clean: self-intersecting rings, empty geometries, slivers left by digitizing, the same parcel id
twice, crop codes missing from the taxonomy. :func:`clean_parcels` repairs what can be repaired, drops or
rejects the rest, and says what it did in a :class:`HygieneReport`; nothing is dropped silently.

Rules (each counted in the report):

* **duplicate ids**: every row of an id that occurs more than once is rejected (which of them is the
  declaration is not knowable here);
* **empty** (null or empty geometry): dropped;
* **invalid** geometry: repaired with ``shapely.make_valid`` keeping its polygonal parts; rejected when
  nothing polygonal is left (and so are points and lines);
* **slivers**: dropped when the area is under ``min_area_m2`` or the mean width (2 x area / perimeter) is
  under ``min_width_m``;
* **multipolygons** are kept (one parcel, several rings);
* **crop codes** map to the 28-class taxonomy (``data_contracts/crop_taxonomy.yaml``) for a coding scheme;
  unknown codes are kept with class 0 ``unknown`` and listed with their counts.

Areas are computed on the equal-area EPSG:6933 grid (area in ha), whatever the input CRS. A parcel
straddling two tiles is observed in both: :func:`home_tiles` gives every parcel the tile holding most of
its area, and the season tensor of that tile merges the observations of all tiles (largest valid-pixel
count wins, so overlapping tiles never count twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from kz_pipelines.errors import UserFacingError
from kz_pipelines.labels import Taxonomy, load_taxonomy
from kz_pipelines.raster import GridSpec

__all__ = [
    "EQUAL_AREA_EPSG",
    "UNKNOWN_CLASS",
    "HygieneReport",
    "ParcelError",
    "clean_parcels",
    "home_tiles",
    "read_parcels",
    "tile_parcels",
]

EQUAL_AREA_EPSG = 6933
"""WGS 84 / NSIDC EASE-Grid 2.0 Global: an equal-area CRS, valid everywhere, for parcel areas."""

UNKNOWN_CLASS = 0
"""Crop class of a declared code the taxonomy does not know."""

_FILE_SUFFIXES = {".parquet", ".geoparquet", ".gpkg", ".shp", ".geojson", ".json", ".fgb", ".zip"}


class ParcelError(UserFacingError):
    """Parcels could not be read or have no usable rows; the message names the source."""


# ------------------------------------------------------------------------------------------------ reading


def read_parcels(url: str) -> gpd.GeoDataFrame:
    """Read declared parcels from a file or a PostGIS table.

    Args:
        url: a GeoParquet (``.parquet``, ``.geoparquet``), GeoPackage (``.gpkg``, optionally ``?layer=NAME``),
            Shapefile (``.shp`` or a zipped one), GeoJSON or FlatGeobuf path; or a PostgreSQL URL naming the
            table, ``postgresql://user@host:5432/db?table=schema.parcels`` (the geometry column is found
            from PostGIS's ``geometry_columns``).

    Returns:
        The rows with their CRS.

    Raises:
        ParcelError: naming ``url``, when it does not exist, cannot be read, has no CRS or no rows.
    """
    parts = urlsplit(url)
    if parts.scheme.startswith("postgres"):
        gdf = _read_postgis(url)
    else:
        path = Path(parts.path if parts.scheme == "file" else url.split("?", 1)[0])
        if not path.exists():
            raise ParcelError(f"parcels: {path} does not exist")
        suffix = path.suffix.lower()
        if suffix not in _FILE_SUFFIXES:
            raise ParcelError(f"parcels: {path}: unknown format {suffix!r} (one of {sorted(_FILE_SUFFIXES)})")
        layer = parse_qs(parts.query).get("layer", [None])[0] if "?" in url else None
        try:
            if suffix in (".parquet", ".geoparquet"):
                gdf = gpd.read_parquet(path)
            else:
                gdf = gpd.read_file(path, layer=layer)
        except Exception as exc:  # the readers raise many types; the user needs the file and the reason
            raise ParcelError(f"parcels: cannot read {path}: {exc}") from exc
    if gdf.crs is None:
        raise ParcelError(f"parcels: {url} has no CRS")
    if gdf.empty:
        raise ParcelError(f"parcels: {url} has no rows")
    return gdf


def _read_postgis(url: str) -> gpd.GeoDataFrame:
    """Rows of the table named by ``?table=`` in a PostgreSQL URL (read with SQLAlchemy and psycopg)."""
    import sqlalchemy as sa

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    table = query.pop("table", [None])[0]
    if not table:
        raise ParcelError(f"parcels: {_redact(url)} names no table (add ?table=schema.name)")
    schema, _, name = table.rpartition(".")
    dsn = urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query, doseq=True), ""))
    engine = sa.create_engine(dsn)
    try:
        with engine.connect() as conn:
            geom_col = conn.execute(
                sa.text(
                    "SELECT f_geometry_column FROM geometry_columns "
                    "WHERE f_table_name = :name AND f_table_schema = :schema"
                ),
                {"name": name, "schema": schema or "public"},
            ).scalar()
            if geom_col is None:
                raise ParcelError(f"parcels: {_redact(url)}: no geometry column in table {table}")
            ident = sa.table(name, schema=schema or None)
            return gpd.read_postgis(sa.select(sa.text("*")).select_from(ident), conn, geom_col=geom_col)
    except sa.exc.SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise ParcelError(f"parcels: {_redact(url)}: {exc.__class__.__name__}: {reason}") from exc
    finally:
        engine.dispose()


def _redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# ------------------------------------------------------------------------------------------------ hygiene


@dataclass
class HygieneReport:
    """What :func:`clean_parcels` did, row by row.

    Attributes:
        rows_in: rows read.
        kept: rows kept.
        repaired: ids of invalid geometries repaired (kept).
        rejected_invalid: ids of geometries with nothing polygonal left after repair (or not polygons).
        dropped_empty: ids of null or empty geometries.
        dropped_sliver: ids of slivers (too small or too thin).
        rejected_duplicate: ids occurring more than once (all their rows rejected).
        multipolygons: kept parcels made of several polygons.
        unknown_codes: declared codes missing from the taxonomy -> number of parcels (kept as ``unknown``).
    """

    rows_in: int = 0
    kept: int = 0
    repaired: list[str] = field(default_factory=list)
    rejected_invalid: list[str] = field(default_factory=list)
    dropped_empty: list[str] = field(default_factory=list)
    dropped_sliver: list[str] = field(default_factory=list)
    rejected_duplicate: list[str] = field(default_factory=list)
    multipolygons: int = 0
    unknown_codes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """The number of parcels under each rule (for metadata)."""
        return {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "repaired": len(self.repaired),
            "rejected_invalid": len(self.rejected_invalid),
            "dropped_empty": len(self.dropped_empty),
            "dropped_sliver": len(self.dropped_sliver),
            "rejected_duplicate": len(self.rejected_duplicate),
            "multipolygons": self.multipolygons,
            "unknown_code_parcels": sum(self.unknown_codes.values()),
        }


def _polygonal(geom: Any) -> Any:
    """The polygonal parts of a geometry as one Polygon/MultiPolygon (empty when there are none)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return shapely.Polygon()
    merged = shapely.union_all(parts)
    return merged if merged.geom_type in ("Polygon", "MultiPolygon") else _polygonal(merged)


def clean_parcels(
    gdf: gpd.GeoDataFrame,
    *,
    id_column: str = "parcel_id",
    code_column: str = "declared_code",
    scheme: str = "sim",
    taxonomy: Taxonomy | None = None,
    min_area_m2: float = 200.0,
    min_width_m: float = 5.0,
) -> tuple[gpd.GeoDataFrame, HygieneReport]:
    """Repair, drop and reject parcels by the module's rules, and map declared codes to crop classes.

    Args:
        gdf: declared parcels with a CRS.
        id_column: the parcel id column (ids become strings).
        code_column: the declared crop code column (codes become strings).
        scheme: the taxonomy's coding scheme of the declared codes (``sim``, ``ewoc``...).
        taxonomy: the crop taxonomy (default: the repository's).
        min_area_m2: parcels smaller than this are slivers (default 2 pixels of 10 m).
        min_width_m: parcels whose mean width 2 A / P is below this are slivers (default half a pixel).

    Returns:
        The kept parcels (input CRS; columns ``parcel_id``, ``declared_code``, ``crop_class``, ``crop_name``,
        ``arable``, ``area_ha``, ``geometry`` plus the input's other columns), sorted by ``parcel_id``, and
        the report.

    Raises:
        ParcelError: when a column is missing or the frame has no CRS.
    """
    for col in (id_column, code_column):
        if col not in gdf.columns:
            raise ParcelError(f"parcels: no column {col!r} (columns: {list(gdf.columns)})")
    if gdf.crs is None:
        raise ParcelError("parcels: no CRS")
    tax = taxonomy or load_taxonomy()
    report = HygieneReport(rows_in=len(gdf))
    df = gdf.rename(columns={id_column: "parcel_id", code_column: "declared_code"}).copy()
    df = df.set_geometry(df.geometry.name)
    df["parcel_id"] = df["parcel_id"].astype(str)
    df["declared_code"] = df["declared_code"].astype(str)

    dup = df["parcel_id"].duplicated(keep=False)
    report.rejected_duplicate = sorted(set(df.loc[dup, "parcel_id"]))
    df = df.loc[~dup]

    geoms = df.geometry.to_numpy()
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    report.dropped_empty = sorted(df.loc[empty, "parcel_id"])
    df, geoms = df.loc[~empty], geoms[~empty]

    invalid = ~shapely.is_valid(geoms)
    fixed = np.array([_polygonal(g) for g in shapely.make_valid(geoms)], dtype=object)
    bad = shapely.is_empty(fixed)
    report.repaired = sorted(df.loc[invalid & ~bad, "parcel_id"])
    report.rejected_invalid = sorted(df.loc[bad, "parcel_id"])
    df = df.loc[~bad].copy()
    df[df.geometry.name] = gpd.GeoSeries(fixed[~bad], index=df.index, crs=df.crs)

    metric = df.geometry.to_crs(EQUAL_AREA_EPSG)
    area, perimeter = metric.area.to_numpy(), metric.length.to_numpy()
    width = np.divide(2 * area, perimeter, out=np.zeros_like(area), where=perimeter > 0)
    sliver = (area < min_area_m2) | (width < min_width_m)
    report.dropped_sliver = sorted(df.loc[sliver, "parcel_id"])
    df = df.loc[~sliver].copy()
    df["area_ha"] = area[~sliver] / 1e4
    report.multipolygons = int((df.geometry.geom_type == "MultiPolygon").sum())

    codes = tax.code_map(scheme)
    known = df["declared_code"].map(lambda c: codes.get(c))
    report.unknown_codes = dict(sorted(Counter(df.loc[known.isna(), "declared_code"]).items()))
    df["crop_class"] = known.map(lambda c: c.id if c is not None else UNKNOWN_CLASS).astype("int16")
    df["crop_name"] = known.map(lambda c: c.name if c is not None else "unknown")
    df["arable"] = known.map(lambda c: bool(c.arable) if c is not None else False).astype(bool)
    report.kept = len(df)
    if df.empty:
        raise ParcelError(f"parcels: no usable parcel left of {report.rows_in} ({report.counts()})")
    first = ["parcel_id", "declared_code", "crop_class", "crop_name", "arable", "area_ha"]
    rest = [c for c in df.columns if c not in first]
    out = gpd.GeoDataFrame(df[first + rest], geometry=df.geometry.name, crs=df.crs)
    return out.sort_values("parcel_id", kind="stable").reset_index(drop=True), report


# -------------------------------------------------------------------------------------------------- tiles


def tile_parcels(parcels: gpd.GeoDataFrame, grid: GridSpec) -> gpd.GeoDataFrame:
    """The parcels that overlap a tile grid, in the grid's CRS, with ``inside_fraction`` (share of each
    parcel's area inside the grid's extent)."""
    local = parcels.to_crs(grid.epsg)
    extent = shapely.box(*grid.bounds)
    inside = shapely.area(shapely.intersection(local.geometry.to_numpy(), extent))
    fraction = inside / np.maximum(local.area.to_numpy(), 1e-9)
    out = local.loc[fraction > 0].copy()
    out["inside_fraction"] = fraction[fraction > 0]
    return out


def home_tiles(parcels: gpd.GeoDataFrame, grids: Mapping[str, GridSpec]) -> pd.Series:
    """Each parcel's home tile: the tile holding the largest share of its area (ties: the first tile id in
    sorted order); ``None`` for a parcel outside every tile. Indexed like ``parcels``."""
    best = pd.Series([None] * len(parcels), index=parcels.index, dtype=object)
    share = pd.Series(0.0, index=parcels.index)
    for tile in sorted(grids):
        inside = tile_parcels(parcels, grids[tile])["inside_fraction"]
        better = inside > share.loc[inside.index] + 1e-9
        idx = inside.index[better.to_numpy()]
        best.loc[idx] = tile
        share.loc[idx] = inside.loc[idx]
    return best
