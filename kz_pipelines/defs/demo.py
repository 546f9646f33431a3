"""The demo: materialize every asset for every partition of a simulated region on a local instance."""

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from kz_pipelines.definitions import defs
from kz_pipelines.defs.cloudmask import CloudMaskResource
from kz_pipelines.defs.partitions import TILE_PARTITIONS
from kz_pipelines.defs.resources import DaskResource, ParcelSourceResource, StacResource, StorageResource
from kz_pipelines.sim import SimConfig, simulate
from kz_pipelines.storage import write_json

_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Runs log warnings and errors to the console; everything is in the instance's event log."""

_CHUNK = 20
"""Partitions per worker task (one Dagster run each)."""

DEMO_MODEL = {"preset": "tiny", "chip_size": 256, "max_scenes": 16, "epochs": 4}
"""The demo's cloud-mask model: small and quick to train on 2 cores (`kz eval cloudmask` for quality)."""


def _resources(region: Path, storage: Path) -> dict[str, Any]:
    labels = region / "labels"  # the simulated inspectors' reports, when the region has them
    return {
        "stac": StacResource(catalog=str(region)),
        "storage": StorageResource(root=str(storage)),
        "parcel_source": ParcelSourceResource(
            url=str(region / "parcels.parquet"),
            labels=str(labels / "inspections.parquet") if (labels / "inspections.parquet").is_file() else "",
            field_labels=str(labels) if (labels / "field_events.parquet").is_file() else "",
        ),
        "masker": CloudMaskResource(device="auto"),
        "dask": DaskResource(),
    }


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _run_chunk(
    region: Path, home: Path, storage: Path, keys: list[tuple[str, str]]
) -> tuple[dict[str, int], list[str]]:
    """Materialize the per-scene assets (items, scenes, cloud mask, parcel observations) for each (date,
    tile) in ``keys``, one run each."""
    resources = _resources(region, storage)
    job = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources).resolve_job_def("daily")
    found: dict[str, int] = {}
    failed: list[str] = []
    with _instance(home) as instance:
        for day, tile in keys:
            key = dg.MultiPartitionKey({"date": day, "tile": tile})
            result = job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False, run_config=_QUIET
            )
            if not result.success:
                failed.append(str(key))
            for event in result.get_asset_materialization_events():
                mat = event.step_materialization_data.materialization
                name = mat.asset_key.to_user_string()
                count = mat.metadata.get("items", mat.metadata.get("scenes"))
                found[name] = found.get(name, 0) + int(count.value) if count else found.get(name, 0)  # type: ignore[arg-type]
    return found, failed


def run_demo(
    region: Path,
    home: Path,
    storage: Path,
    log: Callable[[str], Any] = print,
    model: dict[str, Any] | None = None,
    crop_type: bool = True,
    events: bool = True,
    report: Path | None = None,
) -> dict[str, Any]:
    """Register the region's tiles, train the cloud-mask model (`DEMO_MODEL`), load the season's parcels,
    materialize all per-scene assets (items, scenes, cloud mask, parcel observations) for each day x tile
    of its season, one Dagster run per partition spread over one process per core, then build each
    season x tile parcel tensor, train the season's crop type model and score every tile, and train the
    season's event models and run the event products on every tile.

    Args:
        region: a simulated region folder (with region.json).
        home: Dagster instance folder (SQLite storage; created if absent).
        storage: root folder for asset values.
        log: where progress lines go.
        model: `cloud_mask_model` config (default `DEMO_MODEL`).
        crop_type: also train the crop type model and score every tile.
        events: also train the event models and run the event products on every tile.
        report: write the HTML report (`kz_pipelines.defs.report`) there.

    Returns:
        A summary: partitions run, items found per asset, failures, seconds per stage and in all.
    """
    region, home, storage = region.resolve(), home.resolve(), storage.resolve()
    summary = json.loads((region / "region.json").read_text())
    tiles = list(summary["config"]["tiles"])
    start, end = date.fromisoformat(summary["config"]["start"]), date.fromisoformat(summary["config"]["end"])
    seasons = sorted({str(y) for y in range(start.year, end.year + 1)})
    home.mkdir(parents=True, exist_ok=True)

    def _job(name: str) -> dg.JobDefinition:
        d = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=_resources(region, storage))
        return d.resolve_job_def(name)

    timings: dict[str, float] = {}
    started = mark = time.monotonic()

    def lap(stage: str) -> None:
        """Record the seconds since the last stage ended and log them."""
        nonlocal mark
        timings[stage] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        log(f"demo: {stage} in {timings[stage]:.0f} s")

    with _instance(home) as instance:
        instance.add_dynamic_partitions(TILE_PARTITIONS.name or "tile", tiles)
        log(f"demo: training the cloud-mask model {model or DEMO_MODEL}")
        trained = _job("train_cloud_mask").execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={**_QUIET, "ops": {"cloud_mask_model": {"config": model or DEMO_MODEL}}},
        )
        if not trained.success:
            raise RuntimeError("demo: training the cloud-mask model failed; see the run in the Dagster UI")
        lap("cloud-mask model trained")
        for season in seasons:
            _job("load_parcels").execute_in_process(
                partition_key=season, instance=instance, run_config=_QUIET
            )
        lap(f"parcels of season(s) {', '.join(seasons)} loaded")
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    keys = [(d, t) for d in days for t in tiles]
    chunks = [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]
    found: dict[str, int] = {}
    failed: list[str] = []
    done = 0
    workers = max(1, min(os.cpu_count() or 1, len(chunks)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_chunk, region, home, storage, chunk): len(chunk) for chunk in chunks}
        for fut in as_completed(futures):
            counts, bad = fut.result()
            for name, n in counts.items():
                found[name] = found.get(name, 0) + n
            failed += bad
            done += futures[fut]
            log(f"demo: {done}/{len(keys)} partitions, {time.monotonic() - mark:.0f} s, items so far {found}")
    lap(f"{len(keys)} day x tile partitions (items, scenes, cloud mask, observations)")

    def season_run(job: str, key: str, instance: dg.DagsterInstance) -> bool:
        """One run of a season (or season x tile) job; a failure is recorded, not raised."""
        result = _job(job).execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, run_config=_QUIET
        )
        if not result.success:
            failed.append(f"{job} {key}")
        return result.success

    with _instance(home) as instance:
        season_tiles = [(s, dg.MultiPartitionKey({"season": s, "tile": t})) for s in seasons for t in tiles]
        for _, key in season_tiles:
            season_run("timeseries", key, instance)
        lap("season tensors built")
        for enabled, train, score, stage in (
            (crop_type, "train_crop_type", "score_crop_type", "crop type trained and scored"),
            (events, "train_events", "score_events", "event models trained and products run"),
        ):
            if not enabled:
                continue
            for season in seasons:
                if season_run(train, season, instance):
                    for _, key in (st for st in season_tiles if st[0] == season):
                        season_run(score, key, instance)
            lap(stage)
    out = {
        "partitions": len(keys),
        "items": found,
        "failed": failed,
        "timings": timings,
        "seconds": round(time.monotonic() - started, 1),
        "dagster_home": str(home),
        "storage": str(storage),
    }
    if report is not None:
        from kz_pipelines.defs.report import write_report  # imports the markdown renderer only when asked

        out["report"] = str(write_report(report, home, storage, region, out))
        lap("report written")
    return out


HELDOUT_SEEDS = (1, 4)
"""The evaluations' simulated seeds: the training seed and the held-out seed. Seed 2 was the held-out seed
until design choices were made looking at it (the crop type features and ensemble, mowing's training on
thinned series), then seed 3 until the crop type model's selection rule and time-shift augmentation were
chosen on it; seed 4 had been seen by none."""

EVENTS_HELDOUT_SEEDS = (1, 5)
"""`kz eval events`' seeds: the same training seed; seed 4, held out before, informed the events' design
(the ploughing veto, the damage growing, the S1 anomalies were checked on it as on seed 3), so the
held-out seed is 5, which no decision has looked at."""

HELDOUT_REGION: dict[str, Any] = {"size_px": 1100, "n_parcels": 6000, "l1c": False}
"""The evaluations' region: two tiles of 11 km with 6000 parcels (every crop class with held-out parcels)."""

QUICK_REGION: dict[str, Any] = {
    "tiles": ("35VLF",),
    "size_px": 240,
    "start": date(2024, 6, 1),
    "end": date(2024, 6, 21),
    "n_parcels": 40,
    "l1c": False,
}
"""A smoke-run region: one small tile over three weeks."""

QUICK_MODEL: dict[str, Any] = {"preset": "tiny", "chip_size": 120, "epochs": 1}
"""A smoke run's cloud-mask model."""


@dataclass(frozen=True)
class HeldoutRun:
    """One simulated seed run through the pipeline.

    Attributes:
        region: the simulated region folder (its ``truth/`` is the ground truth).
        storage: the run's asset storage root (tensors under ``timeseries/<season>/``).
    """

    region: Path
    storage: Path


def heldout_runs(
    work: Path,
    quick: bool = False,
    reuse: bool = False,
    log: Callable[[str], Any] = print,
    seeds: tuple[int, int] = HELDOUT_SEEDS,
) -> dict[int, HeldoutRun]:
    """The evaluations' simulated ``seeds`` through the pipeline: the training seed (the first) through
    the crop type model, the held-out seed up to the tensors.

    Regions are simulated once into ``work`` (folders named by their configuration); each run goes into
    ``work/run-seed<N>`` afresh, or is kept when ``reuse`` and it completed before (its ``done.json``).

    Args:
        work: the evaluations' folder.
        quick: the smoke-run region and cloud-mask model (`QUICK_REGION`, `QUICK_MODEL`).
        reuse: keep complete earlier runs.
        log: where progress lines go.
        seeds: the training and the held-out seed (`HELDOUT_SEEDS`, `EVENTS_HELDOUT_SEEDS`).

    Raises:
        RuntimeError: a partition failed (the run's Dagster instance says why).
    """
    runs: dict[int, HeldoutRun] = {}
    for seed in seeds:
        cfg = SimConfig(seed=seed, **(QUICK_REGION if quick else HELDOUT_REGION))
        region = work / f"region-seed{seed}-{cfg.size_px}px-{cfg.n_parcels}p-{cfg.days}d"
        if not (region / "region.json").is_file():
            log(f"simulating seed {seed}: {asdict(cfg)}")
            simulate(cfg, region, overwrite=True)
        folder = work / f"run-seed{seed}"
        runs[seed] = HeldoutRun(region, folder / "storage")
        done = folder / "done.json"
        if reuse and done.is_file() and json.loads(done.read_text()).get("region") == str(region):
            log(f"seed {seed}: reusing the complete run in {folder}")
            continue
        if folder.exists():
            shutil.rmtree(folder)
        train = seed == seeds[0]
        log(f"pipeline on seed {seed} ({'through the crop type model' if train else 'up to the tensors'})")
        summary = run_demo(
            region,
            folder / "dagster",
            folder / "storage",
            log=log,
            model=QUICK_MODEL if quick else DEMO_MODEL,
            crop_type=train,
            events=False,
        )
        if summary["failed"]:
            raise RuntimeError(f"the pipeline failed on seed {seed}: {summary['failed']}")
        write_json(done, {"region": str(region), "summary": summary})
    return runs
