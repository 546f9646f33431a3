"""Cloud-mask evaluation (``kz eval cloudmask``): our model against the masks users can get today.

What :func:`run` measures (issue 4, section 3):

1. **Held-out simulated scenes.** Our network (13 L1C bands) is trained on chips cut from a simulated region
   of one seed (``train_seed``) and scored on every scene of a region simulated with a different seed
   (``eval_seed``), never trained on. Dice per class (clear, cloud_shadow, semi_transparent_cloud, cloud),
   pooled over all pixels of all evaluation scenes, pixels whose true class is missing ignored. On the
   same scenes, the peers:

   - the simulated **SCL** band (Sen2Cor-like, mapped to the five classes by :func:`scl_to_classes`);
   - **s2cloudless** (its shipped LightGBM model, cloud vs clear) on the L1C bands it documents
     (B01, B02, B04, B05, B08, B8A, B09, B10, B11, B12 as reflectance), averaged to 20 m (the native
     resolution of most of them; Sentinel Hub runs it at 160 m), with the package's default threshold (0.4)
     and post-processing (``average_over=1``, ``dilation_size=1``), the mask brought back to 10 m;
   - **ukis-csmask** (DLR's CNN as ONNX; its 6-band L2A model, cloud / cloud shadow / clear) on the L2A
     blue, green, red, NIR, SWIR 1.6 and SWIR 2.2 bands, averaged to 30 m as its documentation recommends,
     its mask brought back to 10 m. ukis-csmask needs ``onnxruntime``; it runs in a subprocess of another
     interpreter (``KZ_UKIS_CSMASK_PYTHON``, e.g. a separate venv with ``pip install 'ukis-csmask[cpu]'``)
     or of this one when ``ukis_csmask`` imports here. Without it, the figures say so and no ukis figure or
     target is reported.

   A 6-band (``S6``) variant of our network, trained on L2A chips of the training seed, is also scored on
   the held-out scenes (figures ``dice_ours_s6_*``).

2. **A real labelled patch.** ``../shared/data/ukis_cloud_patch/sentinel2.npz`` (a real Sentinel-2 patch,
   6 bands, a hand-made mask: 0 cloud shadow, 1-3 clear, 4 cloud): Dice for cloud and cloud shadow (and
   clear) of the ``S6`` network, trained on simulated chips only (never on this patch), and of
   ukis-csmask's 6-band L2A model when available.

Targets (issue 4, never loosened): Dice cloud >= 0.90, cloud shadow >= 0.80, semi-transparent >= 0.80 for
our model, and for every peer and every class it has, our Dice minus the peer's >= 0 (``ours_minus_<peer>_
<class>``); on the real patch, our S6 Dice minus ukis-csmask's >= 0 for cloud and cloud shadow (the goal of
matching or beating it), when ukis-csmask is available.

Everything (simulated regions, chips, trained models) is cached under ``work``; a second run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.cloudmask.card import load_model, save_model
from kz_pipelines.cloudmask.chips import chips_from_region, evenly_spaced, list_chips
from kz_pipelines.cloudmask.classes import (
    CLASS_NAMES,
    CLEAR,
    CLOUD,
    CLOUD_SHADOW,
    MISSING,
    N_CLASSES,
    SEMI_TRANSPARENT_CLOUD,
    band_set,
)
from kz_pipelines.cloudmask.metrics import confusion_matrix, dice_from_confusion
from kz_pipelines.cloudmask.net import model_spec
from kz_pipelines.cloudmask.predict import predict_scene
from kz_pipelines.cloudmask.train import TrainConfig, split_by_source, train
from kz_pipelines.ingest import load_s2_scene
from kz_pipelines.raster import GridSpec
from kz_pipelines.sim import SimConfig, simulate
from kz_pipelines.stac import normalize_item, open_search

__all__ = [
    "PATCH_FILE",
    "PEER_CLASSES",
    "S2CLOUDLESS_BANDS",
    "EvalSettings",
    "dice",
    "patch_to_classes",
    "run",
    "s2cloudless_classes",
    "scl_to_classes",
    "ukis_to_classes",
]

Log = Callable[[str], Any]

SCORED = (CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD)
"""The classes Dice is reported for (missing is never scored)."""

PEER_CLASSES: dict[str, tuple[int, ...]] = {
    "scl": (CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD),
    "s2cloudless": (CLEAR, CLOUD),
    "ukis_csmask": (CLEAR, CLOUD_SHADOW, CLOUD),
}
"""The classes each peer can output (our model must beat it on each)."""

TARGETS: dict[int, float] = {CLOUD: 0.90, CLOUD_SHADOW: 0.80, SEMI_TRANSPARENT_CLOUD: 0.80}
"""Issue 4's Dice thresholds for our model, per class."""

S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
"""The 10 L1C bands s2cloudless's model takes (``all_bands=False``), in its order."""

UKIS_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
"""ukis-csmask's names of the ``S6`` bands (B02, B03, B04, B08, B11, B12), same order."""

PATCH_FILE = Path("ukis_cloud_patch") / "sentinel2.npz"
"""The real labelled patch, relative to the shared data folder."""

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
"""Default shared data folder: ``../shared/data`` beside the repository."""

UKIS_ENV = "KZ_UKIS_CSMASK_PYTHON"
"""Environment variable naming a Python interpreter that can ``import ukis_csmask``."""


# --------------------------------------------------------------------------------------------- class maps


def scl_to_classes(scl: np.ndarray) -> np.ndarray:
    """Sen2Cor scene classification codes to the five cloud-mask classes.

    0 no data -> 0 missing; 3 cloud shadow -> 2; 8, 9 cloud medium/high probability -> 4 cloud; 10 thin
    cirrus -> 3 semi-transparent cloud; every other code (vegetation, bare soil, water, snow, dark area,
    unclassified, saturated) -> 1 clear.

    Args:
        scl: SCL codes, any shape, integer.

    Returns:
        Classes, same shape, uint8.
    """
    out = np.full(scl.shape, CLEAR, np.uint8)
    out[scl == 0] = MISSING
    out[scl == 3] = CLOUD_SHADOW
    out[(scl == 8) | (scl == 9)] = CLOUD
    out[scl == 10] = SEMI_TRANSPARENT_CLOUD
    return out


def s2cloudless_classes(cloud_mask: np.ndarray) -> np.ndarray:
    """s2cloudless's binary mask (1 cloud, 0 clear) to classes 4 cloud / 1 clear, uint8."""
    return np.where(np.asarray(cloud_mask) > 0, CLOUD, CLEAR).astype(np.uint8)


def ukis_to_classes(csm: np.ndarray) -> np.ndarray:
    """ukis-csmask's classes (0 background, 1 cloud, 2 cloud shadow) to 1 clear, 4 cloud, 2 cloud shadow."""
    lut = np.array([CLEAR, CLOUD, CLOUD_SHADOW], np.uint8)
    return lut[np.clip(np.asarray(csm, np.int64), 0, 2)]


def patch_to_classes(msk: np.ndarray) -> np.ndarray:
    """The real patch's hand-made mask (0 cloud shadow, 1-3 clear, 4 cloud) to the five classes, uint8."""
    m = np.asarray(msk)
    out = np.full(m.shape, MISSING, np.uint8)
    out[m == 0] = CLOUD_SHADOW
    out[(m >= 1) & (m <= 3)] = CLEAR
    out[m == 4] = CLOUD
    return out


def dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per class 1..4 by class name (truth-missing pixels ignored; NaN for a class absent from both)."""
    return dice_from_confusion(confusion_matrix(pred, truth))


# ----------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EvalSettings:
    """What to simulate, train and score.

    Attributes:
        train_seed: seed of the simulated region the networks train on.
        eval_seed: seed of the held-out region the networks are scored on (never trained on).
        tiles: MGRS tiles of both regions.
        size_px: window side per tile, 10 m pixels.
        start: first day of the season (ISO date).
        end: last day of the season (ISO date).
        n_parcels: parcels per region.
        preset: network preset (``cpu``, ``tiny``, ``deeplabv3plus``).
        chip_size: training chip side, pixels.
        max_train_scenes: cut training chips from at most this many scenes of the training region, spread
            evenly over tiles and season; None: all.
        epochs: maximum training epochs (per network).
        patience: early-stopping patience, epochs.
        batch_size: training chips per step.
        val_fraction: fraction of the training scenes held out for validation / early stopping.
        tile: prediction sub-tile side, pixels (544: a 516 px scene in one sub-tile).
        overlap: prediction sub-tile overlap, pixels.
        max_eval_scenes: score at most this many held-out scenes, spread evenly over the sorted scene ids
            (tiles and season); None: all.
    """

    train_seed: int = 1
    eval_seed: int = 2
    tiles: tuple[str, ...] = ("35VLF", "35VMF")
    size_px: int = 516
    start: str = "2024-04-01"
    end: str = "2024-10-31"
    n_parcels: int = 300
    preset: str = "cpu"
    chip_size: int = 256
    max_train_scenes: int | None = 60
    epochs: int = 8
    patience: int = 3
    batch_size: int = 8
    val_fraction: float = 0.15
    tile: int = 544
    overlap: int = 128
    max_eval_scenes: int | None = 30

    def sim(self, seed: int) -> SimConfig:
        """The simulated region for ``seed``."""
        return SimConfig(
            seed=seed,
            tiles=self.tiles,
            size_px=self.size_px,
            start=date.fromisoformat(self.start),
            end=date.fromisoformat(self.end),
            n_parcels=self.n_parcels,
        )

    def region_name(self, seed: int) -> str:
        """A short description of the region of ``seed`` (for the figures)."""
        return (
            f"simulated seed {seed}: tiles {'+'.join(self.tiles)}, {self.size_px} px, "
            f"{self.start}..{self.end}, {self.n_parcels} parcels"
        )


FULL = EvalSettings()
"""The full evaluation: the default simulated region (2 tiles x 516 px, April-October), ``cpu`` network
trained on chips of 60 scenes spread over both tiles and the season (11 minutes on 2 cores)."""

QUICK = EvalSettings(
    train_seed=11,
    eval_seed=12,
    tiles=("35VLF",),
    size_px=240,
    start="2024-06-01",
    end="2024-06-30",
    n_parcels=20,
    preset="tiny",
    chip_size=120,
    epochs=1,
    patience=1,
    tile=256,
    max_eval_scenes=None,
)
"""A seconds-long smoke run for tests (one small tile, one month, one epoch; targets expected unmet)."""


_EVAL_ONLY = ("eval_seed", "tile", "overlap", "max_eval_scenes")
"""Settings that do not change a trained model (left out of the model cache key)."""


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------------ data and models


def _region(work: Path, settings: EvalSettings, seed: int, log: Log) -> Path:
    """The simulated region of ``seed`` under ``work/regions`` (simulated once, then reused)."""
    cfg = settings.sim(seed)
    out = work / "regions" / f"seed{seed}-{_key(asdict(cfg))}"
    if not (out / "region.json").is_file():
        t0 = time.perf_counter()
        log(f"simulating region seed {seed} into {out}")
        simulate(cfg, out, overwrite=True)
        log(f"  simulated in {time.perf_counter() - t0:.0f} s")
    return out


def _chips(
    work: Path, region: Path, level: str, bands: str, chip_size: int, max_scenes: int | None, log: Log
) -> list[Path]:
    """Labelled chips of ``region`` (cut once, then reused)."""
    folder = work / "chips" / f"{region.name}-{level}-{bands}-{chip_size}-{max_scenes or 'all'}"
    done = folder / "done.json"
    if done.is_file():
        return list_chips(folder)
    if folder.exists():
        shutil.rmtree(folder)
    log(f"cutting {level} {bands} chips of {chip_size} px from {region.name}")
    paths = chips_from_region(
        region, folder, level=level, bands=bands, chip_size=chip_size, max_scenes=max_scenes
    )
    done.write_text(json.dumps({"n": len(paths)}))
    return paths


def _model(
    work: Path, settings: EvalSettings, region: Path, level: str, bands: str, log: Log
) -> tuple[Any, Any]:
    """A network trained on chips of ``region`` (trained once per settings and code version)."""
    from kz_pipelines.cloudmask.card import code_version

    spec = model_spec(settings.preset, bands)
    cfg = TrainConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        patience=settings.patience,
        seed=settings.train_seed,
        device="auto",
    )
    trained_on = {k: v for k, v in asdict(settings).items() if k not in _EVAL_ONLY}
    folder = work / "models" / f"{bands}-{_key(trained_on, region.name, level, code_version())}"
    if (folder / "model.json").is_file():
        log(f"reusing trained {bands} model {folder}")
        return load_model(folder)
    chips = _chips(work, region, level, bands, settings.chip_size, settings.max_train_scenes, log)
    train_chips, val_chips = split_by_source(chips, settings.val_fraction, settings.train_seed)
    t0 = time.perf_counter()
    log(f"training {settings.preset} {bands} on {len(train_chips)} chips ({len(val_chips)} validation)")
    result = train(
        spec,
        train_chips,
        val_chips,
        cfg,
        data={"region": region.name, "level": level, "chip_size": settings.chip_size},
    )
    log(f"  trained in {time.perf_counter() - t0:.0f} s, best epoch {result.best_epoch}")
    save_model(folder, result.model, result.card)
    return result.model, result.card


# ------------------------------------------------------------------------------------------------- peers


def _s2cloudless(l1c: np.ndarray, band_names: Sequence[str], factor: int = 2) -> np.ndarray:
    """s2cloudless mask (classes 1 / 4, 0 where the input has no data) of a (bands, H, W) L1C scene.

    The bands are averaged over ``factor`` x ``factor`` blocks first (2: 20 m, the native resolution of most
    of its bands; Sentinel Hub runs it at 160 m in production) and the mask is brought back to 10 m.
    """
    from s2cloudless import S2PixelCloudDetector  # dev extra; its shipped LightGBM model

    index = {b: i for i, b in enumerate(band_names)}
    x = np.stack([l1c[index[b]] for b in S2CLOUDLESS_BANDS], axis=-1)
    valid = np.isfinite(x).all(axis=-1)
    x = np.where(valid[..., None], x, 0.0).astype(np.float32)
    h, w = valid.shape
    hc, wc = -(-h // factor) * factor, -(-w // factor) * factor
    xp = np.pad(x, ((0, hc - h), (0, wc - w), (0, 0)), mode="edge")
    coarse = xp.reshape(hc // factor, factor, wc // factor, factor, -1).mean(axis=(1, 3))
    detector = S2PixelCloudDetector(threshold=0.4, average_over=1, dilation_size=1, all_bands=False)
    mask = detector.get_cloud_masks(coarse[None].astype(np.float32))[0]
    mask = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[:h, :w]
    return np.where(valid, s2cloudless_classes(mask), MISSING).astype(np.uint8)


_UKIS_SCRIPT = """
import sys, warnings
import numpy as np
from ukis_csmask.mask import CSmask
warnings.simplefilter("ignore")
src, dst, level, bands = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
out = {}
with np.load(src) as z:
    for k in z.files:
        img = np.ascontiguousarray(z[k], dtype=np.float32)
        cs = CSmask(img=img, band_order=bands, product_level=level, nodata_value=0)
        out[k] = cs.csm[..., 0].astype(np.uint8)
np.savez(dst, **out)
"""


def ukis_python() -> str | None:
    """An interpreter that can run ukis-csmask: ``$KZ_UKIS_CSMASK_PYTHON``, else this one if it imports
    ``ukis_csmask`` and ``onnxruntime``; None when neither."""
    env = os.environ.get(UKIS_ENV)
    if env:
        return env
    import importlib.util

    if importlib.util.find_spec("ukis_csmask") and importlib.util.find_spec("onnxruntime"):
        return sys.executable
    return None


def _ukis(python: str, images: dict[str, np.ndarray], level: str = "l2a") -> dict[str, np.ndarray]:
    """ukis-csmask class masks (0 background, 1 cloud, 2 shadow) of (H, W, 6) reflectance images, run in a
    subprocess of ``python`` (its ONNX runtime never enters this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **cast(dict[str, Any], images))
        proc = subprocess.run(
            [python, "-c", _UKIS_SCRIPT, str(src), str(dst), level, ",".join(UKIS_BANDS)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ukis-csmask failed ({python}): {proc.stderr.strip()[-800:]}")
        with np.load(dst, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _to_30m(s6: np.ndarray) -> np.ndarray:
    """(6, H, W) 10 m reflectance -> (H // 3, W // 3, 6) 30 m block means, nodata as 0 (ukis's input)."""
    c, h, w = s6.shape
    x = np.nan_to_num(s6[:, : h // 3 * 3, : w // 3 * 3], nan=0.0)
    x = x.reshape(c, h // 3, 3, w // 3, 3).mean(axis=(2, 4))
    return np.ascontiguousarray(np.moveaxis(x, 0, -1), dtype=np.float32)


def _from_30m(csm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 30 m mask back on the 10 m grid (nearest; the remainder rows/columns take the last value)."""
    up = np.repeat(np.repeat(csm, 3, axis=0), 3, axis=1)
    rows = np.minimum(np.arange(shape[0]), up.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]), up.shape[1] - 1)
    return up[np.ix_(rows, cols)]


# ------------------------------------------------------------------------------------------------------ run


def _fmt(v: float) -> float | str:
    return "n/a" if math.isnan(v) else round(float(v), 4)


def _diff(a: float, b: float) -> float:
    return float(a - b) if not (math.isnan(a) or math.isnan(b)) else float("nan")


def run(
    work: Path,
    log: Log = print,
    quick: bool = False,
    *,
    settings: EvalSettings | None = None,
    shared_data: Path | None = None,
    ukis: str | None = None,
) -> BenchResult:
    """Evaluate the cloud mask (see the module docstring) and return the DESIGN §9 result ``cloudmask``.

    Args:
        work: cache folder (simulated regions, chips, trained models).
        log: progress messages.
        quick: a tiny smoke run (seconds; for tests): small region, one epoch, targets expected unmet.
        settings: override the settings (default :data:`FULL`, or :data:`QUICK` when ``quick``).
        shared_data: the shared data folder holding ``ukis_cloud_patch/`` (default ``../shared/data``).
        ukis: Python interpreter that runs ukis-csmask (default :func:`ukis_python`).

    Returns:
        The result: figures (Dice per model x class, data names, timings) and targets.
    """
    t_start = time.perf_counter()
    s = settings or (QUICK if quick else FULL)
    if s.train_seed == s.eval_seed:
        raise ValueError("train_seed and eval_seed must differ (evaluation data is never trained on)")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    shared = Path(shared_data) if shared_data is not None else SHARED_DATA
    python = ukis if ukis is not None else ukis_python()

    train_region = _region(work, s, s.train_seed, log)
    eval_region = _region(work, s, s.eval_seed, log)
    t_data = time.perf_counter()
    model, card = _model(work, s, train_region, "L1C", "L1C", log)
    model6, card6 = _model(work, s, train_region, "L2A", "S6", log)
    t_train = time.perf_counter()

    figures: dict[str, float | int | str] = {
        "train_data": s.region_name(s.train_seed),
        "eval_data": s.region_name(s.eval_seed) + " (never trained on)",
        "train_seed": s.train_seed,
        "eval_seed": s.eval_seed,
        "model": f"{s.preset} (L1C 13 bands)",
        "model_s6": f"{s.preset} (S6: B02 B03 B04 B08 B11 B12, L2A)",
        "quick": int(quick),
        "predict_tile_px": s.tile,
    }

    # ---- held-out simulated scenes
    l1c_bands = band_set("L1C")
    s6_bands = band_set("S6")
    items = {i.id: i for i in open_search(str(eval_region)).search(["sentinel-2-l1c", "sentinel-2-l2a"])}
    truths = sorted((eval_region / "truth" / "cloudmask").glob("*.tif"))
    truths = evenly_spaced(truths, s.max_eval_scenes)  # evenly over tiles and season
    cms = {
        name: np.zeros((N_CLASSES, N_CLASSES), np.int64) for name in ("ours", "ours_s6", "scl", "s2cloudless")
    }
    ukis_inputs: dict[str, np.ndarray] = {}
    ukis_truths: dict[str, np.ndarray] = {}
    n_scenes = 0
    seconds = {"ours": 0.0, "s2cloudless": 0.0}
    for truth_path in truths:
        stem = truth_path.stem.removesuffix("_L2A")
        l1c_id, l2a_id = f"{stem}_L1C", f"{stem}_L2A"
        if l1c_id not in items or l2a_id not in items:
            continue
        with rasterio.open(truth_path) as src:
            truth = src.read(1).astype(np.uint8)
            t = src.transform
            grid = GridSpec(src.crs.to_epsg(), t.c, t.f, t.a, src.width, src.height)
        if (truth == MISSING).all():
            continue
        n_scenes += 1
        log(f"scoring {stem} ({n_scenes}/{len(truths)})")
        l1c = load_s2_scene(normalize_item(items[l1c_id]), grid, bands=l1c_bands).reflectance
        l2a_scene = load_s2_scene(normalize_item(items[l2a_id]), grid, bands=s6_bands)
        t0 = time.perf_counter()
        ours = predict_scene(model, l1c, card.normalization, tile=s.tile, overlap=s.overlap).classes
        seconds["ours"] += time.perf_counter() - t0
        cms["ours"] += confusion_matrix(ours, truth)
        ours6 = predict_scene(
            model6, l2a_scene.reflectance, card6.normalization, tile=s.tile, overlap=s.overlap
        ).classes
        cms["ours_s6"] += confusion_matrix(ours6, truth)
        if l2a_scene.scl is not None:
            cms["scl"] += confusion_matrix(scl_to_classes(l2a_scene.scl), truth)
        t0 = time.perf_counter()
        cms["s2cloudless"] += confusion_matrix(_s2cloudless(l1c, l1c_bands), truth)
        seconds["s2cloudless"] += time.perf_counter() - t0
        if python:
            ukis_inputs[stem] = _to_30m(l2a_scene.reflectance)
            ukis_truths[stem] = truth
    figures["eval_scenes"] = n_scenes
    dices = {name: dice_from_confusion(cm) for name, cm in cms.items()}
    peers = ["scl", "s2cloudless"]
    if python and ukis_inputs:
        log(f"running ukis-csmask on {len(ukis_inputs)} scenes ({python})")
        try:
            out = _ukis(python, ukis_inputs)
            cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
            for stem, csm in out.items():
                truth = ukis_truths[stem]
                pred = np.where(truth == MISSING, MISSING, ukis_to_classes(_from_30m(csm, truth.shape)))
                cm += confusion_matrix(pred.astype(np.uint8), truth)
            dices["ukis_csmask"] = dice_from_confusion(cm)
            peers.append("ukis_csmask")
            figures["ukis_csmask"] = f"ukis-csmask 6-band L2A model at 30 m ({python})"
        except (RuntimeError, OSError) as exc:
            figures["ukis_csmask"] = f"not measured: {exc}"
    else:
        figures["ukis_csmask"] = (
            f"not measured: ukis-csmask not installed (pip install 'ukis-csmask[cpu]' into a separate venv "
            f"and set {UKIS_ENV} to its python)"
        )
    for name, d in dices.items():
        classes = PEER_CLASSES.get(name, SCORED)
        for k in classes:
            figures[f"dice_{name}_{CLASS_NAMES[k]}"] = _fmt(d[CLASS_NAMES[k]])
    figures["s2cloudless_setup"] = "L1C 10 bands averaged to 20 m, threshold 0.4, average_over 1, dilation 1"
    figures["seconds_ours_predict"] = round(seconds["ours"], 2)
    figures["seconds_s2cloudless"] = round(seconds["s2cloudless"], 2)

    targets: dict[str, Target] = {}
    for k, threshold in TARGETS.items():
        targets[f"dice_{CLASS_NAMES[k]}"] = Target(dices["ours"][CLASS_NAMES[k]], ">=", threshold)
    for peer in peers:
        for k in PEER_CLASSES[peer]:
            name = CLASS_NAMES[k]
            targets[f"ours_minus_{peer}_{name}"] = Target(
                _diff(dices["ours"][name], dices[peer][name]), ">=", 0.0
            )

    # ---- the real labelled patch
    patch = shared / PATCH_FILE
    if patch.is_file():
        figures["real_data"] = (
            f"{PATCH_FILE} (real Sentinel-2 patch 512 x 512, 6 bands, hand-made mask; never trained on)"
        )
        with np.load(patch, allow_pickle=False) as z:
            img = z["img"].astype(np.float32)
            ptruth = patch_to_classes(z["msk"].reshape(img.shape[:2]))
        bands6 = np.ascontiguousarray(np.moveaxis(img, -1, 0))
        pred6 = predict_scene(
            model6, bands6, card6.normalization, tile=512 if min(img.shape[:2]) >= 512 else s.tile
        )
        d6 = dice(pred6.classes, ptruth)
        for k in (CLEAR, CLOUD_SHADOW, CLOUD):
            figures[f"patch_dice_ours_s6_{CLASS_NAMES[k]}"] = _fmt(d6[CLASS_NAMES[k]])
        if python:
            try:
                csm = _ukis(python, {"patch": img})["patch"]
                du = dice(ukis_to_classes(csm), ptruth)
                for k in (CLEAR, CLOUD_SHADOW, CLOUD):
                    figures[f"patch_dice_ukis_csmask_{CLASS_NAMES[k]}"] = _fmt(du[CLASS_NAMES[k]])
                for k in (CLOUD, CLOUD_SHADOW):
                    name = CLASS_NAMES[k]
                    targets[f"patch_ours_minus_ukis_csmask_{name}"] = Target(
                        _diff(d6[name], du[name]), ">=", 0.0
                    )
            except (RuntimeError, OSError) as exc:
                figures["patch_ukis_csmask"] = f"not measured: {exc}"
    else:
        figures["real_data"] = f"not measured: {patch} not found"

    figures["seconds_data"] = round(t_data - t_start, 1)
    figures["seconds_train"] = round(t_train - t_data, 1)
    figures["seconds_total"] = round(time.perf_counter() - t_start, 1)
    return BenchResult(name="cloudmask", figures=figures, targets=targets)
