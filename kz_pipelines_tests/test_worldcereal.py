"""The WorldCereal loader: real extraction tables in the parcel tensor's layout, values decoded exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kz_pipelines.timeseries import TENSOR_FEATURES
from kz_pipelines.worldcereal import load_worldcereal
from kz_pipelines.zonal import STATS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "worldcereal_lpis"


@pytest.fixture(autouse=True)
def _data() -> None:
    if not DATA.is_dir():
        pytest.skip(f"{DATA} not found (../shared/data is not beside this checkout)")


def test_long_table_decoded_into_the_tensor_layout() -> None:
    path = DATA / "fra_2023_dekad.parquet"
    ds = load_worldcereal(path)
    raw = pd.read_parquet(path)
    assert dict(ds["obs"].sizes) == {"parcel": 500, "time": 51, "feature": len(TENSOR_FEATURES), "stat": 6}
    assert list(ds["feature"].values) == list(TENSOR_FEATURES)
    assert list(ds["stat"].values) == list(STATS)
    row = raw[(raw["S2-L2A-B04"] < 65535) & (raw["S1-SIGMA0-VV"] < 65535)].iloc[7]
    at = ds["obs"].sel(parcel=row["sample_id"], time=pd.Timestamp(row["timestamp"]).tz_localize(None))
    b04, b08 = row["S2-L2A-B04"] / 1e4, row["S2-L2A-B08"] / 1e4
    assert float(at.sel(feature="B04", stat="median")) == pytest.approx(b04)
    assert float(at.sel(feature="NDVI", stat="mean")) == pytest.approx((b08 - b04) / (b08 + b04), rel=1e-5)
    vv = 20 * np.log10(row["S1-SIGMA0-VV"]) - 83
    vh = 20 * np.log10(row["S1-SIGMA0-VH"]) - 83
    assert float(at.sel(feature="VV_asc", stat="mean")) == pytest.approx(vv, abs=1e-4)
    assert float(at.sel(feature="VH_VV_asc", stat="max")) == pytest.approx(vh - vv, abs=1e-4)
    assert float(at.sel(feature="B04", stat="count")) == 1
    assert float(at.sel(feature="B04", stat="std")) == 0
    assert np.isnan(at.sel(feature="VV_desc").values).all()  # the pass direction is not in the table
    # B8A is all no data (65535) in this extraction: NaN, and so is BI2, which needs it
    assert np.isnan(ds["obs"].sel(feature=["B8A", "BI2"]).values).all()
    assert ds["declared_code"].sel(parcel=row["sample_id"]).item() == str(row["ewoc_code"])
    missing = raw[raw["S2-L2A-B04"] == 65535].iloc[0]
    t = pd.Timestamp(missing["timestamp"]).tz_localize(None)
    assert np.isnan(float(ds["obs"].sel(parcel=missing["sample_id"], time=t, feature="B04", stat="mean")))


def test_wide_table_monthly_steps() -> None:
    path = DATA / "africa_2017_public.parquet"
    ds = load_worldcereal(path)
    raw = pd.read_parquet(path).drop_duplicates("sample_id").set_index("sample_id")
    assert ds.sizes["time"] == 12
    assert pd.Timestamp(ds["time"].to_numpy()[0]) == pd.Timestamp("2016-12-01")
    assert pd.Timestamp(ds["time"].to_numpy()[3]) == pd.Timestamp("2017-03-01")
    sid = raw.index[(raw["OPTICAL-B8A-ts3-20m"] < 65535) & (raw["SAR-VH-ts5-20m"] < 65535)][0]
    got = ds["obs"].sel(parcel=sid, stat="mean")
    assert float(got.sel(feature="B8A")[3]) == pytest.approx(raw.loc[sid, "OPTICAL-B8A-ts3-20m"] / 1e4)
    vh = raw.loc[sid, "SAR-VH-ts5-20m"]
    assert float(got.sel(feature="VH_asc")[5]) == pytest.approx(20 * np.log10(vh) - 83, abs=1e-4)


def test_not_an_extraction_table(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(bad)
    with pytest.raises(ValueError, match="bad.parquet: no sample_id column"):
        load_worldcereal(bad)


def test_ewoc_codes_map_to_the_taxonomy() -> None:
    ds = load_worldcereal(DATA / "fra_2023_dekad.parquet")
    classes = ds["crop_class"].to_numpy()
    codes = ds["declared_code"].to_numpy()
    assert (classes > 0).sum() == 417  # 83 of 500 samples carry a crop with no class here
    assert set(classes[codes == "1101010011"]) == {1}  # winter soft wheat
    assert set(classes[codes == "1101060000"]) == {18}  # maize
    assert set(classes[codes == "1101070000"]) == {0}  # sorghum: no class, unknown
