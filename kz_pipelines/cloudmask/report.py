"""Pictures a person looks at: the confusion matrix, the training curve, and a scene with its mask."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (backend first)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from kz_pipelines import plots  # noqa: E402
from kz_pipelines.cloudmask.classes import CLASS_NAMES, N_CLASSES  # noqa: E402

__all__ = ["CLASS_COLOURS", "class_fractions", "confusion_png", "mask_overlay_png", "training_curve_png"]

CLASS_COLOURS = np.array(
    [[0, 0, 0], [0, 160, 0], [90, 50, 160], [120, 200, 255], [255, 255, 255]], dtype=np.uint8
)
"""Display colour per class: missing black, clear green, shadow purple, semi-transparent light blue,
cloud white."""


def class_fractions(classes: np.ndarray) -> dict[str, float]:
    """Fraction of the pixels in each class (missing included)."""
    counts = np.bincount(classes.ravel(), minlength=N_CLASSES)[:N_CLASSES]
    total = max(1, int(counts.sum()))
    return {name: round(float(c) / total, 4) for name, c in zip(CLASS_NAMES, counts, strict=True)}


def confusion_png(cm: np.ndarray, title: str) -> bytes:
    """The confusion matrix (rows truth, columns prediction, classes 1-4), row-normalized, as a PNG."""
    sub = cm[1:, 1:].astype(float)
    return plots.confusion_png(sub / np.maximum(sub.sum(axis=1, keepdims=True), 1), CLASS_NAMES[1:], title)


def training_curve_png(history: Sequence[dict[str, Any]]) -> bytes:
    """Training and validation loss and validation mean Dice per epoch, as a PNG."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    twin.plot(
        epochs, [h["val_mean_dice"] for h in history], color="black", linestyle="--", label="val mean Dice"
    )
    twin.set_ylabel("mean Dice")
    twin.set_ylim(0, 1)
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="center right", fontsize=8)
    return plots.png(fig)


def mask_overlay_png(rgb: np.ndarray, classes: np.ndarray, max_px: int = 512, alpha: float = 0.45) -> bytes:
    """A true-colour image (H, W, 3 reflectance) with the mask's classes 2-4 blended over it, as a PNG."""
    base = np.clip(np.nan_to_num(rgb, nan=0.0) / 0.3, 0, 1) * 255
    colour = CLASS_COLOURS[classes].astype(float)
    cover = np.isin(classes, (2, 3, 4))[..., np.newaxis]
    blended = np.where(cover, (1 - alpha) * base + alpha * colour, base)
    blended[classes == 0] = 0
    image = Image.fromarray(blended.astype(np.uint8))
    image.thumbnail((max_px, max_px), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
