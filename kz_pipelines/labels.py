"""Crop taxonomy: the 28 classes every crop product uses, and the declared codes that map to them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["TAXONOMY_PATH", "CropClass", "Taxonomy", "load_taxonomy"]

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
