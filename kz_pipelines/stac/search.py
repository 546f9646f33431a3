"""Searching STAC: one interface over the embedded catalog (a stac-geoparquet file searched in-process)
and any STAC API (through pystac-client).

Both take the same arguments with the same meaning as a STAC API item search: collections, bbox
(WGS84), datetime (an instant, or an interval ``start/end`` with ``..`` for an open end; a bare date
covers that whole day) and a `query` extension filter such as ``{"eo:cloud_cover": {"lt": 30}}``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq
import pystac
import stac_geoparquet.arrow
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests.exceptions import RequestException
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from urllib3.util.retry import Retry

from kz_pipelines.errors import UserFacingError

__all__ = [
    "ApiSearch",
    "EmbeddedSearch",
    "StacSearch",
    "StacSearchError",
    "open_search",
    "parse_datetime_range",
    "read_region_catalog",
]

Query = dict[str, dict[str, Any]]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, options: value in options,
}


class StacSearchError(UserFacingError, RuntimeError):
    """A search that cannot be answered (bad arguments, unreachable API, unreadable catalog)."""


class StacSearch(Protocol):
    """What the pipeline needs from a STAC provider."""

    def search(
        self,
        collections: Sequence[str],
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        query: Query | None = None,
    ) -> list[pystac.Item]:
        """Items of ``collections`` intersecting ``bbox`` within ``datetime`` that pass ``query``."""
        ...


def _utc(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC-based datetime (naive input is taken as UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_instant(text: str, end: bool) -> datetime | None:
    if text in ("", ".."):
        return None
    if len(text) == 10:  # a bare date: the whole day
        day = _utc(text)
        return day + timedelta(days=1) - timedelta(microseconds=1) if end else day
    return _utc(text)


def parse_datetime_range(text: str) -> tuple[datetime | None, datetime | None]:
    """Parse a STAC datetime argument into an inclusive (start, end) in UTC (None = open).

    Raises:
        StacSearchError: if the text is not an RFC 3339 instant, date or interval.
    """
    parts = text.split("/")
    if len(parts) > 2:
        raise StacSearchError(f"invalid datetime {text!r}: at most one '/'")
    try:
        if len(parts) == 1:
            return _parse_instant(parts[0], end=False), _parse_instant(parts[0], end=True)
        return _parse_instant(parts[0], end=False), _parse_instant(parts[1], end=True)
    except ValueError as exc:
        raise StacSearchError(f"invalid datetime {text!r}: {exc}") from None


def _item_time(props: dict[str, Any]) -> datetime:
    raw = props.get("datetime") or props.get("start_datetime")
    if raw is None:
        raise StacSearchError("item without datetime")
    return _utc(str(raw))


@dataclass
class EmbeddedSearch:
    """Search a stac-geoparquet file in-process (no server).

    Asset hrefs stored relative to the file's folder are returned as absolute paths.

    Attributes:
        index: path of the stac-geoparquet file (e.g. ``REGION/stac/items.parquet``).
    """

    index: Path

    @cached_property
    def items(self) -> list[dict[str, Any]]:
        """All items of the index, as dicts with absolute asset hrefs."""
        if not self.index.is_file():
            raise StacSearchError(f"no STAC index at {self.index} (run `kz simulate` first?)")
        try:
            table = pq.read_table(self.index)
        except Exception as exc:  # any unreadable file gets the same clear message
            raise StacSearchError(f"cannot read STAC index {self.index}: {exc}") from None
        root = self.index.parent.resolve()
        items = list(stac_geoparquet.arrow.stac_table_to_items(table))
        for it in items:
            for asset in it.get("assets", {}).values():
                href = str(asset.get("href", ""))
                if href and "://" not in href and not href.startswith("/"):
                    asset["href"] = str(root / href)
        return items

    @cached_property
    def _footprints(self) -> list[tuple[datetime, BaseGeometry]]:
        """Per item (same order as ``items``): its time and footprint, parsed once."""
        return [(_item_time(it["properties"]), shape(it["geometry"])) for it in self.items]

    def search(
        self,
        collections: Sequence[str],
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        query: Query | None = None,
    ) -> list[pystac.Item]:
        """See StacSearch.search."""
        start, end = parse_datetime_range(datetime) if datetime else (None, None)
        area = box(*bbox) if bbox is not None else None
        for name, ops in (query or {}).items():
            unknown = set(ops) - set(_OPS)
            if unknown:
                raise StacSearchError(f"unsupported query operator(s) {sorted(unknown)} for {name!r}")
        found = []
        for it, (when, geom) in zip(self.items, self._footprints, strict=True):
            if it.get("collection") not in collections:
                continue
            if (start and when < start) or (end and when > end):
                continue
            if area is not None and not geom.intersects(area):
                continue
            props = it["properties"]
            if not all(
                name in props and all(_OPS[op](props[name], arg) for op, arg in ops.items())
                for name, ops in (query or {}).items()
            ):
                continue
            found.append((when, it["id"], it))
        return [pystac.Item.from_dict(it) for _, _, it in sorted(found, key=lambda f: (f[0], f[1]))]


RETRY_STATUS = (429, 500, 502, 503, 504)
"""HTTP statuses retried (rate limiting and server faults)."""


def api_retry(total: int = 5, backoff_s: float = 1.0) -> Retry:
    """The retry policy for STAC API calls: ``total`` retries on connection errors, read timeouts and
    `RETRY_STATUS`, for GET and POST, with exponential backoff (``backoff_s``, 2x, 4x...), random jitter
    and the server's Retry-After honoured."""
    return Retry(
        total=total,
        backoff_factor=backoff_s,
        backoff_jitter=backoff_s / 2,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=True,
    )


@dataclass
class ApiSearch:
    """Search a STAC API through pystac-client, with retries (see `api_retry`) and a timeout.

    Attributes:
        url: the API landing page URL.
        provider: provider profile name, for messages and to sign items (Planetary Computer).
        retries: retries of one request before the search fails.
        backoff_s: first backoff interval, seconds.
        timeout_s: connect and read timeout of one request, seconds.
    """

    url: str
    provider: str = "unknown"
    retries: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 30.0

    @cached_property
    def _client(self) -> Client:
        """The API client, opened once (the landing page is fetched on open)."""
        from kz_pipelines.stac.providers import PROVIDERS

        profile = PROVIDERS.get(self.provider)
        io = StacApiIO(timeout=self.timeout_s, max_retries=api_retry(self.retries, self.backoff_s))
        try:
            return Client.open(
                self.url,
                stac_io=io,
                timeout=self.timeout_s,
                modifier=profile.item_modifier() if profile else None,
            )
        except (APIError, OSError, RequestException) as exc:
            raise StacSearchError(
                f"STAC API {self.url} (provider {self.provider}) cannot be opened: {exc}"
            ) from None

    def search(
        self,
        collections: Sequence[str],
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        query: Query | None = None,
    ) -> list[pystac.Item]:
        """See StacSearch.search."""
        try:
            result = self._client.search(
                collections=list(collections),
                bbox=list(bbox) if bbox else None,
                datetime=datetime,
                query=query,
                limit=200,
            )
            items = list(result.items())
        except (APIError, OSError, RequestException) as exc:
            raise StacSearchError(
                f"STAC API {self.url} (provider {self.provider}) search failed after {self.retries} "
                f"retries: collections={list(collections)} bbox={list(bbox) if bbox else None} "
                f"datetime={datetime} query={query}: {exc}"
            ) from None
        return sorted(items, key=lambda i: (_item_time(i.properties), i.id))


@lru_cache(maxsize=8)
def _embedded(path: Path, mtime_ns: int) -> EmbeddedSearch:
    """One EmbeddedSearch per index file version, so that its items are read and parsed once."""
    return EmbeddedSearch(path)


def open_search(location: str, provider: str = "local") -> StacSearch:
    """A search over ``location``: an ``http(s)://`` STAC API URL, a stac-geoparquet file, or a
    simulated region folder (its ``stac/items.parquet``). An empty ``location`` means the provider
    profile's own API URL.

    An embedded index is read once per process and file version (a rewritten file is read again)."""
    if not location:
        from kz_pipelines.stac.providers import provider_profile

        url = provider_profile(provider).url
        if url is None:
            raise StacSearchError(f"provider {provider!r} has no API: give a catalog location")
        location = url
    if location.startswith(("http://", "https://")):
        return ApiSearch(location, provider=provider)
    path = Path(location)
    if path.is_dir():
        path = path / "stac" / "items.parquet" if (path / "stac").is_dir() else path / "items.parquet"
    if not path.is_file():
        return EmbeddedSearch(path)  # raises a clear error on first search
    return _embedded(path.resolve(), path.stat().st_mtime_ns)


def read_region_catalog(region: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Collections and items (absolute asset hrefs) of a simulated region, ready to load into a STAC API.

    Raises:
        StacSearchError: if ``region`` holds no STAC catalog.
    """
    stac = region / "stac"
    if not (stac / "catalog.json").is_file():
        raise StacSearchError(f"{region} holds no STAC catalog (expected {stac / 'catalog.json'})")
    collections = []
    for path in sorted(stac.glob("*/collection.json")):
        coll = json.loads(path.read_text())
        coll["links"] = [link for link in coll["links"] if link["rel"] not in ("item", "child")]
        collections.append(coll)
    return collections, EmbeddedSearch(stac / "items.parquet").items
