"""Loading scenes onto the tile grid: simulated scenes equal their truth whatever the provider's metadata
style, real products load with the right values and georeferencing, and faults name the item."""

from __future__ import annotations

import http.server
import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.features import geometry_mask
from shapely.geometry import shape

from kz_pipelines.ingest import (
    ENCODED_NODATA,
    IngestError,
    SceneReadError,
    load_s1_scene,
    load_s2_scene,
    read_band,
    scene_grid,
)
from kz_pipelines.raster import GridSpec
from kz_pipelines.sim.region import plan_region, render_s2_scene
from kz_pipelines.stac import BandAsset, ItemNormalizationError, SceneItem, normalize_item, open_search
from kz_pipelines_tests.conftest import SMALL


def _raw_items(region: Path, collection: str, tile: str = "35VLF") -> list[dict[str, Any]]:
    items = open_search(str(region)).search([collection])
    return [
        i.to_dict(transform_hrefs=False) for i in items if tile in i.id or collection.startswith("sentinel-1")
    ]


def _sim_scene_for(item: SceneItem) -> Any:
    world, s2, _ = plan_region(SMALL)[0]
    k = next(i for i, a in enumerate(s2) if a.time.strftime("%Y%m%d") in item.id)
    return world, render_s2_scene(SMALL, world, k, s2[k])


def _cloudy_l2a(region: Path) -> SceneItem:
    """A 35VLF L2A item with both clouds and swath edge (no data) in the window."""
    items = [normalize_item(d) for d in _raw_items(region, "sentinel-2-l2a")]
    return max(items, key=lambda i: (i.cloud_cover or 0) > 5 and (i.cloud_cover or 0) < 60)


def test_s2_scene_is_the_simulated_reflectance(region: Path) -> None:
    item = _cloudy_l2a(region)
    world, sim = _sim_scene_for(item)
    grid = scene_grid(item)
    assert grid == world.grid  # the simulated window, from the item's own proj:* metadata
    scene = load_s2_scene(item, grid)
    assert scene.reflectance.dtype == np.float32
    assert scene.reflectance.shape == (12, *grid.shape)
    for band in ("B02", "B04", "B08"):  # 10 m bands: the stored values, to uint16 rounding
        got = scene.reflectance[scene.bands.index(band)]
        truth = sim.band("L2A", band)
        valid = sim.valid[10]
        assert np.abs(got[valid] - truth[valid]).max() <= 0.5e-4 + 1e-6
        assert np.isnan(got[~valid]).all()
    coarse = load_s2_scene(item, grid.coarsened(20), bands=["B11", "B8A"])  # 20 m bands on their own grid
    for j, band in enumerate(("B11", "B8A")):
        valid = sim.valid[20]
        assert np.abs(coarse.reflectance[j][valid] - sim.band("L2A", band)[valid]).max() <= 0.5e-4 + 1e-6
    # on the 10 m grid each 20 m pixel is replicated 2 x 2: its measured value, not a blend
    b11 = scene.reflectance[scene.bands.index("B11")]
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        np.testing.assert_array_equal(b11[dy::2, dx::2], coarse.reflectance[0])
    assert scene.scl is not None
    np.testing.assert_array_equal(scene.scl[::2, ::2], np.where(sim.valid[20], sim.scl, 0))
    assert not scene.valid[~sim.valid[10]].any()


def test_encoded_load_is_the_reflectance_to_1e4(region: Path) -> None:
    item = _cloudy_l2a(region)
    grid = scene_grid(item)
    plain, encoded = load_s2_scene(item, grid), load_s2_scene(item, grid, encoded=True)
    assert encoded.reflectance.dtype == np.int16
    np.testing.assert_array_equal(encoded.valid, plain.valid)
    has_data = ~np.isnan(plain.reflectance)
    np.testing.assert_array_equal(encoded.reflectance != ENCODED_NODATA, has_data)
    np.testing.assert_array_equal(encoded.reflectance[has_data], np.rint(plain.reflectance[has_data] * 1e4))
    np.testing.assert_allclose(encoded.band("B04"), plain.band("B04"), atol=0.5e-4 + 1e-7)


def test_l1c_scene_has_the_cirrus_band(region: Path) -> None:
    item = normalize_item(_raw_items(region, "sentinel-2-l1c")[0])
    world, sim = _sim_scene_for(item)
    scene = load_s2_scene(item, world.grid.coarsened(60))
    assert scene.bands[10] == "B10"
    assert scene.scl is None
    valid = sim.valid[60]
    assert np.abs(scene.reflectance[10][valid] - sim.band("L1C", "B10")[valid]).max() <= 0.5e-4 + 1e-6


def _restyle(data: dict[str, Any], style: str) -> dict[str, Any]:
    """The same simulated item as another provider would publish it (same files)."""
    out = json.loads(json.dumps(data))
    props = out["properties"]
    bands = {a["eo:bands"][0]["name"]: (k, a) for k, a in out["assets"].items() if a.get("eo:bands")}
    bands["SCL"] = ("scl", out["assets"]["scl"])
    if style == "planetary-computer":  # band-id keys, no raster metadata, offset from the baseline
        out["assets"] = {
            name: {k: v for k, v in a.items() if k != "raster:bands"} for name, (_, a) in bands.items()
        }
        props.pop("earthsearch:boa_offset_applied")
        props["s2:mgrs_tile"] = props.pop("grid:code")[5:]
    elif style == "cdse":  # B04_10m keys, flat STAC 1.1 raster fields, asset-level proj:code
        assets = {}
        for name, (_, a) in bands.items():
            rb = a.pop("raster:bands")[0]
            a.update({"raster:scale": rb.get("scale", 1), "raster:offset": rb.get("offset", 0)})
            a.update(
                {
                    "nodata": rb["nodata"],
                    "data_type": rb["data_type"],
                    "proj:code": props["proj:code"],
                }
            )
            assets[f"{name}_{int(a['gsd'])}m"] = a
        out["assets"] = assets
        props.pop("earthsearch:boa_offset_applied")
        props.pop("proj:code")  # only on the assets
        props["processing:version"] = props.pop("s2:processing_baseline")
    return out


@pytest.mark.parametrize("style", ["planetary-computer", "cdse"])
def test_same_reflectance_whatever_the_metadata_style(region: Path, style: str) -> None:
    data = next(d for d in _raw_items(region, "sentinel-2-l2a"))
    reference = normalize_item(data)
    other = normalize_item(_restyle(data, style), provider=style)
    assert other.bands["B04"].asset != reference.bands["B04"].asset
    grid = scene_grid(reference)
    assert scene_grid(other) == grid
    a, b = load_s2_scene(reference, grid), load_s2_scene(other, grid)
    np.testing.assert_array_equal(a.reflectance, b.reflectance)
    np.testing.assert_array_equal(a.valid, b.valid)


def test_earth_search_harmonized_data_give_the_same_reflectance(region: Path, tmp_path: Path) -> None:
    """Element 84 removed the +1000 offset from some items' data and flagged them
    ``earthsearch:boa_offset_applied: true`` while raster:bands still says -0.1."""
    data = next(d for d in _raw_items(region, "sentinel-2-l2a"))
    reference = normalize_item(data)
    harmonized = json.loads(json.dumps(data))
    harmonized["properties"]["earthsearch:boa_offset_applied"] = True
    for key in ("red", "nir"):
        src_path = Path(data["assets"][key]["href"])
        with rasterio.open(src_path) as src:
            dn, profile = src.read(1), src.profile
        shifted = np.where(dn > 1000, dn - 1000, 0).astype(np.uint16)  # ESA's offset removed; <= 0 lost
        target = tmp_path / src_path.name
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(shifted, 1)
        harmonized["assets"][key]["href"] = str(target)
    item = normalize_item(harmonized)
    assert item.bands["B04"].offset == 0.0
    grid = scene_grid(reference)
    a = load_s2_scene(reference, grid, bands=["B04", "B08"])
    b = load_s2_scene(item, grid, bands=["B04", "B08"])
    keep = a.reflectance > 0
    np.testing.assert_allclose(b.reflectance[keep], a.reflectance[keep], atol=1e-6)


def _29rkh(shared_data: Path) -> SceneItem:
    folder = shared_data / "s2_l2a_29RKH_20200219"
    data = json.loads((folder / "S2A_29RKH_20200219_0_L2A.json").read_text())
    for asset in data["assets"].values():  # hrefs point to the public bucket: use the local copies
        local = folder / Path(asset["href"]).name
        if local.is_file():
            asset["href"] = str(local)
    return normalize_item(data)


def test_real_earth_search_product_loads_to_reflectance(shared_data: Path) -> None:
    item = _29rkh(shared_data)
    # the COGs are decimated 10x while the item states the native grid: the files' own geotransform
    # is trusted, so a 100 m grid of the tile reads them pixel for pixel
    grid = scene_grid(item, resolution=100.0)
    assert grid.shape == (1098, 1098)
    with rasterio.open(item.bands["B04"].href) as src:
        assert tuple(src.bounds) == grid.bounds
        assert src.crs.to_epsg() == grid.epsg == 32629
        raw = src.read(1)
    scene = load_s2_scene(item, grid)
    red = scene.reflectance[scene.bands.index("B04")]
    np.testing.assert_allclose(red[raw > 0], raw[raw > 0] * 1e-4, rtol=1e-6)  # baseline 02.14: no offset
    medians = np.nanmedian(scene.reflectance, axis=(1, 2))
    assert ((medians > 0.08) & (medians < 0.6)).all()  # bright desert, every band
    assert medians[scene.bands.index("B11")] > medians[scene.bands.index("B02")]  # soil: SWIR > blue
    assert scene.valid.mean() > 0.99
    assert scene.scl is not None
    assert scene.scl.dtype == np.uint8
    classes = set(np.unique(scene.scl).tolist())
    assert classes <= set(range(12))
    assert 5 in classes  # "not vegetated" dominates a desert: classes, not reflectance


def _grd_band(shared_data: Path, pol: str) -> BandAsset:
    href = str(shared_data / "s1_grd_iw_20180716" / f"iw-{pol.lower()}.tiff")
    return BandAsset(pol, pol.lower(), href, None, "uint16", 0.0, 1.0, 0.0, "dn", "convention")


def test_gcp_georeferenced_grd_lands_on_its_footprint(shared_data: Path) -> None:
    info = json.loads((shared_data / "s1_grd_iw_20180716" / "productInfo.json").read_text())
    to_utm = Transformer.from_crs(4326, 32643, always_xy=True).transform
    footprint = shapely.transform(shape(info["footprint"]), lambda xy: np.column_stack(to_utm(*xy.T)))
    minx, miny, maxx, maxy = footprint.buffer(5000).bounds
    grid = GridSpec(
        32643, round(minx, -3), round(maxy, -3), 500.0, int((maxx - minx) // 500), int((maxy - miny) // 500)
    )
    dn = read_band(_grd_band(shared_data, "VV"), "S1A_IW_GRDH_20180716", grid, physical=False)
    inside = ~geometry_mask([footprint.buffer(-3000)], grid.shape, grid.transform)
    outside = geometry_mask([footprint.buffer(3000)], grid.shape, grid.transform)
    assert (dn[inside] > 0).mean() > 0.99
    assert (dn[outside] > 0).mean() < 0.01
    with rasterio.open(_grd_band(shared_data, "VV").href) as src:  # no CRS, no transform: GCPs only
        assert src.crs is None
        assert len(src.gcps[0]) > 100


def test_uncalibrated_grd_is_refused_with_the_item_named(shared_data: Path) -> None:
    path = next((shared_data / "stac_items").glob("planetarycomputer__sentinel-1-grd*.json"))
    item = normalize_item(json.loads(path.read_text()))
    with pytest.raises(IngestError, match=f"item {item.id}: VV/VH are uncalibrated"):
        load_s1_scene(item, GridSpec(32643, 0, 0, 10.0, 10, 10))


def test_s1_scene_filtered_db_on_the_tile_grid(region: Path) -> None:
    items = [normalize_item(d) for d in _raw_items(region, "sentinel-1-grd")]
    item = next(i for i in items if "COH_VV" in i.bands)
    grid = scene_grid(item, tile_id="35VLF")
    scene = load_s1_scene(item, grid, keep_unfiltered=True)
    raw_vv = read_band(item.bands["VV"], item.id, grid)
    np.testing.assert_allclose(scene.unfiltered["VV"], 10 * np.log10(raw_vv), atol=1e-5)
    np.testing.assert_allclose(scene.vh_vv_db, scene.vh_db - scene.vv_db, atol=1e-6)
    assert -16 < np.median(scene.vv_db) < -4
    assert np.median(scene.vh_db) < np.median(scene.vv_db) - 3
    # the filter smooths speckle (lower pixel-to-pixel spread) and keeps the mean power
    assert np.std(np.diff(scene.vv_db, axis=1)) < 0.6 * np.std(np.diff(scene.unfiltered["VV"], axis=1))
    filtered_power = np.mean(10 ** (scene.vv_db / 10))
    assert abs(filtered_power / np.mean(raw_vv) - 1) < 0.03
    assert scene.coherence is not None
    assert 0 <= np.nanmin(scene.coherence) <= np.nanmax(scene.coherence) <= 1
    assert (scene.item.orbit_state, scene.item.relative_orbit) == (item.orbit_state, item.relative_orbit)


def test_corrupt_cog_names_item_and_asset(region: Path, tmp_path: Path) -> None:
    data = next(d for d in _raw_items(region, "sentinel-2-l2a"))
    broken = tmp_path / "B04.tif"
    payload = Path(data["assets"]["red"]["href"]).read_bytes()
    broken.write_bytes(payload[: len(payload) // 3])  # truncated download
    data["assets"]["red"]["href"] = str(broken)
    item = normalize_item(data)
    with pytest.raises(IngestError, match=rf"item {item.id} asset red \({broken}\)") as info:
        load_s2_scene(item, scene_grid(item))
    assert not isinstance(info.value, SceneReadError)  # corrupt: no retry would mend it


def test_a_server_failure_is_a_read_error_worth_retrying(region: Path) -> None:
    """A COG server answering 500 (GDAL's vsicurl): the item and asset named, and the error retryable."""

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the handler's API)
            self.send_error(500, "injected")

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        data = next(d for d in _raw_items(region, "sentinel-2-l2a"))
        data["assets"]["red"]["href"] = f"http://127.0.0.1:{server.server_port}/B04.tif"
        item = normalize_item(data)
        with (
            rasterio.Env(GDAL_HTTP_MAX_RETRY=0),
            pytest.raises(SceneReadError, match=rf"item {item.id} asset red .*500"),
        ):
            load_s2_scene(item, scene_grid(item))
    finally:
        server.shutdown()
        server.server_close()


def test_missing_band_and_unknown_crs(region: Path, tmp_path: Path) -> None:
    data = next(d for d in _raw_items(region, "sentinel-2-l2a"))
    no_nir = json.loads(json.dumps(data))
    del no_nir["assets"]["nir"]
    item = normalize_item(no_nir)
    with pytest.raises(ItemNormalizationError, match=f"item {item.id}: no asset for band B08"):
        load_s2_scene(item, scene_grid(item))
    plain = tmp_path / "plain.tif"  # a raster without CRS or GCPs
    with rasterio.open(data["assets"]["red"]["href"]) as src:
        values = src.read(1)
    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(plain, "w", dtype=values.dtype, **profile) as dst:
            dst.write(values, 1)
    data["assets"]["red"]["href"] = str(plain)
    item = normalize_item(data)
    with pytest.raises(IngestError, match=f"item {item.id} asset red .*no CRS"):
        load_s2_scene(item, scene_grid(item))
