"""Pictures a person looks at in the Dagster UI and reports: shared figure helpers (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (backend first)
import numpy as np  # noqa: E402

__all__ = ["bars_png", "confusion_png", "plt", "png"]


def png(fig: Any, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_png(normalized: np.ndarray, names: Sequence[str], title: str) -> bytes:
    """A row-normalized confusion matrix (rows truth, columns prediction) as a PNG; values are written in
    the cells when there are at most 12 classes."""
    n = len(names)
    size = max(4.0, 0.32 * n + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.6, size))
    image = ax.imshow(normalized, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45 if n > 6 else 30, ha="right", fontsize=8 if n > 12 else 10)
    ax.set_yticks(range(n), names, fontsize=8 if n > 12 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                colour = "black" if normalized[i, j] < 0.6 else "white"
                ax.text(j, i, f"{normalized[i, j]:.2f}", ha="center", va="center", color=colour)
    else:
        fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_title(title)
    return png(fig)


def bars_png(values: Mapping[str, float], title: str, xlabel: str) -> bytes:
    """Horizontal bars, largest on top (e.g. feature importance), as a PNG."""
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4477aa")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=8)
    return png(fig)
