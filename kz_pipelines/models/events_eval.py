"""`kz eval events`: every event product, baseline and learned side by side, on a held-out simulated seed.

The evaluations' simulated seeds run through the pipeline (`kz_pipelines.defs.demo.heldout_runs`; the training
seed's run is `kz eval croptype`'s): seed 1's season tensors and true tables train and choose each product's
model, the held-out seed's (`EVENTS_HELDOUT_SEEDS`, seed 5) score it, never seen before. Each product module's
``evaluate`` fits the learned model on seed 1 (validation parcels inside it choose between the rule-based
baseline and the learned model) and reports both on the held-out seed; then again on it with half of its
Sentinel-2 acquisition days removed (`kz_pipelines.models.events.drop_s2_dates`: S1 must carry the products
through cloudy spells). Damage works on pixels: it reads the runs' stored scenes and cloud masks.

Targets (issue: events), on the model each product selects, with all S2 dates: mowing event F1 (±6 days)
>= 0.90; harvest and ploughing event F1 >= 0.90 and date MAE <= 3 days; emergence date MAE <= 3 days;
damage area error <= 10% and IoU >= 0.7; tillage F1 >= 0.90.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.models import damage, emergence, mowing, ploughing_harvest, tillage
from kz_pipelines.models.events import SeasonSeries, drop_s2_dates, season_series

__all__ = ["DROP_FRACTION", "run"]

DROP_FRACTION = 0.5
"""Share of the held-out seed's Sentinel-2 acquisition days removed in the cloudy-season variant."""

_SeriesEvaluate = Callable[[SeasonSeries, pd.DataFrame, SeasonSeries, pd.DataFrame], dict[str, float]]

_SERIES_PRODUCTS: dict[str, tuple[_SeriesEvaluate, str]] = {
    "mowing": (mowing.evaluate, "events"),
    "ploughing_harvest": (ploughing_harvest.evaluate, "events"),
    "emergence": (emergence.evaluate, "parcels"),
    "tillage": (tillage.evaluate, "parcels"),
}
"""Products read from the season series: their ``evaluate`` and the truth table they score against."""


def _series(storage: Path, region: Path) -> SeasonSeries:
    """Every tile's season series of a run, over the region's season, with every tensor feature."""
    config = json.loads((region / "region.json").read_text())["config"]
    paths = sorted((storage / "timeseries" / config["start"][:4]).glob("*.zarr"))
    ds = xr.concat([xr.open_zarr(p) for p in paths], dim="parcel", coords="minimal", compat="override")
    features = [str(f) for f in ds["feature"].to_numpy()]
    return season_series(ds, features, config["start"], config["end"])


def run(
    work: Path, log: Callable[[str], Any] = print, quick: bool = False, reuse: bool = False
) -> BenchResult:
    """Run the evaluation (see the module docstring).

    Args:
        work: the evaluations' folder (`heldout_runs`).
        log: where progress lines go.
        quick: the smoke-run region (too short a season for most products: they report why).
        reuse: keep complete pipeline runs of an earlier call.
    """
    # the Dagster pipeline, only for the runs
    from kz_pipelines.defs.demo import EVENTS_HELDOUT_SEEDS, heldout_runs

    t0 = time.perf_counter()
    runs = heldout_runs(Path(work).resolve(), quick=quick, reuse=reuse, log=log, seeds=EVENTS_HELDOUT_SEEDS)
    train_run, test_run = (runs[seed] for seed in EVENTS_HELDOUT_SEEDS)
    train, test = _series(train_run.storage, train_run.region), _series(test_run.storage, test_run.region)
    cloudy = drop_s2_dates(test, DROP_FRACTION, seed=0)
    figures: dict[str, float | int | str] = {
        "train_seed": EVENTS_HELDOUT_SEEDS[0],
        "test_seed": EVENTS_HELDOUT_SEEDS[1],
        "train_parcels": len(train),
        "test_parcels": len(test),
        "s2_days_dropped": DROP_FRACTION,
    }
    truth = {
        seed: {
            "events": pd.read_parquet(run.region / "truth" / "events.parquet"),
            "parcels": pd.read_parquet(run.region / "truth" / "parcels.parquet"),
        }
        for seed, run in runs.items()
    }
    train_truth, test_truth = (truth[seed] for seed in EVENTS_HELDOUT_SEEDS)
    for name, (evaluate, table) in _SERIES_PRODUCTS.items():
        for variant, series in (("", test), ("cloudy_", cloudy)):
            log(f"{name}{' (half the S2 days dropped)' if variant else ''}")
            started = time.perf_counter()
            try:
                result = evaluate(train, train_truth[table], series, test_truth[table])
            except ValueError as exc:  # e.g. a season too short to hold any event of this kind
                figures[f"{name}_{variant}not_measured"] = str(exc)
                continue
            selected = _with_selected(result)
            figures.update({f"{name}_{variant}{k}": _round(v) for k, v in selected.items()})
            figures[f"{name}_{variant}seconds"] = round(time.perf_counter() - started, 1)
    log("damage")
    tiles = sorted(p.stem for p in (test_run.storage / "timeseries").glob("*/*.zarr"))
    try:
        result = damage.evaluate(
            train_run.storage,
            train_run.region / "truth",
            test_run.storage,
            test_run.region / "truth",
            tiles,
            season=int(json.loads((test_run.region / "region.json").read_text())["config"]["start"][:4]),
            drop_fraction=DROP_FRACTION,
        )
        # damage's learned variant is its rules tuned on seed 1 (`tuned_*`, chosen by `selected_tuned`)
        selected = _with_selected(result, learned="tuned_", flag="selected_tuned")
        figures.update({f"damage_{k}": _round(v) for k, v in selected.items()})
    except ValueError as exc:
        figures["damage_not_measured"] = str(exc)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    return BenchResult(name="events", figures=figures, targets=_targets(figures))


def _with_selected(
    result: dict[str, float], learned: str = "learned_", flag: str = "selected"
) -> dict[str, float]:
    """A product's figures plus ``selected_*``: the figures of the model its validation chose (``flag`` 1:
    the learned model, whose figures start with ``learned``; 0: the rule-based baseline's, ``baseline_``)."""
    chosen = learned if result.get(flag, 0.0) >= 0.5 else "baseline_"
    picked = {f"selected_{k.removeprefix(chosen)}": v for k, v in result.items() if k.startswith(chosen)}
    return {**result, **picked}


def _round(value: float | int | str) -> float | int | str:
    """Four decimals; NaN (nothing to score, e.g. no matched event for a date error) as ``n/a``."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else round(value, 4)
    return value


def _targets(figures: dict[str, float | int | str]) -> dict[str, Target]:
    """The issue's targets on the selected models (all S2 dates); a figure not measured is None."""

    def value(key: str) -> float | None:
        v = figures.get(key)
        return float(v) if isinstance(v, int | float) else None

    return {
        "mowing_f1": Target(value("mowing_selected_f1"), ">=", 0.90),
        "harvest_f1": Target(value("ploughing_harvest_selected_harvest_f1"), ">=", 0.90),
        "harvest_mae_days": Target(value("ploughing_harvest_selected_harvest_mae_days"), "<=", 3.0),
        "ploughing_f1": Target(value("ploughing_harvest_selected_ploughing_f1"), ">=", 0.90),
        "ploughing_mae_days": Target(value("ploughing_harvest_selected_ploughing_mae_days"), "<=", 3.0),
        "emergence_mae_days": Target(value("emergence_selected_mae_days"), "<=", 3.0),
        "damage_area_error": Target(value("damage_selected_area_error"), "<=", 0.10),
        "damage_iou": Target(value("damage_selected_iou"), ">=", 0.70),
        "tillage_f1": Target(value("tillage_selected_f1"), ">=", 0.90),
    }
