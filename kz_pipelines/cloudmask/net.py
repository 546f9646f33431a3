"""The cloud-mask networks: segmentation-models-pytorch models built without downloaded weights.

Three presets (:data:`PRESETS`), each a :class:`ModelSpec`:

- ``deeplabv3plus``: DeepLabv3+ with a ResNet-34 encoder, the KappaMaskv2-class model for a GPU.
- ``cpu``: a U-Net on a MobileNetV3-small encoder with a slim decoder, for CPU inference.
- ``tiny``: a U-Net on a three-stage LCNet-0.35 encoder with a slim decoder, for tests and demos. It has no
  global pooling, so tiled inference reproduces whole-image inference away from tile borders exactly.

``segmentation_models_pytorch`` and torch are imported only when a model is built, so this module (the specs)
imports without them, and so does the code location that names a model's code version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

from kz_pipelines.cloudmask.classes import N_CLASSES, band_set

__all__ = ["ARCHITECTURES", "PRESETS", "ModelSpec", "build_model", "model_spec"]

ARCHITECTURES = ("deeplabv3plus", "unet", "fpn")
"""segmentation-models-pytorch architectures a spec can name."""


@dataclass(frozen=True)
class ModelSpec:
    """What network to build; saved in the model card so a loader rebuilds the same network.

    Attributes:
        arch: one of :data:`ARCHITECTURES`.
        encoder: segmentation-models-pytorch encoder name (``resnet34``, ``tu-mobilenetv3_small_100``...).
        bands: input Sentinel-2 band ids in channel order.
        encoder_depth: number of encoder stages (3..5).
        decoder_channels: U-Net decoder widths, one per stage (U-Net only; empty for the default).
        n_classes: output classes (5, as KappaMask).
    """

    arch: str
    encoder: str
    bands: tuple[str, ...]
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = field(default=())
    n_classes: int = N_CLASSES

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch {self.arch!r} is not one of {ARCHITECTURES}")
        object.__setattr__(self, "bands", band_set(self.bands))
        if not 3 <= self.encoder_depth <= 5:
            raise ValueError(f"encoder_depth must be 3..5, got {self.encoder_depth}")
        if self.decoder_channels and (
            self.arch != "unet" or len(self.decoder_channels) != self.encoder_depth
        ):
            raise ValueError("decoder_channels: U-Net only, one width per encoder stage")

    @property
    def in_channels(self) -> int:
        """Number of input bands."""
        return len(self.bands)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (the encoder's total stride)."""
        return int(2**self.encoder_depth)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "arch": self.arch,
            "encoder": self.encoder,
            "bands": list(self.bands),
            "encoder_depth": self.encoder_depth,
            "decoder_channels": list(self.decoder_channels),
            "n_classes": self.n_classes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            arch=str(d["arch"]),
            encoder=str(d["encoder"]),
            bands=tuple(d["bands"]),
            encoder_depth=int(d["encoder_depth"]),
            decoder_channels=tuple(int(c) for c in d["decoder_channels"]),
            n_classes=int(d["n_classes"]),
        )


PRESETS: dict[str, ModelSpec] = {
    "deeplabv3plus": ModelSpec("deeplabv3plus", "resnet34", band_set("L1C")),
    "cpu": ModelSpec(
        "unet", "tu-mobilenetv3_small_100", band_set("L1C"), decoder_channels=(64, 32, 16, 16, 8)
    ),
    "tiny": ModelSpec("unet", "tu-lcnet_035", band_set("L1C"), encoder_depth=3, decoder_channels=(32, 16, 8)),
}
"""Named model specs (13 L1C bands; change the bands with :func:`model_spec`)."""


def model_spec(preset: str, bands: str | Sequence[str] = "L1C") -> ModelSpec:
    """A preset's spec for a band set (``L1C``, ``L2A``, ``S6``) or an explicit band list."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[preset], bands=band_set(bands))


def build_model(spec: ModelSpec, seed: int | None = None) -> nn.Module:
    """Build the network of ``spec`` with randomly initialized weights (never downloads weights).

    Args:
        spec: what to build.
        seed: if given, the initial weights are a deterministic function of the seed (the global torch RNG
            is left as it was).

    Returns:
        A module mapping normalized input (N, bands, H, W) to class logits (N, n_classes, H, W), H and W
        multiples of ``spec.size_multiple``.
    """
    import segmentation_models_pytorch as smp  # lazy: an optional heavy dependency
    import torch

    common: dict[str, Any] = {
        "encoder_name": spec.encoder,
        "encoder_weights": None,
        "encoder_depth": spec.encoder_depth,
        "in_channels": spec.in_channels,
        "classes": spec.n_classes,
    }
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if spec.arch == "deeplabv3plus":
            model: nn.Module = smp.DeepLabV3Plus(**common)
        elif spec.arch == "fpn":
            model = smp.FPN(**common)
        elif spec.decoder_channels:
            model = smp.Unet(**common, decoder_channels=spec.decoder_channels)
        else:
            model = smp.Unet(**common)
    return model


def gflop_per_tile(model: nn.Module, bands: int, tile: int, device: torch.device | str = "cpu") -> float:
    """Forward GFLOP of one ``tile`` x ``tile`` sub-tile (a multiply-add counted as 2), counted in
    evaluation mode (a batch of one cannot pass DeepLabv3+'s pooled batch normalization in training mode);
    the model's mode is restored."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, bands, tile, tile), device=device)
    counter = FlopCounterMode(display=False)
    training = model.training
    model.eval()
    try:
        with torch.inference_mode(), counter:
            model(x)
    finally:
        model.train(training)
    return counter.get_total_flops() / 1e9
