"""Regenerate the cloud-mask golden files (run from the repo root; needs segmentation-models-pytorch):

    python kz_pipelines_tests/data/cloudmask/make_golden.py

golden_input.npz: a seeded 13-band L1C-like scene, 64 x 64 px, stored as uint16 DN (reflectance = DN x 1e-4
- 0.1, Earth Search's convention from processing baseline 04.00): smooth surface fields, a bright cloud
blob, a dark shadow blob, and a nodata corner (DN 0).
golden_expected.npz: the classes and probabilities of the ``tiny`` network built with seed 0 (head
weights x 40 so class margins are wide), predicted on CPU with 32 px sub-tiles and 8 px overlap.
Only rerun when the network or the prediction code changes on purpose, and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from kz_pipelines.cloudmask.classes import Normalization
from kz_pipelines.cloudmask.net import build_model, model_spec
from kz_pipelines.cloudmask.predict import predict_scene

HERE = Path(__file__).parent
SIZE = 64
TILE, OVERLAP = 32, 8
HEAD_GAIN = 40.0


def golden_dn(seed: int = 0) -> np.ndarray:
    """The golden scene as uint16 DN, shape (13, 64, 64)."""
    rng = np.random.default_rng(seed)
    surface = gaussian_filter(rng.standard_normal((13, SIZE, SIZE)), (0, 4, 4))
    refl = 0.12 + 0.05 * surface / surface.std()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cloud = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 120.0)
    shadow = np.exp(-((yy - 40) ** 2 + (xx - 20) ** 2) / 120.0)
    refl = refl * (1 - 0.6 * shadow) * (1 - cloud) + 0.6 * cloud
    dn = np.clip(np.rint((refl + 0.1) * 10000), 1, 65535).astype(np.uint16)
    dn[:, :10, :10] = 0
    return dn


def reflectance(dn: np.ndarray) -> np.ndarray:
    """DN -> reflectance (NaN-free; DN 0 stays 0.0 and so marks nodata as all bands zero)."""
    return np.where(dn == 0, 0.0, dn.astype(np.float32) * 1e-4 - 0.1).astype(np.float32)


def golden_model() -> torch.nn.Module:
    """The ``tiny`` network, seed 0, with a scaled head (wide class margins)."""
    model = build_model(model_spec("tiny", "L1C"), seed=0).eval()
    head = model.segmentation_head[0]
    with torch.no_grad():
        head.weight *= HEAD_GAIN
        head.bias *= HEAD_GAIN
    return model


def predict_golden(dn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes and probabilities of the golden model on the golden scene (CPU, deterministic)."""
    pred = predict_scene(
        golden_model(),
        reflectance(dn),
        Normalization.fixed(13),
        tile=TILE,
        overlap=OVERLAP,
        batch_size=4,
        device="cpu",
        num_threads=2,
        return_probabilities=True,
    )
    assert pred.probabilities is not None
    return pred.classes, pred.probabilities


def main() -> None:
    dn = golden_dn()
    np.savez_compressed(HERE / "golden_input.npz", dn=dn)
    classes, probs = predict_golden(dn)
    np.savez_compressed(HERE / "golden_expected.npz", classes=classes, probabilities=probs.astype(np.float32))
    print("classes", np.bincount(classes.ravel(), minlength=5))


if __name__ == "__main__":
    main()
