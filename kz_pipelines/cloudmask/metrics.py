"""Cloud-mask quality: confusion matrix and Dice per class, ignoring pixels labelled missing."""

from __future__ import annotations

import numpy as np

from kz_pipelines.cloudmask.classes import CLASS_NAMES, MISSING, N_CLASSES

__all__ = ["confusion_matrix", "dice_from_confusion", "dice_per_class"]


def confusion_matrix(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pixel counts, rows the true class and columns the predicted class, shape (5, 5), int64.

    Pixels whose true class is missing (0) are not counted.

    Args:
        pred: predicted classes, any shape, integer 0..4.
        truth: true classes, same shape, integer 0..4.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} differ in shape")
    keep = truth != MISSING
    idx = truth[keep].astype(np.int64) * N_CLASSES + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def dice_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """Dice (F1) per class 1..4 from a confusion matrix: 2 TP / (2 TP + FP + FN).

    A class absent from both truth and prediction gets NaN (no evidence either way).
    """
    out: dict[str, float] = {}
    for k in range(1, N_CLASSES):
        tp = float(cm[k, k])
        denom = float(cm[k, :].sum() + cm[:, k].sum())
        out[CLASS_NAMES[k]] = 2.0 * tp / denom if denom > 0 else float("nan")
    return out


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per class 1..4 (clear, cloud_shadow, semi_transparent_cloud, cloud), missing pixels ignored."""
    return dice_from_confusion(confusion_matrix(pred, truth))
