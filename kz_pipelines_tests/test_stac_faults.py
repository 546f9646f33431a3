"""A flaky STAC API (5xx, 429, slow answers) on loopback: retried with backoff, then a clear failure that
names the provider and the query."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

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


class FlakyApi:
    """A minimal STAC API whose /search fails ``failures`` times with ``status`` (or sleeps ``delay_s``)."""

    def __init__(self, failures: int, status: int = 503, delay_s: float = 0.0) -> None:
        self.failures, self.status, self.delay_s = failures, status, delay_s
        self.search_calls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                root = f"http://127.0.0.1:{api.port}"
                self._send(
                    200,
                    {
                        "type": "Catalog",
                        "id": "flaky",
                        "description": "flaky",
                        "stac_version": "1.0.0",
                        "conformsTo": [
                            "https://api.stacspec.org/v1.0.0/core",
                            "https://api.stacspec.org/v1.0.0/item-search",
                        ],
                        "links": [
                            {"rel": "self", "href": root + "/"},
                            {"rel": "root", "href": root + "/"},
                            {
                                "rel": "search",
                                "href": root + "/search",
                                "method": "POST",
                                "type": "application/geo+json",
                            },
                        ],
                    },
                )

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.search_calls += 1
                if api.search_calls <= api.failures:
                    if api.delay_s:
                        time.sleep(api.delay_s)
                    else:
                        self._send(api.status, {"code": "Unavailable"}, {"Retry-After": "0"})
                        return
                self._send(200, {"type": "FeatureCollection", "features": [ITEM], "links": []})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@pytest.fixture
def flaky(request: pytest.FixtureRequest) -> Iterator[FlakyApi]:
    api = FlakyApi(**request.param)
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.mark.parametrize(
    "flaky", [{"failures": 2, "status": 503}, {"failures": 3, "status": 429}], indirect=True
)
def test_transient_errors_are_retried(flaky: FlakyApi) -> None:
    search = ApiSearch(flaky.url, provider="earth-search", retries=4, backoff_s=0.01)
    items = search.search(["sentinel-2-l2a"], bbox=[23, 57, 25, 59], datetime="2024-06-01")
    assert [i.id for i in items] == [ITEM["id"]]
    assert flaky.search_calls == flaky.failures + 1


@pytest.mark.parametrize("flaky", [{"failures": 10, "status": 502}], indirect=True)
def test_persistent_failure_names_provider_and_query(flaky: FlakyApi) -> None:
    search = ApiSearch(flaky.url, provider="cdse", retries=2, backoff_s=0.01)
    with pytest.raises(StacSearchError) as info:
        search.search(["sentinel-2-l2a"], bbox=[23, 57, 25, 59], datetime="2024-06-01")
    message = str(info.value)
    assert "provider cdse" in message
    assert "collections=['sentinel-2-l2a']" in message
    assert "datetime=2024-06-01" in message
    assert flaky.search_calls == 3  # the first try and two retries


@pytest.mark.parametrize("flaky", [{"failures": 1, "delay_s": 1.0}], indirect=True)
def test_a_slow_answer_times_out_and_is_retried(flaky: FlakyApi) -> None:
    search = ApiSearch(flaky.url, provider="local", retries=2, backoff_s=0.01, timeout_s=0.3)
    items = search.search(["sentinel-2-l2a"], datetime="2024-06-01")
    assert [i.id for i in items] == [ITEM["id"]]
    assert flaky.search_calls == 2
