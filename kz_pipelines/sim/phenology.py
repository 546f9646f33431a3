"""Crop calendars: per parcel and day, green cover, dry cover (senescent canopy, residue, cut grass)
and soil roughness, with the dated events (sowing, emergence, mowing, harvest, ploughing) that drive them.

Green cover follows a double-logistic curve per crop group (winter crops already green in spring,
spring crops sown, emerging and growing); grassland is mowed 0-3 times with regrowth over about
three weeks; arable parcels are harvested, leaving residue that conventional tillage ploughs under and
conservation tillage leaves on the surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "CLASS_TRAITS",
    "ClassTraits",
    "CropCalendar",
    "GROUP_CALENDARS",
    "simulate_calendar",
    "soil_moisture",
]


@dataclass(frozen=True)
class GroupCalendar:
    """Mean calendar of a crop group (day of year; a parcel jitters each by a few days).

    Attributes:
        sow: sowing day (None: sown before the season, e.g. winter crops and grassland).
        emergence_lag: days from sowing to emergence.
        growth_mid: days from emergence (or from ``sow`` for winter crops) to the green-up midpoint.
        peak: maximum green cover, 0..1.
        base: green cover at the start of the season (overwintered canopy), 0..1.
        senescence: day of the senescence midpoint (None: stays green).
        harvest: harvest day (None: not harvested).
        residue: dry residue cover left by the harvest, 0..1.
    """

    sow: float | None
    emergence_lag: float
    growth_mid: float
    peak: float
    base: float
    senescence: float | None
    harvest: float | None
    residue: float


GROUP_CALENDARS: dict[str, GroupCalendar] = {
    "winter_cereal": GroupCalendar(None, 0, 110, 0.88, 0.25, 190, 215, 0.5),
    "winter_oilseed": GroupCalendar(None, 0, 102, 0.90, 0.35, 176, 205, 0.35),
    "spring_cereal": GroupCalendar(122, 10, 22, 0.85, 0.02, 212, 236, 0.45),
    "spring_oilseed": GroupCalendar(128, 9, 24, 0.85, 0.02, 225, 246, 0.3),
    "legume": GroupCalendar(118, 12, 22, 0.85, 0.02, 206, 228, 0.25),
    "spring_broadleaf": GroupCalendar(140, 8, 20, 0.80, 0.02, 226, 250, 0.3),
    "maize": GroupCalendar(135, 12, 35, 0.90, 0.02, 255, 272, 0.12),
    "root": GroupCalendar(128, 22, 18, 0.85, 0.02, 226, 246, 0.08),
    "perennial": GroupCalendar(None, 0, 118, 0.60, 0.30, None, None, 0.0),
    "grassland": GroupCalendar(None, 0, 112, 0.85, 0.35, 295, None, 0.0),
    "fallow": GroupCalendar(None, 0, 135, 0.45, 0.10, 280, None, 0.0),
}


@dataclass(frozen=True)
class ClassTraits:
    """How a crop class departs from its group's mean calendar and canopy: what tells the crops of one
    group apart (winter barley ripens weeks before winter wheat; faba beans stand taller and leafier than
    peas). Values are plausible orderings from crop physiology, not measurements.

    Attributes:
        shift: days added to the sowing day (sown crops) or to the green-up midpoint (overwintered ones).
        ripen: days added to the senescence and harvest days.
        peak: added to the group's peak green cover.
        canopy: scale of the green vegetation spectrum in the visible (B01-B04), red-edge (B05-B07),
            near-infrared (B08, B8A, B09) and shortwave-infrared (B11, B12) bands: leaf pigments,
            canopy architecture, leaf water.
        volume: scale of the canopy's radar volume scattering (stem and leaf geometry).
    """

    shift: float = 0.0
    ripen: float = 0.0
    peak: float = 0.0
    canopy: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    volume: float = 1.0


CLASS_TRAITS: dict[str, ClassTraits] = {
    "winter_wheat": ClassTraits(0, 6, 0.0, (1.0, 1.0, 1.0, 1.0), 1.0),
    "winter_barley": ClassTraits(-6, -18, 0.0, (1.1, 1.0, 0.92, 1.05), 0.9),
    "winter_rye": ClassTraits(-10, -6, -0.05, (0.95, 1.05, 1.1, 0.95), 1.25),
    "winter_triticale": ClassTraits(4, 14, 0.0, (0.9, 0.95, 1.05, 1.08), 1.1),
    "winter_rapeseed": ClassTraits(0, 0, 0.0, (1.2, 1.0, 1.15, 1.0), 1.4),
    "spring_wheat": ClassTraits(4, 10, 0.0, (1.0, 1.0, 1.0, 1.0), 1.0),
    "spring_barley": ClassTraits(-4, -6, 0.0, (1.1, 1.0, 0.93, 1.05), 0.9),
    "oats": ClassTraits(2, 4, 0.0, (0.9, 1.08, 1.12, 0.95), 1.15),
    "spring_triticale": ClassTraits(8, 16, 0.0, (0.92, 0.95, 1.05, 1.1), 1.1),
    "mixed_cereals": ClassTraits(0, 0, 0.0, (1.05, 1.05, 1.02, 0.9), 1.3),
    "spring_rapeseed": ClassTraits(0, 0, 0.0, (1.2, 1.0, 1.15, 1.0), 1.4),
    "peas": ClassTraits(-4, -10, 0.0, (1.0, 1.0, 1.1, 1.0), 1.2),
    "faba_beans": ClassTraits(0, 12, 0.0, (0.85, 1.1, 1.2, 0.95), 1.5),
    "lupin": ClassTraits(6, 20, 0.0, (1.15, 0.95, 1.05, 1.1), 1.3),
    "buckwheat": ClassTraits(10, 6, 0.0, (1.15, 1.05, 1.15, 1.0), 1.3),
    "flax": ClassTraits(-8, -10, 0.0, (0.9, 0.95, 0.95, 1.1), 0.8),
    "caraway": ClassTraits(-15, 0, -0.15, (1.0, 1.1, 1.05, 0.9), 1.0),
    "maize": ClassTraits(),
    "potatoes": ClassTraits(0, 12, 0.0, (0.95, 1.05, 1.15, 1.0), 1.3),
    "vegetables": ClassTraits(10, -15, -0.15, (1.1, 0.95, 1.0, 1.05), 0.9),
    "strawberries": ClassTraits(0, 0, -0.15, (1.05, 0.95, 0.95, 1.05), 0.7),
    "orchards": ClassTraits(0, 0, 0.1, (0.9, 1.05, 1.1, 0.9), 1.8),
    "berry_bushes": ClassTraits(8, 0, 0.0, (1.0, 1.1, 1.0, 0.95), 1.3),
    "permanent_grassland": ClassTraits(0, 0, -0.05, (1.0, 1.0, 1.0, 1.0), 1.0),
    "temporary_grassland": ClassTraits(-4, 0, 0.05, (0.95, 1.05, 1.08, 1.0), 1.05),
    "clover_grass": ClassTraits(0, 0, 0.0, (0.9, 1.1, 1.15, 0.95), 1.15),
    "alfalfa": ClassTraits(5, 0, 0.0, (0.85, 1.15, 1.2, 0.92), 1.3),
    "fallow": ClassTraits(),
}
"""Traits per crop class name of the taxonomy (a class not listed has the group's mean)."""


@dataclass
class CropCalendar:
    """One parcel's simulated season.

    Attributes:
        green: green vegetation cover per day, 0..1, shape (days,).
        dry: dry cover (senescent canopy, straw residue, cut grass) per day, 0..1, shape (days,).
        rough: soil roughness after tillage per day, 0..1 (1 = freshly ploughed), shape (days,).
        events: (event type, day index) pairs; types: sowing, emergence, mowing, harvest, ploughing.
        tillage: ``conventional`` or ``conservation`` for arable parcels, else None.
        emergence: day index of the season crop's emergence, or None.
        damage_day: day index when damage starts, or None.
        damage_severity: fraction of green cover lost in the damaged patch, 0..1.
    """

    green: np.ndarray
    dry: np.ndarray
    rough: np.ndarray
    events: list[tuple[str, int]] = field(default_factory=list)
    tillage: str | None = None
    emergence: int | None = None
    damage_day: int | None = None
    damage_severity: float = 0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _mowings(rng: np.random.Generator, cls_name: str, last_day: float) -> list[float]:
    probs = [0.12, 0.35, 0.40, 0.13] if cls_name == "permanent_grassland" else [0.03, 0.22, 0.5, 0.25]
    n = int(rng.choice(4, p=probs))
    days: list[float] = []
    d = rng.uniform(152, 185)
    for _ in range(n):
        if d > min(last_day, 275):
            break
        days.append(d)
        d += rng.uniform(35, 55)
    return days


def simulate_calendar(
    rng: np.random.Generator,
    group: str,
    cls_name: str,
    arable: bool,
    doy: np.ndarray,
    damaged: bool,
) -> CropCalendar:
    """Simulate one parcel's season.

    Args:
        rng: random generator (consumed in a fixed order, so results are reproducible).
        group: phenology group of the parcel's crop class (a key of ``GROUP_CALENDARS``).
        cls_name: crop class name (its `CLASS_TRAITS`; grassland classes also differ in mowing frequency).
        arable: whether the parcel is in a rotation (harvest, ploughing, tillage).
        doy: day of year of each season day, shape (days,).
        damaged: whether a damage event (hail, flood, drought patch) hits the parcel.
    """
    cal = GROUP_CALENDARS[group]
    traits = CLASS_TRAITS.get(cls_name, ClassTraits())
    t = doy.astype(np.float64)
    j = lambda s: float(rng.normal(0.0, s))  # noqa: E731 - jitter in days
    events: list[tuple[str, float]] = []
    tillage = (
        ("conventional" if rng.random() < 0.6 else "conservation")
        if arable and cal.harvest is not None
        else None
    )
    peak = float(np.clip(cal.peak + traits.peak + j(0.04), 0.3, 0.97))
    emergence: float | None = None
    if cal.sow is not None:
        sow = cal.sow + traits.shift + j(7)
        emergence = sow + cal.emergence_lag + j(2)
        mid = emergence + cal.growth_mid + j(3)
        start = np.where(t < emergence, 0.0, 1.0)
        green = 0.02 + (peak - 0.02) * _sigmoid((t - mid) / 6.0) * start
        events += [("sowing", sow), ("emergence", emergence)]
    else:
        mid = cal.growth_mid + traits.shift + j(5)
        green = cal.base + (peak - cal.base) * _sigmoid((t - mid) / 8.0)
    dry = np.zeros_like(t)
    if cal.senescence is not None:
        sen = cal.senescence + (traits.ripen if cal.harvest is not None else 0.0) + j(6)
        fade = _sigmoid((t - sen) / 6.0)
        dry = (green * 0.85 * fade) if cal.harvest is not None else dry
        green = green * (1.0 - 0.9 * fade) if cal.harvest is not None else green * (1.0 - 0.5 * fade)
    if cal.sow is not None:
        # before sowing: a seedbed (bare after conventional, residue after conservation tillage)
        pre = t < emergence if emergence is not None else np.zeros_like(t, dtype=bool)
        dry = np.where(pre, 0.05 if tillage == "conventional" else 0.35, dry)
    rough = np.zeros_like(t)
    if cls_name == "fallow":
        green = green * rng.uniform(0.6, 1.1)
    if group == "grassland":
        for m in _mowings(rng, cls_name, float(t[-1])):
            after = t >= m
            dt = np.where(after, t - m, 0.0)
            drop = rng.uniform(0.15, 0.3)
            factor = np.where(after, 1.0 - (1.0 - drop) * np.exp(-dt / 7.0), 1.0)
            swath = np.where(after, 0.35 * np.exp(-dt / 3.0), 0.0)
            before = float(np.interp(m, t, green))
            green = green * factor
            dry = dry + swath * before
            events.append(("mowing", m))
    if cal.harvest is not None:
        harvest = cal.harvest + traits.ripen + j(8)
        after = t >= harvest
        residue = float(np.clip(cal.residue + j(0.05), 0.03, 0.8))
        events.append(("harvest", harvest))
        volunteer = 0.02 + 0.15 * (1.0 - np.exp(-np.clip(t - harvest, 0, None) / 30.0))
        green = np.where(after, volunteer if tillage == "conservation" else 0.03, green)
        dry = np.where(after, residue * np.exp(-np.clip(t - harvest, 0, None) * 0.003), dry)
        next_sow = harvest + rng.uniform(14, 30)
        if tillage == "conventional":
            plough = harvest + rng.uniform(4, 30)
            events.append(("ploughing", plough))
            ploughed = t >= plough
            dry = np.where(ploughed, 0.03, dry)
            green = np.where(ploughed, 0.02, green)
            rough = np.where(ploughed, np.exp(-np.clip(t - plough, 0, None) / 40.0), rough)
            next_sow = plough + rng.uniform(3, 10)
        if rng.random() < 0.5 and next_sow < 265:
            # the next season's winter crop: sown and emerging in autumn
            next_emergence = next_sow + rng.uniform(8, 12)
            events += [("sowing", next_sow), ("emergence", next_emergence)]
            green = np.maximum(
                green, np.where(t >= next_emergence, 0.3 * _sigmoid((t - next_emergence - 18) / 6.0), 0)
            )
    elif cls_name == "fallow" and rng.random() < 0.4:
        plough = rng.uniform(165, 200)
        events.append(("ploughing", plough))
        ploughed = t >= plough
        regrow = 0.02 + 0.3 * (1 - np.exp(-np.clip(t - plough, 0, None) / 25.0))
        green = np.where(ploughed, regrow, green)
        dry = np.where(ploughed, 0.03, dry)
        rough = np.where(ploughed, np.exp(-np.clip(t - plough, 0, None) / 40.0), rough)
    damage_day: float | None = None
    severity = 0.0
    if damaged:
        damage_day = rng.uniform(165, 200)
        severity = rng.uniform(0.5, 0.9)
    noise = 1.0 + 0.02 * rng.standard_normal(t.size)
    green = np.clip(green * noise, 0.0, 0.97)
    dry = np.clip(dry, 0.0, 0.95 - green)
    day0 = float(t[0])

    def index(day: float) -> int:
        return int(round(day - day0))

    in_season = [(e, index(d)) for e, d in sorted(events, key=lambda ev: ev[1]) if t[0] <= d <= t[-1]]
    return CropCalendar(
        green=green.astype(np.float32),
        dry=dry.astype(np.float32),
        rough=rough.astype(np.float32),
        events=in_season,
        tillage=tillage,
        emergence=index(emergence) if emergence is not None and t[0] <= emergence <= t[-1] else None,
        damage_day=index(damage_day) if damage_day is not None else None,
        damage_severity=severity,
    )


def soil_moisture(rng: np.random.Generator, doy: np.ndarray) -> np.ndarray:
    """Regional surface soil moisture per day, m3/m3: rain pulses drying towards a seasonal base.

    Args:
        rng: random generator.
        doy: day of year per season day, shape (days,).

    Returns:
        Volumetric soil moisture, shape (days,), roughly 0.12..0.40.
    """
    base = 0.22 - 0.06 * np.sin(np.pi * np.clip((doy - 120) / 120.0, 0, 1))
    mv = np.empty(doy.size)
    wet = 0.0
    for i in range(doy.size):
        wet *= np.exp(-1 / 4.0)
        if rng.random() < 0.22:
            wet += rng.uniform(0.03, 0.12)
        mv[i] = base[i] + wet
    return np.clip(mv, 0.1, 0.42)
