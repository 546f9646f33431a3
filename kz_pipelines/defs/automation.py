"""Automation: yesterday's acquisitions every morning, late or reprocessed items noticed, season assets
following at most daily, training left to people.

- `daily_schedule` (06:00 UTC) runs the `daily` job (items, scenes, cloud mask, parcel observations) for
  yesterday on every registered tile.
- `late_items_sensor` (hourly) searches the last `LOOKBACK_DAYS` days of every tile and re-runs the days
  whose items differ from those stored (published after the schedule ran, removed, or reprocessed with a
  newer processing baseline); each new state of a day is run once (its run key is the items' fingerprint).
- The season x tile assets (the tensor, crop type predictions, the event products) carry
  `kz_pipelines.defs.conditions.season_daily`: once per day, after their day x tile inputs changed, for the
  current season only. The models (`cloud_mask_model`, `crop_type_model`, `event_models`) have no
  automation: a person trains them.

Backfills (from the UI: an asset's partitions, Materialize, a range) run one partition per run, Dagster's
default, kept on purpose: each partition's metadata (counts, maps, model cards) is its own, a failure stays
in its run and is retried alone, and the run queue's per-backfill limit (dagster.yaml) spreads a season
over the run workers without starving the daily runs. A single run over a range would save only the run
start, about a second against tens of seconds of work per day x tile.

Both are created stopped; turn them on in the UI (Automation) or with `dagster schedule start` /
`dagster sensor start` (and the `default_automation_condition_sensor` for the season assets).
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from kz_pipelines.defs.jobs import daily_job
from kz_pipelines.defs.partitions import TILE_PARTITIONS
from kz_pipelines.defs.resources import StacResource, StorageResource
from kz_pipelines.scenes import changed_days, read_items
from kz_pipelines.stac import SceneItem

DAILY_CRON = "0 6 * * *"
"""When yesterday's scenes are ingested (UTC): S2 L2A and S1 GRD are mostly published within hours."""

LOOKBACK_DAYS = 10
"""How far back the sensor looks for items published late or reprocessed."""


def _tiles(instance: dg.DagsterInstance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(TILE_PARTITIONS.name or "tile"))


def _key(day: date, tile: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.isoformat(), "tile": tile})


@dg.schedule(
    job=daily_job,
    cron_schedule=DAILY_CRON,
    execution_timezone="UTC",
    description="Yesterday's items, scenes, cloud masks and parcel observations on every registered tile.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    when = context.scheduled_execution_time or datetime.now(UTC)
    day = (when - timedelta(days=1)).date()
    tiles = _tiles(context.instance)
    if not tiles:
        return dg.SkipReason("no tile registered: add the region's tiles to the `tile` partitions")
    return [
        dg.RunRequest(run_key=f"{day}|{tile}", partition_key=_key(day, tile), tags={"kz/trigger": "schedule"})
        for tile in tiles
    ]


def today() -> date:
    """The current UTC date (the sensor's reference)."""
    return datetime.now(UTC).date()


@dg.sensor(
    job=daily_job,
    minimum_interval_seconds=3600,
    description=(
        f"Re-runs the day x tile partitions of the last {LOOKBACK_DAYS} days whose STAC items changed since "
        "they were ingested (published late, removed, reprocessed)."
    ),
)
def late_items_sensor(
    context: dg.SensorEvaluationContext, stac: StacResource, storage: StorageResource
) -> dg.SensorResult:
    profile = stac.profile()
    roles: dict[str, str] = {r: c for r, c in profile.collections.items() if r in ("s2_l2a", "s2_l1c", "s1")}
    end = today() - timedelta(days=1)
    start = end - timedelta(days=LOOKBACK_DAYS - 1)
    requests = []
    for tile in _tiles(context.instance):

        def stored(role: str, day: date, tile: str = tile) -> list[SceneItem]:
            return read_items(storage.fetch("items", role, tile, f"{day}.json", missing_ok=True))

        changed = changed_days(stac.searcher(), roles, tile, start, end, stored, profile.name)
        for day, fingerprint in sorted(changed.items()):
            context.log.info(f"{tile} {day}: items changed since ingest")
            requests.append(
                dg.RunRequest(
                    run_key=f"{day}|{tile}|{fingerprint}",
                    partition_key=_key(day, tile),
                    tags={"kz/trigger": "late-items"},
                )
            )
    return dg.SensorResult(run_requests=requests)
