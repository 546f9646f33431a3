"""Real parcel time series from WorldCereal extractions, in the parcel tensor's layout.

WorldCereal's training extractions (the tables in ``../shared/data/worldcereal_lpis``) hold, per sample
(an LPIS parcel or a field-survey point, located by its centroid) and per compositing period (dekad or
month), the Sentinel-2 L2A bands and the Sentinel-1 sigma0 of the pixel at the centroid, with the crop
label as a WorldCereal ``ewoc_code``. :func:`load_worldcereal` turns either layout into the same
(parcel, time, feature, stat) tensor as ``parcel_timeseries``, so downstream models train and evaluate on
real data through the same code:

* long tables (``fra_2023_dekad``, ``fra_2022_month``: one row per sample and ``timestamp``, columns
  ``S2-L2A-B02`` ... ``S1-SIGMA0-VV``) and wide tables (``africa_2017_public``: one row per sample,
  columns ``OPTICAL-B02-ts0-10m`` ... ``SAR-VV-ts11-20m``, monthly steps from ``start_date``);
* S2: uint16 = reflectance x 10000, 65535 = no data (a band the extraction lacks, e.g. B8A in the French
  tables, stays NaN, and so do the indices that need it); indices are computed from the bands;
* S1: openEO's uint16 encoding, dB = 20 log10(DN) - 83 (:func:`kz_pipelines.sar.decode_openeo_sigma0_db`);
  the extractions do not say which pass direction a composite comes from, so VV, VH and VH/VV are stored
  under ``s1_pass`` (``asc`` by default);
* each value is one pixel, so it fills every statistic of a one-pixel zone: mean = median = min = max =
  the value, std 0, count 1;
* time is the compositing period's first day (not every calendar day as in ``parcel_timeseries``).

Parcel coordinates: ``declared_code`` (the ``ewoc_code``), ``crop_class`` (from the taxonomy's ``ewoc``
scheme, 0 ``unknown`` when it has no mapping), ``area_ha`` (NaN: the tables hold centroids only), plus
``lon``, ``lat``, ``ref_id`` (the source collection) and ``quality_score_ct``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kz_pipelines.indices import compute_indices
from kz_pipelines.labels import load_taxonomy
from kz_pipelines.observations import S2_BANDS, S2_INDICES
from kz_pipelines.parcels import UNKNOWN_CLASS
from kz_pipelines.sar import OPENEO_NODATA, decode_openeo_sigma0_db
from kz_pipelines.timeseries import TENSOR_FEATURES
from kz_pipelines.zonal import STATS

__all__ = ["load_worldcereal"]

_WIDE = re.compile(r"^(OPTICAL|SAR)-(\w+)-ts(\d+)-\d+m$")


def _long_values(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Samples and per-variable (sample x time) DN tables from a long extraction table."""
    df = df.assign(timestamp=pd.to_datetime(df["timestamp"]).dt.tz_localize(None))
    samples = df.drop_duplicates("sample_id").set_index("sample_id")
    tables = {}
    for col in df.columns:
        m = re.match(r"^(S2-L2A|S1-SIGMA0)-(\w+)$", col)
        if m:
            tables[m.group(2)] = df.pivot_table(
                index="sample_id", columns="timestamp", values=col, aggfunc="first"
            )
    return samples, tables


def _wide_values(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Samples and per-variable (sample x time) DN tables from a wide extraction table (monthly steps)."""
    samples = df.drop_duplicates("sample_id").set_index("sample_id")
    start = pd.to_datetime(samples["start_date"])
    if (start != start.iloc[0]).any():
        raise ValueError("wide WorldCereal table with several start dates: load each start date separately")
    cols: dict[str, dict[int, str]] = {}
    for col in df.columns:
        m = _WIDE.match(col)
        if m:
            cols.setdefault(m.group(2), {})[int(m.group(3))] = col
    steps = max(max(v) for v in cols.values()) + 1
    times = pd.date_range(start.iloc[0], periods=steps, freq="MS")
    tables = {
        var: pd.DataFrame(
            {times[t]: samples[c] for t, c in sorted(by_step.items())}, index=samples.index
        ).reindex(columns=times)
        for var, by_step in cols.items()
    }
    return samples, tables


def load_worldcereal(path: Path, s1_pass: str = "asc") -> xr.Dataset:
    """A WorldCereal extraction table as a parcel tensor.

    Args:
        path: a ``.parquet`` extraction table (long or wide layout, see the module docstring).
        s1_pass: the pass direction suffix the S1 features are stored under (``asc`` or ``desc``).

    Returns:
        Dataset with ``obs`` float32 (parcel, time, feature, stat) over :data:`TENSOR_FEATURES` and
        :data:`STATS`, parcels sorted by sample id.

    Raises:
        ValueError: naming the file when it has no sample ids or no Sentinel columns.
    """
    if s1_pass not in ("asc", "desc"):
        raise ValueError(f"s1_pass must be asc or desc, got {s1_pass!r}")
    df = pd.read_parquet(path)
    if "sample_id" not in df.columns:
        raise ValueError(f"{path}: no sample_id column; not a WorldCereal extraction table")
    samples, tables = _long_values(df) if "timestamp" in df.columns else _wide_values(df)
    if not tables:
        raise ValueError(f"{path}: no S2-L2A-*/S1-SIGMA0-* or OPTICAL-*/SAR-* columns")
    samples = samples.sort_index()
    times = sorted({t for table in tables.values() for t in table.columns})
    shape = (len(samples), len(times))

    def dn(var: str) -> np.ndarray:
        if var not in tables:
            return np.full(shape, float(OPENEO_NODATA))
        return tables[var].reindex(index=samples.index, columns=times).to_numpy(np.float64)

    values: dict[str, np.ndarray] = {}
    for band in S2_BANDS:
        raw = dn(band)
        values[band] = np.where((raw == OPENEO_NODATA) | np.isnan(raw), np.nan, raw / 10000.0)
    values.update({k: np.asarray(v) for k, v in compute_indices(S2_INDICES, values).items()})
    s1 = {var: decode_openeo_sigma0_db(np.nan_to_num(dn(var), nan=OPENEO_NODATA)) for var in ("VV", "VH")}
    values[f"VV_{s1_pass}"], values[f"VH_{s1_pass}"] = s1["VV"], s1["VH"]
    values[f"VH_VV_{s1_pass}"] = s1["VH"] - s1["VV"]

    obs = np.full((*shape, len(TENSOR_FEATURES), len(STATS)), np.nan, np.float32)
    for f, name in enumerate(TENSOR_FEATURES):
        if name not in values:
            continue
        v = values[name].astype(np.float32)
        seen = np.isfinite(v)
        for s in range(4):  # mean, median, min, max of one pixel
            obs[:, :, f, s] = v
        obs[:, :, f, 4] = np.where(seen, 0.0, np.nan)
        obs[:, :, f, 5] = np.where(seen, 1.0, np.nan)

    codes = load_taxonomy().code_map("ewoc")
    declared = samples["ewoc_code"].astype(str)
    coords = {
        "parcel": samples.index.astype(str).to_numpy(),
        "time": np.array(times, dtype="datetime64[ns]"),
        "feature": list(TENSOR_FEATURES),
        "stat": list(STATS),
        "declared_code": ("parcel", declared.to_numpy()),
        "crop_class": (
            "parcel",
            np.array([codes[c].id if c in codes else UNKNOWN_CLASS for c in declared], np.int16),
        ),
        "area_ha": ("parcel", np.full(len(samples), np.nan, np.float32)),
        "lon": ("parcel", samples["lon"].to_numpy(np.float64)),
        "lat": ("parcel", samples["lat"].to_numpy(np.float64)),
        "ref_id": ("parcel", samples["ref_id"].astype(str).to_numpy()),
        "quality_score_ct": ("parcel", samples["quality_score_ct"].to_numpy()),
    }
    return xr.Dataset(
        {"obs": (("parcel", "time", "feature", "stat"), obs)},
        coords=coords,
        attrs={
            "source": str(path),
            "description": "WorldCereal extraction as a parcel tensor (one pixel each)",
        },
    )
