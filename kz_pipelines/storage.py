"""Writing values safely: cloud-optimized GeoTIFFs, stores, tables and JSON land complete or not at all
(each is written to a temporary name beside its target, then renamed); and the storage root, a local folder
or an object store (`StorageRoot`)."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import rasterio

from kz_pipelines.raster import GridSpec

__all__ = ["MANIFEST", "StorageRoot", "atomic_dir", "atomic_path", "write_bytes", "write_cog", "write_json"]


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


MANIFEST = ".kz-manifest.json"
"""Written last into a folder published to an object store: its files, and a token of the publication."""


class StorageRoot:
    """Where asset values live: a local folder, or an object store given as an fsspec URL
    (``s3://bucket/prefix`` through s3fs, ``gs://bucket/prefix`` through gcsfs, ``memory://...``).

    Steps read and write local paths either way. `path` names a path under the local root: the folder
    itself, or, for an object store, a staging folder that mirrors its layout. `fetch` makes an input
    present there (downloads one object, or every object under a prefix); `publish` uploads an output
    written there. On a local root both do nothing and `path` is the value itself.

    Publishing keeps the guarantees of the local writers: an object lands whole (one PUT), and a folder
    (a Zarr store, a model) is first uploaded under a temporary prefix beside its key, then copied into
    place, stale objects removed, and `MANIFEST` written last. A failed upload leaves the previous value as it
    was; a folder without its manifest (a copy cut short) is refused by `fetch`, never read half-written.
    Credentials and endpoints come from the filesystem's own settings (e.g. ``AWS_*`` variables, or
    ``FSSPEC_S3_ENDPOINT_URL`` for an S3-compatible store).

    Args:
        root: a folder path (or ``file://`` URL), or an object store URL.
        staging: where an object store's staging folders go (default: ``kz-staging`` in the system's
            temporary folder); each root and process gets its own, removed when the process exits, so
            steps running side by side never share staged copies.
    """

    def __init__(self, root: str, staging: str | Path | None = None) -> None:
        protocol = fsspec.core.split_protocol(root)[0]
        self.remote = protocol not in (None, "file", "local")
        if self.remote:
            self.fs, self.base = fsspec.core.url_to_fs(root)
            self.base = self.base.rstrip("/")
            token = f"{hashlib.sha1(root.encode()).hexdigest()[:12]}-{os.getpid()}"
            self.local = Path(staging or Path(tempfile.gettempdir()) / "kz-staging") / token
            atexit.register(shutil.rmtree, self.local, True)
        else:
            self.local = Path(fsspec.core.strip_protocol(root) if protocol else root)

    def path(self, *parts: str) -> Path:
        """A path under the local root (no transfer)."""
        return self.local.joinpath(*parts)

    def url(self, *parts: str) -> str:
        """Where a value lives: its object store URL, or its local path."""
        return self.fs.unstrip_protocol(self._key(*parts)) if self.remote else str(self.path(*parts))

    def url_of(self, path: Path) -> str:
        """Where a value written at ``path`` (under the local root) lives."""
        return self.url(path.relative_to(self.local).as_posix())

    def _key(self, *parts: str) -> str:
        return "/".join([self.base, *(p.strip("/") for p in parts if p.strip("/"))])

    def exists(self, *parts: str) -> bool:
        """Whether a value (an object, or a published folder) is there."""
        if not self.remote:
            return self.path(*parts).exists()
        key = self._key(*parts)
        self.fs.invalidate_cache()  # listings cached by an earlier call may predate other steps' writes
        return bool(self.fs.isfile(key) or self.fs.isfile(f"{key}/{MANIFEST}"))

    def fetch(self, *parts: str, missing_ok: bool = False) -> Path:
        """Make a value present under the local root and return its path: an object, a published folder
        (only the files its manifest lists), or everything under a prefix (each published folder in it as
        its manifest lists). An object store's copy replaces an older staged one.

        Args:
            parts: the value's path under the root.
            missing_ok: return the (absent) path when nothing is there, for optional inputs.

        Raises:
            FileNotFoundError: nothing there (unless ``missing_ok``), or a Zarr store without its manifest
                (its publication did not complete).
        """
        target = self.path(*parts)
        if not self.remote:
            if not (missing_ok or target.exists()):
                raise FileNotFoundError(f"nothing at {target}")
            return target
        key = self._key(*parts)
        self.fs.invalidate_cache()
        if self.fs.isfile(key):
            with atomic_path(target) as tmp:
                self.fs.get_file(key, str(tmp))
            return target
        objects = sorted(o for o in self.fs.find(key) if not _in_temporary(o[len(key) :]))
        if not objects:
            if missing_ok:
                return target
            raise FileNotFoundError(f"nothing at {self.url(*parts)}")
        manifests = {o[: -len(MANIFEST) - 1]: o for o in objects if o.endswith(f"/{MANIFEST}")}
        wanted: list[str] = []
        for folder, manifest in manifests.items():
            listed = json.loads(self.fs.cat_file(manifest))["files"]
            wanted += [f"{folder}/{name}" for name in listed]
        for obj in objects:
            if any(obj.startswith(f"{folder}/") for folder in manifests):
                continue
            store = next((d for d in _ancestors(key, obj) if d.endswith(".zarr")), None)
            if store is not None:
                raise FileNotFoundError(
                    f"{self.fs.unstrip_protocol(store)}: a store without {MANIFEST} (its publication was "
                    "cut short)"
                )
            wanted.append(obj)
        with atomic_dir(target) as tmp:
            self.fs.get(wanted, [str(tmp / o[len(key) + 1 :]) for o in wanted])
        return target

    def publish(self, *parts: str) -> None:
        """Upload a value written under the local root (a file or a folder) to the object store; nothing on
        a local root.

        Raises:
            FileNotFoundError: nothing was written there.
        """
        if not self.remote:
            return
        source, key = self.path(*parts), self._key(*parts)
        if source.is_file():
            self.fs.put_file(str(source), key)
            return
        if not source.is_dir():
            raise FileNotFoundError(f"nothing to publish at {source}")
        names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        parent, name = key.rsplit("/", 1)
        temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            self.fs.put([str(source / n) for n in names], [f"{temporary}/{n}" for n in names])
            if self.fs.isfile(f"{key}/{MANIFEST}"):
                self.fs.rm_file(f"{key}/{MANIFEST}")
            self.fs.copy([f"{temporary}/{n}" for n in names], [f"{key}/{n}" for n in names])
            stale = set(self.fs.find(key)) - {f"{key}/{n}" for n in names}
            if stale:
                self.fs.rm(sorted(stale))
            self.fs.pipe_file(f"{key}/{MANIFEST}", json.dumps({"files": names, "token": temporary}).encode())
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary, recursive=True)


def _ancestors(key: str, obj: str) -> list[str]:
    """The folders from ``key`` (included) down to the one holding the object ``obj``."""
    parts = obj[len(key) + 1 :].split("/")[:-1]
    return [key] + ["/".join([key, *parts[: i + 1]]) for i in range(len(parts))]


def _in_temporary(relative: str) -> bool:
    """Whether an object lies in a publication's temporary prefix (``.<name>.<token>.tmp``)."""
    return any(part.startswith(".") and part.endswith(".tmp") for part in relative.split("/"))
