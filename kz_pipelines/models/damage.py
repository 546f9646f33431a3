"""Damaged areas inside parcels (hail, flood, drought patches) as polygons, from cloud-masked S2 pixels.

A damaged patch keeps losing green cover after the damage day while the rest of the parcel develops as
expected, so on every clear date in the parcel's green phase its pixels sit well below the parcel's own
median NDVI. The rule baseline (:class:`DamageRules`): per parcel and clear date with a green canopy
(parcel median NDVI at least ``min_parcel_ndvi`` and at least ``min_clear_fraction`` of its pixels
clear), each pixel's NDVI relative to that date's parcel median; a pixel is damaged when it is below
``ratio`` on at least ``min_low_dates`` dates and on at least ``min_persistence`` of the green dates
from its first low one that its next date confirms onwards (damage does not recover before harvest; a
cloud shadow the mask missed is one date, and starts nothing: development seed 3, area error 9.1% ->
6.2%). The mask is cleaned with a morphological opening and closing, components smaller than
``min_patch_px`` dropped, grown by hysteresis (neighbouring pixels that pass the same test at
``ratio + grow``, the patch's edge pixels that the sensor mixes with undamaged ground) and holes filled,
then turned into polygons (``rasterio.features.shapes``), dissolved per parcel and clipped to it. The
slivers of the parcel that no pixel centre falls in (along its boundary) go with their nearest pixel:
within half a pixel of the damaged ones they are damaged too, so a patch reaching the field edge is not
cut short of it. Areas are computed in the equal-area EPSG:6933.
``class_ratio`` compares the parcel's median NDVI with its crop class's median on the same dates after
the damage start (the class's expected development; below 1: the whole parcel lags its class).

Only arable parcels whose home tile is the tile are in scope. A parcel with fewer than ``min_dates``
green clear dates gets ``status`` ``insufficient_data`` and no area, never a guessed one.
:func:`tune_rules` picks the thresholds on seed-1 training parcels; :func:`evaluate` compares the
default and tuned rules on seed-1 validation parcels and scores both on a held-out region.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage

from kz_pipelines.models.events import next_observed
from kz_pipelines.parcels import EQUAL_AREA_EPSG, tile_parcels
from kz_pipelines.raster import GridSpec
from kz_pipelines.scenes import open_scenes, store_grid
from kz_pipelines.storage import atomic_path
from kz_pipelines.zonal import ParcelIndex, rasterize_parcels

__all__ = [
    "DamageRules",
    "NoScenesError",
    "PixelStack",
    "damage_areas",
    "damage_scores",
    "damage_table",
    "detect",
    "drop_dates",
    "evaluate",
    "fit",
    "load_stack",
    "tune_rules",
    "write_damage",
]

_CLEAR = 1
"""The cloud-mask class of clear pixels."""


@dataclass(frozen=True)
class DamageRules:
    """Thresholds of the rule-based damage detector.

    Attributes:
        ratio: a pixel is low on a date when its green cover, ``(ndvi - soil_ndvi) / (median - soil_ndvi)``
            relative to the parcel's median, is below this.
        min_low_dates: a damaged pixel is low on at least this many green clear dates.
        min_persistence: ...and on at least this share of the green clear dates from its damage start
            (its first low date confirmed by the next one) on.
        min_parcel_ndvi: a date counts only when the parcel's median NDVI is at least this (green cover).
        soil_ndvi: NDVI of bare soil and dry residue (no green cover).
        min_clear_fraction: a date counts only when at least this share of the parcel's pixels is clear.
        min_dates: parcels with fewer counted dates are ``insufficient_data``.
        min_patch_px: connected damaged components smaller than this (pixels, 10 m) are dropped.
        smooth_px: radius (pixels) of the morphological opening and closing of the mask (0: none).
        grow: pixels connected to a detected patch join it when they pass the test at ``ratio + grow``
            (0: no growing).
    """

    ratio: float = 0.7
    min_low_dates: int = 2
    min_persistence: float = 0.6
    min_parcel_ndvi: float = 0.3
    soil_ndvi: float = 0.2
    min_clear_fraction: float = 0.5
    min_dates: int = 3
    min_patch_px: int = 4
    smooth_px: int = 0
    grow: float = 0.1

    def __post_init__(self) -> None:
        if (
            not 0 < self.ratio < 1
            or not 0 <= self.grow < 1 - self.ratio
            or not 0 < self.min_persistence <= 1
            or not 0 < self.min_clear_fraction <= 1
        ):
            raise ValueError(
                "ratio, min_persistence and min_clear_fraction must be in (0, 1], and ratio + grow below 1"
            )
        if self.min_low_dates < 1 or self.min_dates < 1 or self.min_patch_px < 1 or self.smooth_px < 0:
            raise ValueError("min_low_dates, min_dates, min_patch_px must be >= 1 and smooth_px >= 0")


@dataclass(frozen=True)
class PixelStack:
    """NDVI of every pixel of a tile's in-scope parcels on every S2 acquisition.

    Attributes:
        parcels: the parcels (GeoDataFrame in the grid's CRS) in ``index.parcel_ids`` order.
        index: the parcels' pixels on the tile grid (no inward buffer).
        dates: (obs,) acquisition dates, datetime64[D].
        ndvi: (obs, pixels) NDVI of ``index.pixels``, float32; NaN where not clear.
    """

    parcels: gpd.GeoDataFrame
    index: ParcelIndex
    dates: npt.NDArray[np.datetime64]
    ndvi: npt.NDArray[np.float32]

    def block(self, i: int) -> npt.NDArray[np.float32]:
        """(obs, pixels) NDVI of parcel ``i``."""
        return self.ndvi[:, self.index.offsets[i] : self.index.offsets[i + 1]]


class NoScenesError(FileNotFoundError):
    """A tile has no stored S2 scene in the season."""


def _in_scope(storage_root: Path, season: int, tile: str) -> gpd.GeoDataFrame:
    """The declared arable parcels whose home tile is ``tile``."""
    declared = gpd.read_parquet(storage_root / "parcels" / str(season) / "parcels.parquet")
    return declared.loc[(declared["home_tile"] == tile) & declared["arable"].astype(bool)]


def load_stack(storage_root: Path, season: int, tile: str, parcel_ids: list[str] | None = None) -> PixelStack:
    """Read a tile's stored S2 scenes and cloud masks into a :class:`PixelStack`.

    Args:
        storage_root: the pipeline's storage root (``scenes/``, ``cloud_mask/``, ``parcels/``).
        season: the year.
        tile: the S2 tile id.
        parcel_ids: keep only these parcels (default: every arable parcel with this home tile).

    Raises:
        NoScenesError: the tile has no S2 scene in the season.
    """
    scope = _in_scope(storage_root, season, tile)
    if parcel_ids is not None:
        scope = scope.loc[scope["parcel_id"].isin(parcel_ids)]
    stores = sorted((storage_root / "scenes" / "s2_l2a" / tile).glob(f"{season}-*.zarr"))
    grid: GridSpec | None = None
    dates: list[np.datetime64] = []
    rows: list[npt.NDArray[np.float32]] = []
    for store in stores:
        ds = open_scenes(store)
        if grid is None:
            grid = store_grid(ds)
            local = tile_parcels(scope, grid).sort_values("parcel_id").reset_index(drop=True)
            index = rasterize_parcels(local["parcel_id"].tolist(), local.geometry.tolist(), grid, buffer_px=0)
        for t in range(ds.sizes["time"]):
            scene = ds.isel(time=t)
            mask = storage_root / "cloud_mask" / tile / store.stem / f"{scene.item_id.to_numpy()}.tif"
            with rasterio.open(mask) as src:
                clear = (src.read(1) == _CLEAR) & scene["valid"].to_numpy().astype(bool)
            red, nir = (scene["reflectance"].sel(band=b).to_numpy() for b in ("B04", "B08"))
            with np.errstate(invalid="ignore", divide="ignore"):
                ndvi = np.where(clear, (nir - red) / (nir + red), np.nan).astype(np.float32)
            rows.append(index.gather(ndvi))
            dates.append(np.datetime64(date.fromisoformat(store.stem), "D"))
    if grid is None:
        raise NoScenesError(f"no S2 scenes of {tile} in season {season} under {storage_root}")
    ndvi = np.stack(rows) if rows else np.zeros((0, index.pixels.size), np.float32)
    return PixelStack(local, index, np.array(dates, dtype="datetime64[D]"), ndvi)


@dataclass(frozen=True)
class _ParcelResult:
    usable: int
    mask: npt.NDArray[np.bool_]
    start: np.datetime64 | None


def _clean(
    mask: npt.NDArray[np.bool_], inside: npt.NDArray[np.bool_], rules: DamageRules
) -> npt.NDArray[np.bool_]:
    """Opening, closing, small components dropped and holes filled, within the parcel (2-D arrays)."""
    if rules.smooth_px:
        disk = ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), rules.smooth_px)
        mask = ndimage.binary_closing(ndimage.binary_opening(mask, disk), disk) & inside
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= rules.min_patch_px
    keep[0] = False
    return ndimage.binary_fill_holes(keep[labels]) & inside


def _low(
    rel: npt.NDArray[np.float32], seen: npt.NDArray[np.bool_], ratio: float, rules: DamageRules
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(dates, pixels) relative cover below ``ratio`` from each pixel's damage start on, and the (pixels,)
    damaged ones: low on at least ``min_low_dates`` dates and on ``min_persistence`` of the seen dates
    from the start. The start is the first low date that the pixel's next seen date confirms (a lone low
    date, a cloud shadow the mask missed, does not start the damage), else its first low date."""
    low = np.nan_to_num(rel, nan=1.0) < ratio
    n, pixels = low.shape
    following = next_observed(seen.T, strictly=True).T  # per date and pixel, its next seen date (n: none)
    confirmed = low & np.take_along_axis(np.vstack([low, np.zeros((1, pixels), bool)]), following, axis=0)
    first = np.where(
        confirmed.any(axis=0), confirmed.argmax(axis=0), np.where(low.any(axis=0), low.argmax(axis=0), n)
    )
    after = seen & (np.arange(n)[:, None] >= first[None, :])
    low &= after
    count = low.sum(axis=0)
    damaged = (count >= rules.min_low_dates) & (
        count >= rules.min_persistence * np.maximum(after.sum(axis=0), 1)
    )
    return low, damaged


def _parcel(stack: PixelStack, i: int, rules: DamageRules) -> _ParcelResult:
    x = stack.block(i)
    n = x.shape[1]
    seen = np.isfinite(x)
    clear = seen.sum(axis=1) >= max(1, rules.min_clear_fraction * n)
    med = np.full(x.shape[0], np.nan, np.float32)
    if clear.any():
        med[clear] = np.nanmedian(x[clear], axis=1)
    use = clear & (med >= rules.min_parcel_ndvi)
    empty = np.zeros(n, bool)
    if use.sum() < rules.min_dates:
        return _ParcelResult(int(use.sum()), empty, None)
    soil = rules.soil_ndvi
    rel, seen = (x[use] - soil) / (med[use, None] - soil), seen[use]
    low, damaged = _low(rel, seen, rules.ratio, rules)
    if damaged.sum() < rules.min_patch_px:
        return _ParcelResult(int(use.sum()), empty, None)
    pix = stack.index.pixels[stack.index.offsets[i] : stack.index.offsets[i + 1]]
    r, c = np.divmod(pix, stack.index.grid.width)
    r, c = r - r.min(), c - c.min()
    local, inside = np.zeros((r.max() + 1, c.max() + 1), bool), np.zeros((r.max() + 1, c.max() + 1), bool)
    local[r, c], inside[r, c] = damaged, True
    patch = _clean(local, inside, rules)
    if rules.grow and patch.any():  # hysteresis: the weaker test, only where connected to a patch
        weak = np.zeros_like(patch)
        weak[r, c] = _low(rel, seen, rules.ratio + rules.grow, rules)[1]
        labels, _ = ndimage.label(weak | patch)
        patch = ndimage.binary_fill_holes(np.isin(labels, np.unique(labels[patch]))) & inside
    mask = patch[r, c]
    if not mask.any():
        return _ParcelResult(int(use.sum()), empty, None)
    share = (low[:, mask] & seen[:, mask]).sum(axis=1) / np.maximum(seen[:, mask].sum(axis=1), 1)
    start = stack.dates[use][int(np.argmax(share >= 0.5))]
    return _ParcelResult(int(use.sum()), mask, start)


def detect(stack: PixelStack, rules: DamageRules) -> list[_ParcelResult]:
    """Per parcel of the stack (``index.parcel_ids`` order): counted dates, damaged-pixel mask, start."""
    return [_parcel(stack, i, rules) for i in range(len(stack.index.parcel_ids))]


def _squares(stack: PixelStack, i: int, mask: npt.NDArray[np.bool_]) -> shapely.Geometry:
    """The footprint of parcel ``i``'s pixels selected by ``mask``, in the grid's CRS."""
    grid = stack.index.grid
    pix = stack.index.pixels[stack.index.offsets[i] : stack.index.offsets[i + 1]][mask]
    r, c = np.divmod(pix, grid.width)
    image = np.zeros((r.max() - r.min() + 1, c.max() - c.min() + 1), np.uint8)
    image[r - r.min(), c - c.min()] = 1
    transform = grid.transform @ Affine.translation(float(c.min()), float(r.min()))
    return shapely.union_all(
        [shapely.geometry.shape(g) for g, v in shapes(image, mask=image > 0, transform=transform) if v]
    )


def _polygon(stack: PixelStack, i: int, mask: npt.NDArray[np.bool_]) -> shapely.Geometry:
    """The damaged pixels of parcel ``i`` as one (multi)polygon in the grid's CRS, clipped to the parcel,
    with the parcel's slivers outside every pixel footprint that lie within half a pixel of them."""
    damaged = _squares(stack, i, mask)
    near = shapely.buffer(damaged, abs(stack.index.grid.transform.a) / 2, join_style="mitre")
    # pixel-edge shapes until the last step: exact overlays
    grown = shapely.union(damaged, shapely.difference(near, _squares(stack, i, np.ones_like(mask))))
    return shapely.intersection(grown, stack.parcels.geometry.iloc[i])


def drop_dates(stack: PixelStack, fraction: float, seed: int = 0) -> PixelStack:
    """The stack without a random ``fraction`` of its acquisition dates (as under a cloudy spell)."""
    days = np.unique(stack.dates)
    gone = np.random.default_rng(seed).choice(days, size=int(round(fraction * days.size)), replace=False)
    keep = ~np.isin(stack.dates, gone)
    return replace(stack, dates=stack.dates[keep], ndvi=stack.ndvi[keep])


def _class_ratio(stack: PixelStack, results: list[_ParcelResult]) -> npt.NDArray[np.float64]:
    """Per parcel: median over dates from its start of (parcel median NDVI / its class's median); NaN
    for parcels without a start."""
    med = np.full((len(results), stack.dates.size), np.nan)
    for i in range(len(results)):
        seen = np.isfinite(stack.block(i)).any(axis=1)
        med[i, seen] = np.nanmedian(stack.block(i)[seen], axis=1)
    classes = stack.parcels["crop_class"].to_numpy()
    out = np.full(len(results), np.nan)
    for i, res in enumerate(results):
        if res.start is not None:
            after = (stack.dates >= res.start) & np.isfinite(med[i])
            ref = np.nanmedian(med[classes == classes[i]][:, after], axis=0)
            out[i] = float(np.nanmedian(med[i, after] / ref))
    return out


def damage_areas(
    storage_root: Path, season: int, tile: str, rules: DamageRules | None = None
) -> gpd.GeoDataFrame:
    """Damaged areas of a season x tile's arable parcels: one row per in-scope parcel.

    Returns:
        parcel_id, crop_class, status (damaged / undamaged / insufficient_data), parcel_area_ha,
        damaged_ha, damaged_percent (NaN for insufficient data), start_date (first date the patch was
        seen low), class_ratio, n_dates, geometry (the damaged area; None when none), EPSG:4326. With no
        S2 scene in the season every parcel is ``insufficient_data``.
    """
    try:
        return damage_table(load_stack(storage_root, season, tile), rules or DamageRules())
    except NoScenesError:
        scope = _in_scope(storage_root, season, tile).sort_values("parcel_id")
        n = len(scope)
        table = pd.DataFrame(
            {
                "parcel_id": scope["parcel_id"].to_numpy(),
                "crop_class": scope["crop_class"].to_numpy(),
                "status": np.full(n, "insufficient_data"),
                "parcel_area_ha": scope.geometry.to_crs(EQUAL_AREA_EPSG).area.to_numpy() / 1e4,
                "damaged_ha": np.full(n, np.nan),
                "damaged_percent": np.full(n, np.nan),
                "start_date": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
                "class_ratio": np.full(n, np.nan),
                "n_dates": np.zeros(n, np.int64),
            }
        )
        return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries([None] * n, crs=4326), crs=4326)


def damage_table(stack: PixelStack, rules: DamageRules) -> gpd.GeoDataFrame:
    """:func:`damage_areas` on an already loaded stack."""
    results = detect(stack, rules)
    crs = stack.parcels.crs
    geoms = [_polygon(stack, i, r.mask) if r.mask.any() else None for i, r in enumerate(results)]
    damaged = gpd.GeoSeries(geoms, crs=crs).to_crs(EQUAL_AREA_EPSG).area.fillna(0.0).to_numpy() / 1e4
    area = stack.parcels.geometry.to_crs(EQUAL_AREA_EPSG).area.to_numpy() / 1e4
    enough = np.array([r.usable >= rules.min_dates for r in results], bool)
    status = np.where(~enough, "insufficient_data", np.where(damaged > 0, "damaged", "undamaged"))
    table = pd.DataFrame(
        {
            "parcel_id": stack.parcels["parcel_id"].to_numpy(),
            "crop_class": stack.parcels["crop_class"].to_numpy(),
            "status": status,
            "parcel_area_ha": area,
            "damaged_ha": np.where(enough, damaged, np.nan),
            "damaged_percent": np.where(enough, 100.0 * damaged / np.maximum(area, 1e-9), np.nan),
            "start_date": pd.to_datetime(
                np.array(
                    [r.start if r.start is not None else np.datetime64("NaT") for r in results],
                    "datetime64[D]",
                )
            ).astype("datetime64[ns]"),
            "class_ratio": _class_ratio(stack, results),
            "n_dates": [r.usable for r in results],
        }
    )
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geoms, crs=crs)).to_crs(4326)


def write_damage(path: Path, gdf: gpd.GeoDataFrame) -> None:
    """Write the damaged areas as GeoParquet (readable by QGIS), atomically."""
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp)


def damage_scores(
    predicted: gpd.GeoDataFrame, truth_damage: gpd.GeoDataFrame, truth_parcels: pd.DataFrame
) -> dict[str, float]:
    """Score predicted damage (the rows of :func:`damage_table`, which define the parcels in scope).

    Returns:
        iou (mean over truly damaged parcels, 0 where missed), area_error (mean relative error of the
        damaged ha per damaged parcel, 1 where missed), total_area_error (relative error of the summed
        damaged ha over all parcels in scope, false alarms included), recall, false_alarm_rate (share of
        undamaged parcels with damage predicted), start_mae_days (detected parcels), insufficient (share).
    """
    pred = predicted.set_index("parcel_id")
    flagged = set(truth_parcels.loc[truth_parcels["damaged"].astype(bool), "parcel_id"])
    true = (
        truth_damage.loc[truth_damage["parcel_id"].isin(pred.index)]
        .set_index("parcel_id")
        .to_crs(EQUAL_AREA_EPSG)
    )
    ids = true.index.to_numpy()
    guess = pred.loc[ids].geometry.to_crs(EQUAL_AREA_EPSG).to_numpy()
    real = true.geometry.to_numpy()
    empty = shapely.is_missing(guess) | shapely.is_empty(guess)
    guess = np.where(empty, shapely.Polygon(), guess)
    inter = shapely.area(shapely.intersection(guess, real))
    union = shapely.area(shapely.union(guess, real))
    true_ha = shapely.area(real) / 1e4
    pred_ha = np.nan_to_num(pred.loc[ids, "damaged_ha"].to_numpy(float))
    clean = pred.loc[~pred.index.isin(flagged)]
    found = ~empty
    days = (pred.loc[ids, "start_date"] - true["start_date"]).dt.days.abs().to_numpy(float)[found]
    total_true = float(true_ha.sum())
    return {
        "damaged_parcels": float(len(ids)),
        "iou": float(np.mean(inter / np.maximum(union, 1e-9))) if len(ids) else float("nan"),
        "area_error": float(np.mean(np.abs(pred_ha - true_ha) / true_ha)) if len(ids) else float("nan"),
        "total_area_error": abs(float(np.nansum(pred["damaged_ha"])) - total_true) / max(total_true, 1e-9),
        "recall": float(found.mean()) if len(ids) else float("nan"),
        "false_alarm_rate": float((clean["status"] == "damaged").mean()) if len(clean) else float("nan"),
        "start_mae_days": float(np.mean(days)) if found.any() else float("nan"),
        "insufficient": float((pred["status"] == "insufficient_data").mean()) if len(pred) else float("nan"),
    }


def _objective(scores: dict[str, float]) -> float:
    """What tuning maximizes: mean IoU less the area error and the false-alarm rate."""
    return scores["iou"] - 0.5 * scores["area_error"] - scores["false_alarm_rate"]


def _pooled(
    stacks: list[PixelStack], rules: DamageRules, truth: tuple[gpd.GeoDataFrame, pd.DataFrame], ids: set[str]
) -> dict[str, float]:
    """Scores of the rules over the parcels ``ids`` of several stacks."""
    table = pd.concat([damage_table(s, rules) for s in stacks], ignore_index=True)
    return damage_scores(gpd.GeoDataFrame(table.loc[table["parcel_id"].isin(ids)], crs=4326), *truth)


def tune_rules(
    stacks: list[PixelStack], truth: tuple[gpd.GeoDataFrame, pd.DataFrame], ids: set[str]
) -> DamageRules:
    """The rules maximizing IoU - area error / 2 - false-alarm rate over a grid, on the parcels ``ids``."""
    grid = itertools.product((0.65, 0.72, 0.8), (1, 2), (0.27, 0.3, 0.33), (0.0, 0.08, 0.15))
    best, best_score = DamageRules(), -np.inf
    for ratio, low, ndvi, grow in grid:
        rules = DamageRules(ratio=ratio, min_low_dates=low, min_parcel_ndvi=ndvi, grow=grow)
        score = _objective(_pooled(stacks, rules, truth, ids))
        if score > best_score:
            best, best_score = rules, score
    return best


def _truth(folder: Path) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    return gpd.read_parquet(folder / "damage.parquet"), pd.read_parquet(folder / "parcels.parquet")


def fit(
    stacks: list[PixelStack], truth: tuple[gpd.GeoDataFrame, pd.DataFrame], seed: int = 0
) -> tuple[DamageRules, dict[str, float]]:
    """Tune the rules (:func:`tune_rules`) on half of the stacks' parcels; compare the default and the
    tuned rules on the other half.

    Args:
        stacks: the training parcels' pixels.
        truth: true damage polygons and the true parcel table (``damaged``) of those parcels.
        seed: the halving.

    Returns:
        The tuned rules, and the validation figures ``{baseline,tuned}_*`` (:func:`damage_scores`), the
        tuned thresholds (``rule_*``) and ``selected_tuned`` (1.0 when the tuned rules won).
    """
    ids = np.concatenate([s.index.parcel_ids for s in stacks])
    val = np.random.default_rng(seed).random(ids.size) < 0.5
    tuned = tune_rules(stacks, truth, set(ids[~val]))
    out: dict[str, float] = {f"rule_{k}": float(v) for k, v in tuned.__dict__.items()}
    for name, rules in (("baseline", DamageRules()), ("tuned", tuned)):
        out |= {f"{name}_{k}": v for k, v in _pooled(stacks, rules, truth, set(ids[val])).items()}
    out["selected_tuned"] = float(_objective_of(out, "tuned") > _objective_of(out, "baseline"))
    return tuned, out


def evaluate(
    train_storage: Path,
    train_truth_dir: Path,
    test_storage: Path,
    test_truth_dir: Path,
    tiles: list[str],
    season: int = 2024,
    drop_fraction: float = 0.5,
) -> dict[str, float]:
    """Tune the rules on half of the training region's parcels, choose default vs tuned on the other half
    (:func:`fit`), then score both on the test region, with all S2 dates and with ``drop_fraction`` of
    them dropped.

    Returns:
        ``{baseline,tuned}_{metric}`` on the test region (``..._drop`` with dates dropped),
        ``val_{baseline,tuned}_{metric}`` on the training region's validation parcels, ``selected_tuned``
        (1.0 when the tuned rules won on validation) and the tuned thresholds (``rule_*``).
    """
    tuned, validation = fit([load_stack(train_storage, season, t) for t in tiles], _truth(train_truth_dir))
    out = {k if k.startswith(("rule_", "selected")) else f"val_{k}": v for k, v in validation.items()}
    picks = {"baseline": DamageRules(), "tuned": tuned}
    test = [load_stack(test_storage, season, t) for t in tiles]
    test_truth = _truth(test_truth_dir)
    for suffix, stacks in (("", test), ("_drop", [drop_dates(s, drop_fraction) for s in test])):
        every = set(np.concatenate([s.index.parcel_ids for s in stacks]))
        for name, rules in picks.items():
            out |= {f"{name}_{k}{suffix}": v for k, v in _pooled(stacks, rules, test_truth, every).items()}
    return out


def _objective_of(figures: dict[str, float], prefix: str) -> float:
    return _objective({k: figures[f"{prefix}_{k}"] for k in ("iou", "area_error", "false_alarm_rate")})
