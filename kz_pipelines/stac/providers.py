"""Provider profiles: where each STAC provider is, what its collections are called, how to authenticate.

A profile is selected by name in configuration (``KZ_STAC_PROVIDER``; the Dagster resource's
``provider``). The four known providers:

| profile | S2 L2A | S2 L1C | S1 | auth |
|---|---|---|---|---|
| ``local`` | sentinel-2-l2a | sentinel-2-l1c | sentinel-1-grd (sigma0 on the tile grid) | none |
| ``earth-search`` | sentinel-2-c1-l2a | sentinel-2-l1c | sentinel-1-grd (radar geometry, DN) | none (S2) |
| ``planetary-computer`` | sentinel-2-l2a | (none) | sentinel-1-rtc (gamma0), sentinel-1-grd | item signing |
| ``cdse`` | sentinel-2-l2a | sentinel-2-l1c | sentinel-1-grd | S3 keys from the environment |

Planetary Computer asset hrefs need a short-lived SAS token: items are signed through the
``planetary-computer`` package (``PC_SDK_SUBSCRIPTION_KEY`` raises the rate limits). CDSE assets are
on its S3 endpoint: the keys come from ``CDSE_S3_ACCESS_KEY`` / ``CDSE_S3_SECRET_KEY`` and are handed
to GDAL (never written to disk or metadata).
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import rasterio
import rasterio.session

from kz_pipelines.errors import UserFacingError

__all__ = ["PROVIDERS", "Provider", "ProviderError", "provider_profile"]

Role = Literal["s2_l2a", "s2_l1c", "s1", "s1_grd", "s1_rtc"]


class ProviderError(UserFacingError, ValueError):
    """Unknown provider, missing collection or missing credentials."""


@dataclass(frozen=True)
class Provider:
    """One STAC provider.

    Attributes:
        name: profile name.
        url: STAC API landing page (None for the embedded catalog).
        collections: role -> collection id. Roles: ``s2_l2a``, ``s2_l1c``, ``s1`` (the Sentinel-1 collection
            the pipeline uses), ``s1_grd``, ``s1_rtc``.
        auth: ``none``, ``planetary-computer`` (sign items) or ``cdse-s3`` (S3 keys for GDAL).
        locations: where its asset hrefs may point, as ``scheme://host`` patterns (``*`` wildcards;
            ``file`` for local paths); an item pointing anywhere else is refused (`check_href`).
    """

    name: str
    url: str | None
    collections: dict[str, str] = field(default_factory=dict)
    auth: Literal["none", "planetary-computer", "cdse-s3"] = "none"
    locations: tuple[str, ...] = ()

    def check_href(self, item_id: str, asset: str, href: str) -> None:
        """Refuse an asset href outside the provider's `locations` (a catalog entry pointing a worker at
        an arbitrary host or scheme).

        Raises:
            ProviderError: naming the item, the asset, the href and what is allowed.
        """
        parts = urlsplit(href)
        scheme = parts.scheme.lower() if len(parts.scheme) > 1 else "file"  # "C:" is a drive, not a scheme
        where = "file" if scheme == "file" else f"{scheme}://{(parts.hostname or '').lower()}"
        if not any(fnmatch.fnmatchcase(where, pattern) for pattern in self.locations):
            raise ProviderError(
                f"item {item_id} asset {asset}: {href} is outside the locations provider {self.name!r} "
                f"allows ({', '.join(self.locations)}); refused"
            )

    def collection(self, role: Role) -> str:
        """The collection id for ``role``.

        Raises:
            ProviderError: if this provider has no such collection.
        """
        try:
            return self.collections[role]
        except KeyError:
            raise ProviderError(
                f"provider {self.name!r} has no {role} collection (it has {', '.join(self.collections)})"
            ) from None

    def item_modifier(self) -> Callable[[Any], Any] | None:
        """What to apply to every search result (Planetary Computer: sign the asset hrefs)."""
        if self.auth != "planetary-computer":
            return None
        with warnings.catch_warnings():  # its settings class uses pydantic's deprecated class Config
            warnings.simplefilter("ignore", DeprecationWarning)
            import planetary_computer

        return planetary_computer.sign_inplace

    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration for reading this provider's assets.

        Raises:
            ProviderError: for CDSE without ``CDSE_S3_ACCESS_KEY`` / ``CDSE_S3_SECRET_KEY``.
        """
        if self.auth == "cdse-s3":
            key, secret = os.environ.get("CDSE_S3_ACCESS_KEY"), os.environ.get("CDSE_S3_SECRET_KEY")
            if not key or not secret:
                raise ProviderError(
                    "provider 'cdse' needs S3 keys: set CDSE_S3_ACCESS_KEY and CDSE_S3_SECRET_KEY "
                    "(create them in the Copernicus Data Space dashboard)"
                )
            return {
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_S3_ENDPOINT": "eodata.dataspace.copernicus.eu",
                "AWS_HTTPS": "YES",
                "AWS_VIRTUAL_HOSTING": "FALSE",
            }
        if self.name == "earth-search":
            return {"AWS_NO_SIGN_REQUEST": "YES", "AWS_REGION": "us-west-2"}
        return {}

    def raster_env(self) -> rasterio.Env:
        """A rasterio environment for reading this provider's assets (`gdal_env`; S3 keys go through a
        session, as rasterio refuses them as plain options, and never into the process environment).

        Raises:
            ProviderError: as `gdal_env`.
        """
        options = self.gdal_env()
        secret = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        keys: dict[str, str] = {k: v for k, v in options.items() if k in secret}
        options = {k: v for k, v in options.items() if k not in secret}
        return rasterio.Env(session=_KeySession(keys), **options) if keys else rasterio.Env(**options)


class _KeySession(rasterio.session.Session):
    """S3 keys handed to GDAL when a rasterio environment opens (rasterio's AWSSession would need boto3)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = dict(keys)

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._keys)

    def get_credential_options(self) -> dict[str, str]:
        return dict(self._keys)


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "local",
            None,
            {"s2_l2a": "sentinel-2-l2a", "s2_l1c": "sentinel-2-l1c", "s1": "sentinel-1-grd",
             "s1_grd": "sentinel-1-grd"},
            locations=("file", "http://127.0.0.1", "http://localhost", "http://::1"),
        ),
        Provider(
            "earth-search",
            "https://earth-search.aws.element84.com/v1",
            {"s2_l2a": "sentinel-2-c1-l2a", "s2_l1c": "sentinel-2-l1c", "s1": "sentinel-1-grd",
             "s1_grd": "sentinel-1-grd"},
            locations=("https://*.amazonaws.com", "s3://*"),
        ),
        Provider(
            "planetary-computer",
            "https://planetarycomputer.microsoft.com/api/stac/v1",
            {"s2_l2a": "sentinel-2-l2a", "s1": "sentinel-1-rtc", "s1_grd": "sentinel-1-grd",
             "s1_rtc": "sentinel-1-rtc"},
            auth="planetary-computer",
            locations=("https://*.blob.core.windows.net",),
        ),
        Provider(
            "cdse",
            "https://stac.dataspace.copernicus.eu/v1",
            {"s2_l2a": "sentinel-2-l2a", "s2_l1c": "sentinel-2-l1c", "s1": "sentinel-1-grd",
             "s1_grd": "sentinel-1-grd"},
            auth="cdse-s3",
            locations=("s3://eodata", "https://*.dataspace.copernicus.eu"),
        ),
    )
}  # fmt: skip


def provider_profile(name: str) -> Provider:
    """The profile called ``name``.

    Raises:
        ProviderError: listing the known profiles, for an unknown name.
    """
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ProviderError(f"unknown STAC provider {name!r}; known: {', '.join(PROVIDERS)}") from None
