"""The used-car catalog: a SQLite file generated from a seeded RNG, and the one query over it.

:func:`ensure_catalog` builds the file on first run (atomically, so a crash never leaves half a
catalog) and rebuilds it when :data:`CATALOG_VERSION` changes. The same seed always gives the
same rows, so tests and screenshots are stable.

The generator follows how used cars are priced: a model's price new, less depreciation per year
of age and per mile driven, with a trim level that raises both the price and the equipment.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path

#: Bump when the generator or the table layout changes: existing files are then rebuilt.
CATALOG_VERSION = 1
DEFAULT_SEED = 20240601
DEFAULT_SIZE = 2400
#: The catalog's "today". Fixed, so that the same seed gives the same catalog in any year.
CURRENT_YEAR = 2025
OLDEST_YEAR = 2005

BODIES = ("sedan", "suv", "hatchback", "coupe", "convertible", "pickup", "minivan", "wagon")
FUELS = ("gasoline", "diesel", "hybrid", "electric")
TRANSMISSIONS = ("automatic", "manual")
DRIVETRAINS = ("fwd", "rwd", "awd", "4wd")
FEATURES = (
    "sunroof",
    "leather",
    "navigation",
    "backup_camera",
    "apple_carplay",
    "heated_seats",
    "tow_package",
    "third_row",
)
#: US colour shares of used cars, roughly: greyscale dominates.
COLORS: dict[str, float] = {
    "white": 24,
    "black": 20,
    "gray": 17,
    "silver": 13,
    "blue": 9,
    "red": 9,
    "green": 2,
    "brown": 2,
    "beige": 2,
    "orange": 1,
    "yellow": 1,
}
TRIMS = ("Base", "Premium", "Limited")
LUXURY_MAKES = frozenset({"BMW", "Mercedes-Benz", "Audi", "Lexus", "Volvo", "Tesla"})


@dataclass(frozen=True)
class Model:
    """One model line: what it is, what it cost new, and which variants were built."""

    make: str
    name: str
    bodies: Mapping[str, float]
    msrp: int
    years: tuple[int, int] = (OLDEST_YEAR, CURRENT_YEAR)
    drivetrains: Mapping[str, float] = field(default_factory=lambda: {"fwd": 1.0})
    fuels: Mapping[str, float] = field(default_factory=lambda: {"gasoline": 1.0})
    manual: float = 0.02
    third_row: float = 0.0
    popularity: float = 1.0


def _m(
    make: str,
    name: str,
    body: str | Mapping[str, float],
    msrp: int,
    *,
    years: tuple[int, int] = (OLDEST_YEAR, CURRENT_YEAR),
    drive: str | Mapping[str, float] = "fwd",
    fuel: str | Mapping[str, float] = "gasoline",
    manual: float = 0.02,
    third_row: float = 0.0,
    pop: float = 1.0,
) -> Model:
    return Model(
        make=make,
        name=name,
        bodies={body: 1.0} if isinstance(body, str) else body,
        msrp=msrp,
        years=years,
        drivetrains={drive: 1.0} if isinstance(drive, str) else drive,
        fuels={fuel: 1.0} if isinstance(fuel, str) else fuel,
        manual=manual,
        third_row=third_row,
        popularity=pop,
    )


_PICKUP = {"4wd": 0.65, "rwd": 0.35}
_FWD_AWD = {"fwd": 0.6, "awd": 0.4}
_RWD_AWD = {"rwd": 0.5, "awd": 0.5}
_EV = "electric"

#: Real make -> model -> body combinations, with approximate prices new in dollars.
MODELS: tuple[Model, ...] = (
    _m("Toyota", "Camry", "sedan", 28000, fuel={"gasoline": 0.8, "hybrid": 0.2}, pop=3),
    _m("Toyota", "Corolla", {"sedan": 0.85, "hatchback": 0.15}, 22000, fuel={"gasoline": 0.9, "hybrid": 0.1}, pop=3),
    _m("Toyota", "RAV4", "suv", 30000, drive=_FWD_AWD, fuel={"gasoline": 0.75, "hybrid": 0.25}, pop=3),
    _m("Toyota", "Highlander", "suv", 40000, drive=_FWD_AWD, fuel={"gasoline": 0.8, "hybrid": 0.2}, third_row=1),
    _m("Toyota", "4Runner", "suv", 41000, drive={"4wd": 0.8, "rwd": 0.2}, third_row=0.15),
    _m("Toyota", "Tacoma", "pickup", 33000, drive=_PICKUP, manual=0.12, pop=2),
    _m("Toyota", "Tundra", "pickup", 45000, drive=_PICKUP),
    _m("Toyota", "Sienna", "minivan", 38000, drive={"fwd": 0.7, "awd": 0.3}, fuel={"gasoline": 0.7, "hybrid": 0.3}),
    _m("Toyota", "Prius", "hatchback", 27000, fuel="hybrid", manual=0, pop=1.5),
    _m("Honda", "Civic", {"sedan": 0.7, "hatchback": 0.2, "coupe": 0.1}, 24000, manual=0.1, pop=3),
    _m("Honda", "Accord", "sedan", 28000, fuel={"gasoline": 0.85, "hybrid": 0.15}, manual=0.03, pop=2.5),
    _m("Honda", "CR-V", "suv", 30000, drive=_FWD_AWD, fuel={"gasoline": 0.85, "hybrid": 0.15}, pop=3),
    _m("Honda", "Pilot", "suv", 39000, drive=_FWD_AWD, third_row=1),
    _m("Honda", "Odyssey", "minivan", 38000),
    _m("Honda", "Fit", "hatchback", 17000, years=(2007, 2020), manual=0.15),
    _m("Honda", "Ridgeline", "pickup", 38000, years=(2006, 2025), drive={"awd": 0.8, "fwd": 0.2}),
    _m("Ford", "F-150", "pickup", 42000, drive=_PICKUP, fuel={"gasoline": 0.93, "diesel": 0.04, "hybrid": 0.03}, pop=4),
    _m("Ford", "Ranger", "pickup", 30000, drive=_PICKUP, manual=0.08),
    _m("Ford", "Escape", "suv", 28000, drive=_FWD_AWD, fuel={"gasoline": 0.85, "hybrid": 0.15}, pop=2),
    _m("Ford", "Explorer", "suv", 38000, drive={"fwd": 0.3, "awd": 0.4, "4wd": 0.3}, third_row=1, pop=2),
    _m("Ford", "Mustang", {"coupe": 0.75, "convertible": 0.25}, 33000, drive="rwd", manual=0.3),
    _m("Ford", "Fusion", "sedan", 24000, years=(2006, 2020), fuel={"gasoline": 0.85, "hybrid": 0.15}),
    _m("Ford", "Focus", {"hatchback": 0.5, "sedan": 0.5}, 19000, years=(2005, 2018), manual=0.12),
    _m("Ford", "Bronco", "suv", 42000, years=(2021, 2025), drive="4wd", manual=0.15),
    _m("Ford", "Mustang Mach-E", "suv", 46000, years=(2021, 2025), drive={"rwd": 0.4, "awd": 0.6}, fuel=_EV, manual=0),
    _m("Chevrolet", "Silverado", "pickup", 43000, drive=_PICKUP, fuel={"gasoline": 0.9, "diesel": 0.1}, pop=3.5),
    _m("Chevrolet", "Colorado", "pickup", 30000, years=(2005, 2025), drive=_PICKUP),
    _m("Chevrolet", "Equinox", "suv", 28000, drive=_FWD_AWD, pop=2.5),
    _m("Chevrolet", "Tahoe", "suv", 55000, drive={"rwd": 0.4, "4wd": 0.6}, third_row=1),
    _m("Chevrolet", "Malibu", "sedan", 24000, pop=2),
    _m("Chevrolet", "Camaro", {"coupe": 0.8, "convertible": 0.2}, 32000, years=(2010, 2024), drive="rwd", manual=0.2),
    _m("Chevrolet", "Corvette", {"coupe": 0.7, "convertible": 0.3}, 65000, drive="rwd", manual=0.25),
    _m("Chevrolet", "Bolt", "hatchback", 32000, years=(2017, 2023), fuel=_EV, manual=0),
    _m("Nissan", "Altima", "sedan", 26000, drive={"fwd": 0.9, "awd": 0.1}, pop=2.5),
    _m("Nissan", "Sentra", "sedan", 20000, manual=0.05, pop=2),
    _m("Nissan", "Rogue", "suv", 29000, years=(2008, 2025), drive=_FWD_AWD, pop=2.5),
    _m("Nissan", "Pathfinder", "suv", 37000, drive={"fwd": 0.3, "4wd": 0.7}, third_row=1),
    _m("Nissan", "Frontier", "pickup", 30000, drive=_PICKUP, manual=0.1),
    _m("Nissan", "Leaf", "hatchback", 30000, years=(2011, 2025), fuel=_EV, manual=0),
    _m("Subaru", "Outback", "wagon", 31000, drive="awd", pop=2),
    _m("Subaru", "Forester", "suv", 29000, drive="awd", manual=0.06, pop=2),
    _m("Subaru", "Impreza", {"sedan": 0.5, "hatchback": 0.5}, 22000, drive="awd", manual=0.1),
    _m("Subaru", "Crosstrek", "suv", 26000, years=(2013, 2025), drive="awd", manual=0.12),
    _m("Subaru", "WRX", "sedan", 33000, drive="awd", manual=0.65),
    _m("Volkswagen", "Jetta", "sedan", 22000, fuel={"gasoline": 0.85, "diesel": 0.15}, manual=0.1, pop=1.5),
    _m("Volkswagen", "Golf", "hatchback", 24000, fuel={"gasoline": 0.8, "diesel": 0.2}, manual=0.25),
    _m("Volkswagen", "Passat", "sedan", 26000, years=(2005, 2022), fuel={"gasoline": 0.85, "diesel": 0.15}),
    _m("Volkswagen", "Tiguan", "suv", 29000, years=(2009, 2025), drive=_FWD_AWD, third_row=0.3),
    _m("Volkswagen", "Atlas", "suv", 37000, years=(2018, 2025), drive=_FWD_AWD, third_row=1),
    _m("BMW", "3 Series", "sedan", 45000, drive=_RWD_AWD, fuel={"gasoline": 0.92, "diesel": 0.08}, manual=0.06, pop=2),
    _m("BMW", "5 Series", "sedan", 58000, drive=_RWD_AWD),
    _m("BMW", "4 Series", {"coupe": 0.65, "convertible": 0.35}, 50000, years=(2014, 2025), drive=_RWD_AWD, manual=0.06),
    _m("BMW", "X3", "suv", 48000, drive={"awd": 0.9, "rwd": 0.1}, pop=1.5),
    _m("BMW", "X5", "suv", 65000, drive="awd", fuel={"gasoline": 0.9, "diesel": 0.1}, third_row=0.15),
    _m("Mercedes-Benz", "C-Class", {"sedan": 0.85, "coupe": 0.15}, 46000, drive=_RWD_AWD, pop=1.5),
    _m("Mercedes-Benz", "E-Class", {"sedan": 0.85, "wagon": 0.15}, 60000, drive=_RWD_AWD),
    _m("Mercedes-Benz", "GLC", "suv", 49000, years=(2016, 2025), drive="awd"),
    _m("Mercedes-Benz", "GLE", "suv", 62000, years=(2016, 2025), drive="awd", third_row=0.2),
    _m("Audi", "A4", {"sedan": 0.85, "wagon": 0.15}, 43000, drive={"fwd": 0.3, "awd": 0.7}, manual=0.05),
    _m("Audi", "A6", "sedan", 58000, drive={"fwd": 0.2, "awd": 0.8}),
    _m("Audi", "Q5", "suv", 47000, years=(2009, 2025), drive="awd", pop=1.5),
    _m("Hyundai", "Elantra", "sedan", 21000, fuel={"gasoline": 0.9, "hybrid": 0.1}, manual=0.05, pop=2.5),
    _m("Hyundai", "Sonata", "sedan", 26000, fuel={"gasoline": 0.85, "hybrid": 0.15}, pop=2),
    _m("Hyundai", "Tucson", "suv", 28000, drive=_FWD_AWD, pop=2),
    _m("Hyundai", "Santa Fe", "suv", 33000, drive=_FWD_AWD, third_row=0.3),
    _m("Hyundai", "Ioniq 5", "suv", 44000, years=(2022, 2025), drive={"rwd": 0.5, "awd": 0.5}, fuel=_EV, manual=0),
    _m("Kia", "Forte", "sedan", 20000, years=(2010, 2025), manual=0.05, pop=1.5),
    _m("Kia", "Soul", "hatchback", 20000, years=(2010, 2025), manual=0.05),
    _m("Kia", "Sportage", "suv", 28000, drive=_FWD_AWD, pop=1.5),
    _m("Kia", "Sorento", "suv", 32000, drive=_FWD_AWD, third_row=0.6),
    _m("Kia", "Telluride", "suv", 38000, years=(2020, 2025), drive=_FWD_AWD, third_row=1),
    _m("Kia", "Carnival", "minivan", 36000, years=(2022, 2025)),
    _m("Tesla", "Model S", "sedan", 85000, years=(2013, 2025), drive={"awd": 0.85, "rwd": 0.15}, fuel=_EV, manual=0),
    _m(
        "Tesla",
        "Model 3",
        "sedan",
        42000,
        years=(2018, 2025),
        drive={"rwd": 0.5, "awd": 0.5},
        fuel=_EV,
        manual=0,
        pop=2,
    ),
    _m("Tesla", "Model X", "suv", 95000, years=(2016, 2025), drive="awd", fuel=_EV, manual=0, third_row=0.6),
    _m("Tesla", "Model Y", "suv", 50000, years=(2020, 2025), drive={"awd": 0.8, "rwd": 0.2}, fuel=_EV, third_row=0.1),
    _m("Jeep", "Wrangler", "suv", 36000, drive="4wd", manual=0.25, pop=2),
    _m("Jeep", "Grand Cherokee", "suv", 42000, drive={"rwd": 0.2, "4wd": 0.8}, fuel={"gasoline": 0.92, "diesel": 0.08}),
    _m("Jeep", "Cherokee", "suv", 29000, years=(2014, 2023), drive={"fwd": 0.4, "4wd": 0.6}),
    _m("Jeep", "Gladiator", "pickup", 42000, years=(2020, 2025), drive="4wd", manual=0.2),
    _m("Ram", "1500", "pickup", 44000, drive=_PICKUP, fuel={"gasoline": 0.88, "diesel": 0.12}, pop=3),
    _m("Mazda", "Mazda3", {"sedan": 0.55, "hatchback": 0.45}, 23000, manual=0.12, pop=1.5),
    _m("Mazda", "CX-5", "suv", 29000, years=(2013, 2025), drive=_FWD_AWD, pop=2),
    _m("Mazda", "CX-9", "suv", 37000, years=(2007, 2023), drive=_FWD_AWD, third_row=1),
    _m("Mazda", "MX-5 Miata", "convertible", 30000, drive="rwd", manual=0.5),
    _m("Chrysler", "Pacifica", "minivan", 40000, years=(2017, 2025), fuel={"gasoline": 0.8, "hybrid": 0.2}),
    _m("Dodge", "Charger", "sedan", 34000, years=(2006, 2023), drive={"rwd": 0.8, "awd": 0.2}),
    _m("Dodge", "Challenger", "coupe", 34000, years=(2008, 2023), drive="rwd", manual=0.15),
    _m("Dodge", "Grand Caravan", "minivan", 28000, years=(2005, 2020), pop=1.5),
    _m("Dodge", "Durango", "suv", 40000, drive=_RWD_AWD, third_row=1),
    _m("Volvo", "XC90", "suv", 58000, drive="awd", third_row=1),
    _m("Volvo", "XC60", "suv", 47000, years=(2009, 2025), drive="awd"),
    _m("Volvo", "S60", "sedan", 43000, drive=_FWD_AWD),
    _m("Volvo", "V60", "wagon", 45000, years=(2015, 2025), drive=_FWD_AWD),
    _m("Lexus", "RX", "suv", 50000, drive=_FWD_AWD, fuel={"gasoline": 0.75, "hybrid": 0.25}, pop=1.5),
    _m("Lexus", "ES", "sedan", 43000, fuel={"gasoline": 0.75, "hybrid": 0.25}),
    _m("Lexus", "NX", "suv", 42000, years=(2015, 2025), drive=_FWD_AWD, fuel={"gasoline": 0.7, "hybrid": 0.3}),
    _m("GMC", "Sierra", "pickup", 46000, drive=_PICKUP, fuel={"gasoline": 0.88, "diesel": 0.12}, pop=2),
    _m("GMC", "Yukon", "suv", 60000, drive={"rwd": 0.35, "4wd": 0.65}, third_row=1),
)

_SCHEMA = """
CREATE TABLE cars (
    id INTEGER PRIMARY KEY,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    trim TEXT NOT NULL,
    body TEXT NOT NULL,
    year INTEGER NOT NULL,
    price INTEGER NOT NULL,
    mileage INTEGER NOT NULL,
    color TEXT NOT NULL,
    fuel TEXT NOT NULL,
    transmission TEXT NOT NULL,
    drivetrain TEXT NOT NULL,
    seats INTEGER NOT NULL
);
CREATE TABLE car_features (
    car_id INTEGER NOT NULL REFERENCES cars(id),
    feature TEXT NOT NULL,
    PRIMARY KEY (car_id, feature)
) WITHOUT ROWID;
CREATE INDEX cars_make_model ON cars(make, model);
CREATE INDEX cars_price ON cars(price);
CREATE INDEX cars_year ON cars(year);
CREATE INDEX car_features_feature ON car_features(feature, car_id);
"""


@dataclass(frozen=True)
class Car:
    """One generated listing."""

    id: int
    make: str
    model: str
    trim: str
    body: str
    year: int
    price: int
    mileage: int
    color: str
    fuel: str
    transmission: str
    drivetrain: str
    seats: int
    features: tuple[str, ...]


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _chance(rng: random.Random, p: float) -> bool:
    return rng.random() < max(0.0, min(1.0, p))


def _seats(rng: random.Random, model: Model, body: str, third_row: bool) -> int:
    if model.name in ("Corvette", "MX-5 Miata"):
        return 2
    if third_row or body == "minivan":
        return rng.choices((7, 8), weights=(0.65, 0.35))[0]
    if body in ("coupe", "convertible"):
        return 4
    if body == "pickup":
        return rng.choices((5, 3), weights=(0.85, 0.15))[0]  # crew cab or regular cab
    return 5


def _features(rng: random.Random, model: Model, body: str, year: int, tier: int, third_row: bool) -> tuple[str, ...]:
    luxury = 0.3 if model.make in LUXURY_MAKES else 0.0
    age = CURRENT_YEAR - year
    # Sunroofs spread with each model year; convertibles have none, trucks rarely do.
    sunroof = 0.03 + 0.3 * tier + luxury + 0.012 * (year - OLDEST_YEAR)
    if body == "convertible":
        sunroof = 0.0
    elif body == "pickup":
        sunroof *= 0.5
    chances = {
        "sunroof": sunroof,
        "leather": 0.05 + 0.38 * tier + 2 * luxury,
        "navigation": 0.08 + 0.25 * tier + luxury + (0.1 if year >= 2015 else 0.0),
        # Required on new US cars from May 2018; spreading through trims in the decade before.
        "backup_camera": 1.0 if year >= 2018 else max(0.0, 0.08 * (year - 2007)) + 0.15 * tier,
        "apple_carplay": 0.0 if year < 2016 else (0.9 if year >= 2019 else 0.3 + 0.2 * tier),
        "heated_seats": 0.1 + 0.3 * tier + luxury + (0.15 if model.make == "Subaru" else 0.0),
        "tow_package": {"pickup": 0.6, "suv": 0.2}.get(body, 0.01) + 0.05 * tier,
    }
    if age > 12:
        chances["navigation"] *= 0.5
    found = [name for name in FEATURES if name != "third_row" and _chance(rng, chances[name])]
    if third_row:
        found.append("third_row")
    return tuple(sorted(found, key=FEATURES.index))


def _price(rng: random.Random, model: Model, year: int, mileage: int, tier: int) -> int:
    age = CURRENT_YEAR - year
    # Prices new rise about 2% a year. A used car loses about 15% in its first year and 10% a
    # year after that (trucks a little less, luxury cars more), and more when it has been
    # driven further than the usual 12,000 miles a year.
    new = model.msrp * (1 - 0.02 * age) * (1.0, 1.15, 1.32)[tier]
    yearly = 0.08 if "pickup" in model.bodies else (0.12 if model.make in LUXURY_MAKES else 0.10)
    kept = 1.0 if age == 0 else 0.85 * (1 - yearly) ** (age - 1)
    extra_miles = mileage - 12_000 * max(age, 0.5)
    value = new * kept * math.exp(-extra_miles / 150_000) * rng.lognormvariate(0, 0.08)
    dollars = max(1_500, round(value / 100) * 100)
    return dollars - 5 if rng.random() < 0.4 else dollars  # some dealers like $18,995


def generate(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> list[Car]:
    """The catalog's rows: a pure function of ``seed`` and ``size``."""
    rng = random.Random(seed)  # noqa: S311 - made-up listings need repeatability, not secrecy
    cars: list[Car] = []
    weights = [m.popularity for m in MODELS]
    while len(cars) < size:
        model = rng.choices(MODELS, weights=weights)[0]
        # Ages of used cars for sale cluster around 3 to 8 years.
        age = min(CURRENT_YEAR - OLDEST_YEAR, int(rng.triangular(0, CURRENT_YEAR - OLDEST_YEAR + 1, 4)))
        year = CURRENT_YEAR - age
        if not model.years[0] <= year <= model.years[1]:
            continue
        tier = rng.choices((0, 1, 2), weights=(0.5, 0.33, 0.17))[0]
        body = _pick(rng, model.bodies)
        fuel = _pick(rng, model.fuels)
        if fuel == "diesel" and model.make == "Volkswagen" and year > 2015:
            fuel = "gasoline"  # no VW diesels after the 2015 emissions scandal
        drivetrain = _pick(rng, model.drivetrains)
        manual = model.manual * (1.6 if year < 2013 else 0.8) if fuel in ("gasoline", "diesel") else 0.0
        transmission = "manual" if _chance(rng, manual) else "automatic"
        third_row = body != "minivan" and _chance(rng, model.third_row)
        miles_per_year = max(3_000.0, rng.gauss(12_000, 4_000))
        mileage = max(5, int(age * miles_per_year + rng.uniform(0, 8_000) * (1 if age else 0.4)))
        cars.append(
            Car(
                id=len(cars) + 1,
                make=model.make,
                model=model.name,
                trim=TRIMS[tier],
                body=body,
                year=year,
                price=_price(rng, model, year, mileage, tier),
                mileage=mileage,
                color=_pick(rng, COLORS),
                fuel=fuel,
                transmission=transmission,
                drivetrain=drivetrain,
                seats=_seats(rng, model, body, third_row),
                features=_features(rng, model, body, year, tier, third_row or body == "minivan"),
            )
        )
    return cars


def _write(path: str, cars: Sequence[Car]) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(_SCHEMA)
        conn.executemany(
            "INSERT INTO cars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [astuple(c)[:-1] for c in cars],  # every column but the features, in table order
        )
        conn.executemany("INSERT INTO car_features VALUES (?, ?)", [(c.id, name) for c in cars for name in c.features])
        conn.execute(f"PRAGMA user_version = {CATALOG_VERSION:d}")


def catalog_version(path: str | os.PathLike[str]) -> int | None:
    """The ``CATALOG_VERSION`` a catalog file was built with, or None if it is not a catalog."""
    if not os.path.exists(path):
        return None
    try:
        with closing(connect(path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError:
        return None


def ensure_catalog(path: str | os.PathLike[str], seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> bool:
    """Build the catalog at ``path`` unless a current one is there. Returns True if it built one.

    The file is written next to ``path`` and renamed into place, so readers never see a
    half-written catalog and two processes starting at once both end with a whole one.
    """
    if catalog_version(path) == CATALOG_VERSION:
        return False
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".catalog-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        os.unlink(tmp)  # sqlite3 creates the file itself
        _write(tmp, generate(seed, size))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection: the web app can never change the catalog."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[sqlite3.Connection]:
    """A read-only connection that is closed on exit."""
    with closing(connect(path)) as conn:
        yield conn
