"""Training the cloud-mask network on labelled chips (see :mod:`kz_pipelines.cloudmask.chips`).

Loss: cross-entropy plus soft Dice over classes 1..4 (default), or DSC++ (the Dice variant KappaMaskv2
trained with, which raises false positives and negatives to a power gamma to penalize over-confident
errors), both ignoring pixels labelled missing (0).
Augmentation: random horizontal/vertical flips, 90 degree rotations and a brightness factor (reflectance
times U(1 - b, 1 + b)). Validation after every epoch: Dice per class on the validation chips; the
weights of the epoch with the best mean Dice are kept, and training stops after ``patience`` epochs
without improvement. Runs on CPU or CUDA (bf16 autocast). Chips whose sides are not multiples of the
network's stride are padded with nodata (ignored by the loss).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kz_pipelines.cloudmask.card import ModelCard
from kz_pipelines.cloudmask.chips import Chip, load_chip
from kz_pipelines.cloudmask.classes import MISSING, N_CLASSES, Normalization
from kz_pipelines.cloudmask.metrics import confusion_matrix, dice_from_confusion
from kz_pipelines.cloudmask.net import ModelSpec, build_model
from kz_pipelines.cloudmask.predict import prepare_input, resolve_device

__all__ = [
    "TrainConfig",
    "TrainResult",
    "augment",
    "dice_ce_loss",
    "dscpp_loss",
    "evaluate",
    "split_by_source",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: chips per optimizer step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        patience: stop after this many epochs without a better validation mean Dice.
        brightness: brightness augmentation amplitude (reflectance x U(1 - b, 1 + b)); 0 disables.
        augment: apply flips, rotations and brightness to training chips.
        dice_weight: weight of the Dice term (cross-entropy has weight 1; ``dice_ce`` only).
        loss: ``dice_ce`` (cross-entropy + soft Dice) or ``dscpp`` (DSC++ with ``gamma``).
        gamma: DSC++ exponent (2 in the DSC++ paper; 1 gives the soft Dice loss).
        seed: seed of weights, shuffling and augmentation.
        device: ``auto``, ``cuda`` or ``cpu``.
    """

    epochs: int = 50
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8
    brightness: float = 0.1
    augment: bool = True
    dice_weight: float = 1.0
    loss: str = "dice_ce"
    gamma: float = 2.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.loss not in ("dice_ce", "dscpp"):
            raise ValueError(f"loss must be dice_ce or dscpp, got {self.loss!r}")
        if not 0 <= self.brightness < 1:
            raise ValueError(f"brightness must be in [0, 1), got {self.brightness}")


@dataclass
class TrainResult:
    """A trained model and its card.

    Attributes:
        model: the network with the best validation weights, eval mode, on CPU.
        card: model card with normalization, history and validation metrics.
        best_epoch: the epoch (1-based) whose weights were kept.
    """

    model: nn.Module
    card: ModelCard
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def split_by_source(
    paths: Sequence[Path], val_fraction: float, seed: int = 0
) -> tuple[list[Path], list[Path]]:
    """Split chip files into train and validation by scene (the chip's source), never within a scene.

    The source is the file name up to ``_r<row>_c<col>`` (the naming of ``chips_from_region``), else the
    whole stem.
    """

    def source(p: Path) -> str:
        stem = p.stem
        return stem.rsplit("_r", 1)[0] if "_r" in stem and "_c" in stem else stem

    sources = sorted({source(p) for p in paths})
    rng = np.random.default_rng(seed)
    n_val = max(1, round(len(sources) * val_fraction)) if len(sources) > 1 else 0
    val = set(rng.permutation(np.array(sources, dtype=object))[:n_val].tolist())
    return [p for p in paths if source(p) not in val], [p for p in paths if source(p) in val]


def augment(
    bands: np.ndarray, label: np.ndarray, rng: np.random.Generator, brightness: float
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, 90 degree rotation and brightness of one chip.

    Args:
        bands: reflectance (C, H, W), float32, H == W for rotations.
        label: classes (H, W), uint8.
        rng: random generator.
        brightness: amplitude b of the brightness factor U(1 - b, 1 + b).
    """
    k = int(rng.integers(4)) if bands.shape[1] == bands.shape[2] else 0
    bands, label = np.rot90(bands, k, axes=(1, 2)), np.rot90(label, k)
    if rng.random() < 0.5:
        bands, label = bands[:, :, ::-1], label[:, ::-1]
    if rng.random() < 0.5:
        bands, label = bands[:, ::-1], label[::-1]
    factor = np.float32(rng.uniform(1.0 - brightness, 1.0 + brightness)) if brightness > 0 else np.float32(1)
    return np.ascontiguousarray(bands) * factor, np.ascontiguousarray(label)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy plus soft Dice loss over classes 1..4, ignoring pixels labelled missing.

    Args:
        logits: (N, 5, H, W) network output.
        target: (N, H, W) int64 classes 0..4.
        dice_weight: weight of the Dice term.
    """
    valid = target != MISSING
    ce = F.cross_entropy(logits[:, 1:], (target - 1).clamp(min=0), reduction="none")
    ce = (ce * valid).sum() / valid.sum().clamp(min=1)
    probs = torch.softmax(logits[:, 1:].float(), dim=1) * valid.unsqueeze(1)
    onehot = F.one_hot(target, N_CLASSES)[..., 1:].permute(0, 3, 1, 2).float() * valid.unsqueeze(1)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0  # classes absent from the batch carry no Dice evidence
    dice = (2 * inter + 1.0) / (denom + 1.0)
    dice_loss = (1 - dice)[present].mean() if bool(present.any()) else logits.sum() * 0
    return ce + dice_weight * dice_loss


def dscpp_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """DSC++ loss over classes 1..4, ignoring pixels labelled missing: 1 - mean over present classes of
    2 TP / (2 TP + sum((p (1 - y))^gamma) + sum(((1 - p) y)^gamma)).

    Args:
        logits: (N, 5, H, W) network output.
        target: (N, H, W) int64 classes 0..4.
        gamma: exponent of the false-positive and false-negative terms.
    """
    valid = (target != MISSING).unsqueeze(1)
    probs = torch.softmax(logits[:, 1:].float(), dim=1) * valid
    onehot = F.one_hot(target, N_CLASSES)[..., 1:].permute(0, 3, 1, 2).float() * valid
    tp = (probs * onehot).sum(dim=(0, 2, 3))
    fp = ((probs * (1 - onehot)) ** gamma).sum(dim=(0, 2, 3))
    fn = (((1 - probs) * onehot) ** gamma).sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dsc = (2 * tp + 1.0) / (2 * tp + fp + fn + 1.0)
    return (1 - dsc)[present].mean() if bool(present.any()) else logits.sum() * 0


def _to_batch(
    chips: Sequence[Chip], bands: Sequence[str], norm: Normalization, device: torch.device, multiple: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized input (N, C, H', W') and labels (N, H', W'), nodata labelled missing; H' and W' are
    H and W padded (with nodata) up to multiples of the network's stride ``multiple``."""
    h, w = chips[0].label.shape
    pad = ((0, -h % multiple), (0, -w % multiple))
    x = np.stack([np.pad(c.select(bands), ((0, 0), *pad), constant_values=np.nan) for c in chips])
    y = np.stack([np.pad(c.label, pad) for c in chips]).astype(np.int64)
    xn, valid = prepare_input(torch.from_numpy(x).to(device), norm)
    return xn, torch.where(valid, torch.from_numpy(y).to(device), MISSING)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    chips: Sequence[Chip],
    norm: Normalization,
    bands: Sequence[str],
    batch_size: int = 8,
    multiple: int = 32,
) -> tuple[np.ndarray, float]:
    """Confusion matrix (5 x 5, rows truth) and mean loss of a model on whole chips (eval mode).

    Chips are padded with nodata to multiples of ``multiple`` (the network's stride); chips of one batch
    must share a size.
    """
    device = next(model.parameters()).device
    model.eval()
    cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    losses = []
    for i in range(0, len(chips), batch_size):
        x, y = _to_batch(chips[i : i + batch_size], bands, norm, device, multiple)
        logits = model(x)
        losses.append(float(dice_ce_loss(logits, y)))
        pred = torch.where(y != MISSING, logits[:, 1:].argmax(dim=1) + 1, MISSING)
        cm += confusion_matrix(pred.cpu().numpy(), y.cpu().numpy())
    return cm, float(np.mean(losses)) if losses else math.nan


def _mean_dice(dice: dict[str, float]) -> float:
    values = [v for v in dice.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else 0.0


def train(
    spec: ModelSpec,
    train_chips: Sequence[Path],
    val_chips: Sequence[Path],
    config: TrainConfig | None = None,
    norm: Normalization | None = None,
    data: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a cloud-mask network on chip files.

    Args:
        spec: the network to build (its bands are taken from the chips by name).
        train_chips: training chip files.
        val_chips: validation chip files (never trained on; drive early stopping and the card's metrics).
        config: training settings (defaults: :class:`TrainConfig`).
        norm: input normalization; default: per-band mean/std of the training chips.
        data: description of the data for the model card.

    Returns:
        The :class:`TrainResult` (model on CPU in eval mode, card with history and validation Dice).
    """
    cfg = config or TrainConfig()
    if not train_chips or not val_chips:
        raise ValueError("need at least one training and one validation chip")
    device = resolve_device(cfg.device)
    train_set = [load_chip(p) for p in train_chips]
    val_set = [load_chip(p) for p in val_chips]
    if norm is None:
        sample = np.concatenate(
            [c.select(spec.bands).reshape(spec.in_channels, -1) for c in train_set], axis=1
        )
        norm = Normalization.from_samples(sample)
    model = build_model(spec, seed=cfg.seed).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, float]] | None = None
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_set))
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            chips = [train_set[j] for j in order[i : i + cfg.batch_size]]
            if cfg.augment:
                chips = [
                    Chip(*augment(c.select(spec.bands), c.label, rng, cfg.brightness), spec.bands)
                    for c in chips
                ]
            x, y = _to_batch(chips, spec.bands, norm, device, spec.size_multiple)
            if len(chips) == 1 and model.training:
                x, y = torch.cat([x, x.flip(-1)]), torch.cat([y, y.flip(-1)])  # BatchNorm needs > 1 sample
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            loss = (
                dscpp_loss(logits.float(), y, cfg.gamma)
                if cfg.loss == "dscpp"
                else dice_ce_loss(logits.float(), y, cfg.dice_weight)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        cm, val_loss = evaluate(model, val_set, norm, spec.bands, cfg.batch_size, spec.size_multiple)
        dice = dice_from_confusion(cm)
        score = _mean_dice(dice)
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_dice": dice,
                "val_mean_dice": score,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        if best is None or score > best[0]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best = (score, epoch, state, dice)
        elif epoch - best[1] >= cfg.patience:
            break
    assert best is not None
    model.load_state_dict(best[2])
    model = model.cpu().eval()
    card = ModelCard(
        spec=spec,
        normalization=norm,
        data={**(data or {}), "n_train_chips": len(train_set), "n_val_chips": len(val_set)},
        metrics={"val_dice": best[3], "val_mean_dice": best[0], "best_epoch": best[1]},
        history=history,
    )
    return TrainResult(model=model, card=card, best_epoch=best[1], history=history)
