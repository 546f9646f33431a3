"""`kz bench cloudmask`: masking one full Sentinel-2 tile-date, end to end and inference alone.

The scene is the simulated full tile of `kz bench ingest` (10980 x 10980 px, L2A, 12 bands). Timed:
reading the COGs and resampling to 10 m (`load_s2_scene`), the masker (`predict_scene`: normalization,
512 px sub-tiles with overlap, network, blending, argmax), and writing the uint8 COG. The network is the
CPU variant (``cpu`` preset) on a CPU and the DeepLabv3+ class model (``deeplabv3plus``) on CUDA, with
untrained weights (speed does not depend on them). GFLOP per 512 x 512 sub-tile are counted with
torch's flop counter. On CUDA the scene is masked once untimed first (CUDA context and cuDNN's tuning
of each batch shape happen once per process; a daily run masks many scenes in one).

Targets (issue: cloud mask): CPU variant <= 6 min per tile end to end on a CPU; on an NVIDIA H100
<= 1 s inference and <= 10 s end to end per tile. Targets of a device this run does not have are
reported as not measured (``value`` null).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kz_pipelines.bench import BenchResult, Target
from kz_pipelines.bench.ingest import _item, _region
from kz_pipelines.cloudmask.classes import Normalization
from kz_pipelines.cloudmask.net import build_model, gflop_per_tile, model_spec
from kz_pipelines.cloudmask.predict import predict_scene
from kz_pipelines.devices import resolve_device
from kz_pipelines.ingest import load_s2_scene, scene_grid
from kz_pipelines.storage import write_cog

__all__ = ["run"]

CPU_END_TO_END_S = 360.0
GPU_INFERENCE_S = 1.0
GPU_END_TO_END_S = 10.0


def run(
    work: Path,
    size_px: int = 10980,
    device: str = "auto",
    batch_size: int | None = None,
    log: Callable[[str], Any] = print,
) -> BenchResult:
    """Run the benchmark on ``device``; ``work`` keeps the simulated tile between runs."""
    torch_device = resolve_device(device)
    cuda = torch_device.type == "cuda"
    preset = "deeplabv3plus" if cuda else "cpu"
    batch = batch_size or (32 if cuda else 4)
    region = _region(work, size_px, log)
    item = _item(region)
    grid = scene_grid(item)
    spec = model_spec(preset, "L2A")
    model = build_model(spec, seed=0)
    norm = Normalization.fixed(spec.in_channels)
    gflop = gflop_per_tile(model, spec.in_channels, 512)
    log(f"masking {grid.height} x {grid.width} px with {preset} on {torch_device}")
    t0 = time.perf_counter()
    scene = load_s2_scene(item, grid, bands=spec.bands)
    read_s = time.perf_counter() - t0
    if cuda:  # warm-up on the same scene, untimed: the CUDA context, and cuDNN tunes each batch shape once
        # per process (a daily run masks many scenes in one process)
        predict_scene(model, scene.reflectance, norm, device=torch_device, batch_size=batch)
    t1 = time.perf_counter()
    prediction = predict_scene(model, scene.reflectance, norm, device=torch_device, batch_size=batch)
    t2 = time.perf_counter()
    write_cog(work / f"cloudmask-{size_px}.tif", prediction.classes, grid, nodata=0)
    t3 = time.perf_counter()
    infer_s, write_s = t2 - t1, t3 - t2
    total_s = read_s + infer_s + write_s
    figures: dict[str, float | int | str] = {
        "tile_px": f"{grid.height}x{grid.width}",
        "network": f"{preset} ({spec.arch}, {spec.encoder}), {spec.in_channels} bands",
        "device": str(torch_device) if not cuda else torch.cuda.get_device_name(torch_device),
        "batch_size": prediction.batch_size,
        "sub_tiles": prediction.n_tiles,
        "gflop_per_subtile": round(gflop, 1),
        "read_s": round(read_s, 2),
        "inference_s": round(infer_s, 2),
        "write_s": round(write_s, 2),
        "end_to_end_s": round(total_s, 2),
        "inference_mpx_per_s": round(grid.width * grid.height / infer_s / 1e6, 1),
    }
    full_tile = size_px == 10980
    targets = {
        "cpu_end_to_end_s": Target(total_s if not cuda and full_tile else None, "<=", CPU_END_TO_END_S),
        "gpu_inference_s": Target(infer_s if cuda and full_tile else None, "<=", GPU_INFERENCE_S),
        "gpu_end_to_end_s": Target(total_s if cuda and full_tile else None, "<=", GPU_END_TO_END_S),
    }
    return BenchResult(name="cloudmask", figures=figures, targets=targets)
