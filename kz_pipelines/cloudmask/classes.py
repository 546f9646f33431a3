"""Cloud-mask classes (as KappaMask), the Sentinel-2 band sets a model can take, and input normalization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BAND_SETS",
    "CLASS_NAMES",
    "CLEAR",
    "CLOUD",
    "CLOUD_SHADOW",
    "MISSING",
    "N_CLASSES",
    "SEMI_TRANSPARENT_CLOUD",
    "Normalization",
    "band_set",
]

MISSING, CLEAR, CLOUD_SHADOW, SEMI_TRANSPARENT_CLOUD, CLOUD = 0, 1, 2, 3, 4
"""The 5 classes of a cloud mask (KappaMask's): 0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent
cloud, 4 cloud."""

CLASS_NAMES: tuple[str, ...] = ("missing", "clear", "cloud_shadow", "semi_transparent_cloud", "cloud")
"""Class names by class value."""

N_CLASSES = len(CLASS_NAMES)

BAND_SETS: dict[str, tuple[str, ...]] = {
    "L1C": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"),
    "L2A": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"),
    "S6": ("B02", "B03", "B04", "B08", "B11", "B12"),
}
"""Named input band sets: all 13 L1C bands (as KappaMask), the 12 L2A bands (no B10), and a 6-band
subset (blue, green, red, NIR, SWIR 1.6, SWIR 2.2: the bands of ukis-csmask's 6-band models)."""


def band_set(name_or_bands: str | Sequence[str]) -> tuple[str, ...]:
    """The band ids of a named band set (``L1C``, ``L2A``, ``S6``), or the given ids checked.

    Raises:
        ValueError: unknown set name, unknown band id, or a repeated band.
    """
    if isinstance(name_or_bands, str):
        if name_or_bands not in BAND_SETS:
            raise ValueError(f"unknown band set {name_or_bands!r}; known: {sorted(BAND_SETS)}")
        return BAND_SETS[name_or_bands]
    bands = tuple(name_or_bands)
    unknown = sorted(set(bands) - set(BAND_SETS["L1C"]))
    if unknown or not bands:
        raise ValueError(f"unknown Sentinel-2 band ids {unknown} (give some of {BAND_SETS['L1C']})")
    if len(set(bands)) != len(bands):
        raise ValueError(f"repeated band ids in {bands}")
    return bands


@dataclass(frozen=True)
class Normalization:
    """Per-band affine normalization of reflectance: ``x_norm = (reflectance - mean) / std``.

    Stored in the model card beside the weights, so a model always sees inputs scaled as in training.

    Attributes:
        mean: per-band mean reflectance (unitless, 0..1 for most surfaces), one per input band.
        std: per-band standard deviation of reflectance, one per input band, all > 0.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean ({len(self.mean)}) and std ({len(self.std)}) need one value per band")
        if not all(np.isfinite(self.mean)) or not all(s > 0 and np.isfinite(s) for s in self.std):
            raise ValueError("normalization: means must be finite and standard deviations finite and > 0")

    @property
    def n_bands(self) -> int:
        """Number of bands."""
        return len(self.mean)

    @classmethod
    def fixed(cls, n_bands: int, mean: float = 0.15, std: float = 0.15) -> Normalization:
        """The same fixed scaling for every band (a sensible default before statistics are known)."""
        return cls((mean,) * n_bands, (std,) * n_bands)

    @classmethod
    def from_samples(cls, bands: np.ndarray, valid: np.ndarray | None = None) -> Normalization:
        """Per-band mean and std of reflectance samples.

        Args:
            bands: reflectance, shape (bands, N) or (bands, H, W), float.
            valid: optional boolean mask broadcastable to the sample axes; False samples are ignored.
        """
        flat = bands.reshape(bands.shape[0], -1).astype(np.float64)
        keep = np.isfinite(flat).all(axis=0) & (flat != 0).any(axis=0)
        if valid is not None:
            keep &= np.asarray(valid, bool).reshape(-1)
        if not keep.any():
            raise ValueError("normalization: no valid samples")
        sel = flat[:, keep]
        std = np.maximum(sel.std(axis=1), 1e-4)
        return cls(tuple(float(v) for v in sel.mean(axis=1)), tuple(float(v) for v in std))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
