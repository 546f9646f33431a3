"""The cloud-mask core: tiling without seams, nodata, a golden output, model files, OOM fallback, chips,
and a short training run on simulated chips. CPU only except the tests marked ``gpu``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch", exc_type=ImportError)

import torch.nn.functional as F  # noqa: E402, N812

from kz_pipelines.cloudmask.card import ModelCard, load_model, save_model  # noqa: E402
from kz_pipelines.cloudmask.chips import Chip, chips_from_region, list_chips, load_chip, save_chip  # noqa: E402
from kz_pipelines.cloudmask.classes import CLOUD, MISSING, Normalization, band_set  # noqa: E402
from kz_pipelines.cloudmask.metrics import confusion_matrix, dice_per_class  # noqa: E402
from kz_pipelines.cloudmask.net import ModelSpec, build_model, model_spec  # noqa: E402
from kz_pipelines.cloudmask.predict import (  # noqa: E402
    pinned_empty,
    predict_scene,
    prepare_input,
    run_in_batches,
    tile_origins,
)
from kz_pipelines.cloudmask.train import (  # noqa: E402
    TrainConfig,
    augment,
    dice_ce_loss,
    dscpp_loss,
    split_by_source,
    train,
)
from kz_pipelines_tests.data.cloudmask import make_golden  # noqa: E402

S6 = band_set("S6")


@pytest.fixture(autouse=True)
def _two_threads() -> Iterator[None]:
    """Fixed thread count (CPU results are deterministic for a given count); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _peaked(model: torch.nn.Module, gain: float) -> torch.nn.Module:
    """Scale the segmentation head so an untrained network gives confident, varied probabilities."""
    head = model.segmentation_head[0]
    with torch.no_grad():
        head.weight *= gain
        head.bias *= gain
    return model.eval()


def _smooth_scene(bands: int, size: int, seed: int) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal((bands, size, size)), (0, 6, 6))
    return (0.15 + 0.1 * field / field.std()).astype(np.float32)


@given(
    length=st.integers(64, 5000),
    tile_mult=st.sampled_from([(64, 8), (256, 32), (512, 32)]),
    overlap_frac=st.floats(0.0, 0.5),
)
def test_tile_origins_cover_the_axis_on_the_network_stride(
    length: int, tile_mult: tuple[int, int], overlap_frac: float
) -> None:
    tile, multiple = tile_mult
    if length < tile:
        with pytest.raises(ValueError, match="shorter"):
            tile_origins(length, tile, 0, multiple)
        return
    overlap = int(overlap_frac * tile)
    origins = tile_origins(length, tile, overlap, multiple)
    assert origins[0] == 0
    assert origins[-1] == length - tile
    assert all(o % multiple == 0 for o in origins[:-1])
    assert all(0 < b - a <= tile - overlap for a, b in zip(origins, origins[1:], strict=False))


def test_tiled_prediction_equals_whole_image_away_from_the_border() -> None:
    spec = ModelSpec("unet", "tu-lcnet_035", S6, encoder_depth=3, decoder_channels=(32, 16, 8))
    model = _peaked(build_model(spec, seed=0), 5.0)
    norm = Normalization.fixed(len(S6))
    scene = _smooth_scene(len(S6), 1024, seed=1)
    with torch.inference_mode():
        xn, _ = prepare_input(torch.from_numpy(scene), norm)
        whole = torch.softmax(model(xn[None])[0, 1:], dim=0).numpy()
    assert whole.std() > 0.05  # the probabilities vary: the comparison below has something to find
    tiled = predict_scene(model, scene, norm, tile=512, overlap=128, device="cpu", return_probabilities=True)
    assert tiled.n_tiles == 9
    assert tiled.probabilities is not None
    diff = np.abs(tiled.probabilities[1:] - whole)[:, 32:-32, 32:-32]
    assert diff.max() < 0.01
    assert np.quantile(diff, 0.999) < 1e-3
    assert (tiled.classes == whole.argmax(axis=0) + 1)[32:-32, 32:-32].mean() > 0.9999
    # the power of the check: one sub-tile alone, no blending, differs from the whole image near its edge
    single = predict_scene(
        model, scene[:, :512, :512], norm, tile=512, device="cpu", return_probabilities=True
    )
    assert single.probabilities is not None
    edge = np.abs(single.probabilities[1:] - whole[:, :512, :512])[:, 32:, 480:]
    assert edge.max() > 20 * diff.max()


def test_nodata_pixels_are_class_0_and_valid_pixels_never_are() -> None:
    model = _peaked(build_model(model_spec("tiny", "S6"), seed=0), 20.0)
    scene = _smooth_scene(len(S6), 96, seed=2)
    scene[:, :10, :] = 0.0  # all bands zero
    scene[2, 50:60, 50:60] = np.nan  # one band NaN
    pred = predict_scene(
        model,
        scene,
        Normalization.fixed(len(S6)),
        tile=64,
        overlap=16,
        device="cpu",
        return_probabilities=True,
    )
    nodata = np.zeros((96, 96), bool)
    nodata[:10] = True
    nodata[50:60, 50:60] = True
    assert pred.classes.shape == (96, 96)
    assert (pred.classes[nodata] == MISSING).all()
    assert (pred.classes[~nodata] != MISSING).all()
    assert pred.probabilities is not None
    np.testing.assert_array_equal(pred.probabilities[0], nodata.astype(np.float32))
    np.testing.assert_allclose(pred.probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_scene_smaller_than_a_sub_tile_is_padded_and_cropped() -> None:
    model = build_model(model_spec("tiny", "S6"), seed=0)
    pred = predict_scene(
        model, _smooth_scene(len(S6), 70, seed=3)[:, :, :50], Normalization.fixed(6), tile=64, overlap=16
    )
    assert pred.classes.shape == (70, 50)
    assert pred.n_tiles == 2


def test_golden_output_is_reproduced_deterministically_on_cpu() -> None:
    dn = np.load(make_golden.HERE / "golden_input.npz")["dn"]
    expected = np.load(make_golden.HERE / "golden_expected.npz")
    classes, probs = make_golden.predict_golden(dn)
    classes2, probs2 = make_golden.predict_golden(dn)
    np.testing.assert_array_equal(classes, classes2)  # bitwise repeatable
    np.testing.assert_array_equal(probs, probs2)
    np.testing.assert_allclose(probs, expected["probabilities"], atol=1e-4)
    # classes must match wherever the expected top two probabilities are not a near tie
    top2 = np.sort(expected["probabilities"], axis=0)[-2:]
    clear_margin = (top2[1] - top2[0]) > 1e-3
    assert clear_margin.mean() > 0.98
    np.testing.assert_array_equal(classes[clear_margin], expected["classes"][clear_margin])
    assert set(np.unique(expected["classes"])) == {0, 1, 2, 3, 4}


def test_save_and_load_give_identical_predictions(tmp_path: Path) -> None:
    spec = model_spec("tiny", "S6")
    model = _peaked(build_model(spec, seed=3), 10.0)
    norm = Normalization(tuple(0.1 + 0.01 * i for i in range(6)), tuple(0.05 + 0.01 * i for i in range(6)))
    card = ModelCard(
        spec=spec, normalization=norm, data={"source": "test"}, metrics={"val_dice": {"cloud": 0.5}}
    )
    scene = _smooth_scene(6, 80, seed=4)
    a = predict_scene(model, scene, norm, tile=64, overlap=16, return_probabilities=True, device="cpu")
    save_model(tmp_path / "m", model, card)  # after prediction: the model is in channels_last layout
    loaded, card2 = load_model(tmp_path / "m")
    assert card2 == card
    on_disk = json.loads((tmp_path / "m" / "model.json").read_text())
    assert on_disk["bands"] == list(S6)
    assert on_disk["classes"][4] == "cloud"
    b = predict_scene(
        loaded, scene, card2.normalization, tile=64, overlap=16, return_probabilities=True, device="cpu"
    )
    np.testing.assert_array_equal(a.classes, b.classes)
    assert a.probabilities is not None
    assert b.probabilities is not None
    np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_out_of_memory_at_batch_one_is_raised() -> None:
    """Halving stops at one item: an out-of-memory there is the caller's (the fault suite's `cuda_oom`
    shows the halving itself)."""

    def always(batch: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_in_batches(always, torch.arange(11.0), 4)


def test_predict_scene_recovers_from_out_of_memory() -> None:
    class Limited(torch.nn.Module):
        """The network, failing like CUDA does for batches above 2."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.encoder = inner.encoder

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if len(x) > 2:
                raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
            out: torch.Tensor = self.inner(x)
            return out

    inner = _peaked(build_model(model_spec("tiny", "S6"), seed=0), 20.0)
    scene = _smooth_scene(6, 160, seed=5)
    norm = Normalization.fixed(6)
    reference = predict_scene(inner, scene, norm, tile=64, overlap=16, batch_size=2, device="cpu")
    pred = predict_scene(Limited(inner), scene, norm, tile=64, overlap=16, batch_size=8, device="cpu")
    assert pred.batch_size == 2
    np.testing.assert_array_equal(pred.classes, reference.classes)


def test_chip_round_trip_and_band_selection(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bands = rng.uniform(0, 0.5, (3, 16, 16)).astype(np.float32)
    bands[:, 0, 0] = np.nan
    chip = Chip(bands, rng.integers(0, 5, (16, 16), dtype=np.uint8), ("B04", "B02", "B8A"), "scene-1")
    save_chip(tmp_path / "a.npz", chip)
    back = load_chip(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.bands, chip.bands)
    np.testing.assert_array_equal(back.label, chip.label)
    assert back.band_names == chip.band_names
    assert back.source == "scene-1"
    np.testing.assert_array_equal(back.select(["B8A", "B04"]), bands[[2, 0]])
    with pytest.raises(KeyError, match="B12"):
        back.select(["B12"])
    with pytest.raises(ValueError, match="label"):
        Chip(bands, np.full((16, 16), 7, np.uint8), ("B04", "B02", "B8A"))
    assert list_chips(tmp_path) == [tmp_path / "a.npz"]


def test_dice_and_normalization() -> None:
    truth = np.array([[0, 1, 4, 4], [2, 3, 4, 1]], np.uint8)
    pred = np.array([[4, 1, 4, 1], [2, 4, 4, 1]], np.uint8)
    assert confusion_matrix(pred, truth).sum() == 7  # the missing pixel is not counted
    dice = dice_per_class(pred, truth)
    assert dice["cloud"] == pytest.approx(2 * 2 / (3 + 3))
    assert dice["semi_transparent_cloud"] == 0.0
    assert dice["cloud_shadow"] == 1.0
    norm = Normalization.from_samples(np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 0.0]]))
    assert norm.mean == (2.0, 2.0)
    with pytest.raises(ValueError, match="standard deviations"):
        Normalization((0.0,), (0.0,))
    with pytest.raises(ValueError, match="unknown"):
        band_set(["B13"])


def test_losses_ignore_missing_pixels_and_reward_the_truth() -> None:
    target = torch.tensor([[[0, 1, 2], [3, 4, 4]]])
    right = F.one_hot(target, 5).permute(0, 3, 1, 2).float() * 20.0
    wrong = F.one_hot((target % 4) + 1, 5).permute(0, 3, 1, 2).float() * 20.0
    for loss in (dice_ce_loss, dscpp_loss):
        assert float(loss(right, target)) < 0.01
        assert float(loss(wrong, target)) > 0.5
        # the missing pixel's logits do not matter
        changed = right.clone()
        changed[0, :, 0, 0] = torch.tensor([0.0, -9.0, 9.0, 0.0, 0.0])
        assert float(loss(changed, target)) == pytest.approx(float(loss(right, target)), abs=1e-6)
    # DSC++ with gamma 1 is the soft Dice term of dice_ce_loss
    soft = torch.randn(1, 5, 2, 3, generator=torch.Generator().manual_seed(0))
    valid = target != 0
    ce = F.cross_entropy(soft[:, 1:], (target - 1).clamp(min=0), reduction="none")[valid].mean()
    dice_term = dice_ce_loss(soft, target, dice_weight=1.0) - ce
    assert float(dscpp_loss(soft, target, gamma=1.0)) == pytest.approx(float(dice_term), abs=1e-6)


def test_augment_keeps_bands_and_labels_aligned() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(1, 5, (8, 8), dtype=np.uint8)
    bands = np.stack([label.astype(np.float32)] * 3)
    for seed in range(8):
        b, lab = augment(bands, label, np.random.default_rng(seed), brightness=0.1)
        ratio = b[0] / lab
        assert np.allclose(ratio, ratio.flat[0])  # one brightness factor, same geometry as the label
        assert 0.9 <= ratio.flat[0] <= 1.1


@pytest.mark.slow
def test_chips_from_region_read_reflectance_and_truth(region: Path, tmp_path: Path) -> None:
    paths = chips_from_region(region, tmp_path, level="L1C", chip_size=120, max_scenes=2)
    assert paths
    chip = load_chip(paths[0])
    assert chip.band_names == band_set("L1C")
    assert chip.bands.shape == (13, 120, 120)
    assert chip.source.endswith("_L1C")
    valid = np.isfinite(chip.bands).all(axis=0)
    np.testing.assert_array_equal(valid, chip.label != MISSING)
    assert 0.0 < float(np.nanmedian(chip.bands[3])) < 1.0  # B04 reflectance, offset -0.1 applied
    l2a = chips_from_region(region, tmp_path / "l2a", level="L2A", bands="S6", chip_size=120, max_scenes=1)
    assert load_chip(l2a[0]).band_names == S6


@pytest.mark.slow
def test_short_training_beats_trivial_baselines_on_held_out_chips(region: Path, tmp_path: Path) -> None:
    paths = chips_from_region(region, tmp_path, level="L1C", chip_size=120, max_scenes=20)
    rest, test = split_by_source(paths, 0.25, seed=1)
    tr, val = split_by_source(rest, 0.2, seed=2)
    cfg = TrainConfig(epochs=4, batch_size=8, patience=4, seed=0, device="cpu")
    result = train(model_spec("tiny", "L1C"), tr, val, cfg, data={"region": "SMALL"})
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    preds, truths = [], []
    for p in test:
        chip = load_chip(p)
        pred = predict_scene(
            result.model, chip.select(result.card.spec.bands), result.card.normalization, tile=120, overlap=0
        )
        preds.append(pred.classes)
        truths.append(chip.label)
    pred_all, truth_all = np.stack(preds), np.stack(truths)
    dice = dice_per_class(pred_all, truth_all)
    baselines = [
        dice_per_class(np.where(truth_all == MISSING, MISSING, c).astype(np.uint8), truth_all)["cloud"]
        for c in (1, CLOUD)
    ]
    trivial = max(0.0 if math.isnan(b) else b for b in baselines)
    assert (truth_all == CLOUD).mean() > 0.05  # the held-out chips do contain cloud
    assert dice["cloud"] > trivial + 0.15, (dice, trivial)
    assert result.card.metrics["best_epoch"] == result.best_epoch


@pytest.mark.gpu
def test_cuda_matches_cpu_and_pinned_input_matches_numpy() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = _peaked(build_model(model_spec("tiny", "S6"), seed=0), 20.0)
    scene = _smooth_scene(6, 600, seed=6)
    norm = Normalization.fixed(6)
    cpu = predict_scene(model, scene, norm, tile=256, overlap=64, device="cpu", return_probabilities=True)
    gpu = predict_scene(model, scene, norm, tile=256, overlap=64, device="cuda", return_probabilities=True)
    pinned = pinned_empty(scene.shape)
    pinned.numpy()[...] = scene
    gpu_pinned = predict_scene(model, pinned, norm, tile=256, overlap=64, device="cuda")
    np.testing.assert_array_equal(gpu.classes, gpu_pinned.classes)
    assert cpu.probabilities is not None
    assert gpu.probabilities is not None
    assert float(np.abs(cpu.probabilities - gpu.probabilities).max()) < 0.05  # bf16 vs float32
    assert (cpu.classes == gpu.classes).mean() > 0.99
