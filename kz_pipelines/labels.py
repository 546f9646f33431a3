"""Crop labels: the 28-class taxonomy every crop product uses, the declared codes that map to it, and where
each label comes from.

A label is a parcel's crop class with its **source** and that source's **confidence**: an inspector's field
report (1.0) > a drone observation (0.9) > a corrected field book (0.8) > the farmer's declaration (0.6).
The splitter (:mod:`kz_pipelines.splits`) uses the confidence to keep validation and test sets to labels
one can score against; :func:`best_labels` keeps, per parcel, the most trusted label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

__all__ = [
    "LABEL_COLUMNS",
    "LABEL_SOURCES",
    "TAXONOMY_PATH",
    "CropClass",
    "Taxonomy",
    "best_labels",
    "declared_labels",
    "label_table",
    "load_taxonomy",
    "simulated_inspections",
]

LABEL_SOURCES: dict[str, float] = {
    "inspector_report": 1.0,
    "drone_observation": 0.9,
    "field_book": 0.8,
    "declaration": 0.6,
}
"""Label sources and their confidence (how far a label from that source is trusted as truth)."""

LABEL_COLUMNS = ("parcel_id", "crop_class", "source", "confidence")
"""Columns of a label table."""

TAXONOMY_PATH = Path(__file__).resolve().parents[1] / "data_contracts" / "crop_taxonomy.yaml"
"""The taxonomy file of this checkout (data_contracts/crop_taxonomy.yaml)."""


@dataclass(frozen=True)
class CropClass:
    """One class of the taxonomy.

    Attributes:
        id: stable class number, 1..28.
        name: snake_case class name.
        group: phenology group (e.g. ``winter_cereal``, ``grassland``).
        arable: whether the class is in a crop rotation (ploughing, harvest and tillage apply).
        frequency: expected share of parcels, 0..1.
        codes: declared crop codes per coding scheme, e.g. ``{"sim": ("1101",)}``.
    """

    id: int
    name: str
    group: str
    arable: bool
    frequency: float
    codes: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Taxonomy:
    """The class list with lookups by id, name and declared code."""

    classes: tuple[CropClass, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise ValueError("taxonomy has duplicate class ids")

    def by_id(self, class_id: int) -> CropClass:
        """The class with this id (KeyError if none)."""
        for c in self.classes:
            if c.id == class_id:
                return c
        raise KeyError(f"no crop class with id {class_id}")

    def code_map(self, scheme: str) -> dict[str, CropClass]:
        """Declared code -> class for one coding scheme."""
        return {code: c for c in self.classes for code in c.codes.get(scheme, ())}


@lru_cache(maxsize=4)
def load_taxonomy(path: Path = TAXONOMY_PATH) -> Taxonomy:
    """Read the taxonomy YAML."""
    raw = yaml.safe_load(path.read_text())
    classes = tuple(
        CropClass(
            id=int(c["id"]),
            name=str(c["name"]),
            group=str(c["group"]),
            arable=bool(c["arable"]),
            frequency=float(c["frequency"]),
            codes={k: tuple(str(v) for v in vs) for k, vs in c.get("codes", {}).items()},
        )
        for c in raw["classes"]
    )
    return Taxonomy(classes)


def label_table(parcel_ids: Sequence[str], crop_class: Sequence[int], source: str) -> pd.DataFrame:
    """Labels from one source (its confidence from :data:`LABEL_SOURCES`)."""
    if source not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {source!r} (one of {sorted(LABEL_SOURCES)})")
    ids = [str(p) for p in parcel_ids]
    return pd.DataFrame(
        {
            "parcel_id": ids,
            "crop_class": np.asarray(crop_class, np.int16),
            "source": pd.Categorical([source] * len(ids), categories=list(LABEL_SOURCES)),
            "confidence": np.full(len(ids), LABEL_SOURCES[source], np.float32),
        },
        columns=list(LABEL_COLUMNS),
    )


def declared_labels(parcels: pd.DataFrame) -> pd.DataFrame:
    """The farmers' declarations (``parcel_id``, ``crop_class`` of the cleaned parcels) as labels; parcels
    whose code the taxonomy does not know (class 0) carry no label."""
    known = parcels.loc[parcels["crop_class"] > 0]
    return label_table(known["parcel_id"].tolist(), known["crop_class"].tolist(), "declaration")


def simulated_inspections(truth: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """Inspector reports for a random ``fraction`` of the simulated region's parcels: their true class
    (``truth/parcels.parquet``: ``parcel_id``, ``crop_class``), as a paying agency's on-the-spot checks
    would record it."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    picked = truth.iloc[np.sort(rng.choice(len(truth), round(fraction * len(truth)), replace=False))]
    return label_table(picked["parcel_id"].tolist(), picked["crop_class"].tolist(), "inspector_report")


def best_labels(*tables: pd.DataFrame) -> pd.DataFrame:
    """Per parcel, the label of the most trusted source among ``tables`` (ties: the first table given),
    sorted by parcel id."""
    stacked = pd.concat([t.assign(_order=i) for i, t in enumerate(tables)], ignore_index=True).sort_values(
        ["parcel_id", "confidence", "_order"], ascending=[True, False, True], kind="stable"
    )
    return stacked.drop_duplicates("parcel_id").drop(columns="_order").reset_index(drop=True)
