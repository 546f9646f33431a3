"""The pipeline's products scored against a simulated region's truth, on the parcels no inspector saw.

The demo's event models learn from the inspected parcels (the region's ``labels/``); everything else about
the season is known only to the simulator (``truth/``). :func:`product_scores` reads what the pipeline
wrote (mowing, harvest/ploughing, emergence, tillage, damage; every tile of the season) and scores it with
the same measures as `kz eval events` on the parcels outside the inspections, so the figures are measured
against ground truth the models never trained on. The crop type model learns from every parcel's
declaration, so it is scored where declarations are silent: on the parcels declared wrongly (about 3% in
the simulator), how often it predicts the true class, and how well its disagreement flags find them.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd

from kz_pipelines.models.damage import damage_scores
from kz_pipelines.models.events import event_scores
from kz_pipelines.models.tillage import tillage_scores

__all__ = ["product_scores"]


def _read(folder: Path, events: bool = False) -> pd.DataFrame | None:
    """Every tile's table in ``folder`` (``events``: the ``<tile>_events.parquet`` tables); None if none."""
    paths = sorted(p for p in folder.glob("*.parquet") if p.stem.endswith("_events") == events)
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True) if paths else None


def _day(values: pd.Series) -> pd.Series:
    return (pd.to_datetime(values) - pd.Timestamp("1970-01-01")).dt.days


def _events(predicted: pd.DataFrame, truth: pd.DataFrame, kind: str, scope: set[str]) -> dict[str, float]:
    """Event F1 (±6 days) and date MAE of ``kind`` over the parcels in ``scope``."""
    pred, true = (
        t.loc[(t["event"] == kind) & t["parcel_id"].isin(scope)].assign(day=lambda f: _day(f["date"]))
        for t in (predicted, truth)
    )
    predicted_days, true_days = (
        {str(p): [int(d) for d in days] for p, days in t.groupby("parcel_id")["day"]} for t in (pred, true)
    )
    return event_scores(predicted_days, true_days)


def product_scores(storage: Path, region: Path, season: int) -> pd.DataFrame:
    """Scores of every product the pipeline wrote for ``season`` against ``region``'s truth.

    Args:
        storage: the pipeline's storage root.
        region: the simulated region (``truth/``; ``labels/inspections.parquet`` names the parcels left out).
        season: the year.

    Returns:
        One row per figure: product, metric, value, parcels (how many were scored). Products not written
        are absent.
    """
    truth_dir, out = Path(region) / "truth", Path(storage)
    parcels = pd.read_parquet(truth_dir / "parcels.parquet")
    events = pd.read_parquet(truth_dir / "events.parquet")
    inspections = Path(region) / "labels" / "inspections.parquet"
    seen = set(pd.read_parquet(inspections)["parcel_id"]) if inspections.is_file() else set()
    unseen = parcels.loc[~parcels["parcel_id"].isin(seen)]
    rows: list[tuple[str, str, float, int]] = []

    crop = _read(out / "crop_type" / str(season))
    if crop is not None:  # trained on every parcel's declaration: scored on what declarations cannot say
        both = crop.merge(unseen[["parcel_id", "crop_class"]], on="parcel_id")
        wrong = (both["declared_class"] != both["crop_class"]).to_numpy()
        flagged = both["disagrees"].to_numpy(bool)
        right = both["predicted_class"].to_numpy() == both["crop_class"].to_numpy()
        rows += [
            (
                "crop type",
                "true class predicted, wrongly declared parcels",
                float(right[wrong].mean()) if wrong.any() else float("nan"),
                int(wrong.sum()),
            ),
            (
                "crop type",
                "flagged disagreements that are wrong declarations",
                float(wrong[flagged].mean()) if flagged.any() else float("nan"),
                int(flagged.sum()),
            ),
            (
                "crop type",
                "wrong declarations flagged",
                float(flagged[wrong].mean()) if wrong.any() else float("nan"),
                int(wrong.sum()),
            ),
        ]
    for product, kinds in (("mowing", ("mowing",)), ("ploughing_harvest", ("harvest", "ploughing"))):
        table = _read(out / "events" / product / str(season))
        found = _read(out / "events" / product / str(season), events=True)
        if table is None or found is None:
            continue
        scope = set(table.loc[table["status"] == "ok", "parcel_id"]) - seen
        for kind in kinds:
            s = _events(found, events, kind, scope)
            rows += [
                (kind, "event F1 (±6 d)", s["f1"], len(scope)),
                (kind, "date MAE (days)", s["mae_days"], len(scope)),
            ]
    emergence = _read(out / "events" / "emergence" / str(season))
    if emergence is not None:
        both = emergence.merge(
            unseen[["parcel_id", "emergence_date"]], on="parcel_id", suffixes=("", "_true")
        )
        dated = both.dropna(subset=["emergence_date", "emergence_date_true"])
        err = (_day(dated["emergence_date"]) - _day(dated["emergence_date_true"])).abs()
        has_true = both["emergence_date_true"].notna()
        rows += [
            ("emergence", "date MAE (days)", float(err.mean()) if len(err) else float("nan"), len(dated)),
            (
                "emergence",
                "dated share of true emergences",
                len(dated) / max(int(has_true.sum()), 1),
                int(has_true.sum()),
            ),
        ]
    tillage = _read(out / "events" / "tillage" / str(season))
    if tillage is not None:
        s = tillage_scores(tillage.loc[~tillage["parcel_id"].isin(seen)], unseen)
        rows.append(("tillage", "F1 (conventional)", s["f1"], int(s["n"])))
    damage_dir = out / "events" / "damage" / str(season)
    if any(damage_dir.glob("*.parquet")):
        predicted = pd.concat(
            [gpd.read_parquet(p) for p in sorted(damage_dir.glob("*.parquet"))], ignore_index=True
        )
        predicted = gpd.GeoDataFrame(predicted.loc[~predicted["parcel_id"].isin(seen)], crs=4326)
        s = damage_scores(predicted, gpd.read_parquet(truth_dir / "damage.parquet"), unseen)
        n = int(s["damaged_parcels"])
        rows += [("damage", "IoU", s["iou"], n), ("damage", "area error", s["area_error"], n)]
    return pd.DataFrame(rows, columns=["product", "metric", "value", "parcels"])
