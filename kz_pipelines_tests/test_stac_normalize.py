"""Provider normalization on real STAC items from Earth Search, Planetary Computer and CDSE
(../shared/data/stac_items, unmodified) and on the real Earth Search item of the 29RKH product."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kz_pipelines.stac import ItemNormalizationError, SceneItem, deduplicate, normalize_item

L2A12 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
L1C13 = (*L2A12[:10], "B10", *L2A12[10:])


# file stem prefix -> expected: provider, product, platform, tile, epsg, relative orbit, orbit state,
# baseline, asset key of B04 (VV/first polarization for S1), (scale, offset) of B04, where that came from
EXPECTED: dict[str, tuple[Any, ...]] = {
    "S2A_28QCH_20200714_0_L2A": (
        "earth-search", "L2A", "sentinel-2a", "28QCH", 32628, 123, None, "02.14", "B04", (1e-4, 0.0),
        "processing baseline",
    ),
    "S2B_MSIL2A_20190629T212529_R043_T06VVN": (
        "planetary-computer", "L2A", "sentinel-2b", "06VVN", 32606, 43, "descending", "02.12", "B04",
        (1e-4, 0.0), "processing baseline",
    ),
    "cdse-eometadatatool-example__sentinel-1-grd__S1A": (
        "cdse", "GRD", "sentinel-1a", None, None, 63, "ascending", "01.00", "vv", None, None,
    ),
    "cdse-eometadatatool-example__sentinel-1-grd__S1C": (
        "cdse", "GRD", "sentinel-1c", None, None, 57, "ascending", "01.00", "vv", None, None,
    ),
    "cdse-eometadatatool-example__sentinel-2-l1c": (
        "cdse", "L1C", "sentinel-2a", "51CVP", 32751, 130, "descending", "05.10", "B04", (1e-4, -0.1),
        "raster:scale",
    ),
    "cdse__sentinel-2-l2a__S2A_MSIL2A_20241107": (
        "cdse", "L2A", "sentinel-2a", "32VKR", 32632, 80, "descending", "05.11", "B04_10m", (1e-4, -0.1),
        "raster:scale",
    ),
    "cdse__sentinel-2-l2a__S2B_MSIL2A_20200705": (
        "cdse", "L2A", "sentinel-2b", "32TNT", 32632, 65, "descending", "05.00", "B04_10m", (1e-4, -0.1),
        "raster:scale",
    ),
    "cdse__sentinel-2-l2a__S2C_MSIL2A_20260527": (
        "cdse", "L2A", "sentinel-2c", "55WFR", 32655, 17, "descending", "05.12", "B04_10m", (1e-4, -0.1),
        "raster:scale",
    ),
    "earthsearch-v1__sentinel-1-grd__S1A_EW_GRDM_1SDH": (
        "earth-search", "GRD", "sentinel-1a", None, 4326, 82, "ascending", None, "hh", None, None,
    ),
    "earthsearch-v1__sentinel-1-grd__S1A_IW_GRDH_1SSH": (
        "earth-search", "GRD", "sentinel-1a", None, 4326, 56, "ascending", None, "hh", None, None,
    ),
    "earthsearch-v1__sentinel-2-c1-l2a": (
        "earth-search", "L2A", "sentinel-2b", "20EPT", 32720, 95, None, "05.11", "red", (1e-4, -0.1),
        "raster:bands",
    ),
    "earthsearch-v1__sentinel-2-l1c": (
        "earth-search", "L1C", "sentinel-2b", "20EPT", 32720, 95, None, "05.11", "red", (1e-4, -0.1),
        "raster:bands",
    ),
    # 02.14, flag false: no offset in the data
    "earthsearch-v1__sentinel-2-l2a__S2A_32TMT_20200305_0": (
        "earth-search", "L2A", "sentinel-2a", "32TMT", 32632, 108, None, "02.14", "red", (1e-4, 0.0),
        "earthsearch:boa_offset_applied",
    ),
    # 05.00, flag true: Element 84 removed the offset, whatever raster:bands says (-0.1)
    "earthsearch-v1__sentinel-2-l2a__S2A_32TMT_20200305_1": (
        "earth-search", "L2A", "sentinel-2a", "32TMT", 32632, 108, None, "05.00", "red", (1e-4, 0.0),
        "earthsearch:boa_offset_applied",
    ),
    "earthsearch-v1__sentinel-2-l2a__S2B_20EPT": (
        "earth-search", "L2A", "sentinel-2b", "20EPT", 32720, 95, None, "05.11", "red", (1e-4, 0.0),
        "earthsearch:boa_offset_applied",
    ),
    "planetarycomputer__sentinel-1-grd": (
        "planetary-computer", "GRD", "sentinel-1a", None, None, 95, "descending", None, "vv", None, None,
    ),
    "planetarycomputer__sentinel-1-rtc": (
        "planetary-computer", "RTC", "sentinel-1a", None, 32634, 80, "descending", None, "vv", None, None,
    ),
    # no raster metadata at all: derived from the processing baseline
    "planetarycomputer__sentinel-2-l2a__S2B_MSIL2A_20220612": (
        "planetary-computer", "L2A", "sentinel-2b", "24XWR", 32624, 27, "ascending", "04.00", "B04",
        (1e-4, -0.1), "processing baseline",
    ),
    "planetarycomputer__sentinel-2-l2a__S2B_MSIL2A_20250312": (
        "planetary-computer", "L2A", "sentinel-2b", "53NKG", 32653, 74, "descending", "05.11", "B04",
        (1e-4, -0.1), "processing baseline",
    ),
    "S2A_29RKH_20200219_0_L2A": (
        "earth-search", "L2A", "sentinel-2a", "29RKH", 32629, 37, None, "02.14", "red", (1e-4, 0.0),
        "earthsearch:boa_offset_applied",
    ),
}  # fmt: skip


def _item_files(shared_data: Path) -> list[Path]:
    return [
        *sorted((shared_data / "stac_items").glob("*.json")),
        shared_data / "s2_l2a_29RKH_20200219" / "S2A_29RKH_20200219_0_L2A.json",
    ]


def _expected(path: Path) -> tuple[Any, ...]:
    matches = [v for k, v in EXPECTED.items() if path.stem.startswith(k)]
    assert len(matches) == 1, f"{path.name}: {len(matches)} expectations"
    return matches[0]


def test_every_real_item_has_an_expectation(shared_data: Path) -> None:
    files = _item_files(shared_data)
    assert len(files) == len(EXPECTED) == 20
    for path in files:
        _expected(path)


def test_real_items_normalize_to_the_expected_bands(shared_data: Path) -> None:
    for path in _item_files(shared_data):
        provider, product, platform, tile, epsg, orbit, state, baseline, key, scale_offset, source = (
            _expected(path)
        )
        item = normalize_item(json.loads(path.read_text()))
        got = (item.provider, item.product, item.platform, item.tile_id, item.epsg, item.relative_orbit)
        assert got == (provider, product, platform, tile, epsg, orbit), path.name
        assert (item.orbit_state, item.processing_baseline) == (state, baseline), path.name
        if item.mission == "sentinel-2":
            expected_bands = (
                *(L1C13 if product == "L1C" else L2A12),
                *(("SCL", "AOT", "WVP") if product == "L2A" else ()),
            )
            assert tuple(item.bands) == expected_bands, path.name
            b04 = item.bands["B04"]
            assert (b04.asset, (b04.scale, b04.offset), b04.scale_source) == (key, scale_offset, source), (
                path.name
            )
            assert (b04.resolution, b04.nodata, b04.quantity) == (10.0, 0, "reflectance"), path.name
            assert {item.bands[b].resolution for b in ("B01", "B09")} == {60.0}, path.name
            assert {item.bands[b].resolution for b in ("B05", "B8A", "B11", "B12")} == {20.0}, path.name
            if product == "L2A":
                assert (item.bands["SCL"].quantity, item.bands["SCL"].scale) == ("classes", 1.0)
            assert item.georeferencing == "grid"
        else:
            first = item.bands[item.polarizations[0]]
            assert first.asset == key, path.name
            assert set(item.bands) == set(item.polarizations), path.name
            assert item.georeferencing == ("grid" if product == "RTC" else "gcps"), path.name
            assert first.quantity == ("gamma0" if product == "RTC" else "dn"), path.name


def test_asset_keys_with_resolution_pick_the_native_one(shared_data: Path) -> None:
    """CDSE publishes every band at 10/20/60 m; the native resolution is used, whatever order."""
    path = next((shared_data / "stac_items").glob("cdse__sentinel-2-l2a__S2A_MSIL2A_20241107*.json"))
    data = json.loads(path.read_text())
    data["assets"] = dict(reversed(list(data["assets"].items())))
    item = normalize_item(data)
    assert [item.bands[b].asset for b in ("B01", "B02", "B05", "SCL")] == [
        "B01_60m",
        "B02_10m",
        "B05_20m",
        "SCL_20m",
    ]


def test_earth_search_prefers_cog_to_jp2(shared_data: Path) -> None:
    path = next((shared_data / "stac_items").glob("earthsearch-v1__sentinel-2-l2a__S2B_20EPT*.json"))
    data = json.loads(path.read_text())
    assert "red-jp2" in data["assets"]
    item = normalize_item(data)
    assert all(not b.asset.endswith("-jp2") for b in item.bands.values())


def test_reprocessed_duplicates_keep_the_newest_baseline(shared_data: Path) -> None:
    items = [
        normalize_item(json.loads(p.read_text()))
        for p in sorted((shared_data / "stac_items").glob("earthsearch-v1__sentinel-2-l2a__S2A_32TMT*.json"))
    ]
    assert [i.processing_baseline for i in items] == ["02.14", "05.00"]
    kept = deduplicate(items)
    assert [i.id for i in kept] == ["S2A_32TMT_20200305_1_L2A"]
    # across all real items only the two pairs of one acquisition are merged: 32TMT's reprocessing, and
    # 20EPT's L2A in both Earth Search collections (same baseline: the later id is kept)
    everything = [normalize_item(json.loads(p.read_text())) for p in _item_files(shared_data)]
    dropped = {i.id for i in everything} - {i.id for i in deduplicate(everything)}
    assert dropped == {"S2A_32TMT_20200305_0_L2A", "S2B_20EPT_20250731_0_L2A"}


def test_round_trip_through_dict(shared_data: Path) -> None:
    for path in _item_files(shared_data):
        item = normalize_item(json.loads(path.read_text()))
        again = SceneItem.from_dict(json.loads(json.dumps(item.to_dict())))
        assert again == item


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: (
                d["properties"].update(platform="landsat-9", constellation="landsat"),
                d.update(collection="landsat-c2-l2"),
            ),
            "not a Sentinel",
        ),
        (lambda d: [d["properties"].pop(k, None) for k in ("datetime", "start_datetime")], "no datetime"),
        (lambda d: d.update(assets={}), "no band assets"),
        (lambda d: d["properties"].update({"grid:code": "MGRS-99ZZZ"}), "unknown Sentinel-2 tile"),
    ],
)
def test_unusable_items_get_a_clear_error(shared_data: Path, edit: Any, message: str) -> None:
    path = next((shared_data / "stac_items").glob("cdse__sentinel-2-l2a__S2A_MSIL2A_20241107*.json"))
    data = json.loads(path.read_text())
    edit(data)
    with pytest.raises(ItemNormalizationError, match=message) as info:
        normalize_item(data)
    assert data["id"] in str(info.value)


def test_simulated_items_normalize_like_earth_search(region: Path) -> None:
    from kz_pipelines.stac import open_search

    items = open_search(str(region)).search(["sentinel-2-l2a", "sentinel-2-l1c", "sentinel-1-grd"])
    normalized = [normalize_item(i) for i in items]
    assert {n.provider for n in normalized} == {"local"}
    s1 = [n for n in normalized if n.mission == "sentinel-1"]
    assert s1
    assert all((n.georeferencing, n.bands["VV"].quantity) == ("grid", "sigma0") for n in s1)
    for n in normalized:
        if n.mission == "sentinel-2":
            offset = -0.1 if n.processing_baseline and n.processing_baseline >= "04.00" else 0.0
            assert (n.bands["B04"].scale, n.bands["B04"].offset) == (1e-4, offset)


def test_provider_profiles_name_collections_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    from kz_pipelines.stac import PROVIDERS, ProviderError, open_search, provider_profile

    assert set(PROVIDERS) == {"local", "earth-search", "planetary-computer", "cdse"}
    for profile in PROVIDERS.values():
        assert {"s2_l2a", "s1"} <= set(profile.collections)
    assert provider_profile("planetary-computer").collection("s1") == "sentinel-1-rtc"
    signer = provider_profile("planetary-computer").item_modifier()
    assert signer is not None
    assert (signer.__module__, signer.__name__) == ("planetary_computer.sas", "sign_inplace")
    assert provider_profile("earth-search").item_modifier() is None
    with pytest.raises(ProviderError, match="has no s2_l1c collection"):
        provider_profile("planetary-computer").collection("s2_l1c")
    with pytest.raises(ProviderError, match="unknown STAC provider 'usgs'; known: local, "):
        provider_profile("usgs")
    monkeypatch.delenv("CDSE_S3_ACCESS_KEY", raising=False)
    with pytest.raises(ProviderError, match="CDSE_S3_ACCESS_KEY and CDSE_S3_SECRET_KEY"):
        provider_profile("cdse").gdal_env()
    monkeypatch.setenv("CDSE_S3_ACCESS_KEY", "key")
    monkeypatch.setenv("CDSE_S3_SECRET_KEY", "secret")
    env = provider_profile("cdse").gdal_env()
    assert env["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("key", "secret")
    # an empty catalog location means the profile's own API (nothing is fetched until a search)
    assert getattr(open_search("", "cdse"), "url", None) == "https://stac.dataspace.copernicus.eu/v1"
    with pytest.raises(Exception, match="provider 'local' has no API"):
        open_search("", "local")
