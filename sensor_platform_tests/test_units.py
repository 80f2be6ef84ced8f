"""Units on the way in: common spellings become the canonical unit, °F becomes °C, and a unit
that names another quantity is left for the quality check; through the normalizer too."""

from datetime import UTC, datetime

import orjson
import pytest

from sensor_platform.quality.gate import Gate
from sensor_platform.quality.rules import load_rules
from sensor_platform.readings.normalize import Message, normalize_messages, reading_id
from sensor_platform.readings.units import DEFAULT_UNITS, normalize_unit
from sensor_platform.rollups.compute import minute_aggregates

RECEIVED = datetime(2024, 6, 14, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "metric,spelling,canonical",
    [
        *[("temperature", s, "°C") for s in ("C", "c", "degC", "deg C", "°c", "º C", "˚C")],
        *[("temperature", s, "°C") for s in ("celsius", "Celsius", "degrees Celsius", "℃")],
        *[("humidity", s, "%") for s in ("%RH", "% RH", "%rh", "RH", "percent", "Percent")],
        *[("co2", s, "ppm") for s in ("PPM", "ppmv", "PPMV", " ppm ", "parts per million")],
        ("gas_level", "Ppm", "ppm"),
        ("soil_temperature", "degC", "°C"),  # unknown metric, unambiguous spelling
        ("leaf_wetness", "percent", "%"),
    ],
)
def test_common_spellings_become_the_canonical_unit(metric, spelling, canonical):
    assert normalize_unit(metric, 21.5, spelling) == (21.5, canonical)


@pytest.mark.parametrize("spelling", ["°F", "F", "f", "degF", "fahrenheit", "Fahrenheit", "℉"])
def test_fahrenheit_is_converted_to_celsius(spelling):
    assert normalize_unit("temperature", 212.0, spelling) == (100.0, "°C")
    assert normalize_unit("temperature", 32.0, spelling) == (0.0, "°C")
    value, unit = normalize_unit("temperature", 70.5, spelling)
    assert unit == "°C" and value == pytest.approx(21.3888888889)


@pytest.mark.parametrize(
    "metric,unit",
    [
        ("temperature", "°C"),  # canonical already
        ("pressure", "hPa"),  # not ours to know
        ("temperature", "K"),  # another temperature scale: reported, not guessed
        ("co2", "%"),  # a real unit, but not co2's: left for the quality check
        ("co2", "C"),
        ("charge", "C"),  # a bare letter is trusted only for a known metric
        ("valve", "rh"),
        (None, "°C"),
    ],
)
def test_other_units_pass_through_unchanged(metric, unit):
    assert normalize_unit(metric or "x", 5.0, unit) == (5.0, unit)


def test_no_unit_stays_none_for_the_caller_to_default():
    assert normalize_unit("temperature", 5.0, None) == (5.0, None)


def test_every_default_unit_is_its_own_canonical_spelling():
    for metric, unit in DEFAULT_UNITS.items():
        assert normalize_unit(metric, 1.0, unit) == (1.0, unit)


def _single(unit: str, value: float, second: int) -> Message:
    payload = {"sensor_id": "S-1", "type": "temperature", "unit": unit, "value": value,
               "timestamp": f"2024-06-14T16:27:{second:02d}Z", "location": "Kitchen"}  # fmt: skip
    return Message(orjson.dumps(payload), "test:feed", RECEIVED)


def test_normalizer_stores_canonical_units_and_keeps_the_reading_id():
    messages = [_single("C", 20.0, 0), _single("degC", 21.0, 10), _single("°F", 71.6, 20)]
    rows = normalize_messages(messages, batch_id="b").readings.to_pylist()
    assert [r["unit"] for r in rows] == ["°C", "°C", "°C"]
    assert [r["value"] for r in rows] == [20.0, 21.0, pytest.approx(22.0)]
    # The id is device + metric + event time: a re-delivery in another unit is the same reading.
    event_us = int(datetime(2024, 6, 14, 16, 27, 20, tzinfo=UTC).timestamp() * 1_000_000)
    assert rows[2]["reading_id"] == reading_id("S-1", "temperature", event_us)


def test_a_fleet_of_spellings_passes_validity_and_aggregates_never_mix_scales():
    """One device reporting in C, celsius and °F within a minute: every reading is valid and the
    minute's mean is a mean of °C values."""
    messages = [_single("C", 20.0, 0), _single("celsius", 22.0, 10), _single("°F", 75.2, 20)]
    readings = normalize_messages(messages, batch_id="b").readings
    series = Gate(load_rules()).series(readings).to_pylist()
    assert [(s["metric"], s["invalid"]) for s in series] == [("temperature", 0)]
    (minute,) = minute_aggregates(readings, {"S-1": 10}).to_pylist()
    assert minute["unit"] == "°C" and minute["reading_count"] == 3
    assert minute["mean_value"] == pytest.approx(22.0)  # (20 + 22 + 24) / 3
    assert minute["max_value"] == pytest.approx(24.0)


def test_a_unit_of_another_quantity_is_still_reported_by_validity():
    readings = normalize_messages([_single("%", 20.0, 0)], batch_id="b").readings
    assert readings["unit"].to_pylist() == ["%"]
    (series,) = Gate(load_rules()).series(readings).to_pylist()
    assert series["unit_not_allowed"] == 1
