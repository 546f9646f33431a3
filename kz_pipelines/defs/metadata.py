"""Metadata helpers shared by the assets."""

import base64

import dagster as dg


def image_md(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG as Markdown metadata (a data URI), shown as a picture in the Dagster UI."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
