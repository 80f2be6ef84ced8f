"""The fleet simulator: determinism, split invariance, payload shapes, anomalies and late messages."""

import io
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from sensor_platform.simulator.fleet import load_fleet
from sensor_platform.simulator.generate import (
    LATE_DELAY,
    anomaly_labels,
    simulate,
    write_jsonl,
    write_labels,
)

START = datetime(2026, 3, 2, tzinfo=UTC)
ISO_MICROS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
FIRE_KEYS = ["equipment_id", "facility_id", "equipment_location", "measured_at"]
FIRE_METRICS = ["temperature", "humidity", "smoke_density", "co_level", "gas_level"]
FARM_KEYS = ["device_id", "greenhouse_id", "timestamp", "temperature", "humidity", "co2"]
SINGLE_KEYS = ["sensor_id", "type", "unit", "value", "timestamp", "location"]


@pytest.fixture(scope="module")
def fleet():
    return load_fleet()


@pytest.fixture(scope="module")
def two_days(fleet):
    """Two days at anomaly rate 0.1: the readings by device and the labels of the same days."""
    end = START + timedelta(days=2)
    messages = list(simulate(fleet, START, end, seed=42, anomaly_rate=0.1))
    labels = anomaly_labels(fleet, START, end, seed=42, anomaly_rate=0.1)
    readings = defaultdict(list)  # device_id -> [(event_time, metric, value, status)]
    for message in messages:
        for row in _readings(message):
            readings[message.key.decode()].append(row)
    return messages, labels, readings


def _readings(message) -> list[tuple[datetime, str, float, int]]:
    """(event_time, metric, value, status) of one payload, read the way its shape says."""
    obj = json.loads(message.payload)
    if "equipment_id" in obj:
        event = datetime.fromisoformat(obj["measured_at"])
        return [(event, m, obj[m], obj.get("status_code", 0)) for m in FIRE_METRICS]
    if "greenhouse_id" in obj:
        event = datetime.fromtimestamp(obj["timestamp"] / 1000, UTC)
        status = int(obj["error_code"])
        return [(event, m, obj[m], status) for m in ("temperature", "humidity", "co2")]
    event = datetime.fromtimestamp(obj["timestamp"], UTC)
    return [(event, obj["type"], obj["value"], obj.get("status_code", 0))]


def _inside(rows, label, metric=None):
    return [
        r for r in rows if label.start <= r[0] < label.end and (metric is None or r[1] == metric)
    ]


def test_default_fleet(fleet):
    kinds = defaultdict(list)
    for device in fleet.devices:
        kinds[device.kind].append(device)
    assert {k: len(v) for k, v in kinds.items()} == {"fire": 6, "farm": 4, "building": 7}
    assert {d.site_id for d in kinds["fire"]} == {"FAC-001", "FAC-002", "FAC-003"}
    assert {d.site_id for d in kinds["farm"]} == {"GH1", "GH2"}
    assert all(d.payload == "single" and len(d.metrics) == 1 for d in kinds["building"])
    cadences = fleet.cadences()
    assert [cadences[d.device_id] for d in kinds["fire"]] == [30] * 4 + [10, 30]
    assert {cadences[d.device_id] for d in kinds["farm"] + kinds["building"]} == {60}
    # about a fifth more readings an hour than the twelve original devices (3,360)
    per_hour = sum(3600 // d.cadence_seconds * len(d.metrics) for d in fleet.devices)
    assert per_hour == 4020


def test_hard_negatives_are_hard_and_stay_below_alarm_levels(fleet):
    """The noisy, near-threshold, coarse and drifting devices, on a day without anomalies."""
    end = START + timedelta(days=1)
    series = defaultdict(list)  # device_id -> [(event_time, value)]
    for message in simulate(fleet, START, end, seed=4, anomaly_rate=0.0):
        for event, _, value, _ in _readings(message):
            series[message.key.decode()].append((event, value))
    noisy = [v for _, v in sorted(series["FIRE-HD-005"])]
    fast = [abs(b - a) * 6 for a, b in zip(noisy, noisy[1:], strict=False)]  # °C/min, 10 s apart
    assert len(noisy) == 8640 and sum(r >= 8 for r in fast) > 1000  # a naive rate rule fires
    near = [v for _, v in series["FIRE-HD-006"]]
    assert 38 < max(near) < 40  # just below temperature_high's warning level
    for device_id, step in (("BLD-S-005", 0.5), ("BLD-S-007", 1.0)):
        values = [v for _, v in sorted(series[device_id])]
        assert all(v / step == round(v / step) for v in values)
        repeats = sum(a == b for a, b in zip(values, values[1:], strict=False))
        assert repeats > len(values) / 2  # five identical minutes are common
    hourly = defaultdict(list)
    for event, value in series["BLD-S-006"]:
        hourly[event.hour].append(value)
    means = [sum(v) / len(v) for v in hourly.values()]
    assert max(means) - min(means) > 2 * 100  # drifts beyond its daily cycle of ±100 ppm
    labels = anomaly_labels(fleet, START, START + timedelta(days=10), seed=4, anomaly_rate=0.2)
    coarse = {"BLD-S-005", "BLD-S-007"}
    assert not [lb for lb in labels if lb.device_id in coarse and lb.kind == "stuck"]
    assert {lb.kind for lb in labels if lb.device_id in coarse} == {
        "spike",
        "dropout",
        "error_code",
    }


def test_same_seed_same_messages_other_seed_other_values(fleet):
    end = START + timedelta(hours=2)
    first = list(simulate(fleet, START, end, seed=5, late_rate=0.05))
    again = list(simulate(fleet, START, end, seed=5, late_rate=0.05))
    other = list(simulate(fleet, START, end, seed=6, late_rate=0.05))
    assert first == again and len(first) > 1500
    assert [m.payload for m in first] != [m.payload for m in other]
    assert anomaly_labels(fleet, START, end, seed=5) == anomaly_labels(fleet, START, end, seed=5)


@pytest.mark.parametrize("late_rate", [0.0, 0.1])
def test_split_invariance(fleet, late_rate):
    # 8 hours crosses the generator's internal 6-hour chunks as well as the split points.
    end = START + timedelta(hours=8)
    whole = list(simulate(fleet, START, end, seed=3, anomaly_rate=0.5, late_rate=late_rate))
    cuts = [
        START + timedelta(microseconds=1),
        START + timedelta(minutes=17, seconds=3, microseconds=500_000),
        START + timedelta(hours=1),
        START + timedelta(hours=5, minutes=59, seconds=59, microseconds=999_999),
        START + timedelta(hours=6),
        end - timedelta(microseconds=1),
    ]
    bounds = [START, *cuts, end]
    pieces = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        pieces += list(simulate(fleet, a, b, seed=3, anomaly_rate=0.5, late_rate=late_rate))
    assert pieces == whole
    received = [m.received_at for m in whole]
    assert received == sorted(received) and START <= received[0] and received[-1] < end


def test_labels_are_split_invariant_and_overlap_the_window(fleet):
    end = START + timedelta(hours=12)
    whole = anomaly_labels(fleet, START, end, seed=9, anomaly_rate=0.3)
    middle = START + timedelta(hours=5, minutes=7)
    parts = anomaly_labels(fleet, START, middle, seed=9, anomaly_rate=0.3)
    parts += anomaly_labels(fleet, middle, end, seed=9, anomaly_rate=0.3)
    assert sorted(set(parts), key=whole.index) == whole
    assert all(lb.start < end and lb.end > START for lb in whole)


def test_every_payload_shape_is_well_formed(fleet):
    end = START + timedelta(minutes=30)
    messages = list(simulate(fleet, START, end, seed=1, anomaly_rate=0.0))
    by_shape = defaultdict(int)
    for message in messages:
        obj = json.loads(message.payload)
        assert message.key.decode() == obj.get(
            "equipment_id", obj.get("device_id", obj.get("sensor_id"))
        )
        if "equipment_id" in obj:
            by_shape["fire"] += 1
            assert list(obj) == FIRE_KEYS + FIRE_METRICS
            assert ISO_MICROS_Z.match(obj["measured_at"])
            event = datetime.fromisoformat(obj["measured_at"])
        elif "greenhouse_id" in obj:
            by_shape["farm"] += 1
            assert list(obj) == FARM_KEYS + ["error_code"] and obj["error_code"] == "0"
            assert type(obj["timestamp"]) is int
            event = datetime.fromtimestamp(obj["timestamp"] / 1000, UTC)
        else:
            by_shape["single"] += 1
            assert list(obj) == SINGLE_KEYS
            assert type(obj["timestamp"]) is float
            assert obj["unit"] == {"temperature": "°C", "humidity": "%", "co2": "ppm"}[obj["type"]]
            event = datetime.fromtimestamp(obj["timestamp"], UTC)
        numbers = [v for k, v in obj.items() if k in FIRE_METRICS + ["co2", "value"]]
        assert numbers and all(type(v) is float and round(v, 3) == v for v in numbers)
        assert event == message.event_time
        assert timedelta(0) <= message.received_at - message.event_time < timedelta(seconds=2)
        cadence = fleet.cadences()[message.key.decode()]
        assert event.timestamp() % cadence == 0
    # 30 minutes: 4 fire devices every 30 s, 4 farm every 60 s; single sensors: 7 every 60 s,
    # one every 30 s and one every 10 s
    assert dict(by_shape) == {"fire": 240, "farm": 120, "single": 7 * 30 + 60 + 180}


def test_values_stay_in_range_outside_anomalies(fleet, two_days):
    _, labels, readings = two_days
    specs = {(d.device_id, m.name): m for d in fleet.devices for m in d.metrics}
    checked = 0
    for device_id, rows in readings.items():
        mine = [lb for lb in labels if lb.device_id == device_id and lb.metric is not None]
        for event, metric, value, _ in rows:
            if any(lb.metric == metric and lb.start <= event < lb.end for lb in mine):
                continue
            spec = specs[device_id, metric]
            assert spec.min <= value <= spec.max, (device_id, metric, event, value)
            checked += 1
    assert checked > 150_000


def test_anomaly_rate_is_the_fraction_of_device_hours(fleet):
    end = START + timedelta(days=10)
    for rate in (0.1, 0.25):
        labels = anomaly_labels(fleet, START, end, seed=11, anomaly_rate=rate)
        slots = {(lb.device_id, lb.start.replace(minute=0, second=0)) for lb in labels}
        assert len(slots) == len(labels)  # at most one episode per device-hour
        assert len(labels) == pytest.approx(rate * 240 * len(fleet.devices), abs=len(fleet.devices))
        assert all(lb.end - lb.start <= timedelta(hours=1) for lb in labels)
    assert anomaly_labels(fleet, START, end, seed=11, anomaly_rate=0.0) == []


def test_each_anomaly_kind_is_labelled_and_visible(fleet, two_days):
    messages, labels, readings = two_days
    specs = {(d.device_id, m.name): m for d in fleet.devices for m in d.metrics}
    kinds = defaultdict(int)
    for label in labels:
        kinds[label.kind] += 1
        rows = readings[label.device_id]
        cadence = timedelta(seconds=fleet.cadences()[label.device_id])
        if label.kind == "spike":
            inside = _inside(rows, label, label.metric)
            spec = specs[label.device_id, label.metric]
            # far above the range, but a relative humidity never says more than 100 %
            far = 100.0 if spec.unit == "%" else 3 * spec.max
            assert len(inside) == 1 and inside[0][2] >= far > spec.max
        elif label.kind == "stuck":
            inside = _inside(rows, label, label.metric)
            assert len({r[2] for r in inside}) == 1
            assert inside[-1][0] - inside[0][0] >= timedelta(minutes=10)
        elif label.kind == "dropout":
            assert label.end - label.start >= max(timedelta(minutes=10), 10 * cadence)
            assert _inside(rows, label) == []
            if label.start > START:  # it was sending just before
                assert any(label.start - cadence == r[0] for r in rows)
        elif label.kind == "error_code":
            inside = _inside(rows, label)
            assert inside and all(r[3] != 0 for r in inside)
        elif label.kind == "threshold":
            inside = _inside(rows, label, "temperature")
            assert label.end - label.start > timedelta(minutes=5)
            assert len(inside) == (label.end - label.start) / cadence
            assert all(r[2] > 60 for r in inside)
        elif label.kind == "rise":  # a fire: 10 to 20 °C a minute for 2 to 4 minutes
            inside = _inside(rows, label, "temperature")
            assert timedelta(minutes=2) <= label.end - label.start <= timedelta(minutes=4)
            assert len(inside) == (label.end - label.start) / cadence
            assert 7 <= _slope_per_minute(inside) <= 23  # a noisy sensor's ±2 °C included
    assert set(kinds) == {"spike", "stuck", "dropout", "error_code", "threshold", "rise"}, dict(
        kinds
    )
    # a fault code only ever appears inside an error_code episode
    faults = [lb for lb in labels if lb.kind == "error_code"]
    for device_id, rows in readings.items():
        for event, _, _, status in rows:
            inside = any(lb.device_id == device_id and lb.start <= event < lb.end for lb in faults)
            assert (status != 0) == inside


def _slope_per_minute(rows) -> float:
    """Least-squares slope of (event_time, value) rows, per minute."""
    t = [(r[0] - rows[0][0]).total_seconds() / 60 for r in rows]
    v = [r[2] for r in rows]
    t_mean, v_mean = sum(t) / len(t), sum(v) / len(v)
    covariance = sum((a - t_mean) * (b - v_mean) for a, b in zip(t, v, strict=True))
    return covariance / sum((a - t_mean) ** 2 for a in t)


def test_late_messages_arrive_seventy_minutes_after_their_event(fleet):
    end = START + timedelta(hours=3)
    messages = list(simulate(fleet, START, end, seed=2, anomaly_rate=0.0, late_rate=0.1))
    delays = [m.received_at - m.event_time for m in messages]
    late = [m for m, d in zip(messages, delays, strict=True) if d >= timedelta(seconds=2)]
    assert all(d == LATE_DELAY for d in delays if d >= timedelta(seconds=2))
    assert 0.05 < len(late) / len(messages) < 0.15
    hour = START + timedelta(hours=2)
    landed = [m for m in late if hour <= m.received_at < end]
    assert landed and all(m.event_time < hour for m in landed)  # in a later window than its hour
    on_time = list(simulate(fleet, START, end, seed=2, anomaly_rate=0.0))
    assert all(m.received_at - m.event_time < timedelta(seconds=2) for m in on_time)


def test_writers_emit_json_lines(fleet):
    end = START + timedelta(minutes=5)
    out = io.StringIO()
    count = write_jsonl(simulate(fleet, START, end), out)
    lines = out.getvalue().splitlines()
    assert count == len(lines) == len(list(simulate(fleet, START, end)))
    assert [json.loads(line) for line in lines] == [
        json.loads(m.payload) for m in simulate(fleet, START, end)
    ]
    labels = anomaly_labels(fleet, START, START + timedelta(days=1))
    out = io.StringIO()
    assert write_labels(labels, out) == len(labels) > 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["device_id"], r["metric"], r["kind"]) for r in rows] == [
        (lb.device_id, lb.metric, lb.kind) for lb in labels
    ]
    assert [datetime.fromisoformat(r["start"]) for r in rows] == [lb.start for lb in labels]


def test_bad_arguments_are_refused(fleet):
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(fleet, datetime(2026, 3, 2), datetime(2026, 3, 3))
    with pytest.raises(ValueError, match="anomaly_rate"):
        simulate(fleet, START, START + timedelta(hours=1), anomaly_rate=1.5)
    with pytest.raises(ValueError, match="late_rate"):
        simulate(fleet, START, START + timedelta(hours=1), late_rate=-0.1)
    assert list(simulate(fleet, START, START)) == []


_METRIC = {"unit": "°C", "min": 10, "max": 20, "daily_amplitude": 1, "noise": 0.1}


def _device(**changes) -> dict:
    device = {
        "device_id": "D1",
        "site_id": "S1",
        "location": "Roof",
        "kind": "building",
        "payload": "single",
        "cadence_seconds": 60,
        "metrics": {
            "temperature": {"unit": "°C", "min": 10, "max": 20, "daily_amplitude": 1, "noise": 0.1}
        },
    }
    return device | changes


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not valid JSON"),
        ([], "non-empty JSON list"),
        ([{k: v for k, v in _device().items() if k != "site_id"}], "missing keys site_id"),
        ([_device(cadence_seconds=0)], "cadence_seconds must be"),
        ([_device(cadence_seconds=-30)], "cadence_seconds must be"),
        ([_device(), _device()], "duplicate device_id 'D1'"),
        ([_device(kind="oven")], "kind must be one of"),
        ([_device(payload="fire")], "fire payload needs metrics humidity"),
        (
            [
                _device(
                    metrics={
                        "t": {"unit": "C", "min": 5, "max": 1, "daily_amplitude": 0, "noise": 0}
                    }
                )
            ],
            "min 5.0 is greater than max 1.0",
        ),
        (
            [_device(metrics={"t": {"unit": "C", "min": 0, "max": 1}})],
            "missing keys daily_amplitude",
        ),
        (
            [_device(metrics={"t": {**_METRIC, "noise_sigma": 1}})],
            "metric 't': unknown keys noise_sigma",
        ),
        (
            [_device(metrics={"t": {**_METRIC, "resolution": 0.3}})],
            "min 10.0 is not a multiple of resolution 0.3",
        ),
        ([_device(metrics={"t": {**_METRIC, "drift": -1}})], "drift must be >= 0"),
    ],
)
def test_bad_fleet_files_raise_clear_errors(tmp_path, document, message):
    path = tmp_path / "fleet.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_fleet(path)


def test_a_custom_fleet_file_loads(tmp_path):
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps([_device(), _device(device_id="D2", cadence_seconds=15)]))
    fleet = load_fleet(str(path))
    assert fleet.cadences() == {"D1": 60, "D2": 15}
    messages = list(simulate(fleet, START, START + timedelta(minutes=1), anomaly_rate=0.0))
    assert [m.key for m in messages].count(b"D2") == 4


def test_values_never_leave_the_range_even_when_the_cycle_is_wider(tmp_path):
    metric = {"unit": "°C", "min": 10, "max": 20, "daily_amplitude": 50, "noise": 3}
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps([_device(metrics={"temperature": metric})]))
    messages = simulate(load_fleet(path), START, START + timedelta(days=1), anomaly_rate=0.0)
    values = [json.loads(m.payload)["value"] for m in messages]
    assert len(values) == 1440 and min(values) == 10 and max(values) == 20


def test_malformed_messages_are_split_invariant_and_each_is_quarantined_for_its_kind(fleet):
    from sensor_platform.readings.normalize import Message, normalize_messages
    from sensor_platform.simulator.payloads import MALFORMED_KINDS

    end = START + timedelta(hours=2)
    clean = list(simulate(fleet, START, end, seed=4, anomaly_rate=0.0))
    broken = list(simulate(fleet, START, end, seed=4, anomaly_rate=0.0, malformed_rate=0.01))
    middle = START + timedelta(minutes=41, seconds=7)
    parts = list(simulate(fleet, START, middle, seed=4, anomaly_rate=0.0, malformed_rate=0.01))
    parts += list(simulate(fleet, middle, end, seed=4, anomaly_rate=0.0, malformed_rate=0.01))
    assert parts == broken and len(broken) == len(clean)
    changed = [b for c, b in zip(clean, broken, strict=True) if c.payload != b.payload]
    assert 0.005 < len(changed) / len(clean) < 0.02
    result = normalize_messages(
        [Message(m.payload, "simulator", m.received_at) for m in changed], batch_id="b"
    )
    reasons = result.quarantine.column("reason").to_pylist()
    assert len(reasons) == len(changed)  # every broken message is quarantined, once
    assert set(reasons) == set(MALFORMED_KINDS)
    # a bad value keeps the message's good fields (wide payloads), so readings may remain
    assert set(result.readings.column("device_id").to_pylist()) <= {m.key.decode() for m in changed}
    with pytest.raises(ValueError, match="malformed_rate"):
        list(simulate(fleet, START, end, malformed_rate=1.5))
