"""The parcel time-series tensor: dims (parcel, time, feature, stat), one Zarr store per season and tile.

Layout (``xarray.open_zarr(path)``)::

    obs        float32 (parcel, time, feature, stat)   NaN where nothing was observed
    parcel     parcel ids (sorted); parcel coords: declared_code, crop_class, area_ha
    time       every day of the season (datetime64[D]); a day without an observation stays NaN
    feature    S2 bands and indices, then S1 VV, VH, VH_VV per pass direction (``VV_asc``, ``VH_desc``...)
    stat       mean, median, min, max, std, count

The time axis is every calendar day of the season, so a day's observations always land in the same slice
whatever order days arrive in (a backfill of any order, a late or reprocessed day). Chunks are
(:data:`PARCEL_CHUNK` parcels, 1 day, all features, all stats): writing a day touches one chunk per
parcel block, reading a parcel block's season is sequential, and chunks of days with no observation are
never written (they read as NaN), so a season of 200,000 parcels neither has to fit in memory nor fills
the disk with empty days.

Updates are incremental (:func:`update_tensor`): the store's manifest remembers, per day, a digest of the
observation files it was built from (path, size, modification time); only days whose files are new or
changed are written. A different parcel set (a new declaration) rebuilds the store. Observations of the
same parcel and day from several scenes or tiles (a parcel straddling two overlapping tiles, two passes
the same day) are merged by :func:`merge_observations`: per parcel and tensor feature the scene with the
most valid pixels wins, so overlapping tiles are never counted twice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import xarray as xr
import zarr

from kz_pipelines.observations import OBSERVATION_COLUMNS, S1_FEATURES, S2_FEATURES
from kz_pipelines.storage import atomic_dir, atomic_path, write_json
from kz_pipelines.zonal import STATS

__all__ = [
    "PARCEL_CHUNK",
    "TENSOR_FEATURES",
    "TensorUpdate",
    "manifest_scenes",
    "merge_observations",
    "read_observations",
    "season_days",
    "series_png",
    "tensor_feature",
    "update_tensor",
    "write_observations",
]

PARCEL_CHUNK = 8192
"""Parcels per chunk."""

PASSES = {"ascending": "asc", "descending": "desc"}
"""Sentinel-1 pass direction -> feature suffix."""

TENSOR_FEATURES = S2_FEATURES + tuple(f"{f}_{p}" for p in PASSES.values() for f in S1_FEATURES)
"""The tensor's feature axis."""

MANIFEST = "kz_manifest.json"
"""The store's record of what it was built from (inside the store folder)."""

SCENES_KEY = b"kz:scenes"
"""Parquet schema metadata key of an observation file: the scenes it measured (JSON list)."""

Log = Callable[[str], Any]


def season_days(season: int) -> pd.DatetimeIndex:
    """Every day of a season (calendar year)."""
    return pd.date_range(f"{season}-01-01", f"{season}-12-31", freq="D")


def tensor_feature(sensor: str, orbit: str, feature: str) -> str:
    """The tensor feature of an observation: S2 features as they are, S1 features with the pass direction
    (``orbit`` ``ascending/58`` -> ``VV_asc``)."""
    if sensor == "S2":
        return feature
    direction = orbit.split("/", 1)[0]
    if direction not in PASSES:
        raise ValueError(f"S1 orbit {orbit!r} has no pass direction (ascending/... or descending/...)")
    return f"{feature}_{PASSES[direction]}"


# ------------------------------------------------------------------------------------- observation files


def write_observations(path: Path, table: pd.DataFrame, scenes: Sequence[Mapping[str, Any]]) -> None:
    """Write an observation table as Parquet atomically, the scenes it measured in its schema metadata."""
    import pyarrow as pa

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[SCENES_KEY] = json.dumps(list(scenes), default=str).encode()
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp, compression="zstd")


def read_observations(path: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """An observation file's table and the scenes it measured."""
    table = pq.read_table(path)
    scenes = json.loads((table.schema.metadata or {}).get(SCENES_KEY, b"[]"))
    return table.to_pandas(), scenes


def merge_observations(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One day's observations from several sources (e.g. tiles) merged without double counting.

    Args:
        frames: source name (tile) -> long observation table of the day.

    Returns:
        Rows of the kept observations with a ``tensor_feature`` column: for each parcel and tensor
        feature, the (source, orbit) with the most valid pixels (ties: the first in sorted order).
    """
    parts = [f.assign(source=name) for name, f in sorted(frames.items()) if not f.empty]
    if not parts:
        return pd.DataFrame(columns=[*OBSERVATION_COLUMNS, "tensor_feature"])
    df = pd.concat(parts, ignore_index=True)
    df["sensor"] = df["sensor"].astype(str)
    keys = df[["sensor", "orbit", "feature"]].drop_duplicates()
    names = {(s, o, f): tensor_feature(s, o, f) for s, o, f in keys.itertuples(index=False, name=None)}
    df["tensor_feature"] = [names[k] for k in zip(df["sensor"], df["orbit"], df["feature"], strict=True)]
    best = (
        df.sort_values(["valid_count", "source", "orbit"], ascending=[False, True, True], kind="stable")
        .drop_duplicates(["parcel_id", "tensor_feature", "stat"])
        .loc[:, ["parcel_id", "tensor_feature", "source", "orbit"]]
    )
    winners = best.drop_duplicates(["parcel_id", "tensor_feature"])
    return df.merge(winners, on=["parcel_id", "tensor_feature", "source", "orbit"]).drop(columns="source")


# --------------------------------------------------------------------------------------------- the store


@dataclass
class TensorUpdate:
    """What :func:`update_tensor` did.

    Attributes:
        rebuilt: the store was (re)created (first build, or a different parcel set).
        days_written: days whose slice was written this time.
        days_unchanged: days already up to date.
        scenes: per day written, the scenes measured (from the observation files).
    """

    rebuilt: bool = False
    days_written: list[str] = field(default_factory=list)
    days_unchanged: int = 0
    scenes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _digest(paths: Sequence[Path]) -> str:
    """What a day's observation files are now: path, size and modification time of each (observation files
    are replaced atomically, so a rewritten file has a new time; nothing is read, which matters when a
    national season has thousands of large files)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _parcels_digest(parcels: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(parcels[["parcel_id", "declared_code", "crop_class"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def _create(path: Path, parcels: pd.DataFrame, season: int) -> None:
    """An empty store (metadata and coordinates only) for ``parcels`` over the season, written atomically."""
    import dask.array as da

    days = season_days(season)
    shape = (len(parcels), len(days), len(TENSOR_FEATURES), len(STATS))
    chunks = (min(PARCEL_CHUNK, max(1, len(parcels))), 1, len(TENSOR_FEATURES), len(STATS))
    empty = da.full(shape, np.nan, dtype=np.float32, chunks=chunks)
    ds = xr.Dataset(
        {"obs": (("parcel", "time", "feature", "stat"), empty)},
        coords={
            "parcel": parcels["parcel_id"].astype(str).to_numpy(),
            "time": days.to_numpy().astype("datetime64[ns]"),
            "feature": list(TENSOR_FEATURES),
            "stat": list(STATS),
            "declared_code": ("parcel", parcels["declared_code"].astype(str).to_numpy()),
            "crop_class": ("parcel", parcels["crop_class"].astype(np.int16).to_numpy()),
            "area_ha": ("parcel", parcels["area_ha"].astype(np.float32).to_numpy()),
        },
        attrs={
            "season": season,
            "description": "parcel x day x feature x statistic (kz_pipelines.timeseries)",
        },
    )
    encoding = {"obs": {"chunks": chunks, "_FillValue": np.nan}}
    with atomic_dir(path) as tmp:
        ds.to_zarr(tmp, mode="w", compute=False, consolidated=True, zarr_format=2, encoding=encoding)


def _day_block(merged: pd.DataFrame, parcel_pos: Mapping[str, int], n: int) -> np.ndarray:
    """(parcels, features, stats) block of one day from merged observations (parcels not in the store
    are ignored)."""
    block = np.full((n, len(TENSOR_FEATURES), len(STATS)), np.nan, np.float32)
    if merged.empty:
        return block
    p = merged["parcel_id"].map(parcel_pos)
    keep = p.notna().to_numpy()
    rows = p[keep].to_numpy(np.int64)
    f_pos = {f: i for i, f in enumerate(TENSOR_FEATURES)}
    s_pos = {s: i for i, s in enumerate(STATS)}
    feats = merged.loc[keep, "tensor_feature"].map(f_pos).to_numpy(np.int64)
    stats = merged.loc[keep, "stat"].map(s_pos).to_numpy(np.int64)
    block[rows, feats, stats] = merged.loc[keep, "value"].to_numpy(np.float32)
    block[rows, feats, len(STATS) - 1] = merged.loc[keep, "valid_count"].to_numpy(np.float32)
    return block


def update_tensor(
    path: Path,
    parcels: pd.DataFrame,
    season: int,
    sources: Mapping[date, Mapping[str, Path]],
    log: Log = print,
) -> TensorUpdate:
    """Bring a season tensor up to date with the observation files of its days.

    Args:
        path: the Zarr store (created if absent or built for another parcel set).
        parcels: the parcels of the tensor (``parcel_id``, ``declared_code``, ``crop_class``, ``area_ha``).
        season: the season (year).
        sources: per day of the season, the observation files to merge (source name, e.g. tile -> path).
        log: progress messages.

    Returns:
        What was written.
    """
    ordered = parcels.sort_values("parcel_id", kind="stable").reset_index(drop=True)
    days = season_days(season)
    outside = sorted(str(d) for d in sources if pd.Timestamp(d).year != season)
    if outside:
        raise ValueError(f"days {outside[:3]}... are not in season {season}")
    manifest_path = path / MANIFEST
    digest = _parcels_digest(ordered)
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    result = TensorUpdate()
    if manifest.get("parcels") != digest or manifest.get("season") != season:
        if path.exists():
            log(f"{path}: parcels or season changed; rebuilding")
            shutil.rmtree(path)
        _create(path, ordered, season)
        manifest = {"parcels": digest, "season": season, "days": {}}
        result.rebuilt = True
        write_json(manifest_path, manifest)
    obs = zarr.open_array(str(path / "obs"), mode="r+")
    parcel_pos = {p: i for i, p in enumerate(ordered["parcel_id"].astype(str))}
    day_index = {d.date(): i for i, d in enumerate(days)}
    for day in sorted(sources):
        files = sources[day]
        key = day.isoformat()
        day_digest = _digest(list(files.values())) if files else ""
        if manifest["days"].get(key, {}).get("digest") == day_digest:
            result.days_unchanged += 1
            continue
        frames, scenes = {}, []
        for name, file in sorted(files.items()):
            frames[name], file_scenes = read_observations(file)
            scenes += [{**s, "source": name} for s in file_scenes]
        merged = merge_observations(frames)
        obs[:, day_index[day], :, :] = _day_block(merged, parcel_pos, len(ordered))
        manifest["days"][key] = {"digest": day_digest, "scenes": scenes}
        write_json(manifest_path, manifest)  # after the slice: a crash leaves the day to redo, never skipped
        result.days_written.append(key)
        result.scenes[key] = scenes
    log(f"{path.name}: {len(result.days_written)} day(s) written, {result.days_unchanged} unchanged")
    return result


def manifest_scenes(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Per day, the scenes a tensor store holds (from its manifest)."""
    manifest = json.loads((path / MANIFEST).read_text())
    return {day: entry["scenes"] for day, entry in manifest["days"].items()}


# ------------------------------------------------------------------------------------------------- plots


def series_png(ds: xr.Dataset, parcels: Sequence[str], features: Sequence[str] = ("NDVI", "VH_asc")) -> bytes:
    """A PNG with one panel per feature: the median of each of ``parcels`` over the season (observed days
    only, as markers joined by lines)."""
    from kz_pipelines import plots  # the Agg backend first

    panels = [
        {
            f"{pid} ({ds['declared_code'].sel(parcel=pid).to_numpy()})": ds["obs"]
            .sel(parcel=pid, feature=feature, stat="median")
            .to_numpy()
            for pid in parcels
        }
        for feature in features
    ]
    ylabels = [f"{f} median" + (" (dB)" if f.startswith("V") else "") for f in features]
    return plots.series_png(pd.DatetimeIndex(ds["time"].to_numpy()), panels, ylabels=ylabels)
