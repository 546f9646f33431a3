"""STAC: searching any provider (`search`), provider profiles (`providers`) and one item model for all of
them (`normalize`)."""

from kz_pipelines.stac.normalize import (
    S2_NATIVE_RESOLUTION,
    BandAsset,
    ItemNormalizationError,
    SceneItem,
    deduplicate,
    normalize_item,
)
from kz_pipelines.stac.providers import PROVIDERS, Provider, ProviderError, provider_profile
from kz_pipelines.stac.search import (
    ApiSearch,
    EmbeddedSearch,
    StacSearch,
    StacSearchError,
    api_retry,
    open_search,
    parse_datetime_range,
    read_region_catalog,
)

__all__ = [
    "PROVIDERS",
    "S2_NATIVE_RESOLUTION",
    "ApiSearch",
    "BandAsset",
    "EmbeddedSearch",
    "ItemNormalizationError",
    "Provider",
    "ProviderError",
    "SceneItem",
    "StacSearch",
    "StacSearchError",
    "api_retry",
    "deduplicate",
    "normalize_item",
    "open_search",
    "parse_datetime_range",
    "provider_profile",
    "read_region_catalog",
]
