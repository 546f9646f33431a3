"""Model files: weights as safetensors plus a JSON model card that is enough to rebuild the model.

A saved model is a folder with two files:

- ``model.safetensors``: the network's state dict (no pickle: nothing in the file can execute code).
- ``model.json``: the :class:`ModelCard`: architecture spec (bands, encoder...), classes, normalization,
  a description of the training data, metrics on held-out data, training history and code version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kz_pipelines
from kz_pipelines.cloudmask.classes import CLASS_NAMES, Normalization
from kz_pipelines.cloudmask.net import ModelSpec, build_model
from kz_pipelines.storage import atomic_path, write_json

if TYPE_CHECKING:
    from torch import nn

__all__ = ["CARD_FILE", "WEIGHTS_FILE", "ModelCard", "code_version", "load_model", "save_model"]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"


def code_version() -> str:
    """Package version plus a short hash of the cloud-mask sources (changes whenever the code does)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{kz_pipelines.__version__}+{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class ModelCard:
    """What a saved cloud-mask model is and how well it did.

    Attributes:
        spec: the network (architecture, encoder, input bands in channel order).
        normalization: per-band input normalization of reflectance.
        classes: class names by class value (KappaMask's five).
        data: description of the training data (e.g. chip folder, simulated seed, number of chips).
        metrics: held-out metrics (e.g. ``{"dice": {"cloud": 0.93, ...}}``).
        history: per-epoch training record (loss, validation Dice...).
        code_version: :func:`code_version` of the code that trained the model.
        created: ISO 8601 UTC time of writing.
    """

    spec: ModelSpec
    normalization: Normalization
    classes: tuple[str, ...] = CLASS_NAMES
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    code_version: str = field(default_factory=code_version)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.normalization.n_bands != self.spec.in_channels:
            raise ValueError(
                f"normalization has {self.normalization.n_bands} bands, the network {self.spec.in_channels}"
            )
        if len(self.classes) != self.spec.n_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.spec.n_classes} outputs")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "format": "kz_pipelines.cloudmask/1",
            "spec": self.spec.to_dict(),
            "bands": list(self.spec.bands),
            "classes": list(self.classes),
            "normalization": self.normalization.to_dict(),
            "data": self.data,
            "metrics": self.metrics,
            "history": self.history,
            "code_version": self.code_version,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`."""
        return cls(
            spec=ModelSpec.from_dict(d["spec"]),
            normalization=Normalization.from_dict(d["normalization"]),
            classes=tuple(d["classes"]),
            data=dict(d.get("data", {})),
            metrics=dict(d.get("metrics", {})),
            history=list(d.get("history", [])),
            code_version=str(d.get("code_version", "")),
            created=str(d.get("created", "")),
        )


def save_model(folder: Path, model: nn.Module, card: ModelCard) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``folder``; returns the folder."""
    from safetensors.torch import save_file

    # contiguous copies: a model used for prediction is in channels_last layout
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "code_version": card.code_version})
    write_json(folder / CARD_FILE, card.to_dict())
    return folder


def load_model(folder: Path, device: str = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a saved model from its card and weights (in eval mode).

    Raises:
        FileNotFoundError: the folder lacks ``model.json`` or ``model.safetensors``.
    """
    from safetensors.torch import load_file

    card = ModelCard.from_dict(json.loads((folder / CARD_FILE).read_text()))
    model = build_model(card.spec)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE), device="cpu"), strict=True)
    return model.to(device).eval(), card
