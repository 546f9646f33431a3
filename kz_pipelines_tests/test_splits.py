"""The splitter's guarantees, as properties over hypothesis-drawn label sets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kz_pipelines.splits import UNUSED, SplitSpec, apportion, bags, kfold, split

RATIOS = (0.1, 0.2, 0.7)


def _specs() -> list[SplitSpec]:
    return [SplitSpec(name, r) for name, r in zip(("test", "validation", "train"), RATIOS, strict=True)]


# class sizes: a few large, a few small classes
class_sizes = st.lists(st.integers(1, 400), min_size=1, max_size=8)


def _labels(sizes: list[int], seed: int) -> np.ndarray:
    y = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(y)


@settings(max_examples=80, deadline=None)
@given(sizes=class_sizes, seed=st.integers(0, 1000))
def test_partition_ratios_presence_and_reproducibility(sizes: list[int], seed: int) -> None:
    y = _labels(sizes, seed)
    result = split(y, _specs(), seed=seed)
    # no sample in two splits, none lost (no filter, no cap)
    assert (result.assignment != UNUSED).all()
    parts = [result.indices(n) for n in result.names]
    assert sum(len(p) for p in parts) == len(y)
    assert len(np.unique(np.concatenate(parts))) == len(y)
    for c, n_c in enumerate(sizes):
        counts = [int((y[p] == c).sum()) for p in parts]
        if n_c >= 3:  # every class in every split
            assert min(counts) >= 1
        if n_c * min(RATIOS) >= 1:  # no split needed the minimum: ratios within rounding
            for count, r in zip(counts, RATIOS, strict=True):
                assert abs(count - n_c * r) < 1
    again = split(y, _specs(), seed=seed)
    np.testing.assert_array_equal(result.assignment, again.assignment)


@settings(max_examples=60, deadline=None)
@given(sizes=class_sizes, seed=st.integers(0, 1000), trusted=st.floats(0.0, 1.0))
def test_filters_leftovers_flow_to_the_next_split(sizes: list[int], seed: int, trusted: float) -> None:
    y = _labels(sizes, seed)
    inspected = np.random.default_rng(seed + 1).random(len(y)) < trusted
    specs = [
        SplitSpec("test", 0.1, eligible=inspected),
        SplitSpec("validation", 0.2, eligible=inspected),
        SplitSpec("train", 0.7),
    ]
    result = split(y, specs, seed=seed)
    # test and validation only hold inspected samples; everything else went on to train
    assert inspected[result.indices("test")].all()
    assert inspected[result.indices("validation")].all()
    assert (result.assignment != UNUSED).all()
    for c, n_c in enumerate(sizes):
        quota = _quotas(n_c)
        eligible_c = int((inspected & (y == c)).sum())
        in_test = int((y[result.indices("test")] == c).sum())
        in_val = int((y[result.indices("validation")] == c).sum())
        assert in_test == min(quota[0], eligible_c)  # test fills first, from the eligible
        assert in_val == min(quota[1], eligible_c - in_test)  # validation from what test left


def _quotas(n_c: int) -> list[int]:
    """The per-class quotas the rules give (apportioned; at least 1 each from 3 samples)."""
    q = apportion(n_c, RATIOS)
    if n_c >= 3:
        for empty in np.flatnonzero(q == 0):
            q[int(np.argmax(q))] -= 1
            q[empty] += 1
    return [int(v) for v in q]


@settings(max_examples=50, deadline=None)
@given(sizes=class_sizes, seed=st.integers(0, 1000), cap=st.integers(1, 100))
def test_cap_and_reserved_test(sizes: list[int], seed: int, cap: int) -> None:
    y = _labels(sizes, seed)
    reserved = np.random.default_rng(seed).choice(len(y), size=min(5, len(y)), replace=False)
    specs = [SplitSpec("test", 0.1), SplitSpec("validation", 0.2), SplitSpec("train", 0.7, cap=cap)]
    result = split(y, specs, seed=seed, reserved_test=reserved)
    assert set(reserved) <= set(result.indices("test"))
    train = result.indices("train")
    for c in range(len(sizes)):
        assert int((y[train] == c).sum()) <= cap
    report = result.report()
    assert int(report["unused"].sum()) == len(result.unused())
    assert (report["total"] == np.bincount(y, minlength=len(sizes))).all()


@settings(max_examples=50, deadline=None)
@given(sizes=class_sizes, seed=st.integers(0, 1000), n_groups=st.integers(1, 60))
def test_spatial_groups_never_span_two_splits(sizes: list[int], seed: int, n_groups: int) -> None:
    y = _labels(sizes, seed)
    cells = np.random.default_rng(seed).integers(0, n_groups, len(y))
    result = split(y, _specs(), seed=seed, groups=cells)
    for g in np.unique(cells):
        assert len(np.unique(result.assignment[cells == g])) == 1
    assert (result.assignment != UNUSED).all()


def test_small_classes_use_their_own_ratios() -> None:
    y = np.array([0] * 500 + [1] * 50)
    specs = [
        SplitSpec("test", 0.1, small_ratio=0.3),
        SplitSpec("validation", 0.2, small_ratio=0.3),
        SplitSpec("train", 0.7, small_ratio=0.4),
    ]
    report = split(y, specs, seed=3, small_class_threshold=100).report()
    assert report.loc[0, ["test", "validation", "train"]].tolist() == [50, 100, 350]
    assert report.loc[1, ["test", "validation", "train"]].tolist() == [15, 15, 20]


def test_different_seeds_differ() -> None:
    y = np.repeat(np.arange(3), 100)
    a = split(y, _specs(), seed=1).assignment
    b = split(y, _specs(), seed=2).assignment
    assert (a != b).any()


@settings(max_examples=40, deadline=None)
@given(sizes=class_sizes, seed=st.integers(0, 1000), k=st.integers(2, 6))
def test_kfold_each_eligible_sample_validated_once(sizes: list[int], seed: int, k: int) -> None:
    y = _labels(sizes, seed)
    inspected = np.random.default_rng(seed).random(len(y)) < 0.7
    folds = kfold(y, k, seed=seed, eligible=inspected)
    assert len(folds) == k
    seen = np.zeros(len(y), int)
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0
        assert len(train) + len(val) == len(y)
        assert inspected[val].all()
        seen[val] += 1
    np.testing.assert_array_equal(seen, inspected.astype(int))
    for c, n_c in enumerate(sizes):  # stratified: fold sizes per class differ by at most 1
        per_fold = [int((y[val] == c).sum()) for _, val in folds]
        if int((inspected & (y == c)).sum()) == n_c:
            assert max(per_fold) - min(per_fold) <= 1


def test_bags_are_stratified_subsamples() -> None:
    y = np.repeat(np.arange(4), [400, 100, 40, 10])
    out = bags(y, 5, 0.6, seed=9)
    assert len(out) == 5
    for bag, oob in out:
        assert len(np.intersect1d(bag, oob)) == 0
        assert len(bag) + len(oob) == len(y)
        assert np.bincount(y[bag]).tolist() == [240, 60, 24, 6]
    assert not np.array_equal(out[0][0], out[1][0])


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="unique"):
        split([0, 1], [SplitSpec("a", 1), SplitSpec("a", 1)])
    with pytest.raises(ValueError, match="no split is named 'test'"):
        split([0, 1], [SplitSpec("train", 1)], reserved_test=[0])
    with pytest.raises(ValueError, match="eligible has 1 entries for 2 samples"):
        split([0, 1], [SplitSpec("train", 1, eligible=np.array([True]))])
