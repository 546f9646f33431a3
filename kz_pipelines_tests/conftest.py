"""Shared fixtures: a small simulated region (made once per test session) and PostgreSQL access."""

from __future__ import annotations

import os
import socket
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kz_pipelines.sim import SimConfig, simulate

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

SMALL = SimConfig(
    seed=7,
    tiles=("35VLF", "35VMF"),
    size_px=240,
    start=date(2024, 4, 20),
    end=date(2024, 7, 31),
    n_parcels=40,
)
"""The test region: two tiles of 2.4 km, from spring sowing (bare seedbeds) past the first grassland cuts."""

DEPLOYED = SimConfig(
    seed=4,
    tiles=("35VLF",),
    size_px=240,
    start=date(2024, 6, 1),
    end=date(2024, 6, 6),
    n_parcels=20,
    l1c=False,
)
"""The region of the tests on a running deployment (webserver and daemon): one small tile over six days."""


@pytest.fixture(scope="session")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SMALL region, simulated once."""
    out = tmp_path_factory.mktemp("sim") / "region"
    simulate(SMALL, out)
    return out


def pg_settings() -> dict[str, str]:
    """Connection settings for the test PostgreSQL (env KZ_PG_* or the local defaults)."""
    return {
        "host": os.environ.get("KZ_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("KZ_PG_PORT", "5432"),
        "user": os.environ.get("KZ_PG_USER", "postgres"),
        "password": os.environ.get("KZ_PG_PASSWORD", ""),
    }


@pytest.fixture(scope="session")
def postgres() -> dict[str, str]:
    """PostgreSQL settings; skips when no server answers on the configured address."""
    s = pg_settings()
    try:
        with socket.create_connection((s["host"], int(s["port"])), timeout=2):
            pass
    except OSError:
        pytest.skip(f"no PostgreSQL on {s['host']}:{s['port']}")
    return s


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real Sentinel data); skips when absent (a user's fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


def pipeline_resources(region: Path, storage: Path) -> dict[str, Any]:
    """The code location's resources on a simulated region, values under ``storage``, masking on CPU."""
    from kz_pipelines.defs.cloudmask import CloudMaskResource
    from kz_pipelines.defs.resources import DaskResource, ParcelSourceResource, StacResource, StorageResource

    return {
        "stac": StacResource(catalog=str(region)),
        "storage": StorageResource(root=str(storage)),
        "masker": CloudMaskResource(device="cpu"),
        "dask": DaskResource(),
        "parcel_source": ParcelSourceResource(url=str(region / "parcels.parquet")),
    }
