"""Resources: configuration read from the environment at run time, handing plain objects to the core."""

from pathlib import Path

import dagster as dg

from kz_pipelines.stac import StacSearch, open_search


class StacResource(dg.ConfigurableResource):
    """Where STAC items come from: a simulated region folder, a stac-geoparquet file, or an API URL."""

    catalog: str

    def searcher(self) -> StacSearch:
        """The search client for ``catalog``."""
        return open_search(self.catalog)


class StorageResource(dg.ConfigurableResource):
    """The root folder under which asset values are written."""

    root: str

    def path(self, *parts: str) -> Path:
        """A path under the root."""
        return Path(self.root).joinpath(*parts)
