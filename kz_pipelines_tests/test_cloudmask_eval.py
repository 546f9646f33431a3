"""The cloud-mask evaluation (`kz eval cloudmask`): class mappings of the peers, Dice, and the quick run's
DESIGN §9 result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("segmentation_models_pytorch")

from kz_pipelines.bench import BenchResult  # noqa: E402
from kz_pipelines.cloudmask.evaluate import (  # noqa: E402
    PATCH_FILE,
    dice,
    patch_to_classes,
    run,
    s2cloudless_classes,
    scl_to_classes,
    ukis_to_classes,
)


def test_scl_mapping_on_known_classes() -> None:
    # Sen2Cor codes: 0 no data, 1 saturated, 2 dark, 3 shadow, 4 vegetation, 5 bare, 6 water,
    # 7 unclassified, 8 cloud medium, 9 cloud high, 10 thin cirrus, 11 snow
    scl = np.arange(12, dtype=np.uint8).reshape(3, 4)
    expected = np.array([0, 1, 1, 2, 1, 1, 1, 1, 4, 4, 3, 1], np.uint8).reshape(3, 4)
    out = scl_to_classes(scl)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_peer_and_patch_mappings() -> None:
    np.testing.assert_array_equal(s2cloudless_classes(np.array([0, 1, 1, 0])), [1, 4, 4, 1])
    np.testing.assert_array_equal(ukis_to_classes(np.array([0, 1, 2])), [1, 4, 2])
    np.testing.assert_array_equal(patch_to_classes(np.array([0, 1, 2, 3, 4])), [2, 1, 1, 1, 4])


def test_dice_of_a_perfect_and_a_trivial_prediction() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(64, 64)).astype(np.uint8)
    perfect = dice(truth.copy(), truth)
    assert perfect == {
        "clear": 1.0,
        "cloud_shadow": 1.0,
        "semi_transparent_cloud": 1.0,
        "cloud": 1.0,
    }
    all_clear = np.ones_like(truth)
    trivial = dice(all_clear, truth)
    n_valid = int((truth != 0).sum())
    n_clear = int((truth == 1).sum())
    assert trivial["clear"] == pytest.approx(2 * n_clear / (n_clear + n_valid))
    assert trivial["cloud_shadow"] == trivial["semi_transparent_cloud"] == trivial["cloud"] == 0.0
    # pixels whose truth is missing never count, whatever is predicted there
    pred = truth.copy()
    pred[truth == 0] = 4
    assert dice(pred, truth)["cloud"] == 1.0


REQUIRED_TARGETS = {
    "dice_cloud": 0.90,
    "dice_cloud_shadow": 0.80,
    "dice_semi_transparent_cloud": 0.80,
    "ours_minus_scl_clear": 0.0,
    "ours_minus_scl_cloud_shadow": 0.0,
    "ours_minus_scl_semi_transparent_cloud": 0.0,
    "ours_minus_scl_cloud": 0.0,
    "ours_minus_s2cloudless_clear": 0.0,
    "ours_minus_s2cloudless_cloud": 0.0,
}
UKIS_TARGETS = {
    "ours_minus_ukis_csmask_clear": 0.0,
    "ours_minus_ukis_csmask_cloud_shadow": 0.0,
    "ours_minus_ukis_csmask_cloud": 0.0,
}


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    """One quick evaluation run (tiny regions, one epoch), shared by the tests below."""
    return run(tmp_path_factory.mktemp("evalwork"), log=lambda _msg: None, quick=True)


@pytest.mark.slow
def test_quick_run_returns_the_design_shape_with_every_target(quick_result: BenchResult) -> None:
    d = json.loads(json.dumps(quick_result.to_dict()))
    assert set(d) == {"name", "hardware", "figures", "targets"}
    assert d["name"] == "cloudmask"
    figures, targets = d["figures"], d["targets"]
    ukis_measured = not str(figures["ukis_csmask"]).startswith("not measured")
    required = {**REQUIRED_TARGETS, **(UKIS_TARGETS if ukis_measured else {})}
    for key, threshold in required.items():
        assert key in targets, key
        t = targets[key]
        assert set(t) == {"value", "op", "target", "met"}
        assert t["op"] == ">="
        assert t["target"] == threshold
        assert isinstance(t["met"], bool)
    if not ukis_measured:
        assert not any("ukis" in k for k in targets)  # never faked
    # a table: one figure per model x class it has
    for cls in ("clear", "cloud_shadow", "semi_transparent_cloud", "cloud"):
        assert f"dice_ours_{cls}" in figures
        assert f"dice_scl_{cls}" in figures
    assert "dice_s2cloudless_cloud" in figures
    assert "dice_s2cloudless_clear" in figures
    assert "dice_s2cloudless_cloud_shadow" not in figures
    # the evaluation data is named and was never trained on
    assert figures["train_seed"] != figures["eval_seed"]
    assert f"seed {figures['eval_seed']}" in figures["eval_data"]
    assert "never trained on" in figures["eval_data"]
    assert figures["eval_scenes"] > 0
    assert "real_data" in figures


@pytest.mark.slow
def test_quick_run_scores_the_real_patch(quick_result: BenchResult, shared_data: Path) -> None:
    assert (shared_data / PATCH_FILE).is_file()
    figures = quick_result.figures
    assert str(PATCH_FILE) in str(figures["real_data"])
    for cls in ("cloud", "cloud_shadow"):
        value = figures[f"patch_dice_ours_s6_{cls}"]
        assert value == "n/a" or 0.0 <= float(value) <= 1.0
