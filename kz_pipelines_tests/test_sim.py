"""The simulated region: format, physics, ground truth, determinism and failure behaviour."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import stackstac
from s2cloudless import S2PixelCloudDetector

from kz_pipelines.raster import footprint
from kz_pipelines.sim import SimConfig, SimConfigError, simulate
from kz_pipelines.sim.clouds import CLEAR, CLOUD
from kz_pipelines.sim.phenology import CLASS_TRAITS, simulate_calendar
from kz_pipelines.sim.region import SimOutputError, build_tile, day_state, plan_region, render_s2_scene
from kz_pipelines.sim.render import ENL, covers, s1_sigma0, surface_band
from kz_pipelines.sim.spectra import SPECTRA, band_index
from kz_pipelines.stac import open_search
from kz_pipelines_tests.conftest import SMALL
from kz_pipelines_tests.stac_validation import validate_stac


def _items(region: Path, collection: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((region / "stac" / collection).glob("*/*/*/*/*.json"))]


def test_region_layout_and_counts(region: Path) -> None:
    summary = json.loads((region / "region.json").read_text())
    assert summary["config"]["tiles"] == ["35VLF", "35VMF"]
    assert set(summary["items"]) == {"sentinel-2-l2a", "sentinel-2-l1c", "sentinel-1-grd"}
    s2 = _items(region, "sentinel-2-l2a")
    assert len(s2) == summary["items"]["sentinel-2-l2a"] >= 2 * 20  # ~5-day revisit over 103 days
    parcels = gpd.read_parquet(region / "parcels.parquet")
    assert len(parcels) == SMALL.n_parcels
    assert parcels["parcel_id"].is_unique
    assert parcels.crs.to_epsg() == 4326
    area_ha = parcels.to_crs(32635).area / 1e4
    assert area_ha.min() >= 0.5
    assert area_ha.max() <= 40.0
    truth = pd.read_parquet(region / "truth" / "parcels.parquet")
    assert set(truth["parcel_id"]) == set(parcels["parcel_id"])
    assert truth["crop_class"].between(1, 28).all()
    # the inspectors' field labels: exactly the inspected parcels' rows of the truth tables
    inspected = set(pd.read_parquet(region / "labels" / "inspections.parquet")["parcel_id"])
    assert len(inspected) == round(0.2 * len(truth))
    for name, truth_name in (("field_events", "events"), ("field_parcels", "parcels")):
        field = pd.read_parquet(region / "labels" / f"{name}.parquet")
        whole = pd.read_parquet(region / "truth" / f"{truth_name}.parquet")
        expected = whole.loc[whole["parcel_id"].isin(inspected)]
        pd.testing.assert_frame_equal(field.reset_index(drop=True), expected.reset_index(drop=True))
    assert set(gpd.read_parquet(region / "labels" / "field_damage.parquet")["parcel_id"]) <= inspected
    assert not list(region.parent.glob(".*partial*"))


def test_items_validate_against_stac_schemas(region: Path) -> None:
    for collection in ("sentinel-2-l2a", "sentinel-2-l1c", "sentinel-1-grd"):
        items = _items(region, collection)
        assert items
        for item in items[:5]:
            validate_stac(item)
        validate_stac(json.loads((region / "stac" / collection / "collection.json").read_text()))
    validate_stac(json.loads((region / "stac" / "catalog.json").read_text()))


def test_items_have_earth_search_keys_and_properties(region: Path) -> None:
    item = _items(region, "sentinel-2-l2a")[0]
    props = item["properties"]
    for key in (
        "proj:epsg",
        "grid:code",
        "mgrs:utm_zone",
        "mgrs:latitude_band",
        "mgrs:grid_square",
        "eo:cloud_cover",
        "s2:processing_baseline",
        "s2:product_uri",
        "view:sun_azimuth",
        "earthsearch:boa_offset_applied",
    ):
        assert key in props, key
    assert {
        "coastal",
        "blue",
        "green",
        "red",
        "rededge1",
        "rededge2",
        "rededge3",
        "nir",
        "nir08",
        "nir09",
        "swir16",
        "swir22",
        "scl",
    } == set(item["assets"])
    assert item["assets"]["red"]["raster:bands"][0]["offset"] == -0.1  # baseline >= 04.00 in 2024
    l1c = _items(region, "sentinel-2-l1c")[0]
    assert "cirrus" in l1c["assets"]
    s1 = _items(region, "sentinel-1-grd")[0]["properties"]
    assert s1["sat:orbit_state"] in ("ascending", "descending")
    assert s1["sar:polarizations"] == ["VV", "VH"]
    assert isinstance(s1["sat:relative_orbit"], int)


def _expected_ids(
    region: Path, collection: str, bbox: list[float], start: str, end: str, max_cloud: float
) -> list[str]:
    """Filter the item JSON files directly (independently of the search code)."""
    out = []
    for it in _items(region, collection):
        b = it["bbox"]
        hit = b[0] <= bbox[2] and b[2] >= bbox[0] and b[1] <= bbox[3] and b[3] >= bbox[1]
        if (
            hit
            and start <= it["properties"]["datetime"][:10] <= end
            and it["properties"]["eo:cloud_cover"] < max_cloud
        ):
            out.append(it["id"])
    return sorted(out)


def test_embedded_search_by_bbox_datetime_cloud(region: Path) -> None:
    tile_items = [it for it in _items(region, "sentinel-2-l2a") if it["id"].split("_")[1] == "35VLF"]
    bbox = tile_items[0]["bbox"]
    expected = _expected_ids(region, "sentinel-2-l2a", bbox, "2024-06-01", "2024-06-30", 60.0)
    found = open_search(str(region)).search(
        ["sentinel-2-l2a"],
        bbox=bbox,
        datetime="2024-06-01/2024-06-30",
        query={"eo:cloud_cover": {"lt": 60.0}},
    )
    assert sorted(i.id for i in found) == expected
    assert expected
    assert all("35VLF" in i for i in expected)


def _parcel_pixels(region: Path, tile: str) -> tuple[np.ndarray, np.ndarray]:
    """Row/col of the 10 m pixels inside the largest parcel of the tile (the 'known parcel')."""
    parcels = gpd.read_parquet(region / "parcels.parquet").to_crs(32635)
    truth = pd.read_parquet(region / "truth" / "parcels.parquet").set_index("parcel_id")
    mine = parcels[parcels["parcel_id"].map(truth["tile"]) == tile]
    field = mine.loc[mine.area.idxmax()].geometry.buffer(-15)
    item = next(it for it in _items(region, "sentinel-2-l2a") if tile in it["id"])
    t = item["assets"]["red"]["proj:transform"]
    shape = item["assets"]["red"]["proj:shape"]
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    xs, ys = t[2] + (cols + 0.5) * t[0], t[5] + (rows + 0.5) * t[4]
    inside = shapely.contains_xy(field, xs, ys)
    return rows[inside], cols[inside]


def test_stackstac_pixels_equal_simulated_reflectance(region: Path) -> None:
    search = open_search(str(region))
    items = search.search(
        ["sentinel-2-l2a"], datetime="2024-06-01/2024-06-20", query={"grid:code": {"eq": "MGRS-35VLF"}}
    )
    assert items
    plans = plan_region(SMALL)
    world, s2, _ = plans[0]
    rows, cols = _parcel_pixels(region, "35VLF")
    assert rows.size > 50
    compared = 0
    for item in items[:3]:
        k = next(i for i, a in enumerate(s2) if a.time.strftime("%Y%m%d") in item.id)
        scene = render_s2_scene(SMALL, world, k, s2[k])
        cube = stackstac.stack(
            [item],
            assets=["red", "nir"],
            epsg=32635,
            resolution=10,
            bounds=world.grid.bounds,
            rescale=True,
            dtype="float64",
            fill_value=np.nan,
        )
        loaded = cube.isel(time=0).compute().to_numpy()
        valid = scene.valid[10][rows, cols]  # outside the swath the COG holds nodata: NaN once loaded
        for j, band in enumerate(("B04", "B08")):
            simulated = scene.band("L2A", band)
            expected = np.clip(np.rint(simulated * 1e4), 1 - 1000, 65535 - 1000) / 1e4
            got = loaded[j][rows, cols]
            np.testing.assert_allclose(got, np.where(valid, expected[rows, cols], np.nan), atol=1e-9 + 1e-12)
            raw = simulated[rows, cols]
            assert np.abs(got[valid] - raw[valid]).max(initial=0.0) <= 0.5e-4 + 1e-9  # uint16 rounding
        compared += int(valid.sum())
    assert compared > 100


def test_ndvi_of_dense_canopy_and_bare_soil(region: Path) -> None:
    plans = plan_region(SMALL)
    dense, bare = [], []
    for world, s2, _ in plans:
        for k, acq in enumerate(s2):
            d = (acq.time.date() - SMALL.start).days
            state = day_state(world, d)
            scene = render_s2_scene(SMALL, world, k, acq)
            clear = scene.truth == CLEAR
            red, nir = scene.band("L2A", "B04"), scene.band("L2A", "B08")
            ndvi = (nir - red) / (nir + red)
            pid = world.land.parcel_index[: red.shape[0], : red.shape[1]]
            g, dr = state.green[pid], state.dry[pid]
            dense.append(ndvi[clear & (pid > 0) & (g >= 0.85)])
            bare.append(ndvi[clear & (pid > 0) & (g <= 0.05) & (dr <= 0.06)])
    dense_all, bare_all = np.concatenate(dense), np.concatenate(bare)
    assert dense_all.size > 1000
    assert bare_all.size > 100
    assert 0.7 <= np.median(dense_all) <= 0.9
    assert 0.05 <= np.median(bare_all) <= 0.25


def test_crops_of_one_group_differ_in_calendar() -> None:
    """Winter barley ripens weeks before winter wheat: the same draws give a harvest earlier by the
    difference of their traits."""
    doy = np.arange(91, 305)
    harvest = {}
    for name in ("winter_wheat", "winter_barley"):
        days = []
        for seed in range(30):
            cal = simulate_calendar(np.random.default_rng(seed), "winter_cereal", name, True, doy, False)
            days.append(next(d for e, d in cal.events if e == "harvest"))
        harvest[name] = np.array(days)
    expected = CLASS_TRAITS["winter_wheat"].ripen - CLASS_TRAITS["winter_barley"].ripen
    assert np.allclose(harvest["winter_wheat"] - harvest["winter_barley"], expected, atol=1)


def test_parcel_canopy_follows_its_class_and_scales_green_reflectance() -> None:
    world = build_tile(SMALL, 0, 60, first_id=0)
    nir = band_index("B08")
    for i, c in enumerate(world.classes):
        traits = CLASS_TRAITS[c.name]
        assert abs(world.canopy[i + 1, nir] / traits.canopy[2] - 1) < 0.15  # the class, +-5 sigma
        assert abs(world.volume[i + 1] / traits.volume - 1) < 0.25
    assert np.all(world.canopy[0] == 1.0)  # background: no crop
    # on a pixel of pure green cover the reflectance is the endmember scaled by the parcel's canopy
    state = day_state(world, 60)
    cov = covers(world.land, state)
    pure = (world.land.parcel_index > 0) & (cov.dry == 0) & (cov.green > 0.5)
    refl = surface_band(world.land, cov, nir)
    pid = world.land.parcel_index[pure]
    bare = (1 - cov.green[pure]) * cov.soil[pure] * SPECTRA["soil"][nir]
    expected = cov.green[pure] * SPECTRA["green_vegetation"][nir] * world.canopy[pid, nir] + bare
    assert pure.sum() > 100
    assert np.allclose(refl[pure], expected, rtol=1e-5)


def test_s2cloudless_sees_simulated_clouds_like_real_ones(region: Path) -> None:
    """Realism checked by a model trained on real Sentinel-2 (s2cloudless, its shipped weights)."""
    names = ["B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12"]
    det = S2PixelCloudDetector(threshold=0.4, average_over=1, dilation_size=0, all_bands=False)
    hits = misses = false = clear_n = 0
    for it in _items(region, "sentinel-2-l1c"):
        folder = region / "stac" / "sentinel-2-l1c"
        folder = next(folder.glob(f"*/*/*/{it['id']}"))
        bands = []
        for n in names:
            with rasterio.open(folder / f"{n}.tif") as src:
                a = src.read(1).astype(np.float64) * 1e-4 - 0.1
                f = 6 * 10 // int(src.res[0])
                h = a.shape[0] // f
                bands.append(a[: h * f, : h * f].reshape(h, f, h, f).mean(axis=(1, 3)))
        size = min(b.shape[0] for b in bands)
        prob = det.get_cloud_probability_maps(np.stack([b[:size, :size] for b in bands], -1)[None])[0]
        with rasterio.open(region / "truth" / "cloudmask" / f"{it['id'].replace('L1C', 'L2A')}.tif") as src:
            t = src.read(1)[: size * 6, : size * 6].reshape(size, 6, size, 6)
        thick, clear = (t == CLOUD).all(axis=(1, 3)), (t == CLEAR).all(axis=(1, 3))
        flagged = prob > 0.4
        hits += int((flagged & thick).sum())
        misses += int((~flagged & thick).sum())
        false += int((flagged & clear).sum())
        clear_n += int(clear.sum())
    assert hits + misses > 500
    assert clear_n > 500
    assert hits / (hits + misses) >= 0.80
    assert false / clear_n <= 0.05


def test_s1_speckle_matches_gamma_model(region: Path) -> None:
    world, _, s1 = plan_region(SMALL)[0]
    items = open_search(str(region)).search(
        ["sentinel-1-grd"], bbox=footprint(world.grid)[1], datetime="2024-06-01/2024-07-31"
    )
    ratios = []
    for item in items[:4]:
        acq = next(a for a in s1 if a.time.strftime("%Y%m%dT%H%M%S") in item.id)
        cube = stackstac.stack(
            [item],
            assets=["vv"],
            epsg=32635,
            resolution=10,
            bounds=world.grid.bounds,
            dtype="float64",
            fill_value=np.nan,
            rescale=False,
        )
        vv = cube.isel(time=0, band=0).compute().to_numpy()
        state = day_state(world, (acq.time.date() - SMALL.start).days)
        clean = s1_sigma0(world.land, state, covers(world.land, state), acq.incidence, 0.0)
        n = vv.shape[0]
        parcel = world.land.parcel_index[:n, :n] > 0
        ratios.append(vv[parcel] / clean["vv"][:n, :n][parcel])
    r = np.concatenate(ratios)
    assert r.size > 10000
    assert abs(r.mean() - 1.0) < 0.02
    enl = r.mean() ** 2 / r.var()
    assert abs(enl - ENL) / ENL < 0.05


def test_same_seed_same_region(tmp_path: Path) -> None:
    cfg = SimConfig(
        seed=3,
        tiles=("35VLF",),
        size_px=120,
        start=date(2024, 6, 1),
        end=date(2024, 6, 12),
        n_parcels=5,
        l1c=False,
    )
    a, b = simulate(cfg, tmp_path / "a"), simulate(cfg, tmp_path / "b")
    assert a == b

    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.tif")):
            with rasterio.open(p) as src:
                h.update(src.read().tobytes())
        return h.hexdigest()

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    other = simulate(replace(cfg, seed=4), tmp_path / "c")
    assert other["parcels"] == a["parcels"]
    assert digest(tmp_path / "c") != digest(tmp_path / "a")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tiles": ("35VLF", "ABCDE")}, "tiles"),
        ({"size_px": 50}, "size_px"),
        ({"start": date(2024, 9, 1), "end": date(2024, 6, 1)}, "start/end"),
        ({"n_parcels": 100000}, "n_parcels"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(SimConfigError, match=f"^{field}:"):
        SimConfig(**kwargs)


def test_failure_leaves_nothing_half_written(tmp_path: Path) -> None:
    cfg = SimConfig(
        seed=1,
        tiles=("35VLF",),
        size_px=120,
        start=date(2024, 6, 1),
        end=date(2024, 6, 30),
        n_parcels=5,
        l1c=False,
    )

    def boom(done: int, total: int, label: str) -> None:
        if done == 3:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        simulate(cfg, tmp_path / "out", progress=boom)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "precious.txt").write_text("x")
    with pytest.raises(SimOutputError, match="not empty"):
        simulate(cfg, tmp_path / "keep")
    assert (tmp_path / "keep" / "precious.txt").read_text() == "x"
