"""The season's event models: per product the method chosen on validation, trained from field labels.

Every event product (mowing, ploughing/harvest, emergence, tillage, damage) has a transparent rule-based
baseline and a learned (or, for damage, tuned) variant. :func:`train_event_models` fits each product's
variant on the parcels the inspectors saw (:class:`FieldLabels`: the rows of the simulated truth an
on-the-spot check reports, or a real agency's field books in the same columns) with that product's
``fit``, which holds out validation parcels and scores both there; the better one on validation is the
one :class:`EventModels` applies, and both sets of validation figures go into the model card. Where a
variant cannot be trained (too few labelled parcels with that event, no labels at all) the baseline is
used and the card says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from kz_pipelines.models import damage, emergence, mowing, ploughing_harvest, tillage
from kz_pipelines.models.damage import DamageRules, PixelStack
from kz_pipelines.models.emergence import EmergenceModel, EmergenceRules
from kz_pipelines.models.events import SeasonSeries, events_table
from kz_pipelines.models.mowing import MowingModel
from kz_pipelines.models.ploughing_harvest import HarvestPloughModel
from kz_pipelines.models.tillage import TillageModel
from kz_pipelines.storage import atomic_dir

__all__ = ["PRODUCTS", "Choice", "EventModels", "FieldLabels", "train_event_models"]

PRODUCTS = ("mowing", "ploughing_harvest", "emergence", "tillage", "damage")
"""The event products, in the order they are trained and reported."""

_LABEL_FILES = {
    "events": "field_events.parquet",
    "parcels": "field_parcels.parquet",
    "damage": "field_damage.parquet",
}
"""The tables of a field-label folder."""


@dataclass(frozen=True)
class FieldLabels:
    """What the inspectors saw on the parcels they visited.

    Attributes:
        events: parcel_id, event (mowing, harvest, ploughing...), date.
        parcels: one row per inspected parcel: parcel_id, tillage, emergence_date, damaged...
        damage: the damaged areas they mapped (parcel_id, start_date, geometry; EPSG:4326).
    """

    events: pd.DataFrame
    parcels: pd.DataFrame
    damage: gpd.GeoDataFrame

    @classmethod
    def read(cls, folder: Path) -> FieldLabels:
        """Read ``field_events.parquet``, ``field_parcels.parquet`` and ``field_damage.parquet``.

        Raises:
            FileNotFoundError: a table is missing (the message names it).
        """
        missing = [name for name in _LABEL_FILES.values() if not (Path(folder) / name).is_file()]
        if missing:
            raise FileNotFoundError(f"field labels in {folder}: missing {', '.join(missing)}")
        events, parcels = (pd.read_parquet(Path(folder) / _LABEL_FILES[k]) for k in ("events", "parcels"))
        return cls(events, parcels, gpd.read_parquet(Path(folder) / _LABEL_FILES["damage"]))

    @property
    def parcel_ids(self) -> list[str]:
        """The inspected parcels."""
        return sorted(self.parcels["parcel_id"].astype(str))


@dataclass(frozen=True)
class Choice:
    """What a product uses and why.

    Attributes:
        method: ``learned`` (``tuned`` for damage) or ``baseline``.
        validation: both variants' figures on the validation parcels (the product's ``fit``).
        note: why the learned variant is missing, when it is.
    """

    method: str
    validation: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class EventModels:
    """The method each product applies: a learned model where it won on validation, else the rules.

    Attributes:
        choices: product -> :class:`Choice`.
        mowing: the learned mowing model, None where the rules are used.
        harvest_plough: the learned harvest/ploughing model, None where the rules are used.
        emergence: the learned emergence model, None where the rules are used.
        emergence_rules: the emergence baseline's rules (lags calibrated on the labels where possible).
        tillage: the learned tillage model, None where the rules are used.
        damage_rules: the damage rules used (tuned where they won on validation, else the defaults).
    """

    choices: dict[str, Choice]
    mowing: MowingModel | None = None
    harvest_plough: HarvestPloughModel | None = None
    emergence: EmergenceModel | None = None
    emergence_rules: EmergenceRules = field(default_factory=EmergenceRules)
    tillage: TillageModel | None = None
    damage_rules: DamageRules = field(default_factory=DamageRules)

    def mowing_events(self, series: SeasonSeries) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Mowing events (parcel_id, event, date, confidence) and the data status of every parcel."""
        found = self.mowing.detect(series) if self.mowing else mowing.detect_mowing_rules(series)
        return events_table(found), mowing.data_status(series)

    def harvest_plough_events(self, series: SeasonSeries) -> pd.DataFrame:
        """Harvest and ploughing events (parcel_id, event, date, confidence) of the arable parcels."""
        if self.harvest_plough:
            return events_table(self.harvest_plough.detect(series))
        return events_table(ploughing_harvest.detect_rules(series))

    def emergence_dates(self, series: SeasonSeries) -> pd.DataFrame:
        """Emergence date, confidence and status of every in-scope parcel."""
        if self.emergence:
            return self.emergence.estimate(series)
        return emergence.estimate_rules(series, self.emergence_rules)

    def tillage_practice(self, series: SeasonSeries) -> pd.DataFrame:
        """Practice, probability of conventional tillage and status of every parcel."""
        return self.tillage.classify(series) if self.tillage else tillage.classify_rules(series)

    def card(self) -> dict[str, Any]:
        """Per product: method, validation figures, note; and the rules in use."""
        return {
            "products": {name: asdict(choice) for name, choice in self.choices.items()},
            "emergence_rules": asdict(self.emergence_rules),
            "damage_rules": asdict(self.damage_rules),
        }

    def save(self, folder: Path) -> None:
        """Write ``card.json`` and each learned model in its own folder, atomically."""
        with atomic_dir(Path(folder)) as tmp:
            for name, model in (
                ("mowing", self.mowing),
                ("ploughing_harvest", self.harvest_plough),
                ("emergence", self.emergence),
                ("tillage", self.tillage),
            ):
                if model is not None:
                    model.save(tmp / name)
            (tmp / "card.json").write_text(json.dumps(self.card(), indent=1))

    @classmethod
    def load(cls, folder: Path) -> EventModels:
        """Read what :meth:`save` wrote."""
        folder = Path(folder)
        card = json.loads((folder / "card.json").read_text())
        choices = {name: Choice(**c) for name, c in card["products"].items()}

        def learned(name: str) -> bool:
            return (folder / name).is_dir()

        raw = card["emergence_rules"]
        lags = {k: tuple((str(g), float(v)) for g, v in raw[k]) for k in ("lag_days", "s1_lag_days")}
        return cls(
            choices=choices,
            mowing=MowingModel.load(folder / "mowing") if learned("mowing") else None,
            harvest_plough=(
                HarvestPloughModel.load(folder / "ploughing_harvest")
                if learned("ploughing_harvest")
                else None
            ),
            emergence=EmergenceModel.load(folder / "emergence") if learned("emergence") else None,
            emergence_rules=EmergenceRules(**{**raw, **lags}),
            tillage=TillageModel.load(folder / "tillage") if learned("tillage") else None,
            damage_rules=DamageRules(**card["damage_rules"]),
        )


def train_event_models(
    series: SeasonSeries,
    labels: FieldLabels | None,
    stacks: list[PixelStack],
    seed: int = 0,
    log: Callable[[str], Any] = print,
) -> EventModels:
    """Fit every product's learned variant on the labelled parcels and keep it where it wins on validation.

    Args:
        series: the season series of every parcel (only the labelled ones are used).
        labels: the field labels; None: every product uses its baseline.
        stacks: the labelled arable parcels' pixels per tile (for damage).
        seed: validation splits and model seeds.
        log: where progress lines go.
    """
    if labels is None:
        note = "no field labels configured"
        return EventModels({name: Choice("baseline", note=note) for name in PRODUCTS})
    seen = series.subset(np.isin(series.parcel_ids, labels.parcel_ids))
    fits: dict[str, Callable[[], tuple[Any, dict[str, float]]]] = {
        "mowing": lambda: mowing.fit(seen, labels.events, seed),
        "ploughing_harvest": lambda: ploughing_harvest.fit(seen, labels.events, seed),
        "emergence": lambda: emergence.fit(seen, labels.parcels, seed),
        "tillage": lambda: tillage.fit(seen, labels.parcels, seed),
        "damage": lambda: _fit_damage(stacks, labels, seed),
    }
    choices: dict[str, Choice] = {}
    fitted: dict[str, Any] = {}
    for name, fit in fits.items():
        log(f"event models: {name} on {len(seen)} labelled parcels")
        try:
            model, validation = fit()
        except ValueError as exc:
            choices[name] = Choice("baseline", note=f"learned variant not trained: {exc}")
            continue
        won = validation.get("selected", validation.get("selected_tuned", 0.0)) >= 0.5
        learned = "tuned" if name == "damage" else "learned"
        choices[name] = Choice(learned if won else "baseline", validation)
        fitted[name] = model if won else None
        if name == "emergence":  # the lags calibrated on the labels serve the baseline too
            fitted["emergence_rules"] = model.rules
    return EventModels(
        choices,
        mowing=fitted.get("mowing"),
        harvest_plough=fitted.get("ploughing_harvest"),
        emergence=fitted.get("emergence"),
        emergence_rules=fitted.get("emergence_rules") or EmergenceRules(),
        tillage=fitted.get("tillage"),
        damage_rules=fitted.get("damage") or DamageRules(),
    )


def _fit_damage(
    stacks: list[PixelStack], labels: FieldLabels, seed: int
) -> tuple[DamageRules, dict[str, float]]:
    """Damage's ``fit`` on the labelled parcels' stacks.

    Raises:
        ValueError: no stack, or no labelled parcel in them with mapped damage.
    """
    ids = {str(p) for s in stacks for p in s.index.parcel_ids}
    damaged = set(labels.parcels.loc[labels.parcels["damaged"].astype(bool), "parcel_id"].astype(str))
    if not ids & damaged:
        raise ValueError("no inspected arable parcel with mapped damage in the season's scenes")
    return damage.fit(stacks, (labels.damage, labels.parcels), seed)
