"""The generated catalog: deterministic, big enough, and shaped like a real used-car market."""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter
from pathlib import Path

import pytest
from flask import Flask

from demo import catalog, create_app


def dump(path: Path) -> list[tuple[object, ...]]:
    with catalog.reading(path) as conn:
        cars = conn.execute("SELECT * FROM cars ORDER BY id").fetchall()
        features = conn.execute("SELECT * FROM car_features ORDER BY car_id, feature").fetchall()
    return [tuple(r) for r in cars] + [tuple(r) for r in features]


def test_seed_is_deterministic(tmp_path: Path, catalog_path: Path) -> None:
    again = tmp_path / "again.sqlite3"
    assert catalog.ensure_catalog(again) is True
    assert dump(again) == dump(catalog_path)
    other = tmp_path / "other.sqlite3"
    catalog.ensure_catalog(other, seed=catalog.DEFAULT_SEED + 1)
    assert dump(other) != dump(catalog_path)


def test_ensure_keeps_a_current_catalog_and_rebuilds_an_old_one(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    assert catalog.ensure_catalog(path, size=50) is True
    assert catalog.ensure_catalog(path, size=50) is False
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {catalog.CATALOG_VERSION + 1}")
    conn.close()
    assert catalog.catalog_version(path) == catalog.CATALOG_VERSION + 1
    assert catalog.ensure_catalog(path, size=50) is True
    assert catalog.catalog_version(path) == catalog.CATALOG_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["c.sqlite3"]  # no temporary file left


def test_a_broken_file_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    assert catalog.catalog_version(path) is None
    assert catalog.ensure_catalog(path, size=10) is True
    assert len(dump(path)) >= 10


def test_created_in_the_instance_folder_on_first_run(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app({"CATALOG_SIZE": 100}, instance_path=str(instance), environ={})
    assert Path(app.config["DATABASE"]) == instance / "catalog.sqlite3"
    assert (instance / "catalog.sqlite3").is_file()


def test_the_app_connection_is_read_only(catalog_path: Path) -> None:
    with catalog.reading(catalog_path) as conn, pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM cars")


@pytest.fixture(scope="module")
def cars() -> list[catalog.Car]:
    return catalog.generate()


def test_size_and_ids(cars: list[catalog.Car]) -> None:
    assert len(cars) >= 2000
    assert [c.id for c in cars] == list(range(1, len(cars) + 1))


def test_every_value_is_an_option(cars: list[catalog.Car]) -> None:
    for car in cars:
        assert car.body in catalog.BODIES and car.fuel in catalog.FUELS
        assert car.transmission in catalog.TRANSMISSIONS and car.drivetrain in catalog.DRIVETRAINS
        assert car.color in catalog.COLORS and set(car.features) <= set(catalog.FEATURES)
        assert catalog.OLDEST_YEAR <= car.year <= catalog.CURRENT_YEAR
        assert car.price >= 1000 and car.mileage > 0
    # A catalog worth searching: every option of every enum occurs.
    for values, options in [
        ({c.body for c in cars}, catalog.BODIES),
        ({c.fuel for c in cars}, catalog.FUELS),
        ({c.drivetrain for c in cars}, catalog.DRIVETRAINS),
        ({f for c in cars for f in c.features}, catalog.FEATURES),
    ]:
        assert values == set(options)


def test_make_model_body_mapping_is_real(cars: list[catalog.Car]) -> None:
    models = {(m.make, m.name): m for m in catalog.MODELS}
    assert len({m.name for m in catalog.MODELS}) == len(catalog.MODELS)  # model names are unique
    for car in cars:
        model = models[(car.make, car.model)]
        assert car.body in model.bodies
        assert model.years[0] <= car.year <= model.years[1]
        assert car.drivetrain in model.drivetrains
    pairs = {(c.make, c.model, c.body) for c in cars}
    assert ("Ford", "F-150", "pickup") in pairs and ("Honda", "Odyssey", "minivan") in pairs
    assert not any(make == "Tesla" and fuel != "electric" for make, fuel in {(c.make, c.fuel) for c in cars})


def test_price_falls_with_age_and_mileage(cars: list[catalog.Car]) -> None:
    ages = [catalog.CURRENT_YEAR - c.year for c in cars]
    prices = [c.price for c in cars]
    assert statistics.correlation(ages, prices) < -0.5
    assert statistics.correlation([c.mileage for c in cars], prices) < -0.5
    # Mileage matters on its own too: among cars of one age, more miles means a lower price.
    for age in (3, 6):
        same = [c for c in cars if catalog.CURRENT_YEAR - c.year == age]
        assert statistics.correlation([c.mileage for c in same], [c.price for c in same]) < -0.2
    # Mileage grows with age.
    assert statistics.correlation(ages, [c.mileage for c in cars]) > 0.6


def share(cars: list[catalog.Car], body: str, test: str) -> float:
    group = [c for c in cars if c.body == body]
    return sum(c.drivetrain == test for c in group) / len(group)


def test_pickups_are_4wd_more_often_than_sedans(cars: list[catalog.Car]) -> None:
    assert share(cars, "pickup", "4wd") > 0.5
    assert share(cars, "sedan", "4wd") < 0.05
    assert share(cars, "pickup", "4wd") > 10 * share(cars, "sedan", "4wd") + 0.3


def test_seats_follow_the_body(cars: list[catalog.Car]) -> None:
    for car in cars:
        if car.body == "minivan" or "third_row" in car.features:
            assert car.seats >= 7
        elif car.body in ("coupe", "convertible"):
            assert car.seats <= 4
        elif car.body in ("sedan", "hatchback", "wagon"):
            assert car.seats == 5
    assert all("third_row" in c.features for c in cars if c.body == "minivan")


def test_features_follow_price_and_year(cars: list[catalog.Car]) -> None:
    def rate(group: list[catalog.Car], feature: str) -> float:
        return sum(feature in c.features for c in group) / len(group)

    ranked = sorted(cars, key=lambda c: c.price)
    cheap, dear = ranked[: len(ranked) // 3], ranked[-len(ranked) // 3 :]
    for feature in ("leather", "navigation", "sunroof", "heated_seats", "apple_carplay"):
        assert rate(dear, feature) > rate(cheap, feature) + 0.1, feature
    # Backup cameras became mandatory in the US for 2018 models; CarPlay arrived in 2016.
    assert rate([c for c in cars if c.year >= 2018], "backup_camera") == 1.0
    assert rate([c for c in cars if c.year < 2012], "backup_camera") < 0.5
    assert rate([c for c in cars if c.year < 2016], "apple_carplay") == 0.0
    assert rate([c for c in cars if c.body == "pickup"], "tow_package") > 3 * rate(
        [c for c in cars if c.body == "sedan"], "tow_package"
    )


def test_distributions_look_like_a_used_car_lot(cars: list[catalog.Car]) -> None:
    colors = Counter(c.color for c in cars)
    assert {name for name, _ in colors.most_common(4)} == {"white", "black", "gray", "silver"}
    transmissions = Counter(c.transmission for c in cars)
    assert 0.01 < transmissions["manual"] / len(cars) < 0.1
    assert 8_000 < statistics.median(c.price for c in cars) < 30_000
    assert 40_000 < statistics.median(c.mileage for c in cars) < 110_000


def test_app_fixture_uses_the_shared_catalog(app: Flask, catalog_path: Path) -> None:
    assert app.config["DATABASE"] == str(catalog_path)


def test_default_instance_folder_is_the_gitignored_one(catalog_path: Path) -> None:
    app = create_app({"DATABASE": str(catalog_path)}, environ={})
    assert Path(app.instance_path) == Path(__file__).resolve().parents[1] / "instance"
