"""`kz bench orchestration`: a season backfill of the scene-level assets through the real daemon and
webserver on this machine's PostgreSQL, with stand-in compute, then what a national and a continental
backfill would cost on a Kubernetes cluster.

The stand-in keeps the asset graph, the partitions and every step's code, and swaps the heavy compute for a
tiny simulated region: each tile is a window of ``size_px`` pixels, so a partition's steps do the full work
on a few thousand pixels instead of 120 million. What is measured is Dagster's part: the backfill daemon
planning runs, the run queue launching them, each run's process start and code load, the event log in
PostgreSQL, and the webserver answering the UI's partition-status query while the backfill grows.

The projection multiplies the per-scene costs of the earlier benchmarks (``kz bench ingest``, ``cloudmask``,
``zonal``, full 10980 px tiles; `COSTS`) by the scenes of the season, adds the per-run overhead measured
here, and spreads the work over a cluster of CPU and GPU nodes.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.bench.deployment import Services, days, deployment
from kz_pipelines.defs.demo import _resources
from kz_pipelines.observations import S1_FEATURES, S2_FEATURES
from kz_pipelines.sim import SimConfig

TILES = ("35VLF", "35VMF", "35VNF", "35VLE", "35VME", "35VNE")
"""Estonia's six tiles (the national mowing service's area)."""

SCENE_ASSETS = ["s2_items", "s1_items", "s2_scenes", "s1_scenes", "s2_cloud_mask", "parcel_observations"]
"""The scene-level assets (day x tile): the daily job's."""

STAND_IN_POOL_SLOTS = 4
"""Slots of the `gpu` and `stac` pools during the backfill (one each in dagster.yaml): the stand-in's masking
runs on the CPU in milliseconds, and a cluster sets the `gpu` pool to its GPUs."""

STAND_IN_MODEL = {"preset": "tiny", "chip_size": 120, "max_scenes": 8, "epochs": 1}
"""The stand-in's cloud-mask model: trained in seconds (its quality is not what is measured)."""


@dataclass(frozen=True)
class SceneCosts:
    """What one full-tile scene costs, from the earlier benchmarks (seconds on the machine they name).

    Attributes:
        s2_load_cpu_s: loading a 10980 px S2 scene into ``s2_scenes`` (``kz bench ingest``, end to end).
        s2_mask_gpu_s: masking it on one GPU (``kz bench cloudmask``: H100 inference plus read and write).
        zonal_band_date_cpu_s: one band-date of parcel statistics, 20,000 parcels (``kz bench zonal``).
        s1_load_cpu_s: loading an S1 scene (two polarizations; scaled from the S2 load by band count).
        source: where each figure comes from.
    """

    s2_load_cpu_s: float
    s2_mask_gpu_s: float
    zonal_band_date_cpu_s: float
    s1_load_cpu_s: float
    source: str


COSTS = SceneCosts(
    s2_load_cpu_s=30.0,
    s2_mask_gpu_s=0.56 + 7.0,
    zonal_band_date_cpu_s=(11.17 - 2.99) / 4,
    s1_load_cpu_s=30.0 * 2 / 12,
    source=(
        "2026-11-23, 2 cores of AMD EPYC, each bench while another ran: kz bench ingest end to end 30.0 s "
        "(load 9.6 s, Zarr write 20.4 s); kz bench zonal 2.05 s per band-date of 20,000 parcels; the GPU "
        "mask is H100 inference (0.56 s, kz bench cloudmask) plus that bench's CPU read and write (7 s), its "
        "end to end not yet measured on a GPU; S1 load scaled from S2 by bands (2 of 12)"
    ),
)


@dataclass(frozen=True)
class Cluster:
    """A Kubernetes cluster: CPU nodes of ``cores`` each (a step pod asks for ``step_cores``) and GPUs."""

    cpu_nodes: int = 10
    cores: int = 16
    gpus: int = 2
    step_cores: int = 2


def project(
    tiles: int,
    s2_per_tile: int,
    s1_per_tile: int,
    code_load_s: float,
    torch_load_s: float,
    cluster: Cluster,
    costs: SceneCosts,
) -> dict[str, float]:
    """Wall time and CPU/GPU hours of a season backfill of the scene-level assets on ``cluster``.

    Every scene costs its load and its statistics (every feature is one band-date) on CPU; every S2 scene
    its mask on a GPU, whose pod also imports torch (``torch_load_s``, measured); every partition (day x
    tile) is one run pod plus a pod per step, each a fresh process loading the code location
    (``code_load_s``, measured). CPU and GPU work overlap across partitions; the wall time is the larger of
    the two shares, each spread over its slots.
    """
    days_x_tiles = tiles * 214
    s2, s1 = tiles * s2_per_tile, tiles * s1_per_tile
    cpu_s = (
        s2 * (costs.s2_load_cpu_s + len(S2_FEATURES) * costs.zonal_band_date_cpu_s)
        + s1 * (costs.s1_load_cpu_s + len(S1_FEATURES) * costs.zonal_band_date_cpu_s)
        + days_x_tiles * (1 + len(SCENE_ASSETS)) * code_load_s
        + s2 * torch_load_s
    )
    gpu_s = s2 * costs.s2_mask_gpu_s
    slots = cluster.cpu_nodes * cluster.cores // cluster.step_cores
    # a step's seconds were measured on 2 cores: a pod of step_cores runs them in the same time
    wall_s = max(cpu_s / slots, gpu_s / max(1, cluster.gpus))
    return {
        "cpu_hours": round(cpu_s * cluster.step_cores / 2 / 3600, 1),
        "gpu_hours": round(gpu_s / 3600, 2),
        "wall_hours": round(wall_s / 3600, 2),
    }


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _prepare(services: Services, season: int) -> None:
    """The season's parcels and a cloud-mask model, materialized in this process on the deployment's
    instance (the backfill's runs need both)."""
    from kz_pipelines.definitions import defs  # the code location imports this package's modules

    with _environ(services.env):
        instance = dg.DagsterInstance.from_config(str(services.home))
        d = dg.Definitions(
            assets=defs.assets, jobs=defs.jobs, resources=_resources(services.region, services.storage)
        )
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        trained = d.resolve_job_def("train_cloud_mask").execute_in_process(
            instance=instance, run_config={**quiet, "ops": {"cloud_mask_model": {"config": STAND_IN_MODEL}}}
        )
        loaded = d.resolve_job_def("load_parcels").execute_in_process(
            instance=instance, partition_key=str(season), run_config=quiet
        )
        if not (trained.success and loaded.success):
            raise RuntimeError("preparing the stand-in (cloud-mask model, parcels) failed")
        for pool in ("gpu", "stac"):
            instance.event_log_storage.set_concurrency_slots(pool, STAND_IN_POOL_SLOTS)


_TICK = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) [+-]\d{4} - dagster\.daemon\.BackfillDaemon - \w+ - (.*)$"
)
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def backfill_ticks(daemon_log: str) -> list[float]:
    """The seconds of each backfill-daemon iteration, from "Evaluating asset backfill" to "completed
    iteration" in the daemon's log (1 s resolution)."""
    ticks: list[float] = []
    start: float | None = None
    for line in _COLOUR.sub("", daemon_log).splitlines():
        m = _TICK.match(line)
        if not m:
            continue
        at = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
        if m.group(2).startswith("Evaluating asset backfill"):
            start = at
        elif "completed iteration" in m.group(2) and start is not None:
            ticks.append(at - start)
            start = None
    return ticks


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def _load_s(code: str) -> float:
    """Seconds a fresh process takes to run ``code`` (imports), best of three."""
    times = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - began)
    return min(times)


def _scenes_per_tile(region: Path) -> tuple[int, int]:
    """S2 and S1 scenes per tile of the simulated season (the acquisition plan of the real constellations)."""
    summary = json.loads((region / "region.json").read_text())
    tiles, items = len(summary["config"]["tiles"]), summary["items"]
    s2 = sum(n for c, n in items.items() if c.startswith("sentinel-2"))
    s1 = sum(n for c, n in items.items() if c.startswith("sentinel-1"))
    return s2 // tiles, s1 // tiles


def run(
    work: Path,
    postgres: dict[str, str],
    tiles: int = 6,
    n_days: int = 214,
    size_px: int = 120,
    stall_s: float = 900,
    max_minutes: float = 0,
    db: str = "kz_bench_orchestration",
    cluster: Cluster = Cluster(),
    log: Callable[[str], Any] = print,
) -> BenchResult:
    """Backfill ``tiles`` x ``n_days`` of the scene-level assets, from April 1st, and report.

    Args:
        work: an empty folder (region, storage, instance home, logs).
        postgres: host, port, user and password of the PostgreSQL server.
        tiles: tiles of `TILES`.
        n_days: days of the season (214: April to October).
        size_px: the stand-in tile window.
        stall_s: a backfill with no partition materialized for this long has stalled (and is cancelled).
        max_minutes: cancel the backfill after this long (0: run it to the end); the daemon and the
            webserver still carry the whole backfill, the throughput gives the time to the end.
        db: the instance's database (dropped and created).
        cluster: the cluster of the projection.
        log: progress lines.
    """
    start = date(2024, 4, 1)
    cfg = SimConfig(
        seed=21,
        tiles=TILES[:tiles],
        size_px=size_px,
        start=start,
        end=start + timedelta(days=n_days - 1),
        n_parcels=8 * tiles,
        l1c=False,
    )
    log(f"orchestration: simulating the stand-in region ({tiles} tiles x {n_days} days, {size_px} px)")
    with deployment(work, postgres, db, cfg) as services:
        _prepare(services, start.year)
        keys = [f"{day}|{tile}" for day in days(cfg) for tile in cfg.tile_ids]
        log(f"orchestration: backfilling {len(keys)} partitions x {len(SCENE_ASSETS)} assets")
        began = time.monotonic()
        backfill = services.launch_backfill(keys, SCENE_ASSETS, {"kz/bench": "orchestration"})
        latencies: list[float] = []
        progress: list[tuple[float, int]] = [(0.0, 0)]
        status, stalled, stopped = "REQUESTED", False, False
        unhealthy: dict[str, int] = {}  # daemon -> checks that found it without a recent heartbeat
        polls = 0
        while status in ("REQUESTED", "CANCELING"):
            time.sleep(10)
            polls += 1
            status = services.backfill_status(backfill)
            if polls % 6 == 0:  # once a minute, as the UI's Deployment page would show it
                for daemon in services.unhealthy_daemons():
                    unhealthy[daemon] = unhealthy.get(daemon, 0) + 1
                    log(f"orchestration: the {daemon} daemon is not healthy (no recent heartbeat)")
            asked = time.perf_counter()
            stats = services.partition_stats("parcel_observations")
            latencies.append(time.perf_counter() - asked)
            now = time.monotonic() - began
            if stats["numMaterialized"] > progress[-1][1]:
                progress.append((now, stats["numMaterialized"]))
                log(f"orchestration: {stats['numMaterialized']}/{len(keys)} partitions in {now:.0f} s")
            elif now - progress[-1][0] > stall_s and not stalled:
                stalled = True
                log(f"orchestration: nothing materialized for {stall_s:.0f} s: stalled, cancelling")
                services.cancel_backfill(backfill)
            if max_minutes and now > 60 * max_minutes and not stopped:
                stopped = True
                log(f"orchestration: {max_minutes:.0f} min spent: cancelling the rest of the backfill")
                services.cancel_backfill(backfill)
        wall_s = progress[-1][0] if stopped else time.monotonic() - began
        final = {asset: services.partition_stats(asset) for asset in SCENE_ASSETS}
        ticks = backfill_ticks((services.logs / "daemon.log").read_text())
        s2_per_tile, s1_per_tile = _scenes_per_tile(services.region)
    done = progress[-1][1] if stopped else min(s["numMaterialized"] for s in final.values())
    failed = max(s["numFailed"] for s in final.values())
    stall = stalled or bool(unhealthy)
    per_min = done / (wall_s / 60) if wall_s > 0 else 0.0
    # the per-run cost of orchestration on this machine: the run's wall share of both cores
    run_overhead_s = wall_s * 2 / max(1, done)
    # what every run and step pod pays before its work, and what the masking step adds on a day with a scene
    code_load_s = _load_s("import kz_pipelines.definitions_k8s")
    with_torch_s = _load_s("import kz_pipelines.definitions_k8s, kz_pipelines.cloudmask.predict")
    torch_load_s = max(0.0, with_torch_s - code_load_s)
    latency = _quantiles(latencies)
    tick = _quantiles(ticks)
    scale = {
        f"{n}_tiles_{key}": value
        for n in (6, 100)
        for key, value in project(
            n,
            s2_per_tile * 214 // n_days,
            s1_per_tile * 214 // n_days,
            code_load_s,
            torch_load_s,
            cluster,
            COSTS,
        ).items()
    }
    figures: dict[str, float | int | str] = {
        "partitions": len(keys),
        "assets": len(SCENE_ASSETS),
        "stand_in_px": size_px,
        "pool_slots_gpu_stac": STAND_IN_POOL_SLOTS,
        "backfill_status": status,
        "partitions_materialized": done,
        "asset_partitions_materialized": sum(s["numMaterialized"] for s in final.values()),
        "partitions_failed": failed,
        "wall_s": round(wall_s, 1),
        "partitions_per_min": round(per_min, 2),
        "time_budget_min": max_minutes or "none",
        "hours_to_complete_here": round(len(keys) / per_min / 60, 2) if per_min else "never",
        "run_overhead_cpu_s": round(run_overhead_s, 1),
        "code_location_load_s": round(code_load_s, 2),
        "mask_step_torch_load_s": round(torch_load_s, 2),
        **{f"graphql_partition_stats_{k}_s": v for k, v in latency.items()},
        **{f"daemon_backfill_tick_{k}_s": v for k, v in tick.items()},
        "daemon_backfill_ticks": len(ticks),
        "stalled": int(stalled),
        "daemon_health_checks": polls // 6,
        "daemons_unhealthy": ", ".join(f"{d} ({n}x)" for d, n in sorted(unhealthy.items())) or "none",
        "cluster": f"{cluster.cpu_nodes} CPU nodes x {cluster.cores} cores, {cluster.gpus} GPUs",
        "s2_scenes_per_tile_season": s2_per_tile * 214 // n_days,
        "s1_scenes_per_tile_season": s1_per_tile * 214 // n_days,
        **scale,
        "costs_from": COSTS.source,
    }
    targets = {
        "stalls": Target(int(stall), "<=", 0),
        "partitions_failed": Target(failed, "<=", 0),
    }
    return BenchResult(name="orchestration", figures=figures, targets=targets)
