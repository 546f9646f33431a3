"""Metadata helpers shared by the assets."""

import base64

import dagster as dg
import pandas as pd


def image_md(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG as Markdown metadata (a data URI), shown as a picture in the Dagster UI."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def md_table(frame: pd.DataFrame) -> str:
    """A small table as Markdown (shown as a table in the Dagster UI)."""
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
