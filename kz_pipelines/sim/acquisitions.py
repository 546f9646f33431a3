"""Acquisition plans: when Sentinel-2 and Sentinel-1 see each tile, from which orbit, under which sun."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

__all__ = ["S1Acquisition", "S2Acquisition", "s1_schedule", "s2_schedule", "solar_angles"]


@dataclass(frozen=True)
class S2Acquisition:
    """One Sentinel-2 overpass of a tile.

    Attributes:
        tile: MGRS tile id.
        time: sensing time, UTC.
        platform: ``sentinel-2a``, ``-2b`` or ``-2c``.
        relative_orbit: relative orbit number, 1..143.
        sun_azimuth: degrees clockwise from north.
        sun_elevation: degrees above the horizon.
        view_incidence: mean viewing incidence angle, degrees.
        view_azimuth: mean viewing azimuth, degrees.
        baseline: processing baseline, e.g. ``05.10``.
    """

    tile: str
    time: datetime
    platform: str
    relative_orbit: int
    sun_azimuth: float
    sun_elevation: float
    view_incidence: float
    view_azimuth: float
    baseline: str


@dataclass(frozen=True)
class S1Acquisition:
    """One Sentinel-1 IW acquisition over a tile.

    Attributes:
        tile: MGRS tile id the scene is gridded to.
        time: acquisition start, UTC.
        platform: ``sentinel-1a``, ``-1b`` or ``-1c``.
        orbit_state: ``ascending`` or ``descending``.
        relative_orbit: relative orbit number, 1..175.
        absolute_orbit: absolute orbit number.
        incidence: local incidence angle at the tile, degrees.
        repeat_days: days since the previous acquisition of the same relative orbit (6 or 12).
    """

    tile: str
    time: datetime
    platform: str
    orbit_state: str
    relative_orbit: int
    absolute_orbit: int
    incidence: float
    repeat_days: int


def solar_angles(lat: float, lon: float, when: datetime) -> tuple[float, float]:
    """Approximate solar azimuth and elevation (degrees) at a place and UTC time (error < 1 degree)."""
    doy = when.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    hours = when.hour + when.minute / 60 + when.second / 3600
    hour_angle = math.radians(15.0 * (hours + lon / 15.0 - 12.0))
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    elevation = math.asin(sin_el)
    azimuth = math.atan2(
        math.sin(hour_angle), math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi)
    )
    return (math.degrees(azimuth) + 180.0) % 360.0, math.degrees(elevation)


def _s2_platforms(day: date) -> tuple[str, str]:
    return ("sentinel-2b", "sentinel-2c") if day >= date(2025, 1, 21) else ("sentinel-2a", "sentinel-2b")


def _s2_baseline(day: date) -> str:
    for start, baseline in (
        (date(2024, 7, 23), "05.11"),
        (date(2022, 12, 6), "05.09"),
        (date(2022, 1, 25), "04.00"),
    ):
        if day >= start:
            return baseline
    return "03.01"


def _tile_hash(tile: str, seed: int) -> int:
    return zlib.crc32(f"{tile}:{seed}".encode())


def s2_schedule(tile: str, lat: float, lon: float, start: date, end: date, seed: int) -> list[S2Acquisition]:
    """Sentinel-2 overpasses of a tile: every 5 days, platforms alternating, ~10:30 local solar time.

    Args:
        tile: MGRS tile id.
        lat: latitude of the tile window centre, degrees.
        lon: longitude of the tile window centre, degrees.
        start: first day (inclusive).
        end: last day (inclusive).
        seed: region seed (sets the orbit phase).
    """
    h = _tile_hash(tile, seed)
    phase = h % 5
    orbit = 1 + h % 143
    rng = np.random.default_rng(h)
    out: list[S2Acquisition] = []
    day = start + timedelta(days=phase)
    k = 0
    while day <= end:
        platforms = _s2_platforms(day)
        hours = 10.5 - lon / 15.0 + rng.normal(0, 0.02)
        when = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hours)
        az, el = solar_angles(lat, lon, when)
        out.append(
            S2Acquisition(
                tile=tile,
                time=when.replace(microsecond=(when.microsecond // 1000) * 1000),
                platform=platforms[k % 2],
                relative_orbit=orbit,
                sun_azimuth=az,
                sun_elevation=el,
                view_incidence=float(rng.uniform(2, 10)),
                view_azimuth=float(rng.uniform(100, 290)),
                baseline=_s2_baseline(day),
            )
        )
        day += timedelta(days=5)
        k += 1
    return out


def _s1_platforms(day: date) -> tuple[str, ...]:
    if date(2016, 9, 26) <= day < date(2021, 12, 23):
        return ("sentinel-1a", "sentinel-1b")
    if day >= date(2025, 4, 1):
        return ("sentinel-1a", "sentinel-1c")
    return ("sentinel-1a",)


def s1_schedule(tile: str, lon: float, start: date, end: date, seed: int) -> list[S1Acquisition]:
    """Sentinel-1 IW acquisitions over a tile: one ascending and one descending relative orbit,
    each repeating every 12 days per platform (6 days with two platforms in orbit).

    Args:
        tile: MGRS tile id.
        lon: longitude of the tile window centre, degrees.
        start: first day (inclusive).
        end: last day (inclusive).
        seed: region seed (sets orbits and phases).
    """
    h = _tile_hash(tile, seed + 1)
    out: list[S1Acquisition] = []
    orbits = (
        ("ascending", 1 + h % 175, h % 12, 16.3 - lon / 15.0 + 2.0, 30.0 + (h >> 8) % 15),
        ("descending", 1 + (h >> 4) % 175, (h >> 12) % 12, 4.7 - lon / 15.0 + 2.0, 30.0 + (h >> 16) % 15),
    )
    epoch = date(2014, 4, 3)
    for state, rel, phase, hour, incidence in orbits:
        day = start + timedelta(days=int(phase))
        while day <= end:
            platforms = _s1_platforms(day)
            # with two platforms, B (or C) flies 6 days after A on the same track
            for k, platform in enumerate(platforms):
                acq_day = day + timedelta(days=6 * k)
                if acq_day > end:
                    continue
                when = datetime(acq_day.year, acq_day.month, acq_day.day, tzinfo=UTC) + timedelta(hours=hour)
                absolute = (acq_day - epoch).days * 175 // 12 + rel
                out.append(
                    S1Acquisition(
                        tile=tile,
                        time=when.replace(microsecond=0),
                        platform=platform,
                        orbit_state=state,
                        relative_orbit=rel,
                        absolute_orbit=absolute,
                        incidence=float(incidence),
                        repeat_days=12 // len(platforms),
                    )
                )
            day += timedelta(days=12)
    return sorted(out, key=lambda a: a.time)
