"""A flaky STAC API (5xx, 429, slow answers) on loopback: retried with backoff, then a clear failure that
names the provider and the query."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kz_pipelines.defs.faults import FaultyStacApi
from kz_pipelines.stac import ApiSearch, StacSearchError

ITEM: dict[str, Any] = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "id": "S2A_35VLF_20240601_0_L2A",
    "collection": "sentinel-2-l2a",
    "geometry": {"type": "Point", "coordinates": [24.0, 58.0]},
    "bbox": [24.0, 58.0, 24.0, 58.0],
    "properties": {"datetime": "2024-06-01T09:50:00Z"},
    "links": [],
    "assets": {},
}


@pytest.fixture
def flaky(request: pytest.FixtureRequest) -> Iterator[FaultyStacApi]:
    with FaultyStacApi(items=[ITEM], **request.param).serving() as api:
        yield api


@pytest.mark.parametrize(
    "flaky", [{"failures": 2, "status": 503}, {"failures": 3, "status": 429}], indirect=True
)
def test_transient_errors_are_retried(flaky: FaultyStacApi) -> None:
    search = ApiSearch(flaky.url, provider="earth-search", retries=4, backoff_s=0.01)
    items = search.search(["sentinel-2-l2a"], bbox=[23, 57, 25, 59], datetime="2024-06-01")
    assert [i.id for i in items] == [ITEM["id"]]
    assert flaky.search_calls == flaky.failures + 1


@pytest.mark.parametrize("flaky", [{"failures": 10, "status": 502}], indirect=True)
def test_persistent_failure_names_provider_and_query(flaky: FaultyStacApi) -> None:
    search = ApiSearch(flaky.url, provider="cdse", retries=2, backoff_s=0.01)
    with pytest.raises(StacSearchError) as info:
        search.search(["sentinel-2-l2a"], bbox=[23, 57, 25, 59], datetime="2024-06-01")
    message = str(info.value)
    assert "provider cdse" in message
    assert "collections=['sentinel-2-l2a']" in message
    assert "datetime=2024-06-01" in message
    assert flaky.search_calls == 3  # the first try and two retries


@pytest.mark.parametrize("flaky", [{"failures": 1, "delay_s": 1.0}], indirect=True)
def test_a_slow_answer_times_out_and_is_retried(flaky: FaultyStacApi) -> None:
    search = ApiSearch(flaky.url, provider="local", retries=2, backoff_s=0.01, timeout_s=0.3)
    items = search.search(["sentinel-2-l2a"], datetime="2024-06-01")
    assert [i.id for i in items] == [ITEM["id"]]
    assert flaky.search_calls == 2
