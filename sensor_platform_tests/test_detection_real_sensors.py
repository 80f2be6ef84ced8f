"""Detection on sensor data the simulator did not make: Gaussian noise, coarse resolution, and
the real anomalies hidden in them. Each healthy case is first shown to be one the naive rules
(a rate between two readings, five identical minutes) alarm on, then to raise nothing."""

from datetime import timedelta

import numpy as np

from sensor_platform.detection.episodes import detect_episodes
from sensor_platform.detection.rules import load_rules
from sensor_platform_tests.readings_factory import hour, readings_table

START = hour(0, day=2)
DAY = timedelta(days=1)


def sensor(values, *, cadence, start=START, device="D1", metric="temperature"):
    """One device's readings every `cadence` seconds from `start` (before the window: history)."""
    return [
        {
            "event_time": start + timedelta(seconds=cadence * i),
            "device_id": device,
            "site_id": "S1",
            "metric": metric,
            "value": float(v),
            "unit": "°C",
            "status_code": 0,
        }
        for i, v in enumerate(values)
    ]


def detect_day(rows):
    """Episodes of the day after START's look-back hour, by rule name."""
    rules = load_rules()
    episodes = detect_episodes(
        readings_table(rows),
        rules,
        window_start=START + rules.lookback,
        window_end=START + rules.lookback + DAY,
        cadences={"D1": rows[1]["event_time"].timestamp() - rows[0]["event_time"].timestamp()},
    )
    by_rule: dict[str, list[dict]] = {}
    for row in episodes.to_pylist():
        by_rule.setdefault(row["rule"], []).append(row)
    return by_rule


def room(n, cadence, *, level=21.3, swing=0.5, noise_sd=0.1, seed=1):
    """A room's temperature: a daily swing, Gaussian sensor noise, one value per cadence."""
    t = np.arange(n) * cadence
    rng = np.random.default_rng(seed)
    return level + swing * np.cos(2 * np.pi * t / 86_400) + rng.normal(0, noise_sd, n)


def run_lengths(values):
    """Lengths of the runs of identical consecutive values."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return np.diff(np.r_[starts, len(values)])


def test_a_noisy_sensor_at_10_seconds_raises_no_rate_alarm_in_a_day():
    n = (25 * 3600) // 10  # the look-back hour and a day
    values = np.round(room(n, 10, level=22.0, swing=2.0, noise_sd=2.0, seed=7), 3)
    naive = np.diff(values) * 6  # °C per minute between two readings
    assert np.sum(naive >= 8) > 24 * 100  # the old rule fired on hundreds of these an hour
    found = detect_day(sensor(values, cadence=10))
    assert found == {}


def test_a_coarse_sensor_in_a_stable_room_raises_no_stuck_alarm_in_a_day():
    n = 25 * 60  # one reading a minute
    values = np.round(room(n, 60, seed=3) / 0.5) * 0.5  # 0.5 °C resolution
    runs = run_lengths(values)
    assert np.sum(runs >= 6) > 20 and runs.max() >= 60  # 5 identical minutes, often; an hour
    found = detect_day(sensor(values, cadence=60))
    assert found == {}


def test_a_truly_stuck_sensor_is_found_on_noisy_and_quiet_sensors():
    noisy = np.round(room(25 * 360, 10, noise_sd=2.0, seed=11), 3)
    noisy[3000:3060] = noisy[3000]  # 10 minutes at one value
    quiet = np.round(room(25 * 60, 60, noise_sd=0.2, seed=12), 3)
    quiet[700:712] = quiet[700]  # 12 minutes at one value, a reading a minute
    for values, cadence, first, count in ((noisy, 10, 3000, 60), (quiet, 60, 700, 12)):
        found = detect_day(sensor(values, cadence=cadence))
        assert set(found) == {"stuck_sensor"}, (cadence, found.keys())
        [episode] = found["stuck_sensor"]
        assert episode["start_time"] == START + timedelta(seconds=cadence * first)
        assert episode["reading_count"] == count


def test_a_fast_rise_is_found_on_a_noisy_sensor():
    values = room(25 * 360, 10, noise_sd=2.0, seed=5)
    rise_at = 14 * 360  # 13:00, after the look-back hour
    values[rise_at : rise_at + 18] += 10 / 6 * np.arange(1, 19)  # 10 °C a minute for 3 minutes
    found = detect_day(sensor(np.round(values, 3), cadence=10))
    [episode] = found.pop("temperature_rising_fast")
    began = START + timedelta(seconds=10 * rise_at)
    assert began <= episode["start_time"] <= began + timedelta(minutes=2)
    assert episode["end_time"] <= began + timedelta(minutes=4)
    assert 8 <= episode["peak_value"] <= 14  # °C per minute
    # 30 °C above the room is also a spike, and over 40 °C a threshold alarm; nothing else fires
    assert set(found) <= {"spike", "temperature_high"}


def test_a_spike_is_found_on_a_noisy_sensor_and_nowhere_else():
    values = room(25 * 360, 10, level=50.0, swing=5.0, noise_sd=2.0, seed=9)  # humidity, %
    values[5000] += 30.0
    found = detect_day(sensor(np.round(values, 3), cadence=10, metric="humidity"))
    [spike] = found.pop("spike")
    assert spike["start_time"] == START + timedelta(seconds=10 * 5000)
    assert spike["reading_count"] == 1
    assert found == {}


def test_coarse_sensor_spikes_are_judged_by_steps_of_its_resolution():
    values = np.round(room(25 * 60, 60, seed=4) / 0.5) * 0.5
    values[800] += 1.5  # three resolution steps: within what the sensor does
    values[1200] += 10.0  # twenty steps: a spike
    found = detect_day(sensor(values, cadence=60))
    spikes = found.pop("spike")
    assert [e["start_time"] for e in spikes] == [START + timedelta(minutes=1200)]
    assert found == {}


def test_a_spike_is_found_on_a_coarse_sensor_flat_for_hours():
    values = np.round(room(25 * 60, 60, level=45.2, swing=0.1, noise_sd=0.05, seed=6))  # 1 %
    assert len(set(values[600:900])) == 1  # the same reading for five hours
    values[800] = 65.0
    found = detect_day(sensor(values, cadence=60, metric="humidity"))
    assert [e["start_time"] for e in found.pop("spike")] == [START + timedelta(minutes=800)]
    assert found == {}


def test_a_drifting_sensor_raises_nothing():
    t = np.arange(25 * 120) * 30
    drift = 4.0 * np.sin(2 * np.pi * t / (5 * 3600))  # ±4 °C over five hours, on the daily swing
    values = np.round(room(25 * 120, 30, swing=3.0, noise_sd=0.3, seed=2) + drift, 3)
    assert detect_day(sensor(values, cadence=30)) == {}
