"""The normalizer: every payload shape, timestamp form and quarantine reason, on crafted messages."""

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from sensor_platform.readings.normalize import (
    REASONS,
    Message,
    NormalizeLimits,
    normalize_messages,
    parse_timestamp,
    reading_id,
)
from sensor_platform.readings.schema import QUARANTINE_SCHEMA, READING_SCHEMA

RECEIVED = datetime(2024, 6, 14, 17, 0, tzinfo=UTC)


def message(payload: bytes | dict | list, source: str = "test:feed", received=RECEIVED) -> Message:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Message(raw, source, received)


def normalize(*messages: Message, limits: NormalizeLimits | None = None):
    limits = limits or NormalizeLimits()
    return normalize_messages(list(messages), batch_id="batch-1", limits=limits)


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def row(
    event, device, site, metric, value, unit, status=None, received=RECEIVED, source="test:feed"
):
    return {
        "event_time": event,
        "device_id": device,
        "site_id": site,
        "metric": metric,
        "value": value,
        "unit": unit,
        "status_code": status,
        "ingest_time": received,
        "source": source,
        "reading_id": reading_id(device, metric, us(event)),
    }


def only_reason(result) -> str:
    assert result.readings.num_rows == 0
    assert result.quarantine.num_rows == 1
    return result.quarantine["reason"][0].as_py()


# -- shapes -------------------------------------------------------------------------------------


def test_fire_monitoring_payload_becomes_one_row_per_metric():
    received = datetime(2024, 1, 1, 12, 0, 3, tzinfo=UTC)
    payload = {
        "equipment_id": "EQ001",
        "facility_id": "FAC001",
        "equipment_location": "Building A, Floor 1",
        "measured_at": "2024-01-01T12:00:00Z",
        "temperature": 25.5,
        "humidity": 60.2,
        "smoke_density": 0.001,
        "co_level": 0.005,
        "gas_level": 0.002,
    }
    result = normalize(message(payload, "kafka:fire/0/17", received))
    event = datetime(2024, 1, 1, 12, tzinfo=UTC)
    expected = [
        row(event, "EQ001", "FAC001", metric, value, unit, None, received, "kafka:fire/0/17")
        for metric, value, unit in [
            ("temperature", 25.5, "°C"),
            ("humidity", 60.2, "%"),
            ("smoke_density", 0.001, "obs/m"),
            ("co_level", 0.005, "ppm"),
            ("gas_level", 0.002, "ppm"),
        ]
    ]
    assert result.readings.to_pylist() == expected
    assert result.quarantine.num_rows == 0
    assert result.messages == 1


def test_fire_monitoring_site_falls_back_to_equipment_location():
    payload = {
        "equipment_id": "EQ009",
        "equipment_location": "Building A, Floor 1",
        "measured_at": "2024-06-14T16:59:00Z",
        "smoke_density": 600.0,
    }
    rows = normalize(message(payload)).readings.to_pylist()
    assert [(r["site_id"], r["metric"], r["value"]) for r in rows] == [
        ("Building A, Floor 1", "smoke_density", 600.0)
    ]


def test_smart_farm_payload_with_numeric_strings_and_error_code():
    payload = {
        "device_id": "GH1-D01",
        "greenhouse_id": "GH1",
        "timestamp": 1718380000,
        "temperature": 23.1,
        "humidity": 61.0,
        "co2": "400",
        "error_code": "1",
    }
    event = datetime.fromtimestamp(1718380000, UTC)
    assert normalize(message(payload)).readings.to_pylist() == [
        row(event, "GH1-D01", "GH1", "temperature", 23.1, "°C", 1),
        row(event, "GH1-D01", "GH1", "humidity", 61.0, "%", 1),
        row(event, "GH1-D01", "GH1", "co2", 400.0, "ppm", 1),
    ]


@pytest.mark.parametrize("site_key", ["greenhouse_id", "farm_id", "site_id"])
@pytest.mark.parametrize(("error_code", "status"), [(3, 3), ("0", 0), (None, None), (" -2 ", -2)])
def test_smart_farm_site_keys_and_status_codes(site_key, error_code, status):
    payload = {"device_id": "D", site_key: "GH7", "timestamp": 1718380000, "co2": 420}
    if error_code is not None:
        payload["error_code"] = error_code
    [reading] = normalize(message(payload)).readings.to_pylist()
    assert (reading["site_id"], reading["status_code"], reading["value"]) == ("GH7", status, 420.0)


def test_single_sensor_payload_uses_type_unit_and_location():
    payload = {
        "sensor_id": "S-1",
        "type": "temperature",
        "unit": "°F",
        "value": 70.5,
        "timestamp": "2024-06-14T18:27:45+02:00",
        "location": "Kitchen",
        "latitude": 47.1,
    }
    event = datetime(2024, 6, 14, 16, 27, 45, tzinfo=UTC)
    # °F is converted on the way in (readings/units.py): aggregates never mix °C and °F.
    assert normalize(message(payload)).readings.to_pylist() == [
        row(event, "S-1", "Kitchen", "temperature", (70.5 - 32) * 5 / 9, "°C")
    ]


def test_canonical_payload_and_default_unit():
    canonical = {
        "device_id": "dev-1",
        "site_id": "site-1",
        "metric": "pressure_bar",
        "value": "1.25",
        "unit": "bar",
        "status_code": 7,
        "event_time": "2024-06-14T16:00:00.123456Z",
    }
    no_unit = {"deviceId": "dev-2", "metric": "humidity", "value": 40, "ts": 1718380000000}
    event = datetime(2024, 6, 14, 16, 0, 0, 123456, tzinfo=UTC)
    assert normalize(message(canonical), message(no_unit)).readings.to_pylist() == [
        row(event, "dev-1", "site-1", "pressure_bar", 1.25, "bar", 7),
        row(datetime.fromtimestamp(1718380000, UTC), "dev-2", None, "humidity", 40.0, "%"),
    ]


def test_wide_payload_lets_new_metrics_through_and_ignores_metadata():
    payload = {
        "device_id": "D1",
        "time": 1718380000,
        "firmware": "1.2.3",
        "label": "north wall",
        "enabled": True,
        "lat": 47.1,
        "lon": 8.5,
        "nested": {"a": 1},
        "vibration_rms": 0.31,
        "battery_mv": "3712",
    }
    rows = normalize(message(payload)).readings.to_pylist()
    assert [(r["metric"], r["value"], r["unit"]) for r in rows] == [
        ("vibration_rms", 0.31, None),
        ("battery_mv", 3712.0, None),
    ]


def test_array_batch_keeps_good_elements_and_quarantines_bad_ones_alone():
    good = {"device_id": "A", "ts": 1718380000, "temperature": 20.0}
    no_device = {"ts": 1718380000, "temperature": 21.0}
    also_good = {"sensor_id": "B", "type": "humidity", "value": 55, "ts": 1718380001}
    result = normalize(message([good, no_device, 7, also_good], "kafka:t/0/5"))
    assert [(r["device_id"], r["metric"]) for r in result.readings.to_pylist()] == [
        ("A", "temperature"),
        ("B", "humidity"),
    ]
    quarantined = result.quarantine.to_pylist()
    assert [(q["reason"], q["source"]) for q in quarantined] == [
        ("missing_device_id", "kafka:t/0/5"),
        ("not_object", "kafka:t/0/5"),
    ]
    assert quarantined[0]["detail"].startswith("element 1")
    assert quarantined[1]["detail"].startswith("element 2")
    assert orjson.loads(quarantined[0]["raw"]) == no_device
    assert quarantined[1]["raw"] == b"7"
    assert result.messages == 1


def test_rows_keep_message_order_then_field_order():
    first = {"device_id": "Z", "ts": 1718380000, "b_metric": 1, "a_metric": 2}
    second = {"device_id": "A", "ts": 1718379000, "metric": "m", "value": 3}
    rows = normalize(message(first), message(second)).readings.to_pylist()
    assert [(r["device_id"], r["metric"]) for r in rows] == [
        ("Z", "b_metric"),
        ("Z", "a_metric"),
        ("A", "m"),
    ]


def test_object_columns_line_up_with_rows_across_messages_of_different_widths():
    sizes = [3, 1, 0, 4, 2]  # a 0-metric object is quarantined and must not shift later rows
    messages = []
    for i, size in enumerate(sizes):
        payload = {"device_id": f"D{i}", "site_id": f"S{i}", "ts": T + i, "status_code": i}
        payload |= {f"m{j}": j for j in range(size)}
        received = datetime.fromtimestamp(T + 100 + i, UTC)
        messages.append(message(payload, f"kafka:t/0/{i}", received))
    result = normalize(*messages)
    expected = [
        (f"D{i}", f"S{i}", i, f"kafka:t/0/{i}", T + i, T + 100 + i, f"m{j}")
        for i, size in enumerate(sizes)
        for j in range(size)
    ]
    got = [
        (
            r["device_id"],
            r["site_id"],
            r["status_code"],
            r["source"],
            r["event_time"].timestamp(),
            r["ingest_time"].timestamp(),
            r["metric"],
        )
        for r in result.readings.to_pylist()
    ]
    assert got == expected
    assert result.quarantine["reason"].to_pylist() == ["no_values"]


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-06-14T16:27:45Z", datetime(2024, 6, 14, 16, 27, 45, tzinfo=UTC)),
        ("2024-06-14T18:27:45+02:00", datetime(2024, 6, 14, 16, 27, 45, tzinfo=UTC)),
        ("2024-06-14T10:57:45-05:30", datetime(2024, 6, 14, 16, 27, 45, tzinfo=UTC)),
        ("2024-06-14T18:27:45+0200", datetime(2024, 6, 14, 16, 27, 45, tzinfo=UTC)),
        ("2024-06-14 16:27:45", datetime(2024, 6, 14, 16, 27, 45, tzinfo=UTC)),
        ("2024-06-14T16:27:45.5Z", datetime(2024, 6, 14, 16, 27, 45, 500000, tzinfo=UTC)),
        ("2024-06-14T16:27:45.123456789Z", datetime(2024, 6, 14, 16, 27, 45, 123456, tzinfo=UTC)),
        (1718380000, datetime(2024, 6, 14, 15, 46, 40, tzinfo=UTC)),
        (1718380000.25, datetime(2024, 6, 14, 15, 46, 40, 250000, tzinfo=UTC)),
        ("1718380000", datetime(2024, 6, 14, 15, 46, 40, tzinfo=UTC)),
        (1718380000123, datetime(2024, 6, 14, 15, 46, 40, 123000, tzinfo=UTC)),
        ("1718380000123", datetime(2024, 6, 14, 15, 46, 40, 123000, tzinfo=UTC)),
        (1718380000123456, datetime(2024, 6, 14, 15, 46, 40, 123456, tzinfo=UTC)),
        (1718380000123456789, datetime(2024, 6, 14, 15, 46, 40, 123457, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(value, expected):
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    payload = {"device_id": "D", "ts": value, "temperature": 1.0}
    received = expected + timedelta(seconds=1)
    [reading] = normalize(message(payload, received=received)).readings.to_pylist()
    assert reading["event_time"] == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "", "2024-13-01T00:00:00Z", True, None, [], float("nan"), 10**20]
)
def test_parse_timestamp_rejects(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_time_limits_are_judged_against_received_at_not_the_clock():
    received = datetime(2001, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=3)))
    limits = NormalizeLimits(future_tolerance=timedelta(minutes=5), past_horizon=timedelta(days=1))
    edge_future = received + timedelta(minutes=5)
    edge_past = received - timedelta(days=1)
    payloads = [
        {"device_id": "D", "ts": edge_future.isoformat(), "t": 1},
        {"device_id": "D", "ts": edge_past.isoformat(), "t": 2},
        {"device_id": "D", "ts": (edge_future + timedelta(microseconds=1)).isoformat(), "t": 3},
        {"device_id": "D", "ts": (edge_past - timedelta(microseconds=1)).isoformat(), "t": 4},
    ]
    result = normalize(*(message(p, received=received) for p in payloads), limits=limits)
    assert result.readings["value"].to_pylist() == [1.0, 2.0]
    assert result.readings["ingest_time"].to_pylist() == [received, received]
    assert result.quarantine["reason"].to_pylist() == ["future_timestamp", "too_old"]


# -- quarantine ---------------------------------------------------------------------------------

T = 1718380000
BAD_MESSAGES = {
    "not_utf8": b'{"device_id": "\xff\xfe", "ts": 1718380000, "co2": 1}',
    "not_json": b'{"device_id": "D", "ts": 1718380000, "co2": 1',
    "not_object": b'"just a string"',
    "missing_device_id": orjson.dumps({"ts": T, "co2": 1, "site_id": "S"}),
    "missing_timestamp": orjson.dumps({"device_id": "D", "co2": 1}),
    "bad_timestamp": orjson.dumps({"device_id": "D", "ts": "next tuesday", "co2": 1}),
    "future_timestamp": orjson.dumps({"device_id": "D", "ts": T + 86400, "co2": 1}),
    "too_old": orjson.dumps({"device_id": "D", "ts": T - 90 * 86400, "co2": 1}),
    "bad_value": orjson.dumps({"device_id": "D", "ts": T, "metric": "co2", "value": "high"}),
    "no_values": orjson.dumps({"device_id": "D", "ts": T, "note": "hello", "ok": True}),
    "bad_status_code": orjson.dumps({"device_id": "D", "ts": T, "co2": 1, "error_code": "E42"}),
    "id_too_long": orjson.dumps({"device_id": "D" * 257, "ts": T, "co2": 1}),
    "oversized": orjson.dumps({"device_id": "D", "ts": T, "co2": 1, "pad": "x" * 2000}),
}


@pytest.mark.parametrize("reason", sorted(BAD_MESSAGES))
def test_every_reason_code_is_quarantined_with_raw_bytes(reason):
    raw = BAD_MESSAGES[reason]
    limits = NormalizeLimits(max_message_bytes=1024)
    received = datetime.fromtimestamp(T + 5, UTC)
    result = normalize(Message(raw, "kafka:readings/3/99", received), limits=limits)
    assert only_reason(result) == reason
    [quarantined] = result.quarantine.to_pylist()
    assert quarantined["raw"] == raw
    assert quarantined["source"] == "kafka:readings/3/99"
    assert quarantined["received_at"] == received
    assert quarantined["batch_id"] == "batch-1"
    assert quarantined["detail"]
    assert reason in REASONS


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"device_id": "", "ts": T, "co2": 1}, "missing_device_id"),
        ({"device_id": ["D"], "ts": T, "co2": 1}, "missing_device_id"),
        ({"device_id": "D", "site_id": "S" * 257, "ts": T, "co2": 1}, "id_too_long"),
        ({"device_id": "D", "ts": T, "metric": "m" * 257, "value": 1}, "id_too_long"),
        ({"device_id": "D", "ts": T, "co2": 1, "status_code": 2**31}, "bad_status_code"),
        ({"device_id": "D", "ts": T, "co2": 1, "status_code": True}, "bad_status_code"),
        ({"device_id": "D", "ts": T, "value": 3}, "no_values"),
        ({"device_id": "D", "ts": T, "metric": "co2"}, "bad_value"),
        ({"device_id": "D", "ts": T, "temperature": None}, "bad_value"),
        ({"device_id": "D", "ts": True, "co2": 1}, "bad_timestamp"),
        ({"device_id": "D", "ts": "1" * 100, "co2": 1}, "bad_timestamp"),
        ([], "no_values"),
    ],
)
def test_more_rejections(payload, reason):
    result = normalize(message(payload, received=datetime.fromtimestamp(T, UTC)))
    assert only_reason(result) == reason


@pytest.mark.parametrize(
    "raw",
    [
        b'{"device_id": "D", "ts": 1718380000, "temperature": NaN, "humidity": 50}',
        b'{"device_id": "D", "ts": 1718380000, "temperature": -Infinity, "humidity": 50}',
        b'{"device_id": "D", "ts": 1718380000, "temperature": "warm", "humidity": 50}',
        b'{"device_id": "D", "ts": 1718380000, "temperature": 1e999, "humidity": 50}',
    ],
)
def test_wide_payload_with_a_bad_metric_keeps_good_rows_and_quarantines_once(raw):
    result = normalize(Message(raw, "test:feed", datetime.fromtimestamp(T, UTC)))
    assert [(r["metric"], r["value"]) for r in result.readings.to_pylist()] == [("humidity", 50.0)]
    [quarantined] = result.quarantine.to_pylist()
    assert quarantined["reason"] == "bad_value"
    assert "temperature" in quarantined["detail"]
    assert quarantined["raw"] == raw


def test_bad_element_of_a_nan_batch_is_reserialized_with_its_literal():
    raw = b'[{"device_id": "A", "ts": 1718380000, "metric": "x", "value": NaN}]'
    result = normalize(Message(raw, "test:feed", datetime.fromtimestamp(T, UTC)))
    [quarantined] = result.quarantine.to_pylist()
    assert quarantined["reason"] == "bad_value"
    assert quarantined["detail"].startswith("element 0")
    assert "NaN" in quarantined["raw"].decode()
    assert json.loads(quarantined["raw"])["device_id"] == "A"


def test_lone_surrogate_escape_is_not_json():
    raw = b'{"device_id": "\\ud800", "ts": 1718380000, "metric": "x", "value": NaN}'
    result = normalize(Message(raw, "test:feed", datetime.fromtimestamp(T, UTC)))
    assert only_reason(result) == "not_json"


# -- hostile ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device_id",
    [
        "../../etc/passwd",
        "'; DROP TABLE sensor_readings; --",
        'quote"d\\back',
        "ctl\x00\x01\x1f\n\t",
        "디바이스-東京-🔥-é",
        "x" * 256,
    ],
)
def test_hostile_ids_are_stored_exactly(device_id):
    site_id = device_id[::-1]
    payload = {"device_id": device_id, "site_id": site_id, "ts": T, "co2": 1}
    result = normalize(message(payload, received=datetime.fromtimestamp(T, UTC)))
    [reading] = result.readings.to_pylist()
    assert reading["device_id"].encode() == device_id.encode()
    assert reading["site_id"].encode() == site_id.encode()
    assert reading["reading_id"] == reading_id(device_id, "co2", T * 1_000_000)


# -- determinism, ids, schemas ------------------------------------------------------------------


def test_same_messages_give_equal_tables():
    messages = [message(payload) for payload in (BAD_MESSAGES["bad_value"], b"junk")] + [
        message({"device_id": f"D{i}", "ts": T + i, "co2": i, "t": "1.5"}) for i in range(50)
    ]
    first = normalize(*messages)
    second = normalize(*messages)
    assert first.readings.equals(second.readings)
    assert first.quarantine.equals(second.quarantine)
    assert first.readings.num_rows == 100
    assert first.quarantine.num_rows == 2


def test_reading_id_is_stable_and_distinguishes_its_parts():
    base = reading_id("dev", "temperature", 1_718_380_000_000_000)
    expected = hashlib.blake2b(b"dev\x1ftemperature\x1f1718380000000000", digest_size=16)
    assert base == expected.hexdigest()
    assert base == reading_id("dev", "temperature", 1_718_380_000_000_000)
    assert len(base) == 32
    others = {
        reading_id("dev2", "temperature", 1_718_380_000_000_000),
        reading_id("dev", "humidity", 1_718_380_000_000_000),
        reading_id("dev", "temperature", 1_718_380_000_000_001),
        reading_id("de", "vtemperature", 1_718_380_000_000_000),
    }
    assert base not in others
    assert len(others) == 4


def test_schemas_match_the_contract_even_when_empty():
    for result in (normalize(), normalize(message({"device_id": "D", "ts": T, "co2": 1}))):
        assert result.readings.schema.equals(READING_SCHEMA)
        assert result.quarantine.schema.equals(QUARANTINE_SCHEMA)
    assert normalize().messages == 0


def test_every_reason_has_a_description():
    produced = set(BAD_MESSAGES)
    assert produced == set(REASONS)
    assert all(REASONS[reason].strip() for reason in REASONS)


def test_transport_fields_stand_in_only_for_missing_ids():
    carried = {"site_id": "topic-site", "device_id": "topic-dev"}
    bare = {"metric": "m", "value": 1, "ts": T}
    own_ids = {"sensor_id": "S", "location": "Kitchen", "type": "m", "value": 2, "ts": T}
    own_device = {"equipment_id": "EQ", "measured_at": T, "co_level": 3}
    result = normalize(
        *(
            Message(orjson.dumps(p), "mqtt:t", RECEIVED, carried)
            for p in (bare, own_ids, own_device, [bare])
        ),
        Message(orjson.dumps(bare), "kafka:t/0/1", RECEIVED),  # nothing carried: quarantined
    )
    ids = [(r["device_id"], r["site_id"]) for r in result.readings.to_pylist()]
    assert ids == [
        ("topic-dev", "topic-site"),
        ("S", "Kitchen"),
        ("EQ", "topic-site"),
        ("topic-dev", "topic-site"),
    ]
    [row] = result.quarantine.to_pylist()
    assert (row["reason"], row["raw"]) == ("missing_device_id", orjson.dumps(bare))
    too_long = Message(orjson.dumps(bare), "mqtt:t", RECEIVED, {"device_id": "d" * 300})
    [row] = normalize(too_long).quarantine.to_pylist()
    assert row["reason"] == "id_too_long" and row["raw"] == orjson.dumps(bare)
