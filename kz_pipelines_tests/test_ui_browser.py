"""The Dagster UI, end to end in a browser: Playwright drives Debian's chromium (headless, never a
downloaded browser) against a real webserver and daemon on PostgreSQL; it finds the asset graph, opens a
partitioned asset, launches a backfill of a few partitions with the UI's own dialog and sees it succeed.
Screenshots of each step are kept (``KZ_TEST_ARTIFACTS``, default ``var/test-artifacts``)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kz_pipelines.bench.deployment import REPO, Services, deployment
from kz_pipelines_tests.conftest import DEPLOYED

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine's closed network refuses Chromium's own calls
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("KZ_TEST_ARTIFACTS", REPO / "var" / "test-artifacts")) / "ui"


@pytest.fixture(scope="module")
def services(postgres: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium)")
    with deployment(tmp_path_factory.mktemp("ui"), postgres, "kz_backfill_ui", DEPLOYED) as running:
        yield running


def test_backfill_launched_from_the_ui_succeeds(services: Services) -> None:
    from playwright.sync_api import expect, sync_playwright

    # a new instance's newsletter dialog pops up at a random moment over whatever is open: dismissed the
    # way its Skip button does, before the browser starts
    assert services.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)

        # the asset graph: every group of the code location
        page.goto(f"{services.url}/asset-groups", wait_until="networkidle")
        for group in ("ingest", "cloud_mask", "parcels", "crop_type", "events"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "1-asset-graph.png")

        # a partitioned asset, and a backfill of three days of its tile from the UI's dialog
        page.goto(f"{services.url}/assets/s2_items?view=partitions", wait_until="networkidle")
        expect(page.get_by_text("Partitions Selected", exact=False)).to_be_visible()
        page.screenshot(path=ARTIFACTS / "2-asset-partitions.png")
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        dates = dialog.get_by_placeholder("ex: 2017-01-01", exact=False)
        dates.fill("[2024-06-01...2024-06-03]")
        dates.press("Enter")
        dialog.get_by_role("button", name="All").nth(1).click()  # every tile (the region has one)
        expect(dialog.get_by_text("3 partitions")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "3-launch-dialog.png")
        dialog.get_by_role("button", name="Launch backfill").click()
        toast = page.get_by_text("Created backfill", exact=False)
        expect(toast).to_be_visible()
        backfill = toast.inner_text().split()[-1]

        # the backfill's own page, refreshed until the daemon has run it
        deadline = time.monotonic() + 600
        while True:
            page.goto(f"{services.url}/runs/b/{backfill}", wait_until="networkidle")
            text = page.inner_text("body")
            status = text.split("\nStatus\n", 1)[-1].split("\n", 1)[0]
            if status not in ("Requested", "In progress") or time.monotonic() > deadline:
                break
            time.sleep(5)
        page.screenshot(path=ARTIFACTS / "4-backfill.png")
        browser.close()
    assert status == "Succeeded", text[-1500:]
    assert "100% completed" in text
    written = sorted(p.stem for p in (services.storage / "items" / "s2_l2a" / "35VLF").glob("*.json"))
    assert written == ["2024-06-01", "2024-06-02", "2024-06-03"]
