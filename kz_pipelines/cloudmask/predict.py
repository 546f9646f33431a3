"""Cloud-mask prediction over a scene of any size: overlapping sub-tiles, batched, blended without seams.

The scene is processed one row of sub-tiles (a *strip*) at a time. Each sub-tile's class probabilities
are weighted by a 2-D Hann window (high in the middle, near zero at the edges) and summed into a rolling
accumulator; rows that no later strip covers are finished (argmax, or probabilities divided by the summed
weights) and written out. Memory stays at a few strips whatever the scene size.

On CUDA: the model runs under bf16 autocast in channels_last layout; strips are copied from pinned host
buffers with non-blocking copies on a separate CUDA stream, so the copy of the next strip overlaps the
compute of the current one; blending and argmax run on the GPU and only the uint8 mask comes back.
On CPU: float32, channels_last, deterministic algorithms (same input, weights and thread count give
identical output).

A CUDA out-of-memory error halves the batch and retries the same sub-tiles; the halved size is kept for
the rest of the scene.

Nodata: pixels with a non-finite value in any band, or zero in all bands, get class 0 (missing); the
network's class-0 output is not used for valid pixels (their class is the most probable of 1..4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from kz_pipelines.cloudmask.classes import MISSING, N_CLASSES, Normalization
from kz_pipelines.devices import resolve_device

__all__ = [
    "Prediction",
    "hann_window",
    "prepare_input",
    "pinned_empty",
    "predict_scene",
    "resolve_device",
    "run_in_batches",
    "tile_origins",
]


@dataclass(frozen=True)
class Prediction:
    """The result of :func:`predict_scene`.

    Attributes:
        classes: class per pixel (0 missing .. 4 cloud), shape (H, W), uint8.
        probabilities: class probabilities, shape (5, H, W), float32, or None if not asked for. Class 0
            has probability 1 on nodata pixels and 0 elsewhere.
        batch_size: the batch size in use at the end (smaller than asked after CUDA out-of-memory).
        n_tiles: number of sub-tiles the network ran on.
        device: the torch device used.
    """

    classes: np.ndarray
    probabilities: np.ndarray | None
    batch_size: int
    n_tiles: int
    device: str


def tile_origins(length: int, tile: int, overlap: int, multiple: int = 32) -> list[int]:
    """Start offsets of sub-tiles along one axis: steps of at most ``tile - overlap``, the last flush
    with the end.

    Origins are multiples of ``multiple`` (the network's total stride; the last one excepted), so every
    sub-tile sees the same pixel-to-feature alignment as a whole-image pass.

    Args:
        length: axis length, pixels, >= ``tile``.
        tile: sub-tile side, pixels.
        overlap: overlap between neighbouring sub-tiles, pixels, 0 <= overlap < tile.
        multiple: origins are rounded down to multiples of this, pixels.
    """
    if length < tile:
        raise ValueError(f"axis of {length} px is shorter than the sub-tile ({tile} px)")
    if not 0 <= overlap < tile or tile - overlap < multiple:
        raise ValueError(f"overlap must be in [0, {tile - multiple}], got {overlap}")
    step = (tile - overlap) // multiple * multiple
    origins = list(range(0, length - tile, step))
    return [*origins, length - tile]


def hann_window(tile: int, device: torch.device | None = None) -> torch.Tensor:
    """2-D blending weights of a sub-tile, shape (tile, tile), float32, all > 0.

    The outer product of ``sin^2(pi * (i + 0.5) / tile)``: near 1 in the middle, near 0 (never 0) at the
    edges, where a network sees the least context.
    """
    i = torch.arange(tile, dtype=torch.float64, device=device)
    w1 = torch.sin(math.pi * (i + 0.5) / tile) ** 2
    return torch.outer(w1, w1).to(torch.float32)


def prepare_input(x: torch.Tensor, norm: Normalization) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalize reflectance for the network and find nodata pixels.

    Args:
        x: reflectance, shape (bands, H, W) or (N, bands, H, W), float32.
        norm: per-band normalization (one value per band).

    Returns:
        The normalized input (same shape, nodata pixels set to reflectance 0 first) and the valid mask
        (shape without the band axis, bool: finite in every band and not zero in all bands).
    """
    band_axis = x.ndim - 3
    valid = torch.isfinite(x).all(dim=band_axis) & (x != 0).any(dim=band_axis)
    shape = [1] * x.ndim
    shape[band_axis] = -1
    mean = torch.tensor(norm.mean, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(norm.std, dtype=x.dtype, device=x.device).view(shape)
    clean = torch.where(valid.unsqueeze(band_axis), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return (clean - mean) / std, valid


def run_in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], items: torch.Tensor, batch_size: int
) -> tuple[list[torch.Tensor], int]:
    """Apply ``fn`` to ``items`` in batches, halving the batch on CUDA out-of-memory.

    Args:
        fn: maps a batch (B, ...) to outputs (B, ...).
        items: all inputs, first axis the item axis.
        batch_size: first batch size to try, >= 1.

    Returns:
        The outputs of the batches in order, and the batch size that worked (callers keep it).

    Raises:
        torch.cuda.OutOfMemoryError: even a batch of one does not fit.
    """
    outputs: list[torch.Tensor] = []
    start = 0
    while start < len(items):
        batch = items[start : start + batch_size]
        try:
            out = fn(batch)
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            continue
        outputs.append(out)
        start += len(batch)
    return outputs, batch_size


@contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic torch algorithms inside the block (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block (restored after); None changes nothing."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _no_tf32(enabled: bool) -> Iterator[None]:
    """Full float32 matrix products and convolutions on CUDA inside the block (restored after)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


class _Scene:
    """Streams strips (rows ``y .. y + tile``) of a (bands, H, W) host array to the device.

    On CUDA only the rows a strip adds to the previous one are copied, on a side stream without blocking,
    and the compute stream joins them to the tail of the previous strip when it needs them: each host
    row crosses the bus once. A pinned source (see :func:`pinned_empty`) is copied from directly; any
    other source goes through two pinned staging buffers first.
    """

    def __init__(self, source: torch.Tensor, ys: list[int], tile: int, device: torch.device) -> None:
        self.source = source
        self.ys = ys
        self.tile = tile
        self.device = device
        self.cuda = device.type == "cuda"
        self.prev: torch.Tensor | None = None
        if self.cuda:
            c, _, w = source.shape
            self.direct = source.is_pinned()
            self.stream = torch.cuda.Stream(device)
            self.pinned = (
                []
                if self.direct
                else [torch.empty((c, tile, w), dtype=torch.float32, pin_memory=True) for _ in range(2)]
            )
            self.staged = [torch.empty((c, tile, w), dtype=torch.float32, device=device) for _ in range(2)]
            self.copied: list[torch.cuda.Event | None] = [None, None]
            self.consumed: list[torch.cuda.Event | None] = [None, None]

    def _new_rows(self, k: int) -> tuple[int, int]:
        """Rows [a, b) that strip ``k`` adds to strip ``k - 1``."""
        y = self.ys[k]
        a = y if k == 0 else max(self.ys[k - 1] + self.tile, y)
        return a, y + self.tile

    def start(self, k: int) -> None:
        """Begin copying the new rows of strip ``k`` to the device (asynchronous; CUDA only)."""
        if not self.cuda or k >= len(self.ys):
            return
        slot = k % 2
        a, b = self._new_rows(k)
        if self.direct:
            host = self.source[:, a:b]
        else:
            if self.copied[slot] is not None:
                self.copied[slot].synchronize()  # type: ignore[union-attr]  # its pinned buffer is free again
            host = self.pinned[slot][:, : b - a]
            host.copy_(self.source[:, a:b])  # a multi-threaded host copy
        with torch.cuda.stream(self.stream):
            if self.consumed[slot] is not None:
                self.stream.wait_event(self.consumed[slot])  # type: ignore[arg-type]
            for band in range(host.shape[0]):  # contiguous blocks: asynchronous DMA copies
                self.staged[slot][band, : b - a].copy_(host[band], non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.copied[slot] = event

    def get(self, k: int) -> torch.Tensor:
        """Strip ``k`` on the device, shape (bands, tile, W), float32."""
        y = self.ys[k]
        if not self.cuda:
            return self.source[:, y : y + self.tile].contiguous()
        slot = k % 2
        a, b = self._new_rows(k)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(self.copied[slot])  # type: ignore[arg-type]
        new = self.staged[slot][:, : b - a]
        keep = [] if self.prev is None or k == 0 else [self.prev[:, y - self.ys[k - 1] :]]
        strip = torch.cat([*keep, new], dim=1)
        event = torch.cuda.Event()
        event.record(compute)
        self.consumed[slot] = event
        self.prev = strip
        return strip


def pinned_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialized float32 host tensor in page-locked memory when CUDA is available (else ordinary).

    Reading a scene straight into such a buffer lets :func:`predict_scene` copy it to the GPU without a
    staging copy (``tensor.numpy()`` gives a writable NumPy view of it).
    """
    return torch.empty(shape, dtype=torch.float32, pin_memory=torch.cuda.is_available())


def _size_multiple(model: nn.Module) -> int:
    """The network's total stride (32 unless the model says otherwise)."""
    encoder = getattr(model, "encoder", None)
    depth = getattr(encoder, "_depth", None)
    return int(2**depth) if isinstance(depth, int) else 32


def _pad_to(bands: np.ndarray, tile: int) -> np.ndarray:
    """Pad (bands, H, W) with zeros (nodata) at the bottom/right to at least tile x tile."""
    _, h, w = bands.shape
    if h >= tile and w >= tile:
        return bands
    return np.pad(bands, ((0, 0), (0, max(0, tile - h)), (0, max(0, tile - w))))


def predict_scene(
    model: nn.Module,
    bands: np.ndarray | torch.Tensor,
    norm: Normalization,
    *,
    tile: int = 512,
    overlap: int = 128,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    return_probabilities: bool = False,
    deterministic: bool = True,
    precision: str = "bf16",
    num_threads: int | None = None,
) -> Prediction:
    """Cloud mask of a scene.

    Args:
        model: a network from :func:`kz_pipelines.cloudmask.net.build_model` (moved to ``device`` and
            channels_last layout here, and put in eval mode).
        bands: reflectance, shape (bands, H, W), float32, bands in the model's band order, any H and W;
            NaN or all-bands-zero marks nodata. A NumPy array or a CPU tensor; a pinned tensor
            (:func:`pinned_empty`) is the fastest source for CUDA.
        norm: the model's normalization.
        tile: sub-tile side, pixels (a multiple of the network's size multiple, e.g. 512).
        overlap: overlap between neighbouring sub-tiles, pixels.
        batch_size: sub-tiles per forward pass (halved on CUDA out-of-memory).
        device: ``auto``, ``cuda``, ``cpu`` or a torch device.
        return_probabilities: also return (5, H, W) float32 probabilities (host memory: 20 bytes/px).
        deterministic: on CPU, use deterministic torch algorithms.
        precision: on CUDA, ``bf16`` (autocast) or ``fp32`` (full precision, TF32 off); CPU is always fp32.
        num_threads: torch CPU threads during the call (restored after); None keeps the current setting.
            CPU results are bitwise repeatable for a given thread count.

    Returns:
        The :class:`Prediction`.
    """
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, got {precision!r}")
    if bands.ndim != 3 or bands.shape[0] != norm.n_bands:
        raise ValueError(f"bands: expected ({norm.n_bands}, H, W), got {bands.shape}")
    dev = resolve_device(device)
    _, h0, w0 = bands.shape
    if isinstance(bands, np.ndarray) or h0 < tile or w0 < tile:
        array = bands.numpy() if isinstance(bands, torch.Tensor) else bands
        source = torch.from_numpy(_pad_to(np.asarray(array, dtype=np.float32), tile))
    else:
        source = bands.to(torch.float32)
    _, h, w = source.shape
    multiple = _size_multiple(model)
    if tile % multiple:
        raise ValueError(f"tile {tile} px is not a multiple of the network's stride {multiple}")
    ys, xs = tile_origins(h, tile, overlap, multiple), tile_origins(w, tile, overlap, multiple)
    model = model.to(dev).eval()
    cuda = dev.type == "cuda"
    # channels_last (NHWC) suits cuDNN and oneDNN alike; Module.to takes memory_format at run time,
    # older torch stubs do not declare it
    model = cast(Any, model).to(memory_format=torch.channels_last)
    window = hann_window(tile, dev)
    classes = torch.zeros((h, w), dtype=torch.uint8, device=dev)
    probs = np.zeros((N_CLASSES, h, w), np.float32) if return_probabilities else None
    acc = torch.zeros((N_CLASSES - 1, tile, w), dtype=torch.float32, device=dev)
    wsum = torch.zeros((tile, w), dtype=torch.float32, device=dev)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda and precision == "bf16"):
            logits = model(batch)
        return torch.softmax(logits[:, 1:].float(), dim=1)  # classes 1..4; class 0 comes from nodata

    scene = _Scene(source, ys, tile, dev)
    scene.start(0)
    n_tiles = 0
    with (
        torch.inference_mode(),
        _deterministic(deterministic and not cuda),
        _no_tf32(precision == "fp32"),
        _threads(num_threads),
    ):
        for k, y0 in enumerate(ys):
            strip = scene.get(k)
            scene.start(k + 1)
            xn, valid = prepare_input(strip, norm)
            batch = torch.stack([xn[:, :, x0 : x0 + tile] for x0 in xs])
            outs, batch_size = run_in_batches(forward, batch, batch_size)
            n_tiles += len(xs)
            for x0, p in zip(xs, torch.cat(outs), strict=True):
                acc[:, :, x0 : x0 + tile] += p * window
                if probs is not None:  # argmax needs no normalization: the weights are shared by classes
                    wsum[:, x0 : x0 + tile] += window
            # rows [y0, next y0) are final: no later strip covers them
            n_done = (ys[k + 1] - y0) if k + 1 < len(ys) else tile
            done = acc[:, :n_done]
            cls = torch.where(valid[:n_done], done.argmax(dim=0).to(torch.uint8) + 1, MISSING)
            classes[y0 : y0 + n_done] = cls
            if probs is not None:
                p_done = done / wsum[:n_done] * valid[:n_done]
                probs[1:, y0 : y0 + n_done] = p_done.cpu().numpy()
                probs[0, y0 : y0 + n_done] = (~valid[:n_done]).cpu().numpy()
            acc = torch.roll(acc, -n_done, dims=1)
            acc[:, tile - n_done :] = 0
            wsum = torch.roll(wsum, -n_done, dims=0)
            wsum[tile - n_done :] = 0
    return Prediction(
        classes=classes.cpu().numpy()[:h0, :w0].copy(),
        probabilities=None if probs is None else probs[:, :h0, :w0].copy(),
        batch_size=batch_size,
        n_tiles=n_tiles,
        device=str(dev),
    )
