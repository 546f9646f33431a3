"""The dataset splitter: train / validation / test (and k folds, and bags) on sample indices.

KappaZeta's "data splitting challenge": labels come from sources of very different reliability (an
inspector's field report, a drone observation, a corrected field book, a farmer's declaration), classes
range from tens of thousands of parcels to a few dozen, and neighbouring parcels leak into each other's
scores. The splitter solves it generically: it sees only sample indices, their class, and optional
per-sample facts (filters, spatial groups), so it serves any data type.

Rules, for a list of :class:`SplitSpec` in fill order (e.g. test, validation, train):

* **quotas per class**: each class's sample count is apportioned to the splits by their ratios (largest
  remainder, so each quota is within 1 of ``n_class x ratio``); a class with fewer than
  ``small_class_threshold`` samples uses ``small_class_ratios`` instead (e.g. 40/30/30 under 100) when given;
* **every class in every split**: a class with at least as many sampling units as splits gets at least one
  in each split (a split with a zero quota takes one from the largest quota);
* **filled in order**: each split takes, from the class's shuffled units not yet taken, those that pass its
  filter, until its quota is reached; what it does not take (not needed, or filtered out) flows on to the
  next split; the last split takes everything that is left and passes its filter;
* **capping**: a split's ``cap`` limits the samples it takes per class (an over-represented class's
  surplus is left unused rather than swamping training);
* **reserved for test**: listed high-confidence samples go to the split named ``test`` first, whatever its
  quota;
* **spatial blocking**: with ``groups`` (e.g. a grid-cell id per sample) a group is one unit: all its
  samples go to the same split, a group passes a split's filter only when all its samples do, and its
  class for stratification is its most frequent class;
* **reproducible**: the same seed gives the same split.

:func:`kfold` and :func:`bags` apply the same rules to cross-validation folds and bootstrap-free bags.
:meth:`SplitResult.report` gives the class counts per split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["UNUSED", "SplitResult", "SplitSpec", "apportion", "bags", "kfold", "split"]

UNUSED = -1
"""Assignment of a sample no split took (filtered out of the last split, or over a cap)."""


@dataclass(frozen=True)
class SplitSpec:
    """One split.

    Attributes:
        name: split name (``test`` receives the reserved samples).
        ratio: share of each class (the ratios of all splits are normalized to sum to 1).
        eligible: which samples this split may take (bool per sample); None: all.
        cap: at most this many samples per class; None: no cap.
        small_ratio: the ratio for classes under the small-class threshold; None: ``ratio``.
    """

    name: str
    ratio: float
    eligible: npt.NDArray[np.bool_] | None = None
    cap: int | None = None
    small_ratio: float | None = None


@dataclass(frozen=True)
class SplitResult:
    """Which split each sample went to.

    Attributes:
        names: split names, in fill order.
        assignment: per sample, the index of its split in ``names`` (:data:`UNUSED` for none).
        labels: per sample, its class.
    """

    names: tuple[str, ...]
    assignment: npt.NDArray[np.int64]
    labels: npt.NDArray[np.generic]

    def indices(self, name: str) -> npt.NDArray[np.int64]:
        """Sample indices of split ``name``, ascending."""
        return np.flatnonzero(self.assignment == self.names.index(name))

    def unused(self) -> npt.NDArray[np.int64]:
        """Sample indices no split took."""
        return np.flatnonzero(self.assignment == UNUSED)

    def report(self) -> pd.DataFrame:
        """Samples per class (rows) and split (columns, plus ``unused`` and ``total``)."""
        cols = [*self.names, "unused"]
        names = np.array(cols, dtype=object)[
            np.where(self.assignment == UNUSED, len(self.names), self.assignment)
        ]
        table = pd.crosstab(pd.Series(self.labels, name="class"), pd.Series(names, name="split"))
        table = table.reindex(columns=cols, fill_value=0)
        table["total"] = table.sum(axis=1)
        return table


def apportion(n: int, ratios: Sequence[float]) -> npt.NDArray[np.int64]:
    """``n`` split by ``ratios`` (normalized) with the largest-remainder method: each part is within 1 of
    its exact share and the parts sum to ``n``."""
    r = np.asarray(ratios, np.float64)
    if (r < 0).any() or r.sum() <= 0:
        raise ValueError(f"ratios must be non-negative and not all 0, got {list(ratios)}")
    exact = n * r / r.sum()
    parts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[: n - parts.sum()]] += 1
    return parts


def _units(
    labels: npt.NDArray[np.generic], groups: npt.NDArray[np.generic] | None
) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.generic]]:
    """Sampling units (sample indices of each) and each unit's class (its most frequent, ties: the
    smallest)."""
    if groups is None:
        return [np.array([i]) for i in range(len(labels))], labels.copy()
    frame = pd.DataFrame({"g": groups, "y": labels, "i": np.arange(len(labels))})
    units, classes = [], []
    for _, part in frame.groupby("g", sort=True):
        units.append(part["i"].to_numpy(np.int64))
        counts = part["y"].value_counts()
        classes.append(min(counts.index[counts == counts.max()]))
    return units, np.asarray(classes, dtype=labels.dtype)


def split(
    labels: Sequence[object] | npt.NDArray[np.generic],
    specs: Sequence[SplitSpec],
    *,
    seed: int = 0,
    small_class_threshold: int = 0,
    reserved_test: Sequence[int] = (),
    groups: Sequence[object] | npt.NDArray[np.generic] | None = None,
) -> SplitResult:
    """Split samples by the module's rules.

    Args:
        labels: the class of each sample.
        specs: the splits, in fill order.
        seed: random seed (the same seed, the same split).
        small_class_threshold: classes with fewer samples use each spec's ``small_ratio``.
        reserved_test: sample indices that go to the split named ``test`` first.
        groups: a spatial group per sample (e.g. a grid cell); a group never spans two splits.

    Returns:
        The assignment of every sample.
    """
    y = np.asarray(labels)
    n = len(y)
    names = tuple(s.name for s in specs)
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"split names must be unique and at least one, got {names}")
    for s in specs:
        if s.eligible is not None and len(s.eligible) != n:
            raise ValueError(f"split {s.name!r}: eligible has {len(s.eligible)} entries for {n} samples")
    reserved = np.zeros(n, bool)
    reserved[np.asarray(reserved_test, np.int64)] = True
    if reserved.any() and "test" not in names:
        raise ValueError("reserved_test given but no split is named 'test'")
    g = None if groups is None else np.asarray(groups)
    if g is not None and len(g) != n:
        raise ValueError(f"groups has {len(g)} entries for {n} samples")
    units, unit_class = _units(y, g)
    eligible = [
        np.array([True] * len(units))
        if s.eligible is None
        else np.array([bool(np.all(s.eligible[u])) for u in units])
        for s in specs
    ]
    unit_reserved = np.array([bool(reserved[u].any()) for u in units])
    sizes = np.array([len(u) for u in units])
    rng = np.random.default_rng(seed)
    unit_split = np.full(len(units), UNUSED, np.int64)
    test = names.index("test") if "test" in names else None

    for c in sorted(set(unit_class.tolist()), key=str):
        members = rng.permutation(np.flatnonzero(unit_class == c))
        n_c = int(sizes[members].sum())
        small = n_c < small_class_threshold
        ratios = [s.small_ratio if small and s.small_ratio is not None else s.ratio for s in specs]
        quota = apportion(n_c, ratios)
        if len(members) >= len(
            specs
        ):  # every class in every split (a zero-ratio split only catches the rest)
            for empty in np.flatnonzero((quota == 0) & (np.asarray(ratios) > 0)):
                quota[int(np.argmax(quota))] -= 1
                quota[empty] += 1
        taken = np.zeros(len(specs), np.int64)
        if test is not None:
            for u in members[unit_reserved[members]]:
                unit_split[u] = test
                taken[test] += sizes[u]
        for k, spec in enumerate(specs):
            last = k == len(specs) - 1
            limit = spec.cap if spec.cap is not None else np.iinfo(np.int64).max
            for u in members:
                if unit_split[u] != UNUSED or not eligible[k][u]:
                    continue
                if (not last and taken[k] >= quota[k]) or taken[k] + sizes[u] > limit:
                    continue
                unit_split[u] = k
                taken[k] += sizes[u]

    assignment = np.full(n, UNUSED, np.int64)
    for u, members_u in enumerate(units):
        assignment[members_u] = unit_split[u]
    return SplitResult(names=names, assignment=assignment, labels=y)


def kfold(
    labels: Sequence[object] | npt.NDArray[np.generic],
    k: int,
    *,
    seed: int = 0,
    eligible: npt.NDArray[np.bool_] | None = None,
    groups: Sequence[object] | npt.NDArray[np.generic] | None = None,
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Stratified k-fold cross-validation on the splitter's rules.

    Each eligible sample (e.g. only inspected parcels) is in exactly one validation fold; samples not
    eligible for validation are always in training; groups stay whole.

    Returns:
        ``k`` pairs (train indices, validation indices).
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    specs = [SplitSpec(f"fold{i}", 1.0, eligible) for i in range(k)]
    specs.append(SplitSpec("always_train", 0.0))
    result = split(labels, specs, seed=seed, groups=groups)
    folds = []
    for i in range(k):
        val = result.indices(f"fold{i}")
        folds.append((np.flatnonzero((result.assignment != i) & (result.assignment != UNUSED)), val))
    return folds


def bags(
    labels: Sequence[object] | npt.NDArray[np.generic],
    n_bags: int,
    fraction: float,
    *,
    seed: int = 0,
    caps: Mapping[str, int] | None = None,
    groups: Sequence[object] | npt.NDArray[np.generic] | None = None,
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """Bagging on the splitter's rules: ``n_bags`` stratified subsamples of ``fraction`` of each class
    (without replacement; groups whole), each with its out-of-bag samples.

    Args:
        caps: optional ``{"bag": N}`` per-class cap of a bag.

    Returns:
        ``n_bags`` pairs (in-bag indices, out-of-bag indices).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    cap = (caps or {}).get("bag")
    out = []
    for b in range(n_bags):
        specs = [SplitSpec("bag", fraction, cap=cap), SplitSpec("oob", 1 - fraction)]
        result = split(labels, specs, seed=seed + b, groups=groups)
        out.append((result.indices("bag"), result.indices("oob")))
    return out
