"""Cloud mask with KappaMask's classes (0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud,
4 cloud): segmentation-models-pytorch networks, seamless tiled prediction on CPU or CUDA, training on
labelled chips, and model files (safetensors + a JSON model card). No Dagster here.

Modules: ``classes`` (classes, band sets, normalization), ``net`` (model specs and builder), ``predict``
(tiled inference), ``chips`` (the labelled-chip format, cutting chips from a simulated region),
``train`` (loss, augmentation, early stopping), ``metrics`` (Dice per class), ``card`` (save/load).
"""

from kz_pipelines.cloudmask.card import ModelCard, code_version, load_model, save_model
from kz_pipelines.cloudmask.chips import Chip, chips_from_region, list_chips, load_chip, save_chip
from kz_pipelines.cloudmask.classes import (
    BAND_SETS,
    CLASS_NAMES,
    CLEAR,
    CLOUD,
    CLOUD_SHADOW,
    MISSING,
    SEMI_TRANSPARENT_CLOUD,
    Normalization,
    band_set,
)
from kz_pipelines.cloudmask.metrics import confusion_matrix, dice_per_class
from kz_pipelines.cloudmask.net import PRESETS, ModelSpec, build_model, model_spec
from kz_pipelines.cloudmask.predict import Prediction, pinned_empty, predict_scene, resolve_device
from kz_pipelines.cloudmask.train import TrainConfig, TrainResult, split_by_source, train

__all__ = [
    "BAND_SETS",
    "CLASS_NAMES",
    "CLEAR",
    "CLOUD",
    "CLOUD_SHADOW",
    "MISSING",
    "PRESETS",
    "SEMI_TRANSPARENT_CLOUD",
    "Chip",
    "ModelCard",
    "ModelSpec",
    "Normalization",
    "Prediction",
    "TrainConfig",
    "TrainResult",
    "band_set",
    "build_model",
    "chips_from_region",
    "code_version",
    "confusion_matrix",
    "dice_per_class",
    "list_chips",
    "load_chip",
    "load_model",
    "model_spec",
    "pinned_empty",
    "predict_scene",
    "resolve_device",
    "save_chip",
    "save_model",
    "split_by_source",
    "train",
]
