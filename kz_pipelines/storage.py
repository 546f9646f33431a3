"""Writing values safely: cloud-optimized GeoTIFFs, stores, tables and JSON land complete or not at all
(each is written to a temporary name beside its target, then renamed)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from kz_pipelines.raster import GridSpec

__all__ = ["atomic_dir", "atomic_path", "write_bytes", "write_cog", "write_json"]


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it to ``target``, on error delete it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target``, renamed to ``target`` on success (replacing it), removed on
    error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_cog(path: Path, array: np.ndarray, grid: GridSpec, nodata: float | None) -> None:
    """Write a single-band cloud-optimized GeoTIFF (ZSTD, 512 px blocks, overviews).

    Args:
        path: target file.
        array: (rows, cols) values; dtype is kept (uint8, uint16, float32...).
        grid: the array's grid (shape must match).
        nodata: nodata value recorded in the file, or None.
    """
    if array.shape != grid.shape:
        raise ValueError(f"{path.name}: array shape {array.shape} does not match grid {grid.shape}")
    profile: dict[str, Any] = {
        "driver": "COG",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{grid.epsg}",
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "ZSTD",
        "level": 1,
        "predictor": 3 if array.dtype.kind == "f" else 2,
        "blocksize": 512,
        "overview_resampling": "nearest" if array.dtype.kind in "ui" else "average",
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array, 1)


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes (e.g. a PNG) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON (indented, UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
