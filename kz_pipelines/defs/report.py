"""The demo's HTML report: what the Dagster UI shows of every asset, on one page, with the scores against
the simulated truth and the timings of the run."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import markdown
import pandas as pd

from kz_pipelines.definitions import defs
from kz_pipelines.models.truth_scores import product_scores
from kz_pipelines.storage import atomic_path

__all__ = ["write_report"]

SECTIONS: dict[str, list[str]] = {
    "Crop type": ["crop_type_model", "crop_type_predictions"],
    "Events and practices": [
        "event_models",
        "mowing_events",
        "damage_areas",
        "tillage_practice",
        "ploughing_harvest_events",
        "emergence_dates",
    ],
    "Parcels and the season tensor": ["parcels", "parcel_timeseries"],
    "Ingest and cloud mask": [
        "cloud_mask_model",
        "s2_items",
        "s1_items",
        "s2_scenes",
        "s1_scenes",
        "s2_cloud_mask",
        "parcel_observations",
    ],
}
"""The report's sections and their assets, products first."""

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
h2 { border-bottom: 2px solid #4477aa; padding-top: 1em; }
h3 { margin-bottom: 0.2em; } .desc { color: #555; font-size: 0.9em; } img { max-width: 100%; }
pre { font-size: 0.8em; max-height: 20em; overflow: auto; background: #f6f6f6; padding: 0.5em; }
"""


def _value(value: dg.MetadataValue) -> str:
    """One metadata value as HTML (Markdown rendered, JSON folded, the rest as text)."""
    if isinstance(value, dg.MarkdownMetadataValue):
        return markdown.markdown(value.value or "", extensions=["tables"])
    if isinstance(value, dg.JsonMetadataValue):
        text = json.dumps(value.value, indent=1, default=str)
        return f"<details><summary>JSON</summary><pre>{html.escape(text)}</pre></details>"
    return html.escape(str(value.value))


def _metadata(metadata: dict[str, dg.MetadataValue]) -> str:
    """A materialization's metadata: a table of the short values, then the pictures and long tables."""
    short = {k: v for k, v in metadata.items() if not isinstance(v, dg.MarkdownMetadataValue)}
    long = {k: v for k, v in metadata.items() if isinstance(v, dg.MarkdownMetadataValue)}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_value(v)}</td></tr>" for k, v in short.items())
    blocks = "".join(f"<h4>{html.escape(k)}</h4>{_value(v)}" for k, v in long.items())
    return f"<table>{rows}</table>{blocks}"


def _asset(instance: dg.DagsterInstance, name: str) -> str:
    """An asset's description and the metadata of its latest materialization per partition (per-scene
    assets, with hundreds of partitions: their count and the latest one)."""
    key = dg.AssetKey(name)
    spec = defs.get_repository_def().asset_graph.get(key)
    parts = instance.get_materialized_partitions(key) if spec.partitions_def else set()
    latest = instance.get_latest_materialization_event(key)
    if latest is None:
        return ""
    head = f"<h3>{name}</h3><p class='desc'>{html.escape(spec.description or '')}</p>"
    per_scene = isinstance(spec.partitions_def, dg.MultiPartitionsDefinition) and any(
        d.name == "date" for d in spec.partitions_def.partitions_defs
    )
    if not parts or per_scene:
        shown = [latest]
        if parts:
            head += f"<p>{len(parts)} partitions materialized; the latest:</p>"
    else:
        records = instance.fetch_materializations(key, limit=1000).records
        newest: dict[str, Any] = {}
        for record in records:  # newest first
            newest.setdefault(record.partition_key or "", record.event_log_entry)
        shown = [newest[k] for k in sorted(newest)]
    body = ""
    for entry in shown:
        mat = entry.asset_materialization
        if mat is None:
            continue
        label = f"partition {mat.partition}" if mat.partition else "materialization"
        body += f"<h4>{html.escape(label)}</h4>{_metadata(dict(mat.metadata))}"
    return head + body


def write_report(path: Path, home: Path, storage: Path, region: Path | None, summary: dict[str, Any]) -> Path:
    """Write the demo's HTML report.

    Args:
        path: the HTML file (written atomically).
        home: the demo's Dagster instance folder.
        storage: the storage root of the run.
        region: the simulated region (its truth scores the products), or None.
        summary: the run's summary (partitions, failures, timings).
    """
    parts = [f"<h1>kz_pipelines demo report</h1><p>{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>"]
    if region is not None:
        config = json.loads((Path(region) / "region.json").read_text())["config"]
        parts.append(f"<h2>Region</h2>{pd.DataFrame([config]).T.to_html(header=False)}")
    timings = summary.get("timings", {})
    parts.append(
        "<h2>Run</h2>"
        + pd.DataFrame({"stage": list(timings), "seconds": list(timings.values())}).to_html(index=False)
        + f"<p>{summary.get('partitions', 0)} day x tile partitions; failed: "
        f"{html.escape(', '.join(summary.get('failed', [])) or 'none')}</p>"
    )
    if region is not None and (Path(region) / "truth").is_dir():
        season = int(json.loads((Path(region) / "region.json").read_text())["config"]["start"][:4])
        scores = product_scores(storage, Path(region), season)
        parts.append(
            "<h2>Against the simulated truth</h2><p>Every product of the season scored against the "
            "simulator's truth on the parcels no inspector saw (the models learned from the inspected "
            "ones). Held-out-seed figures: <code>kz eval croptype</code>, <code>kz eval events</code>.</p>"
            + scores.to_html(index=False, float_format=lambda v: f"{v:.3f}")
        )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for title, names in SECTIONS.items():
            parts.append(f"<h2>{title}</h2>" + "".join(_asset(instance, n) for n in names))
    page = "<!doctype html><html><head><meta charset='utf-8'><title>kz_pipelines demo</title>"
    page += f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(page)
    return Path(path)
