"""Labels: sources and confidence, the most trusted label per parcel, declarations and inspections."""

from __future__ import annotations

import pandas as pd
import pytest

from kz_pipelines.labels import (
    LABEL_SOURCES,
    best_labels,
    declared_labels,
    label_table,
    load_taxonomy,
    simulated_inspections,
)


def test_sources_are_ordered_by_trust() -> None:
    order = ["inspector_report", "drone_observation", "field_book", "declaration"]
    assert sorted(LABEL_SOURCES, key=LABEL_SOURCES.__getitem__, reverse=True) == order


def test_most_trusted_label_wins() -> None:
    declared = label_table(["a", "b", "c"], [1, 7, 24], "declaration")
    drone = label_table(["b"], [6], "drone_observation")
    inspected = label_table(["c"], [25], "inspector_report")
    best = best_labels(declared, drone, inspected)
    assert best["parcel_id"].tolist() == ["a", "b", "c"]
    assert best["crop_class"].tolist() == [1, 6, 25]
    assert best["source"].astype(str).tolist() == ["declaration", "drone_observation", "inspector_report"]
    assert best["confidence"].tolist() == pytest.approx([0.6, 0.9, 1.0])


def test_declared_labels_skip_unknown_codes() -> None:
    parcels = pd.DataFrame({"parcel_id": ["a", "b"], "crop_class": [3, 0]})
    labels = declared_labels(parcels)
    assert labels["parcel_id"].tolist() == ["a"]
    with pytest.raises(ValueError, match="unknown label source 'rumour'"):
        label_table(["a"], [1], "rumour")


def test_simulated_inspections_report_the_truth() -> None:
    truth = pd.DataFrame(
        {"parcel_id": [f"p{i}" for i in range(100)], "crop_class": [i % 28 + 1 for i in range(100)]}
    )
    reports = simulated_inspections(truth, 0.2, seed=4)
    assert len(reports) == 20
    merged = reports.merge(truth, on="parcel_id", suffixes=("", "_true"))
    assert (merged["crop_class"] == merged["crop_class_true"]).all()
    assert set(reports["source"].astype(str)) == {"inspector_report"}
    assert simulated_inspections(truth, 0.2, seed=4)["parcel_id"].tolist() == reports["parcel_id"].tolist()


def test_taxonomy_has_28_classes_and_unique_codes() -> None:
    tax = load_taxonomy()
    assert [c.id for c in tax.classes] == list(range(1, 29))
    for scheme in ("sim", "ewoc"):
        codes = [code for c in tax.classes for code in c.codes.get(scheme, ())]
        assert len(codes) == len(set(codes)), scheme
