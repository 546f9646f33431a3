"""Labelled chips: the training and evaluation data of the cloud-mask model.

Chip format
-----------
One chip is one ``.npz`` file (``numpy.savez_compressed``, readable with ``numpy.load(path,
allow_pickle=False)``) holding three arrays:

============  ===================  ==========================================================================
key           dtype, shape         content
============  ===================  ==========================================================================
``bands``     float32 (C, H, W)    top-of-atmosphere (L1C) or surface (L2A) reflectance, unitless (DN x scale
                                   + offset, e.g. 0.0001 and -0.1 for processing baseline >= 04.00), every
                                   band at 10 m; NaN where the scene has no data
``label``     uint8 (H, W)         class per pixel: 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent
                                   cloud, 4 cloud (KappaMask classes); 0 pixels are ignored in training
``band_names``  str (C,)           Sentinel-2 band ids of the ``bands`` channels, e.g. ``B01`` ... ``B12``,
                                   ``B8A``; any order, any subset (a model takes the bands it needs by name)
============  ===================  ==========================================================================

and optionally ``source`` (a 0-d str: where the chip was cut from). H and W are typically 512; any size
that is a multiple of the network's stride works. A folder of such files is a chip set; file names are
free (``<scene id>_r<row>_c<col>.npz`` when cut by :func:`chips_from_region`). To train on your own or a
public labelled set, write each labelled patch with :func:`save_chip` (mapping its classes to the five
above) and point the trainer at the folder.

:func:`chips_from_region` cuts chips from a simulated region (``kz simulate``): it reads an item's COGs
(Earth Search layout and ``raster:bands`` scale/offset) and the true mask ``truth/cloudmask/<L2A id>.tif``.
Reading chips (:func:`load_chip`) does not depend on the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import rasterio

from kz_pipelines.cloudmask.classes import MISSING, N_CLASSES, band_set
from kz_pipelines.storage import atomic_path

T = TypeVar("T")

__all__ = ["Chip", "chips_from_region", "evenly_spaced", "list_chips", "load_chip", "save_chip"]


@dataclass(frozen=True)
class Chip:
    """One labelled chip.

    Attributes:
        bands: reflectance, shape (C, H, W), float32, NaN for nodata.
        label: class per pixel, shape (H, W), uint8, values 0..4.
        band_names: band id of each channel, length C.
        source: free text saying where the chip comes from ('' if unknown).
    """

    bands: np.ndarray
    label: np.ndarray
    band_names: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if self.bands.ndim != 3 or self.bands.shape[0] != len(self.band_names):
            raise ValueError(f"bands {self.bands.shape} need shape (C, H, W), C = {len(self.band_names)}")
        if self.label.shape != self.bands.shape[1:]:
            raise ValueError(f"label {self.label.shape} does not match bands {self.bands.shape[1:]}")
        if self.label.dtype != np.uint8 or (self.label.size and int(self.label.max()) >= N_CLASSES):
            raise ValueError(f"label must be uint8 with values 0..{N_CLASSES - 1}")
        band_set(self.band_names)

    def select(self, bands: Sequence[str]) -> np.ndarray:
        """The chip's reflectance in the given band order, (len(bands), H, W), float32.

        Raises:
            KeyError: a band the chip does not have.
        """
        index = {b: i for i, b in enumerate(self.band_names)}
        missing = [b for b in bands if b not in index]
        if missing:
            raise KeyError(f"chip {self.source or '?'} lacks bands {missing}")
        return np.ascontiguousarray(self.bands[[index[b] for b in bands]], dtype=np.float32)


def save_chip(path: Path, chip: Chip) -> None:
    """Write a chip as ``.npz`` (atomically)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(
            f,
            bands=chip.bands.astype(np.float32),
            label=chip.label,
            band_names=np.array(chip.band_names, dtype=str),
            source=np.array(chip.source, dtype=str),
        )


def load_chip(path: Path) -> Chip:
    """Read a chip written by :func:`save_chip` (or by any tool following the documented format)."""
    with np.load(path, allow_pickle=False) as z:
        source = str(z["source"]) if "source" in z.files else path.stem
        return Chip(
            bands=z["bands"].astype(np.float32, copy=False),
            label=z["label"].astype(np.uint8, copy=False),
            band_names=tuple(str(b) for b in z["band_names"]),
            source=source,
        )


def list_chips(folder: Path) -> list[Path]:
    """The chip files of a chip set, sorted by name."""
    return sorted(folder.glob("*.npz"))


def evenly_spaced(items: Sequence[T], n: int | None) -> list[T]:
    """At most ``n`` of ``items``, evenly spaced over the sequence (first and last included); all when
    ``n`` is None or not smaller than the sequence."""
    if n is None or len(items) <= n:
        return list(items)
    if n <= 0:
        return []
    pick = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in pick]


def _positions(length: int, size: int) -> list[int]:
    return list(range(0, length - size + 1, size))


def chips_from_region(
    region: Path,
    out_dir: Path,
    *,
    level: str = "L1C",
    bands: str | Sequence[str] | None = None,
    chip_size: int = 512,
    max_scenes: int | None = None,
) -> list[Path]:
    """Cut labelled chips from a simulated region's scenes and true cloud masks.

    Args:
        region: the region folder written by ``kz simulate`` (``stac/`` and ``truth/cloudmask/``).
        out_dir: where the ``.npz`` chips are written.
        level: product level to read, ``L1C`` (top of atmosphere) or ``L2A`` (surface reflectance).
        bands: band set name or band ids (default: all bands of ``level``).
        chip_size: chip side, pixels; scenes are cut into non-overlapping chips (a remainder is dropped).
        max_scenes: use at most this many scenes, spread evenly over the scenes in name order (tiles, then
            season), so a small set still sees every tile and every part of the season.

    Returns:
        The chip files written, sorted; chips whose pixels are all missing are skipped.
    """
    if level not in ("L1C", "L2A"):
        raise ValueError(f"level must be L1C or L2A, got {level!r}")
    # imported here: the rest of the package (prediction, training) runs without the STAC stack, e.g.
    # on a GPU machine that has only torch
    from kz_pipelines.ingest import load_s2_scene
    from kz_pipelines.raster import GridSpec
    from kz_pipelines.stac import normalize_item, open_search

    names = band_set(bands if bands is not None else level)
    collection = "sentinel-2-l1c" if level == "L1C" else "sentinel-2-l2a"
    items = {i.id: i for i in open_search(str(region)).search([collection])}
    truths = evenly_spaced(sorted((region / "truth" / "cloudmask").glob("*.tif")), max_scenes)
    written: list[Path] = []
    for truth_path in truths:
        item_id = truth_path.stem.removesuffix("_L2A") + f"_{level}"
        if item_id not in items:
            continue
        with rasterio.open(truth_path) as src:
            label = src.read(1).astype(np.uint8)
            t = src.transform
            grid = GridSpec(src.crs.to_epsg(), t.c, t.f, t.a, src.width, src.height)
        # the pipeline's own reader: provider scale/offset, 20/60 m pixels replicated to 10 m, NaN nodata
        refl = load_s2_scene(normalize_item(items[item_id]), grid, bands=names).reflectance
        for r in _positions(label.shape[0], chip_size):
            for c in _positions(label.shape[1], chip_size):
                lab = label[r : r + chip_size, c : c + chip_size]
                if (lab == MISSING).all():
                    continue
                chip = Chip(refl[:, r : r + chip_size, c : c + chip_size].copy(), lab.copy(), names, item_id)
                path = out_dir / f"{item_id}_r{r}_c{c}.npz"
                save_chip(path, chip)
                written.append(path)
    return sorted(written)
