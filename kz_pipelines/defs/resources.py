"""Resources: configuration read from the environment at run time, handing plain objects to the core.

Required settings are `dg.EnvVar`s (resolved when a run starts); an optional setting left empty is read
from its environment variable when a step asks for it (`setting`), so nothing is read at import time.
"""

import functools
import json
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from kz_pipelines.stac import Provider, StacSearch, open_search, provider_profile
from kz_pipelines.storage import StorageRoot, write_json

if TYPE_CHECKING:
    from distributed import Client


def setting(value: str, variable: str, default: str = "") -> str:
    """An optional setting: the configured ``value``, else the environment ``variable``, else ``default``."""
    return value or os.environ.get(variable, default)


class StacResource(dg.ConfigurableResource):
    """Where STAC items come from.

    ``provider`` names a profile (`kz_pipelines.stac.providers`: local, earth-search, planetary-computer,
    cdse): its collections and authentication; empty: ``KZ_STAC_PROVIDER``, else ``local``. ``catalog`` is a
    simulated region folder, a stac-geoparquet file or an API URL; empty means the profile's own API.
    """

    catalog: str = ""
    provider: str = ""

    def profile(self) -> Provider:
        """The provider profile."""
        return provider_profile(setting(self.provider, "KZ_STAC_PROVIDER", "local"))

    def searcher(self) -> StacSearch:
        """The search client."""
        return open_search(self.catalog, self.profile().name)


class StorageResource(dg.ConfigurableResource):
    """The storage root under which asset values are written: a folder, or an object store URL (``s3://``,
    ``gs://``: `kz_pipelines.storage.StorageRoot`, whose steps stage their inputs and outputs locally).
    ``staging``: an object store's local staging folder; empty: ``KZ_STORAGE_STAGING``, else one in the
    system's temporary folder."""

    root: str
    staging: str = ""

    def store(self) -> StorageRoot:
        """The root."""
        return _storage_root(self.root, setting(self.staging, "KZ_STORAGE_STAGING"))

    def path(self, *parts: str) -> Path:
        """A path under the local root (an object store's staging folder): where a step writes."""
        return self.store().path(*parts)

    def fetch(self, *parts: str, missing_ok: bool = False) -> Path:
        """An input's local path, downloaded first from an object store (`StorageRoot.fetch`)."""
        return self.store().fetch(*parts, missing_ok=missing_ok)

    def publish(self, *parts: str) -> None:
        """Upload an output written at ``path(*parts)`` to an object store (`StorageRoot.publish`)."""
        self.store().publish(*parts)

    def publish_path(self, path: Path) -> None:
        """`publish` the value written at ``path`` (under the local root)."""
        self.publish(path.relative_to(self.path()).as_posix())

    def exists(self, *parts: str) -> bool:
        """Whether a value is there."""
        return self.store().exists(*parts)

    def url(self, *parts: str) -> str:
        """Where a value lives (for metadata): its object store URL, or its local path."""
        return self.store().url(*parts)

    def url_of(self, path: Path) -> str:
        """Where a value written at ``path`` (under the local root) lives (for metadata)."""
        return self.store().url_of(path)

    def save_pointer(self, pointer: tuple[str, ...], folder: tuple[str, ...]) -> str:
        """Publish a model folder written at ``path(*folder)``, then write the pointer file naming it
        (``{"folder": <its path from the pointer's folder>}``, as a relative symbolic link would; published
        by the asset's contract check); where the folder lives."""
        self.publish(*folder)
        relative = posixpath.relpath("/".join(folder), "/".join(pointer[:-1]))
        write_json(self.path(*pointer), {"folder": relative})
        return self.url(*folder)

    def pointed_folder(self, *pointer: str, missing: str) -> Path:
        """The local copy of the folder a pointer file names (pointers written before object storage name
        an absolute path).

        Raises:
            FileNotFoundError: no pointer yet (``missing`` says what to materialize), or no folder.
        """
        try:
            current = self.fetch(*pointer)
        except FileNotFoundError:
            raise FileNotFoundError(f"{missing} ({self.url(*pointer)} does not exist)") from None
        folder = Path(json.loads(current.read_text())["folder"])
        if folder.is_absolute():
            return folder
        return self.fetch(posixpath.normpath(posixpath.join(*pointer[:-1], folder.as_posix())))


@functools.cache
def _storage_root(root: str, staging: str) -> StorageRoot:
    return StorageRoot(root, staging or None)


class ParcelSourceResource(dg.ConfigurableResource):
    """Where the declared parcels come from (`kz_pipelines.parcels.read_parcels`).

    ``url`` is a GeoParquet, GeoPackage, Shapefile, GeoJSON or FlatGeobuf path, or a PostGIS table as
    ``postgresql://user@host:5432/db?table=schema.name``. ``scheme`` names the taxonomy's coding scheme of
    the declared codes; empty: ``KZ_PARCELS_SCHEME``, else ``sim`` (the simulated region).
    """

    url: str
    labels: str = ""
    """Extra labels: a Parquet table (parcel_id, crop_class, source, confidence) of inspector reports, drone
    observations or field books (`kz_pipelines.labels`); empty: ``KZ_LABELS``, else the declarations only."""
    field_labels: str = ""
    """A folder of what inspectors saw on the parcels they visited (field_events, field_parcels and
    field_damage Parquet tables: `kz_pipelines.models.event_models.FieldLabels`), which the event models
    learn from; empty: ``KZ_FIELD_LABELS``, else none (the event products use their rule-based
    baselines)."""
    id_column: str = "parcel_id"
    code_column: str = "declared_code"
    scheme: str = ""

    def extra_labels(self) -> str:
        """The extra label table, or "" for none."""
        return setting(self.labels, "KZ_LABELS")

    def field_label_folder(self) -> str:
        """The field label folder, or "" for none."""
        return setting(self.field_labels, "KZ_FIELD_LABELS")

    def code_scheme(self) -> str:
        """The coding scheme of the declared codes."""
        return setting(self.scheme, "KZ_PARCELS_SCHEME", "sim")


class DaskResource(dg.ConfigurableResource):
    """Where a step's raster work (the zonal statistics of its scenes) runs.

    ``scheduler``: empty reads ``KZ_DASK_SCHEDULER``, else ``none``. ``none``: in the step's own process;
    ``local``: a Dask ``LocalCluster`` of ``workers`` processes started for the step; an address
    (``tcp://dask-scheduler:8786``): an existing cluster, e.g. one from the dask-kubernetes operator.
    """

    scheduler: str = ""
    workers: int = 2

    @contextmanager
    def client(self) -> "Iterator[Client | None]":
        """A client of the configured cluster for the step's duration (None: run in this process)."""
        address = setting(self.scheduler, "KZ_DASK_SCHEDULER", "none")
        if address == "none":
            yield None
            return
        # imported when a step asks for a cluster: distributed adds ~1 s to every process loading the code
        from distributed import Client, LocalCluster

        if address == "local":
            with (
                LocalCluster(n_workers=self.workers, threads_per_worker=1) as cluster,
                Client(cluster) as client,
            ):
                yield client
        else:
            with Client(address) as client:
                yield client
