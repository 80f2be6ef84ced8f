"""Detection on crafted readings: rules files, every detector, conditions, and episodes that
cross hour boundaries (hour by hour must give the same episodes as one long window)."""

import json
import math
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sensor_platform.detection.episodes import detect_episodes, detect_hour_by_hour
from sensor_platform.detection.rules import load_rules, parse_rules
from sensor_platform.detection.schema import EPISODE_SCHEMA, episode_id
from sensor_platform_tests.readings_factory import hour, readings_table

H10 = hour(10)


def series(device, metric, start, values, *, cadence=30, site="S1", unit=None, status=None):
    return [
        {
            "event_time": start + timedelta(seconds=cadence * i),
            "device_id": device,
            "site_id": site,
            "metric": metric,
            "value": v,
            "unit": unit,
            "status_code": status[i] if status else 0,
        }
        for i, v in enumerate(values)
    ]


def noisy(n, level=25.0, amplitude=0.4, phase=0):
    """A smooth daily-like drift plus deterministic pseudo-noise."""
    return [
        round(level + math.sin((i + phase) / 40) + amplitude * math.sin((i + phase) * 12.9898), 3)
        for i in range(n)
    ]


def rules_of(*rules, lookback=60):
    return parse_rules({"lookback_minutes": lookback, "rules": list(rules)})


def detect(rows, rules, start=H10, hours=1, **kwargs):
    return detect_episodes(
        readings_table(rows),
        rules,
        window_start=start,
        window_end=start + timedelta(hours=hours),
        **kwargs,
    )


def of_rule(episodes, rule):
    return episodes.filter(pc.equal(episodes["rule"], rule)).to_pylist()


def test_default_rules_follow_the_seed_alert_thresholds():
    rules = load_rules()
    assert rules.by_name("temperature_high").levels == {"warning": 40.0, "critical": 60.0}
    assert rules.by_name("co_level_high").levels == {"warning": 30.0, "critical": 50.0}
    assert {r.kind for r in rules.rules} == {
        "threshold",
        "status",
        "spike",
        "stuck",
        "silent",
        "rate",
    }
    assert rules.lookback == timedelta(minutes=60)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rules": [{"name": "x", "kind": "nope"}]}, "'kind' must be one of"),
        ({"rules": [{"name": "x", "kind": "spike", "windw": 3}]}, r"unknown keys.*windw"),
        ({"rules": [{"name": "Bad Name", "kind": "status"}]}, "'name' must match"),
        ({"rules": [{"name": "a", "kind": "status"}] * 2}, "duplicate rule names"),
        ({"rules": [{"name": "t", "kind": "threshold", "metric": "m"}]}, "exactly one of"),
        (
            {
                "rules": [
                    {
                        "name": "t",
                        "kind": "threshold",
                        "above": {"warning": 60, "critical": 40},
                    }
                ]
            },
            "critical level must be beyond",
        ),
        ({"rules": [{"name": "s", "kind": "silent", "metric": "m"}]}, "device-wide"),
        ({"rules": [{"name": "r", "kind": "rate"}]}, "rise_per_minute"),
        (
            {"lookback_minutes": 4, "rules": [{"name": "s", "kind": "stuck"}]},
            "lookback_minutes",
        ),
        ({"rules": [{"name": "s", "kind": "status", "times": "3"}]}, "'times' must be a number"),
        ({"rule": []}, "'rules' list"),
        (
            {"rules": [{"name": "flat", "kind": "stuck", "max_chance": 1}]},
            "rule 'flat': 'max_chance' must be below 1",
        ),
        (
            {"rules": [{"name": "r", "kind": "rate", "rise_per_minute": 8, "min_readings": 2}]},
            "rule 'r': 'min_readings' must be >= 3",
        ),
        (
            {"rules": [{"name": "r", "kind": "rate", "rise_per_minute": 8, "window": 60}]},
            r"rule 'r': unknown keys for a rate rule: \['window'\]",
        ),
        (
            {"rules": [{"name": "r", "kind": "rate", "fall_per_minute": 2, "min_score": -1}]},
            "rule 'r': 'min_score' must be >= 0",
        ),
        (
            {
                "lookback_minutes": 1,
                "rules": [{"name": "r", "kind": "rate", "rise_per_minute": 8}],
            },
            "longest rate window_seconds",
        ),
    ],
)
def test_bad_rules_are_rejected_with_a_clear_message(document, message):
    with pytest.raises(ValueError, match=message):
        parse_rules(document)


def test_rules_file_errors_name_the_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="rules.json is not valid JSON"):
        load_rules(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_rules(tmp_path / "missing.json")
    path.write_text(json.dumps({"rules": [{"name": "f", "kind": "status"}]}))
    assert load_rules(path).rules[0].kind == "status"


def test_threshold_episode_reports_worst_severity_peak_count_and_end():
    values = [25] * 20 + [45, 50, 65, 70, 55, 45] + [25] * 20
    rows = series("EQ1", "temperature", H10, values, unit="°C")
    [episode] = of_rule(detect(rows, load_rules()), "temperature_high")
    start = H10 + timedelta(seconds=30 * 20)
    assert episode["start_time"] == start
    assert episode["end_time"] == start + timedelta(seconds=150)
    assert episode["closed_at"] == start + timedelta(seconds=180)
    assert (episode["status"], episode["severity"]) == ("closed", "critical")
    assert (episode["peak_value"], episode["threshold"], episode["reading_count"]) == (70, 60, 6)
    assert episode["peak_time"] == start + timedelta(seconds=90)
    assert (episode["unit"], episode["site_id"], episode["kind"]) == ("°C", "S1", "threshold")
    assert episode["episode_id"] == episode_id("EQ1", "temperature", "temperature_high", start)


def test_below_thresholds_and_warning_only_episodes():
    rules = rules_of({"name": "cold", "kind": "threshold", "metric": "t", "below": {"warning": 2}})
    rows = series("D", "t", H10, [5, 5, 1.5, 0.5, 1, 5, 5])
    [episode] = of_rule(detect(rows, rules), "cold")
    assert (episode["severity"], episode["peak_value"], episode["reading_count"]) == (
        "warning",
        0.5,
        3,
    )


def test_duration_and_repetition_conditions():
    hot_for_5 = {
        "name": "hot5",
        "kind": "threshold",
        "metric": "t",
        "above": {"critical": 60},
        "for_seconds": 300,
    }
    three_in_a_row = {
        "name": "hot3",
        "kind": "threshold",
        "metric": "t",
        "above": {"critical": 60},
        "times": 3,
    }
    rules = rules_of(hot_for_5, three_in_a_row)
    # 4.5 minutes above (10 readings), a normal reading, then 5 minutes above (11 readings)
    values = [20] * 5 + [61] * 10 + [20] + [62] * 11 + [20] * 5 + [63, 63] + [20] * 5
    episodes = detect(series("D", "t", H10, values), rules)
    [long_one] = of_rule(episodes, "hot5")
    assert long_one["start_time"] == H10 + timedelta(seconds=30 * 16)
    assert long_one["reading_count"] == 11
    assert [e["reading_count"] for e in of_rule(episodes, "hot3")] == [10, 11]  # not the pair


def test_device_fault_is_one_device_wide_episode():
    status = [0] * 5 + [2] * 4 + [0] * 5
    rows = series("GH1-D1", "temperature", H10, [22] * 14, status=status) + series(
        "GH1-D1", "humidity", H10, [60] * 14, status=status
    )
    rows += series("GH1-D2", "temperature", H10, [22] * 14)  # a healthy neighbour
    [episode] = of_rule(detect(rows, load_rules()), "device_fault")
    assert episode["device_id"] == "GH1-D1" and episode["metric"] is None
    assert (episode["reading_count"], episode["peak_value"]) == (4, 2)
    assert episode["start_time"] == H10 + timedelta(seconds=150)


def test_spike_is_judged_against_the_devices_own_history():
    quiet = noisy(240)
    spiky = list(quiet)
    spiky[150] = 105.0
    rows = series("EQ1", "temperature", H10 - timedelta(hours=1), spiky)
    rows += series("EQ2", "temperature", H10 - timedelta(hours=1), noisy(240, level=35, phase=7))
    rows += series("EQ3", "smoke_density", H10 - timedelta(hours=1), noisy(240, 0.02, 0.002))
    spikes = of_rule(detect(rows, load_rules()), "spike")
    assert [(e["device_id"], e["peak_value"], e["reading_count"]) for e in spikes] == [
        ("EQ1", 105.0, 1)
    ]
    assert spikes[0]["start_time"] == H10 + timedelta(minutes=15)
    assert spikes[0]["peak_score"] > 50


def test_stuck_sensor_needs_identical_values_for_five_minutes():
    # 50 minutes of a sensor that never repeats a value, then a stuck run at 10:00
    values = noisy(100) + [23.5] * 12 + noisy(20, phase=50) + [24.1] * 6 + noisy(20, phase=90)
    rows = series("D", "humidity", H10 - timedelta(minutes=50), values)
    [episode] = of_rule(detect(rows, load_rules()), "stuck_sensor")
    assert (episode["peak_value"], episode["reading_count"]) == (23.5, 12)
    assert episode["end_time"] - episode["start_time"] == timedelta(minutes=5, seconds=30)


def test_silent_devices_closed_and_still_open():
    gap = [25.0] * 40 + [None] * 20 + [25.0] * 60  # 10 minutes without readings
    rows = [r for r in series("A", "temperature", H10, gap) if r["value"] is not None]
    rows += series("B", "temperature", H10, [25.0] * 80)  # stops 20 minutes before the end
    rows += series("C", "temperature", H10, [25.0] * 120)  # reports to the end
    rows += series("U", "temperature", H10, [25.0] * 30, cadence=60)  # not in the registry
    episodes = detect(rows, load_rules(), cadences={"A": 30, "B": 30, "C": 30})
    silent = {e["device_id"]: e for e in of_rule(episodes, "silent_device")}
    assert set(silent) == {"A", "B", "U"}
    a, b, u = silent["A"], silent["B"], silent["U"]
    assert (a["status"], a["start_time"], a["closed_at"]) == (
        "closed",
        H10 + timedelta(seconds=30 * 39),
        H10 + timedelta(seconds=30 * 60),
    )
    assert (a["reading_count"], a["peak_value"], a["threshold"]) == (20, 630, 150)
    assert (b["status"], b["closed_at"], b["metric"]) == ("open", None, None)
    assert b["end_time"] == H10 + timedelta(seconds=30 * 119)  # the fleet's latest reading
    assert u["threshold"] == 300  # five times its observed 60 s interval


def test_rate_of_change_needs_a_sustained_rise():
    # 12 °C per minute for 1.5 minutes; the rate is the slope of the last 2 minutes
    rising = [25] * 10 + [30, 36, 42, 48] + [48] * 10
    single = [25] * 10 + [60] + [25] * 10  # one wild reading makes no slope
    rows = series("F1", "temperature", H10, rising) + series("F2", "temperature", H10, single)
    [episode] = of_rule(detect(rows, load_rules()), "temperature_rising_fast")
    assert episode["device_id"] == "F1"
    # the two-minute slope passes 8 °C/min at the 42 reading and falls below it once the
    # plateau fills the window
    assert episode["start_time"] == H10 + timedelta(seconds=30 * 12)
    assert (episode["reading_count"], episode["peak_value"], episode["severity"]) == (
        3,
        12.0,
        "critical",
    )


def _chained(rows, rules, start, hours, cadences=None):
    return list(
        detect_hour_by_hour(
            readings_table(rows), rules, start=start, hours=hours, cadences=cadences
        )
    )


def _latest(outputs):
    latest = {}
    for table in outputs:
        for row in table.to_pylist():
            latest[row["episode_id"]] = row
    return latest


def test_episodes_crossing_hours_keep_one_id_and_match_a_single_window():
    start = H10
    n = 4 * 120  # four hours at 30 s
    temperature = noisy(n)
    temperature[100:160] = [65.0] * 60  # 10:50 - 11:20, across 11:00
    temperature[200] = 140.0
    humidity = noisy(n, level=55, phase=3)
    humidity[150:400] = [57.125] * 250  # stuck 2 hours: longer than the 60 minute look-back
    status = [0] * n
    status[235:245] = [1] * 10  # a fault across 12:00
    rows = series("EQ1", "temperature", start, temperature, status=status)
    rows += series("EQ1", "humidity", start, humidity, status=status)
    rows += series("EQ2", "co_level", start, noisy(n, 5))
    # EQ2 falls silent for 35 minutes across 12:00
    rows = [r for r in rows if not (r["device_id"] == "EQ2" and 230 <= _index(r, start) < 300)]
    cadences = {"EQ1": 30, "EQ2": 30}
    rules = load_rules()
    chained = _latest(_chained(rows, rules, start, 4, cadences))
    whole = {
        r["episode_id"]: r
        for r in detect(rows, rules, start=start, hours=4, cadences=cadences).to_pylist()
    }
    assert chained.keys() == whole.keys()
    for key, row in whole.items():
        mine = {k: v for k, v in chained[key].items() if k != "partition_hour"}
        assert mine == {k: v for k, v in row.items() if k != "partition_hour"}, row["rule"]
    kinds = {row["rule"] for row in whole.values()}
    assert {"temperature_high", "stuck_sensor", "device_fault", "silent_device", "spike"} <= kinds
    stuck = next(r for r in whole.values() if r["rule"] == "stuck_sensor")
    assert stuck["reading_count"] == 250 and stuck["start_time"] == start + timedelta(minutes=75)


def _index(row, start):
    return int((row["event_time"] - start).total_seconds() // 30)


def test_open_episodes_are_carried_while_quiet_then_go_stale():
    rules = rules_of({"name": "hot", "kind": "threshold", "metric": "t", "above": {"critical": 60}})
    rows = series("D", "t", H10, [20] * 100 + [70] * 20)  # hot at the end of the hour
    first = detect(rows, rules)
    [opened] = first.to_pylist()
    assert opened["status"] == "open"
    carried = detect_episodes(
        readings_table(rows),
        rules,
        window_start=hour(11),
        window_end=hour(12),
        previous=first,
    )
    assert [(r["episode_id"], r["status"]) for r in carried.to_pylist()] == [
        (opened["episode_id"], "open")
    ]
    later = detect_episodes(
        readings_table(rows[:1]),
        rules,
        window_start=hour(11, day=2),
        window_end=hour(12, day=2),
        previous=carried,
    )
    [stale] = later.to_pylist()
    assert (stale["episode_id"], stale["status"], stale["closed_at"]) == (
        opened["episode_id"],
        "closed",
        None,
    )


def test_output_schema_and_empty_input():
    empty = detect_episodes(readings_table([]), load_rules(), window_start=H10, window_end=hour(11))
    assert empty.schema == EPISODE_SCHEMA and empty.num_rows == 0
    assert isinstance(empty, pa.Table)
