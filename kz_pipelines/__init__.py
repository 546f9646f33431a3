"""kz_pipelines: Sentinel-1/Sentinel-2 parcel monitoring (science core; no Dagster here)."""

__version__ = "0.1.0"
