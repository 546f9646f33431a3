"""Automation conditions and retry policies the assets carry (`kz_pipelines.defs.automation` says how
the whole runs by itself)."""

import dagster as dg

SEASON_DAILY_CRON = "0 9 * * *"
"""When the season assets catch up with the day's new observations (UTC), after the schedule's runs."""


def season_daily(*models: str) -> dg.AutomationCondition:
    """Once a day (`SEASON_DAILY_CRON`) after the inputs changed, current season only; the ``models`` an
    asset reads do not hold it back (they are retrained by people, not daily)."""
    condition = dg.AutomationCondition.on_cron(SEASON_DAILY_CRON, "UTC")
    return condition.ignore(dg.AssetSelection.assets(*models)) if models else condition


NETWORK_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""Steps that talk to a STAC API or read remote rasters: 10, 20, 40 s (+-50% jitter, so that parallel runs
hitting a rate limit do not come back together). Errors no retry can fix fail at once (`permanent`)."""

GPU_RETRY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""The cloud mask: a GPU fault (a lost device, an out-of-memory the batch halving could not absorb) gets
two more tries, 30 and 60 s later."""


def permanent(exc: Exception) -> dg.Failure:
    """A failure that retrying cannot fix (a corrupt file, a missing band, an invalid item): no retry."""
    return dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False)
