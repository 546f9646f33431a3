"""The season's event models: each product's learned variant is trained from field labels where they allow
it and used only where it wins on validation; products that cannot learn fall back to their rules and say
why; everything saves and loads to identical outputs."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from kz_pipelines.models import mowing
from kz_pipelines.models.event_models import PRODUCTS, EventModels, FieldLabels, train_event_models
from kz_pipelines.models.events import SeasonSeries
from kz_pipelines.models.tillage import TILLAGE_FEATURES
from kz_pipelines_tests.test_mowing import synthetic


def _full(series: SeasonSeries) -> SeasonSeries:
    """The mowing series with every other feature the products read, unobserved (as a tensor has them)."""
    missing = [f for f in TILLAGE_FEATURES if f not in series.data]
    nan = np.full((len(series), len(series.days)), np.nan, np.float32)
    data = series.data | dict.fromkeys(missing, nan)
    counts = series.counts | dict.fromkeys(missing, np.zeros_like(nan))
    return SeasonSeries(series.parcel_ids, series.days, data, counts, series.crop_class, series.area_ha)


def _labels(series: SeasonSeries, truth: pd.DataFrame) -> FieldLabels:
    parcels = pd.DataFrame(
        {"parcel_id": series.parcel_ids, "tillage": None, "emergence_date": pd.NaT, "damaged": False}
    )
    damage = gpd.GeoDataFrame({"parcel_id": [], "start_date": []}, geometry=[], crs=4326)
    return FieldLabels(truth, parcels, damage)


@pytest.fixture(scope="module")
def trained() -> tuple[EventModels, SeasonSeries]:
    series, truth = synthetic(40, seed=5)
    series = _full(series)
    return train_event_models(series, _labels(series, truth), [], log=lambda _: None), series


def test_only_products_with_labels_learn_and_the_others_say_why(
    trained: tuple[EventModels, SeasonSeries],
) -> None:
    models, _ = trained
    assert set(models.choices) == set(PRODUCTS)
    mow = models.choices["mowing"]
    assert {"learned_f1", "baseline_f1", "selected"} <= set(mow.validation)
    assert mow.method == ("learned" if mow.validation["selected"] == 1.0 else "baseline")
    assert (models.mowing is not None) == (mow.method == "learned")
    for name in ("ploughing_harvest", "emergence", "tillage", "damage"):
        choice = models.choices[name]
        assert choice.method == "baseline"
        assert choice.validation == {}
        assert choice.note.startswith("learned variant not trained: ")
    assert (models.harvest_plough, models.emergence, models.tillage) == (None, None, None)


def test_learned_mowing_is_used_where_it_won(trained: tuple[EventModels, SeasonSeries]) -> None:
    models, _ = trained
    test, _ = synthetic(10, seed=6)
    events, status = models.mowing_events(_full(test))
    used = models.mowing.detect(_full(test)) if models.mowing else mowing.detect_mowing_rules(_full(test))
    assert len(events) == len(used) > 0
    assert list(events.columns) == ["parcel_id", "event", "date", "confidence"]
    assert set(status["status"]) == {"ok"}


def test_save_and_load_give_identical_products(
    trained: tuple[EventModels, SeasonSeries], tmp_path: Path
) -> None:
    models, _ = trained
    test = _full(synthetic(10, seed=7)[0])
    models.save(tmp_path / "events")
    loaded = EventModels.load(tmp_path / "events")
    assert loaded.card() == models.card()
    pd.testing.assert_frame_equal(loaded.mowing_events(test)[0], models.mowing_events(test)[0])
    pd.testing.assert_frame_equal(loaded.emergence_dates(test), models.emergence_dates(test))
    pd.testing.assert_frame_equal(loaded.tillage_practice(test), models.tillage_practice(test))


def test_without_labels_every_product_uses_its_rules() -> None:
    series = _full(synthetic(5, seed=1)[0])
    models = train_event_models(series, None, [])
    assert {c.method for c in models.choices.values()} == {"baseline"}
    assert {c.note for c in models.choices.values()} == {"no field labels configured"}
    events, _ = models.mowing_events(series)
    rules = mowing.detect_mowing_rules(series)
    assert len(events) == len(rules) > 0


def test_missing_label_table_is_named(tmp_path: Path) -> None:
    pd.DataFrame({"parcel_id": ["a"], "event": ["mowing"], "date": [pd.Timestamp("2024-06-01")]}).to_parquet(
        tmp_path / "field_events.parquet"
    )
    with pytest.raises(FileNotFoundError, match="field_parcels.parquet, field_damage.parquet"):
        FieldLabels.read(tmp_path)
