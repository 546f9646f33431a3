"""`kz eval faults`: faults injected into the pipeline, and whether it survived them without losing data.

Each scenario injects one fault, runs the real code (a Dagster run of the code location's jobs where the
fault is in a partition, the component where it is in one) and reports an `Outcome`: whether the fault was
injected, whether the pipeline survived it (retried and succeeded, or failed that partition alone with an
error naming the item, nothing half-written, a re-run completing), and how many files already written
were lost or changed. The suite runs on a small simulated region (`REGION`) and a Dagster instance in a
scratch folder; the PostgreSQL restart uses a database of its own on the machine's server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.sim import SimConfig, simulate

__all__ = ["REGION", "FaultyStacApi", "Outcome", "run"]

REGION = SimConfig(
    seed=11,
    tiles=("35VLF",),
    size_px=200,
    start=date(2024, 6, 1),
    end=date(2024, 6, 12),
    n_parcels=20,
    l1c=False,
)
"""The region faults are injected into: one small tile over twelve days."""


@dataclass(frozen=True)
class Outcome:
    """What one injected fault did.

    Attributes:
        fault: its name.
        injected: the fault really happened (the server answered with errors, the process was killed...).
        survived: the pipeline behaved as it must (see the module docstring).
        lost: files written before the fault that were gone or changed after it.
        detail: what happened, in a sentence.
    """

    fault: str
    injected: bool
    survived: bool
    lost: int
    detail: str


class FaultyStacApi:
    """A minimal STAC API on loopback whose searches fail ``failures`` times (HTTP ``status``, or an
    answer ``delay_s`` late) before answering with ``items``."""

    def __init__(
        self,
        failures: int,
        status: int = 503,
        delay_s: float = 0.0,
        items: list[dict[str, Any]] | None = None,
    ) -> None:
        self.failures, self.status, self.delay_s = failures, status, delay_s
        self.items = items or []
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
                links = [
                    {"rel": "self", "href": root + "/"},
                    {"rel": "root", "href": root + "/"},
                    {
                        "rel": "search",
                        "href": root + "/search",
                        "method": "POST",
                        "type": "application/geo+json",
                    },
                ]
                conforms = [
                    "https://api.stacspec.org/v1.0.0/core",
                    "https://api.stacspec.org/v1.0.0/item-search",
                ]
                catalog = {
                    "type": "Catalog",
                    "id": "faulty",
                    "description": "faulty",
                    "stac_version": "1.0.0",
                }
                self._send(200, {**catalog, "conformsTo": conforms, "links": links})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.search_calls += 1
                if api.search_calls <= api.failures:
                    if api.delay_s:
                        time.sleep(api.delay_s)
                    else:
                        self._send(api.status, {"code": "injected"}, {"Retry-After": "0"})
                        return
                self._send(200, {"type": "FeatureCollection", "features": api.items, "links": []})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """The landing page."""
        return f"http://127.0.0.1:{self.port}/"

    @contextmanager
    def serving(self) -> Iterator[FaultyStacApi]:
        """Serve in a thread while the block runs."""
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def _hashes(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root`` (relative path -> sha256)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _lost(before: dict[str, str], after: dict[str, str], rerun: tuple[str, ...] = ()) -> int:
    """Files of ``before`` gone or changed in ``after``, except those of partitions the scenario ran again
    on purpose (paths containing one of ``rerun``: their new content replaces the old)."""
    return sum(1 for k, v in before.items() if after.get(k) != v and not any(r in k for r in rerun))


@dataclass
class _Run:
    """A scratch pipeline on the fault region: its storage, Dagster instance and jobs."""

    region: Path
    storage: Path
    home: Path

    def job(self, name: str, region: Path | None = None) -> Any:
        import dagster as dg

        from kz_pipelines.definitions import defs
        from kz_pipelines.defs.demo import _resources

        resources = _resources(region or self.region, self.storage)
        return dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources).resolve_job_def(name)

    def execute(self, job: str, day: date, ops: list[str] | None = None, region: Path | None = None) -> Any:
        import dagster as dg

        from kz_pipelines.defs.demo import _QUIET, _instance

        self.home.mkdir(parents=True, exist_ok=True)
        key = dg.MultiPartitionKey({"date": day.isoformat(), "tile": REGION.tile_ids[0]})
        with _instance(self.home) as instance:
            instance.add_dynamic_partitions("tile", list(REGION.tile_ids))
            return self.job(job, region).execute_in_process(
                partition_key=key,
                instance=instance,
                raise_on_error=False,
                run_config=_QUIET,
                op_selection=ops,
            )


def _failure(result: Any) -> str:
    """The first step failure's message of a run ("" when none)."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            return str(event.event_specific_data.error.to_string())
    return ""


def _days_with(region: Path, collection: str) -> list[date]:
    from kz_pipelines.scenes import find_items_between
    from kz_pipelines.stac import open_search

    found = find_items_between(
        open_search(str(region)), collection, REGION.tile_ids[0], REGION.start, REGION.end
    )
    return sorted(found)


def _stac_api(name: str, **fault: Any) -> Outcome:
    from kz_pipelines.stac import ApiSearch

    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A_35VLF_20240601_0_L2A",
            "collection": "sentinel-2-l2a", "geometry": {"type": "Point", "coordinates": [24.0, 58.0]},
            "bbox": [24.0, 58.0, 24.0, 58.0], "properties": {"datetime": "2024-06-01T09:50:00Z"},
            "links": [], "assets": {}}  # fmt: skip
    with FaultyStacApi(items=[item], **fault).serving() as api:
        search = ApiSearch(
            api.url, retries=4, backoff_s=0.01, timeout_s=0.5 if fault.get("delay_s") else 30.0
        )
        try:
            found = search.search(["sentinel-2-l2a"], datetime="2024-06-01")
        except Exception as exc:  # the search gave up: not survived
            return Outcome(name, api.search_calls > 0, False, 0, f"search failed: {exc}")
        injected = api.search_calls > fault["failures"]
        detail = f"{fault['failures']} faulty answers, then the item after {api.search_calls} requests"
        return Outcome(name, injected, [i.id for i in found] == [item["id"]], 0, detail)


def _empty_search(run: _Run) -> Outcome:
    with_items = set(_days_with(run.region, "sentinel-2-l2a")) | set(_days_with(run.region, "sentinel-1-grd"))
    empty = next((d for d in _days(REGION) if d not in with_items), None)
    if empty is None:
        return Outcome("empty_search", False, False, 0, "every day of the region has items")
    result = run.execute("ingest", empty)
    stored = json.loads((run.storage / "items" / "s2_l2a" / REGION.tile_ids[0] / f"{empty}.json").read_text())
    ok = result.success and stored["kz:items"] == []
    return Outcome(
        "empty_search", True, ok, 0, f"{empty}: no item; the partition is recorded empty, not failed"
    )


def _copy_region(run: _Run, name: str) -> Path:
    copy = run.region.parent / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run.region, copy)
    return copy


def _band_file(region: Path, day: date, band: str) -> Path:
    stamp = day.isoformat().replace("-", "")
    return next((region / "stac" / "sentinel-2-l2a" / REGION.tile_ids[0]).rglob(f"*{stamp}*/{band}.tif"))


def _broken_scene(run: _Run, name: str, breaker: Callable[[Path, date], None], expect: str) -> Outcome:
    """Break one day's S2 data in a copy of the region; that partition must fail alone, naming the item,
    with nothing written for it and nothing lost; another day must succeed."""
    days = _days_with(run.region, "sentinel-2-l2a")
    bad_day, good_day = days[0], days[-1]
    copy = _copy_region(run, f"region-{name}")
    breaker(copy, bad_day)
    before = _hashes(run.storage)
    bad = run.execute("ingest", bad_day, region=copy)
    good = run.execute("ingest", good_day, region=copy)
    message = _failure(bad)
    restarts = sum(e.event_type_value == "STEP_RESTARTED" for e in bad.all_events)
    written = (run.storage / "scenes" / "s2_l2a" / REGION.tile_ids[0] / f"{bad_day}.zarr").exists()
    stray = [p for p in run.storage.rglob(".*.tmp")]
    ok = (
        not bad.success and expect in message and not written and not stray and good.success and restarts == 0
    )
    # the bad day's items are fetched again (from the broken catalog): its earlier scenes must survive
    rerun = (f"items/s2_l2a/{REGION.tile_ids[0]}/{bad_day}", str(good_day))
    lost = _lost(before, _hashes(run.storage), rerun)
    return Outcome(
        name, True, ok, lost, f"{bad_day} failed at once ({message.splitlines()[0][:160]}); {good_day} ran"
    )


def _truncate_red(region: Path, day: date) -> None:
    band = _band_file(region, day, "B04")
    band.write_bytes(band.read_bytes()[:2000])


def _drop_red(region: Path, day: date) -> None:
    _rewrite_items(region, day, lambda item: item["assets"].pop("red"))


def _foreign_href(region: Path, day: date) -> None:
    _rewrite_items(region, day, lambda item: item["assets"]["red"].update(href="http://203.0.113.7/B04.tif"))


def _rewrite_items(region: Path, day: date, change: Callable[[dict[str, Any]], Any]) -> None:
    """Change the region's S2 items of ``day`` in its catalog (the geoparquet index the search reads)."""
    import pyarrow.parquet as pq
    import stac_geoparquet.arrow

    path = region / "stac" / "items.parquet"
    items = list(stac_geoparquet.arrow.stac_table_to_items(pq.read_table(path)))
    stamp = day.isoformat().replace("-", "")
    for item in items:
        if item["collection"] == "sentinel-2-l2a" and stamp in item["id"]:
            change(item)
    table = stac_geoparquet.arrow.parse_stac_items_to_arrow(items)
    stac_geoparquet.arrow.to_parquet(table, path)


def _sigkill_mid_write(run: _Run) -> Outcome:
    """A process killed with SIGKILL while it rewrites a scene store: the previous store stays whole, no
    partial store is visible, and the re-run completes."""
    day = _days_with(run.region, "sentinel-2-l2a")[0]
    first = run.execute("ingest", day, ops=["s2_items", "s2_scenes"])
    store = run.storage / "scenes" / "s2_l2a" / REGION.tile_ids[0] / f"{day}.zarr"
    if not (first.success and store.exists()):
        return Outcome("sigkill_mid_write", False, False, 0, "the first write did not succeed")
    before = _hashes(run.storage)
    script = (
        "import sys, time, numpy as np, xarray as xr\n"
        "from kz_pipelines.scenes import write_zarr\n"
        "ds = xr.open_zarr(sys.argv[1]).load()\n"
        "[v.encoding.clear() for v in ds.variables.values()]\n"
        "big = xr.concat([ds] * 40, dim='time')\n"
        "write_zarr(__import__('pathlib').Path(sys.argv[1]), big, chunk_px=64)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(store)], start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(store.parent.glob(f".{store.name}.*.tmp")):
        time.sleep(0.05)
    started = bool(list(store.parent.glob(f".{store.name}.*.tmp")))
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    lost = _lost(before, {k: v for k, v in _hashes(run.storage).items() if ".tmp" not in k})
    import xarray as xr

    readable = xr.open_zarr(store).sizes["time"] == 1  # the previous store, whole
    for tmp in store.parent.glob(f".{store.name}.*.tmp"):  # what a crash leaves: hidden, never the store
        shutil.rmtree(tmp)
    again = run.execute("ingest", day, ops=["s2_items", "s2_scenes"])
    ok = started and killed and readable and lost == 0 and again.success
    detail = "killed mid-write: the previous store was intact and the re-run completed"
    return Outcome("sigkill_mid_write", started and killed, ok, lost, detail)


def _rerun_identical(run: _Run) -> Outcome:
    """A day x tile partition run twice through the whole daily job (items, scenes, cloud mask, parcel
    observations) gives the same bytes: content hashes of everything it wrote."""
    from kz_pipelines.defs.demo import _QUIET, QUICK_MODEL, _instance

    with _instance(run.home) as instance:  # what the daily job needs: a cloud-mask model, the parcels
        config = {**_QUIET, "ops": {"cloud_mask_model": {"config": QUICK_MODEL}}}
        trained = run.job("train_cloud_mask").execute_in_process(instance=instance, run_config=config)
        loaded = run.job("load_parcels").execute_in_process(
            partition_key=str(REGION.start.year), instance=instance, run_config=_QUIET
        )
    if not (trained.success and loaded.success):
        return Outcome("rerun_identical", False, False, 0, "the cloud-mask model or the parcels failed")
    day, tile = _days_with(run.region, "sentinel-2-l2a")[-1], REGION.tile_ids[0]
    outputs = []
    for _ in range(2):
        result = run.execute("daily", day)
        written = {k: v for k, v in _hashes(run.storage).items() if f"{tile}/{day}" in k}
        outputs.append((result.success, written))
    same = outputs[0][0] and outputs[1][0] and outputs[0][1] == outputs[1][1]
    kinds = sorted({k.split("/")[0] for k in outputs[0][1]})
    detail = f"{len(outputs[0][1])} files ({', '.join(kinds)}), identical hashes: {same}"
    return Outcome("rerun_identical", True, same, 0, detail)


def _cuda_oom() -> Outcome:
    import torch

    from kz_pipelines.cloudmask.predict import run_in_batches

    calls: list[int] = []

    def fn(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        if len(batch) > 3:
            raise torch.cuda.OutOfMemoryError("injected: CUDA out of memory")
        return batch * 2

    items = torch.arange(11.0)
    outs, size = run_in_batches(fn, items, 16)
    ok = bool(torch.equal(torch.cat(outs), items * 2)) and size <= 3
    return Outcome(
        "cuda_oom", calls[0] > 3, ok, 0, f"batches tried {calls[:4]}: halved to {size}, same result"
    )


def _invalid_geometries() -> Outcome:
    import geopandas as gpd
    import shapely

    from kz_pipelines.parcels import clean_parcels

    x, y = 500000.0, 6500000.0
    bowtie = shapely.Polygon([(x, y), (x + 100, y - 100), (x + 100, y), (x, y - 100)])
    rows = [("ok", shapely.box(x, y - 300, x + 100, y - 200)), ("bowtie", bowtie),
            ("line", shapely.LineString([(x, y), (x + 50, y - 50)])), ("empty", shapely.Polygon()),
            ("null", None)]  # fmt: skip
    gdf = gpd.GeoDataFrame({"parcel_id": [r[0] for r in rows], "declared_code": "1101"},
                           geometry=[r[1] for r in rows], crs=32635)  # fmt: skip
    clean, report = clean_parcels(gdf)
    ok = set(clean["parcel_id"]) == {"ok", "bowtie"} and bool(clean.geometry.is_valid.all())
    return Outcome(
        "invalid_geometries", True, ok, 0, f"kept {sorted(clean['parcel_id'])}; report {asdict(report)}"
    )


def _unknown_crop_codes() -> Outcome:
    import pandas as pd

    from kz_pipelines.labels import declared_labels, load_taxonomy

    known = load_taxonomy().code_map("sim")
    classes = [known[c].id if c in known else 0 for c in ("1101", "9999", "not-a-code")]
    labels = declared_labels(pd.DataFrame({"parcel_id": ["a", "b", "c"], "crop_class": classes}))
    ok = classes[1] == classes[2] == 0 and list(labels["parcel_id"]) == ["a"]
    return Outcome("unknown_crop_codes", True, ok, 0, "unknown codes are class 0 (unknown) and never a label")


def _days(cfg: SimConfig) -> list[date]:
    return [cfg.start + timedelta(days=k) for k in range((cfg.end - cfg.start).days + 1)]


def _postgres_restart(work: Path) -> Outcome:
    """PostgreSQL restarted while runs write to a Dagster instance on it: the runs in flight fail cleanly,
    a retry of what failed completes every partition."""
    pg = shutil.which("pg_ctlcluster")
    versions = sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").is_dir() else []
    if pg is None or not versions or os.geteuid() != 0:
        return Outcome("postgres_restart", False, False, 0, "not injected: no pg_ctlcluster or not root here")
    version = versions[-1].parent.name
    script = Path(__file__).with_name("fault_pg_runs.py")
    for folder in ("pg-home", "pg-storage"):
        shutil.rmtree(work / folder, ignore_errors=True)
    db = "kz_faults"
    env = {**os.environ, "KZ_FAULTS_WORK": str(work), "KZ_FAULTS_DB": db}
    proc = subprocess.Popen([sys.executable, str(script), "run"], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "started": the instance is up and the first run is under way
    time.sleep(1.0)
    subprocess.run([pg, version, "main", "restart"], check=True, capture_output=True)
    out, _ = proc.communicate(timeout=600)
    failed = json.loads(out.strip().splitlines()[-1])["failed"]
    retry = subprocess.run([sys.executable, str(script), "retry"], env=env, capture_output=True, text=True)
    summary = json.loads(retry.stdout.strip().splitlines()[-1]) if retry.returncode == 0 else {}
    ok = summary.get("materialized") == summary.get("expected") and summary.get("stray_tmp") == 0
    detail = (
        f"{failed} run(s) failed during the restart; the retry completed "
        f"{summary.get('materialized')}/{summary.get('expected')} partitions"
    )
    return Outcome("postgres_restart", True, ok, int(summary.get("lost", 0)), detail)


def run(work: Path, log: Callable[[str], Any] = print, postgres: bool = True) -> BenchResult:
    """Inject every fault (see the module docstring) and report.

    Args:
        work: a scratch folder (the region is simulated into it once).
        log: where progress lines go.
        postgres: also restart the machine's PostgreSQL during runs (needs root and pg_ctlcluster).
    """
    work = Path(work).resolve()
    region = work / "region"
    if not (region / "region.json").is_file():
        simulate(REGION, region, overwrite=True)
    pipeline = _Run(region, work / "storage", work / "dagster")
    shutil.rmtree(pipeline.storage, ignore_errors=True)
    shutil.rmtree(pipeline.home, ignore_errors=True)
    scenarios: list[tuple[str, Callable[[], Outcome]]] = [
        ("stac_5xx", lambda: _stac_api("stac_5xx", failures=2, status=503)),
        ("stac_429", lambda: _stac_api("stac_429", failures=3, status=429)),
        ("stac_timeout", lambda: _stac_api("stac_timeout", failures=1, delay_s=2.0)),
        ("empty_search", lambda: _empty_search(pipeline)),
        ("corrupt_cog", lambda: _broken_scene(pipeline, "corrupt_cog", _truncate_red, "asset red")),
        ("missing_band", lambda: _broken_scene(pipeline, "missing_band", _drop_red, "no asset for band B04")),
        ("href_outside_provider", lambda: _broken_scene(
            pipeline, "href_outside_provider", _foreign_href, "is outside the locations")),
        ("sigkill_mid_write", lambda: _sigkill_mid_write(pipeline)),
        ("cuda_oom", _cuda_oom),
        ("invalid_geometries", _invalid_geometries),
        ("unknown_crop_codes", _unknown_crop_codes),
        ("rerun_identical", lambda: _rerun_identical(pipeline)),
    ]  # fmt: skip
    if postgres:
        scenarios.append(("postgres_restart", lambda: _postgres_restart(work)))
    outcomes = []
    for name, scenario in scenarios:
        log(f"fault: {name}")
        started = time.perf_counter()
        outcome = scenario()
        log(f"  {'survived' if outcome.survived else 'NOT SURVIVED'}: {outcome.detail}")
        outcomes.append((outcome, time.perf_counter() - started))
    injected = [o for o, _ in outcomes if o.injected]
    figures: dict[str, float | int | str] = {
        "faults": len(outcomes),
        "injected": len(injected),
        "survived": sum(o.survived for o in injected),
        "data_lost": sum(o.lost for o, _ in outcomes),
    }
    for o, seconds in outcomes:
        figures[f"{o.fault}"] = "survived" if o.survived else ("not injected" if not o.injected else "failed")
        figures[f"{o.fault}_detail"] = o.detail
        figures[f"{o.fault}_lost"] = o.lost
        figures[f"{o.fault}_seconds"] = round(seconds, 1)
    survived_share = figures["survived"] / len(injected) if injected else None  # type: ignore[operator]
    targets = {
        "survived_share": Target(survived_share, ">=", 1.0),
        "data_lost": Target(float(figures["data_lost"]), "<=", 0.0),
    }
    return BenchResult(name="faults", figures=figures, targets=targets)
