import json

import pytest

from kz_pipelines.tiles import TILE_SIZE_PX, UnknownTileError, s2_tile


@pytest.mark.parametrize(
    ("tile", "epsg", "ulx", "uly"),
    [("20EPT", 32720, 600000, 3300040), ("35VLF", 32635, 300000, 6600000), ("32TMT", 32632, 399960, 5300040)],
)
def test_tile_origin_matches_the_sentinel2_grid(tile: str, epsg: int, ulx: int, uly: int) -> None:
    t = s2_tile(tile)
    assert (t.epsg, t.ulx, t.uly) == (epsg, ulx, uly)
    assert t.grid(10).shape == (TILE_SIZE_PX, TILE_SIZE_PX)


def test_tile_grid_equals_real_item(shared_data) -> None:  # type: ignore[no-untyped-def]
    item = json.loads(
        (shared_data / "stac_items/earthsearch-v1__sentinel-2-l2a__S2A_32TMT_20200305_0_L2A.json").read_text()
    )
    t = s2_tile(item["properties"]["grid:code"].removeprefix("MGRS-"))
    red = item["assets"]["red"]
    assert list(t.grid(10).transform)[:6] == red["proj:transform"]
    assert t.epsg == item["properties"]["proj:epsg"]


def test_window_is_centred_and_60m_aligned() -> None:
    t = s2_tile("T35VLF")
    w = t.window(512)
    assert w.shape == (512, 512)
    assert (w.x0 - t.ulx) % 60 == 0
    assert (t.uly - w.y0) % 60 == 0
    assert t.window(TILE_SIZE_PX).x0 == t.ulx


def test_unknown_tile_is_a_clear_error() -> None:
    with pytest.raises(UnknownTileError, match="99XXX"):
        s2_tile("99XXX")
