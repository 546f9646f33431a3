"""Pictures a person looks at in the Dagster UI and reports: shared figure helpers (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (backend first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["bars_png", "category_colours", "confusion_png", "map_png", "plt", "png", "series_png"]

EVENT_COLOURS = {"mowing": "#228833", "harvest": "#ccbb44", "ploughing": "#aa3377", "emergence": "#4477aa"}
"""Colours of event kinds in series plots (others: grey)."""


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


def series_png(
    days: pd.DatetimeIndex,
    panels: Sequence[Mapping[str, np.ndarray]],
    marks: Sequence[Sequence[tuple[pd.Timestamp, str]]] = (),
    title: str = "",
    ylabels: Sequence[str] = (),
) -> bytes:
    """Series on a daily axis, one panel per mapping (name -> values on ``days``, NaN where not observed;
    drawn as dots joined over gaps), with vertical lines at each panel's dated events (``marks[k]``: date,
    kind; colours by kind), as a PNG."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.9 * len(panels) + 0.6), sharex=True, squeeze=False)
    kinds: set[str] = set()
    for k, (ax, lines) in enumerate(zip(axes[:, 0], panels, strict=True)):
        for name, values in lines.items():
            seen = np.isfinite(values)
            ax.plot(days[seen], values[seen], marker=".", markersize=4, linewidth=0.8, label=name)
        for day, kind in marks[k] if k < len(marks) else ():
            ax.axvline(day, color=EVENT_COLOURS.get(kind, "grey"), linestyle="--", linewidth=1.2)
            kinds.add(kind)
        if k:
            ax.legend(loc="upper left", fontsize=7, ncol=3)
        if k < len(ylabels):
            ax.set_ylabel(ylabels[k])
        ax.grid(alpha=0.3)
    for kind in sorted(kinds):
        axes[0, 0].plot([], [], color=EVENT_COLOURS.get(kind, "grey"), linestyle="--", label=kind)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=4)
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    fig.autofmt_xdate()
    return png(fig)


def category_colours(names: Sequence[str]) -> dict[str, str]:
    """Distinct colours for up to 40 categories (matplotlib's tab20 then tab20b), in order."""
    from matplotlib.colors import to_hex

    palette = [plt.get_cmap(m)(i) for m in ("tab20", "tab20b") for i in range(20)]
    return {name: to_hex(palette[i % len(palette)]) for i, name in enumerate(names)}


def map_png(
    parcels: gpd.GeoDataFrame,
    column: str,
    colours: Mapping[str, str],
    title: str,
    overlay: gpd.GeoDataFrame | None = None,
    overlay_label: str = "damaged area",
) -> bytes:
    """Parcels coloured by a categorical ``column`` (value -> colour; missing values grey), optionally
    with ``overlay`` polygons (e.g. damaged areas) outlined in red on top, as a PNG."""
    fig, ax = plt.subplots(figsize=(6, 6))
    values = parcels[column].astype("string").fillna("unknown")
    for value, colour in {**colours, "unknown": "#dddddd"}.items():
        part = parcels.loc[(values == value).to_numpy()]
        if len(part):
            part.plot(ax=ax, color=colour, edgecolor="black", linewidth=0.3)
            ax.plot([], [], "s", color=colour, label=f"{value} ({len(part)})")
    if overlay is not None and len(overlay):
        overlay.to_crs(parcels.crs).boundary.plot(ax=ax, color="red", linewidth=0.8)
        ax.plot([], [], color="red", label=overlay_label)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return png(fig)
