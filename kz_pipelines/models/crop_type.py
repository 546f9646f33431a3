"""The crop type model: LightGBM and torch networks on the parcel features, the best one on validation
kept, reported on test.

* **Class balancing** (as KappaZeta describes): classes over ``cap`` training samples are undersampled to
  it; classes under ``min_count`` are oversampled to it with copies carrying Gaussian noise (``noise`` x each
  feature's standard deviation), so small classes are seen without being memorized.
* **LightGBM** (multiclass, 63 histogram bins, early stopping on the validation error rate).
* **The seed's network**: the feature vector through three dense layers with batch normalization (256, 128,
  then the classes), features standardized on the training set (missing as 0 after standardization),
  AdamW, early stopping on validation macro-F1, each batch's series moved in time by up to
  ``shift_periods`` composite periods (a season earlier or later keeps its class). Deterministic on CPU.
* **A temporal network** (``tcnn``, :class:`TemporalCNN`): the composited series as a sequence (features
  as channels), two 1D convolutions, pooled over time, joined with the temporal summaries. Trained like
  the dense one; it is a candidate only where it is listed in ``models``.
* **Ensemble** (``ensemble``): the mean of the class probabilities of the models within
  ``ensemble_margin`` of the best validation macro-F1, a candidate like the others. Its members err on
  different parcels (trees on single columns, the dense network on the whole vector, the temporal one on
  the shape of the season), so the mean is steadier from one year to the next.
* **Selection**: the cheapest candidate to score (`SCORING_COST`: the dense network, LightGBM, the
  temporal network, the ensemble) within ``select_tolerance`` of the highest validation macro-F1: a
  difference that small is noise on a validation split of a few hundred parcels, while the cost of
  scoring is paid on every parcel of every tile at every run. Its test scores go in the card.

Models are saved in safe formats only: LightGBM's text model and safetensors, with a JSON card (classes,
features, normalization, metrics, training time, which model was selected). Never pickle.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import torch
import xarray as xr
from safetensors.torch import load_file, save_file
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from torch import nn

from kz_pipelines.devices import resolve_device
from kz_pipelines.models.features import parcel_features
from kz_pipelines.storage import atomic_dir

__all__ = [
    "SCORING_COST",
    "CropTypeConfig",
    "CropTypeModel",
    "balance",
    "disagreements",
    "load_crop_model",
    "out_of_fold_proba",
    "save_crop_model",
    "score_tensor",
    "scores",
    "train_crop_model",
]


@dataclass(frozen=True)
class CropTypeConfig:
    """How the crop type model is trained.

    Attributes:
        cap: at most this many training samples per class (undersampling); None: no cap.
        min_count: oversample smaller classes to this many training samples (with noise).
        noise: oversampling noise, in standard deviations of each feature.
        lgb_rounds: maximum boosting rounds (early stopping after 30 without a lower validation error).
        lgb_learning_rate: LightGBM learning rate.
        mlp_epochs: maximum epochs of a network (``mlp`` or ``tcnn``).
        mlp_patience: epochs without a better validation macro-F1 before a network stops.
        shift_periods: networks train on series moved in time by up to this many composite periods (each
            sample of each batch by a random whole number of periods, edge values repeated; the positions
            of the maximum and minimum moved with them): a season earlier or later than the training
            year's should not change the class (0: off).
        models: which models to train (``lightgbm``, ``mlp``, ``tcnn``).
        seed: random seed.
        threads: CPU threads (0: all).
        device: where the network trains and scores (``auto``: CUDA when torch sees a GPU, else CPU).
        ensemble: the mean (``ensemble``) of the models within ``ensemble_margin`` of the best validation
            macro-F1 is a candidate too, when there are two of them or more.
        ensemble_margin: how far under the best model's validation macro-F1 a member may be (a clearly
            weaker model would only dilute the mean).
        select_tolerance: the selected model is the cheapest to score (`SCORING_COST`) within this of
            the best validation macro-F1.
    """

    cap: int | None = 2000
    min_count: int = 30
    noise: float = 0.05
    lgb_rounds: int = 600
    lgb_learning_rate: float = 0.1
    mlp_epochs: int = 150
    mlp_patience: int = 20
    shift_periods: int = 1
    models: tuple[str, ...] = ("lightgbm", "mlp", "tcnn")
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    ensemble: bool = True
    ensemble_margin: float = 0.05
    select_tolerance: float = 0.005


@dataclass
class CropTypeModel:
    """A trained crop type model.

    Attributes:
        kind: ``lightgbm``, ``mlp``, ``tcnn`` or ``ensemble``.
        classes: the crop class ids, in the order of the probability columns.
        feature_names: input columns.
        booster: the LightGBM model (kind ``lightgbm``).
        net: the network (kinds ``mlp`` and ``tcnn``).
        mean: feature means of the network's standardization.
        std: feature standard deviations of the network's standardization.
        members: the models averaged (kind ``ensemble``).
        card: metrics and provenance.
    """

    kind: str
    classes: tuple[int, ...]
    feature_names: tuple[str, ...]
    booster: lgb.Booster | None = None
    net: nn.Module | None = None
    mean: npt.NDArray[np.float32] | None = None
    std: npt.NDArray[np.float32] | None = None
    members: tuple[CropTypeModel, ...] = ()
    card: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Class probabilities, (samples, classes) in ``classes`` order."""
        if self.members:
            return np.mean([m.predict_proba(x) for m in self.members], axis=0, dtype=np.float32)
        if self.booster is not None:
            return np.asarray(self.booster.predict(np.asarray(x, np.float32)), np.float32).reshape(len(x), -1)
        if self.net is None or self.mean is None or self.std is None:
            raise ValueError("a crop type model needs a booster or a network with its normalization")
        self.net.eval()
        device = next(self.net.parameters()).device
        out = np.empty((len(x), len(self.classes)), np.float32)
        with torch.inference_mode():  # in blocks: cache-friendly, and no full-size standardized copy
            if self.kind == "mlp":
                layers = _folded_dense(self.net, self.mean, self.std)
                fill = torch.from_numpy(self.mean).to(device)
                block = 32768 if device.type == "cpu" else 131072
                for i in range(0, len(x), block):
                    h = torch.from_numpy(np.ascontiguousarray(x[i : i + block], np.float32)).to(device)
                    h = torch.where(torch.isfinite(h), h, fill)  # missing: the mean (0 once standardized)
                    for j, (weight, bias) in enumerate(layers):
                        h = torch.addmm(bias, h, weight)
                        h = torch.relu(h) if j < len(layers) - 1 else torch.softmax(h, dim=1)
                    out[i : i + block] = h.cpu().numpy()
                return out
            block = 8192 if device.type == "cpu" else 131072
            for i in range(0, len(x), block):
                z = _standardize(x[i : i + block], self.mean, self.std, device)
                out[i : i + block] = torch.softmax(self.net(z), dim=1).cpu().numpy()
        return out

    def predict(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
        """The most probable class id per sample."""
        return np.asarray(self.classes, np.int64)[self.predict_proba(x).argmax(axis=1)]


def balance(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    cap: int | None,
    min_count: int,
    noise: float,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Undersample classes over ``cap``, oversample classes under ``min_count`` with noisy copies."""
    sd = _column_moments(x)[1]
    xs, ys = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if cap is not None and len(idx) > cap:
            idx = rng.choice(idx, cap, replace=False)
        xs.append(x[idx])
        ys.append(y[idx])
        if len(idx) < min_count:
            extra = rng.choice(idx, min_count - len(idx), replace=True)
            xs.append(x[extra] + rng.normal(0, 1, (len(extra), x.shape[1])) * noise * sd)
            ys.append(y[extra])
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def _column_moments(x: npt.NDArray[np.floating]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per column mean and standard deviation over the finite values; 0 and 0 for a column with none."""
    finite = np.isfinite(x)
    n = np.maximum(finite.sum(axis=0), 1)
    z = np.where(finite, x, 0.0)
    mean = z.sum(axis=0) / n
    var = np.where(finite, (z - mean) ** 2, 0.0).sum(axis=0) / n
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def scores(
    y_true: npt.NDArray[np.integer], y_pred: npt.NDArray[np.integer], classes: tuple[int, ...]
) -> dict[str, Any]:
    """Macro and weighted F1, recall per class, and the row-normalized confusion matrix."""
    labels = list(classes)
    cm = confusion_matrix(y_true, y_pred, labels=labels).astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    present = sorted(set(np.asarray(y_true).tolist()))
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "recall": {
            str(c): float(r)
            for c, r in zip(
                present,
                recall_score(y_true, y_pred, labels=present, average=None, zero_division=0),
                strict=True,
            )
        },
        "confusion_normalized": np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0).round(4).tolist(),
        "n": int(len(y_true)),
    }


def _standardize(
    x: npt.NDArray[np.floating],
    mean: npt.NDArray[np.float32],
    std: npt.NDArray[np.float32],
    device: torch.device,
) -> torch.Tensor:
    """``(x - mean) / std`` as float32 on ``device`` (computed there), missing values 0 (the mean)."""
    raw = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)
    z = (raw - torch.from_numpy(mean).to(device)) / torch.from_numpy(std).to(device)
    return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


def _mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_in, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, n_out),
    )  # fmt: skip


def _folded_dense(
    net: nn.Module, mean: npt.NDArray[np.float32], std: npt.NDArray[np.float32]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The dense network in inference form: (weight transposed, bias) per linear layer, with the input
    standardization folded into the first and each batch normalization into the linear layer before it
    (dropout is the identity at inference), so scoring is one matrix product, bias and ReLU per layer; the
    same outputs as ``net`` in eval mode to float rounding."""
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    for module in net.children():
        if isinstance(module, nn.Linear):
            layers.append((module.weight.detach(), module.bias.detach()))
        elif isinstance(module, nn.BatchNorm1d):
            assert module.running_var is not None
            assert module.running_mean is not None
            scale = module.weight.detach() / torch.sqrt(module.running_var + module.eps)
            weight, bias = layers[-1]
            shift = module.bias.detach() - module.running_mean * scale
            layers[-1] = (weight * scale[:, None], bias * scale + shift)
    weight, bias = layers[0]
    inv = 1 / torch.from_numpy(std).to(weight.device)
    layers[0] = (weight * inv, bias - (weight * inv) @ torch.from_numpy(mean).to(weight.device))
    return [(w.T.contiguous(), b.contiguous()) for w, b in layers]


def _series_shape(names: tuple[str, ...]) -> tuple[int, int]:
    """(periods, features) of the flattened series that lead the feature columns (``NDVI@p03``)."""
    series = [n for n in names if "@p" in n]
    features = len({n.split("@p")[0] for n in series})
    if not series or len(series) % features:
        raise ValueError("the temporal network needs the composited series columns (FEATURE@pNN)")
    return len(series) // features, features


class TemporalCNN(nn.Module):
    """A small 1D convolutional network over the composited series (features as channels, periods as
    time): two convolutions with batch normalization, mean and max pooling over time, joined with the
    per-feature temporal summaries, then a linear classifier.

    Args:
        periods: composite periods of the series.
        features: features per period.
        n_summaries: summary columns after the series.
        n_out: classes.
    """

    def __init__(self, periods: int, features: int, n_summaries: int, n_out: int) -> None:
        super().__init__()
        self.periods, self.features = periods, features
        # 1D convolutions written as (1, 5) 2D ones on channels-last data: oneDNN's fastest CPU path
        # (twice Conv1d's speed on 2 cores), the same arithmetic
        self.conv = nn.Sequential(
            nn.Conv2d(features, 64, (1, 5), padding=(0, 2)), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, (1, 5), padding=(0, 2)), nn.BatchNorm2d(64), nn.ReLU(),
        ).to(memory_format=torch.channels_last)  # fmt: skip
        self.summaries = nn.Sequential(nn.Linear(n_summaries, 64), nn.BatchNorm1d(64), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(3 * 64, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, columns) standardized features -> (batch, classes) logits."""
        n_series = self.periods * self.features
        seq = x[:, :n_series].reshape(-1, 1, self.periods, self.features).permute(0, 3, 1, 2)
        h = self.conv(seq.contiguous(memory_format=torch.channels_last))[:, :, 0, :]
        joined = torch.cat([h.mean(dim=2), h.amax(dim=2), self.summaries(x[:, n_series:])], dim=1)
        return self.head(joined)


def _network(kind: str, names: tuple[str, ...], n_out: int) -> nn.Module:
    """An untrained network of ``kind`` (``mlp`` or ``tcnn``) for the columns ``names``."""
    if kind == "mlp":
        return _mlp(len(names), n_out)
    periods, features = _series_shape(names)
    return TemporalCNN(periods, features, len(names) - periods * features, n_out)


SCORING_COST = ("mlp", "lightgbm", "tcnn", "ensemble")
"""The model kinds, cheapest to score first: the dense network is three matrix products per parcel;
LightGBM walks 28 trees per boosting round; the temporal network's convolutions run at every period; an
ensemble costs the sum of its members (`kz bench croptype` measures each)."""

Matrix = npt.NDArray[np.float32]
Classes = npt.NDArray[np.int64]


def _train_lightgbm(
    xb: Matrix,
    yb: Classes,
    xv: Matrix,
    yv: Classes,
    n_classes: int,
    cfg: CropTypeConfig,
    names: tuple[str, ...],
) -> lgb.Booster:
    params = {
        "objective": "multiclass",
        "num_class": n_classes,
        "learning_rate": cfg.lgb_learning_rate,
        "metric": "multi_error",  # early stopping on the error rate: the selection cares about classes
        "max_bin": 63,
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "feature_fraction": 0.5,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": cfg.seed,
        "deterministic": True,
        "num_threads": cfg.threads,
        "verbose": -1,
    }
    train_set = lgb.Dataset(xb, yb, feature_name=[_safe(n) for n in names], free_raw_data=False)
    valid = lgb.Dataset(xv, yv, reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=cfg.lgb_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )


def _safe(name: str) -> str:
    """A LightGBM-safe feature name (no JSON special characters)."""
    return name.replace("@", "_at_").replace(":", "_")


def _time_shift(
    z: torch.Tensor, shift: torch.Tensor, periods: int, features: int, step: torch.Tensor
) -> torch.Tensor:
    """Standardized feature rows with their series moved ``shift`` periods later (earlier when negative;
    the edge periods repeated) and ``step * shift`` added to every column (the standardized move of the
    argmax and argmin positions; 0 elsewhere)."""
    n_series = periods * features
    source = (torch.arange(periods, device=z.device)[None, :] - shift[:, None]).clamp(0, periods - 1)
    series = z[:, :n_series].reshape(len(z), periods, features)
    moved = torch.gather(series, 1, source[:, :, None].expand(-1, -1, features)).reshape(len(z), n_series)
    return torch.cat([moved, z[:, n_series:]], dim=1) + shift[:, None].to(z.dtype) * step


def _train_net(
    net: nn.Module,
    xb: Matrix,
    yb: Classes,
    xv: Matrix,
    yv: Classes,
    names: tuple[str, ...],
    cfg: CropTypeConfig,
) -> tuple[nn.Module, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Train a network on standardized features (their series moved in time when ``cfg.shift_periods``);
    early stopping on validation macro-F1."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    mean, std = _column_moments(xb)
    std = np.where(std > 1e-6, std, 1).astype(np.float32)
    tx, ty = _standardize(xb, mean, std, device), torch.from_numpy(yb).to(device)
    shifted = cfg.shift_periods > 0 and any("@p" in n for n in names)  # columns without a series: none
    if shifted:
        periods, features = _series_shape(names)
        moves = np.array([n.endswith((":argmax", ":argmin")) for n in names]) / (max(1, periods - 1) * std)
        step = torch.from_numpy(moves.astype(np.float32)).to(device)
    vx = _standardize(xv, mean, std, device)
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, stale = -1.0, None, 0
    for _ in range(cfg.mlp_epochs):
        net.train()
        for batch in torch.randperm(len(tx), generator=gen).to(device).split(128):
            if len(batch) < 2:  # batch normalization needs two samples
                continue
            opt.zero_grad()
            zb = tx[batch]
            if shifted:
                shift = torch.randint(-cfg.shift_periods, cfg.shift_periods + 1, (len(batch),), generator=gen)
                zb = _time_shift(zb, shift.to(device), periods, features, step)
            nn.functional.cross_entropy(net(zb), ty[batch], label_smoothing=0.05).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            pred = net(vx).argmax(dim=1).cpu().numpy()
        f1 = float(f1_score(yv, pred, average="macro", zero_division=0))
        if f1 > best:
            best, best_state, stale = f1, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= cfg.mlp_patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    return net, mean, std


def train_crop_model(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    train_idx: npt.NDArray[np.int64],
    val_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
    feature_names: tuple[str, ...],
    cfg: CropTypeConfig = CropTypeConfig(),
    data: dict[str, Any] | None = None,
) -> tuple[CropTypeModel, dict[str, CropTypeModel]]:
    """Train every model of ``cfg.models`` on ``train_idx``, select on ``val_idx``, report on ``test_idx``.

    Args:
        x: (samples, features) feature matrix (NaN: missing).
        y: crop class id per sample.
        train_idx: training samples (balanced before training).
        val_idx: validation samples (early stopping and selection).
        test_idx: test samples (the card's final scores; never seen in training or selection).
        feature_names: column names.
        cfg: training settings.
        data: a description of the data for the card.

    Returns:
        The selected model (its card holds every candidate's validation scores and its test scores) and all
        trained models by kind.
    """
    classes = tuple(int(c) for c in np.unique(y[train_idx]))
    if len(classes) < 2 or len(val_idx) == 0 or len(test_idx) == 0:
        raise ValueError(
            f"too few labelled parcels to train and score a crop type model: {len(classes)} class(es) in "
            f"training, {len(val_idx)} validation and {len(test_idx)} test samples"
        )
    index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(cfg.seed)
    xb, yb = balance(x[train_idx], y[train_idx], cfg.cap, cfg.min_count, cfg.noise, rng)
    yb_i = np.array([index[c] for c in yb], np.int64)
    val_known = np.array([c in index for c in y[val_idx]])
    xv = np.asarray(x[val_idx][val_known], np.float32)
    yv_i = np.array([index[c] for c in y[val_idx][val_known]], np.int64)
    models: dict[str, CropTypeModel] = {}
    seconds: dict[str, float] = {}
    for kind in cfg.models:
        t0 = time.perf_counter()
        if kind == "lightgbm":
            booster = _train_lightgbm(xb, yb_i, xv, yv_i, len(classes), cfg, feature_names)
            models[kind] = CropTypeModel(kind, classes, feature_names, booster=booster)
        elif kind in ("mlp", "tcnn"):
            untrained = _network(kind, feature_names, len(classes))
            net, mean, std = _train_net(untrained, xb, yb_i, xv, yv_i, feature_names, cfg)
            models[kind] = CropTypeModel(kind, classes, feature_names, net=net, mean=mean, std=std)
        else:
            raise ValueError(f"unknown model kind {kind!r} (lightgbm, mlp, tcnn)")
        seconds[kind] = time.perf_counter() - t0
    val = {k: scores(y[val_idx], m.predict(x[val_idx]), classes) for k, m in models.items()}
    top = max(v["macro_f1"] for v in val.values())
    members = tuple(m for k, m in models.items() if val[k]["macro_f1"] >= top - cfg.ensemble_margin)
    if cfg.ensemble and len(members) > 1:
        models["ensemble"] = CropTypeModel("ensemble", classes, feature_names, members=members)
        val["ensemble"] = scores(y[val_idx], models["ensemble"].predict(x[val_idx]), classes)
    best_f1 = max(v["macro_f1"] for v in val.values())
    chosen = next(
        k for k in SCORING_COST if k in models and val[k]["macro_f1"] >= best_f1 - cfg.select_tolerance
    )
    best = models[chosen]
    test = scores(y[test_idx], best.predict(x[test_idx]), classes)
    best.card = {
        "selected": chosen,
        "classes": list(classes),
        "features": list(feature_names),
        "validation": {
            k: {"macro_f1": v["macro_f1"], "weighted_f1": v["weighted_f1"]} for k, v in val.items()
        },
        "test": test,
        "training_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "samples": {
            "train": len(train_idx),
            "train_balanced": len(yb),
            "validation": len(val_idx),
            "test": len(test_idx),
        },
        "config": asdict(cfg),
        "data": data or {},
    }
    trees = next((m.booster for m in (best, *best.members) if m.booster is not None), None)
    if trees is not None:
        gain = trees.feature_importance("gain")
        top = np.argsort(gain)[::-1][:30]
        best.card["feature_importance"] = {feature_names[i]: float(gain[i]) for i in top}
    return best, models


def out_of_fold_proba(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.integer],
    samples: npt.NDArray[np.int64],
    feature_names: tuple[str, ...],
    kind: str,
    cfg: CropTypeConfig = CropTypeConfig(),
    folds: int = 5,
) -> tuple[tuple[int, ...], npt.NDArray[np.float32]]:
    """Class probabilities of ``samples`` from models that never saw them: the samples are split in
    ``folds``; each fold is scored by a ``kind`` model trained on the other folds (15% of them held out
    for early stopping). A parcel's own label, right or wrong, cannot vouch for itself here: this is
    what a declaration should be checked against.

    Returns:
        The classes of ``y[samples]`` and (samples, classes) probabilities in that order (0 for a class a
        fold's model never saw).

    Raises:
        ValueError: fewer than two folds, or a fold too small to train on.
    """
    if folds < 2:
        raise ValueError(f"out-of-fold scoring needs at least 2 folds, got {folds}")
    classes = tuple(int(c) for c in np.unique(y[samples]))
    column = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(cfg.seed)
    fold = rng.permutation(len(samples)) % folds
    out = np.zeros((len(samples), len(classes)), np.float32)
    one = cfg if kind == "ensemble" else replace(cfg, models=(kind,))  # an ensemble needs its members
    for k in range(folds):
        rows, rest = np.flatnonzero(fold == k), samples[fold != k]
        early = rng.random(len(rest)) < 0.15
        if not np.isin(y[rest[early]], y[rest[~early]]).any():
            raise ValueError(f"too few labelled parcels for {folds}-fold out-of-fold scoring")
        chosen, trained = train_crop_model(x, y, rest[~early], rest[early], samples[rows], feature_names, one)
        model = trained.get(kind, chosen)  # a fold whose models are too far apart to average: its best
        columns = np.array([column[c] for c in model.classes], np.int64)
        out[np.ix_(rows, columns)] = model.predict_proba(x[samples[rows]])
    return classes, out


def save_crop_model(folder: Path, model: CropTypeModel) -> None:
    """Write the model (LightGBM text or safetensors; an ensemble's members each in a folder
    ``member-<kind>``) and its card ``model.json`` atomically."""
    with atomic_dir(folder) as tmp:
        _write_model(tmp, model)


def _write_model(folder: Path, model: CropTypeModel) -> None:
    meta = {"kind": model.kind, "classes": list(model.classes), "features": list(model.feature_names)}
    if model.members:
        meta["members"] = [m.kind for m in model.members]
        for member in model.members:
            (folder / f"member-{member.kind}").mkdir()
            _write_model(folder / f"member-{member.kind}", member)
    elif model.booster is not None:
        model.booster.save_model(str(folder / "lightgbm.txt"))
    elif model.net is None or model.mean is None or model.std is None:
        raise ValueError("a crop type model needs a booster or a network with its normalization")
    else:
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
        tensors["norm.mean"] = torch.from_numpy(model.mean)
        tensors["norm.std"] = torch.from_numpy(model.std)
        save_file(tensors, str(folder / "net.safetensors"))
    (folder / "model.json").write_text(json.dumps({**meta, "card": model.card}, indent=1))


def load_crop_model(folder: Path, device: str = "auto") -> CropTypeModel:
    """Read a model written by :func:`save_crop_model` (no pickle anywhere); a network goes to ``device``
    (``auto``: CUDA when torch sees a GPU)."""
    meta = json.loads((folder / "model.json").read_text())
    classes, names = tuple(meta["classes"]), tuple(meta["features"])
    if meta["kind"] == "ensemble":
        members = tuple(load_crop_model(folder / f"member-{kind}", device) for kind in meta["members"])
        return CropTypeModel("ensemble", classes, names, members=members, card=meta["card"])
    if meta["kind"] == "lightgbm":
        booster = lgb.Booster(model_file=str(folder / "lightgbm.txt"))
        return CropTypeModel("lightgbm", classes, names, booster=booster, card=meta["card"])
    tensors = load_file(str(folder / "net.safetensors"))
    net = _network(meta["kind"], names, len(classes))
    state = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
    # a temporal network saved before its convolutions were 2D ones of height 1: the same weights
    net.load_state_dict({k: v[:, :, None, :] if v.dim() == 3 else v for k, v in state.items()})
    net.to(resolve_device(device))
    mean, std = tensors["norm.mean"].numpy(), tensors["norm.std"].numpy()
    return CropTypeModel(meta["kind"], classes, names, net=net, mean=mean, std=std, card=meta["card"])


def score_tensor(
    model: CropTypeModel, ds: xr.Dataset
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.float32]]:
    """Class probabilities of every parcel of a season tensor, from the features the model was trained on
    (its card's composite period, feature window, clear-date threshold and anomalies; a card from before
    the last two were options means neither).

    Returns:
        The parcel ids and their probabilities, (parcels, classes) in ``model.classes`` order.

    Raises:
        ValueError: the tensor's feature columns differ from the model's (retrain the model).
    """
    start, end = model.card["feature_period"]
    features = parcel_features(
        ds,
        int(model.card["period_days"]),
        start=start,
        end=end,
        min_clear_fraction=float(model.card.get("min_clear_fraction", 0.0)),
        anomalies=bool(model.card.get("anomalies", False)),
    )
    if features.names != model.feature_names:  # same period and features give the same columns
        raise ValueError("the tensor's feature columns do not match the model's; retrain the crop type model")
    return features.parcel_ids, model.predict_proba(features.x)


def disagreements(
    proba: npt.NDArray[np.floating],
    classes: tuple[int, ...],
    declared: npt.NDArray[np.integer],
    min_probability: float = 0.8,
    max_declared_probability: float = 0.1,
) -> npt.NDArray[np.bool_]:
    """Where the prediction contradicts the declaration with high confidence: the predicted class differs
    from the declared one, its probability is at least ``min_probability`` and the declared class's at most
    ``max_declared_probability`` (a declared class the model does not know counts as probability 0)."""
    index = {c: i for i, c in enumerate(classes)}
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    p_pred = proba.max(axis=1)
    p_decl = np.array(
        [proba[i, index[int(d)]] if int(d) in index else 0.0 for i, d in enumerate(declared)], np.float32
    )
    return (pred != declared) & (p_pred >= min_probability) & (p_decl <= max_declared_probability)
