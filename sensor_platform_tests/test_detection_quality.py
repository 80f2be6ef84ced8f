"""Detection quality against the simulator's ground truth (detection/evaluation.py): seeded days
of the default fleet, its hard negatives included (a noisy 10 s heat detector, a boiler room just
below the threshold, a drifting CO2 sensor, coarse 0.5 °C and 1 % sensors). Every rule kind must
reach precision and recall of 0.9; the table printed (pytest -s) is the README's."""

from datetime import UTC, datetime, timedelta

import pytest

from sensor_platform.detection.episodes import detect_episodes
from sensor_platform.detection.evaluation import (
    DETECTOR_FOR,
    matches,
    score,
    simulate_and_detect,
    table,
)
from sensor_platform.detection.rules import load_rules
from sensor_platform.readings.normalize import Message, normalize_messages
from sensor_platform.simulator.fleet import load_fleet
from sensor_platform.simulator.generate import simulate

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 3
SEED = 7
ANOMALY_RATE = 0.1  # one device-hour in ten
MIN_LABELS = 10  # a kind with fewer labels says little either way

pytestmark = pytest.mark.integration  # three simulated days of the fleet: tens of seconds


@pytest.fixture(scope="module")
def run():
    return simulate_and_detect(
        load_fleet(), load_rules(), DAY, DAYS, seed=SEED, anomaly_rate=ANOMALY_RATE
    )


def test_every_rule_kind_has_precision_and_recall_of_at_least_0_9(run):
    assert run.readings > 90_000 * DAYS
    scores = score(run.episodes, run.labels)
    print(
        f"\nseed {SEED}, {DAYS} days from {DAY:%Y-%m-%d}: {len(run.labels)} labels, "
        f"{len(run.episodes)} episodes, {run.readings:,} readings, {run.device_days:g} device-days"
    )
    print(table(scores, run.device_days))
    assert [s.kind for s in scores] == list(DETECTOR_FOR)
    failures = []
    for s in scores:
        if s.labelled < MIN_LABELS:
            failures.append(f"{s.injected}: only {s.labelled} labels, too few to judge {s.kind}")
        if not s.recall >= 0.9:
            missed = [
                lb
                for lb in run.labels
                if lb.kind == s.injected
                and not any(e["kind"] == s.kind and matches(e, lb) for e in run.episodes)
            ]
            failures.append(f"{s.kind} recall {s.recall:.2f}, e.g. missed {missed[:5]}")
        if not s.precision >= 0.9:
            false = [
                e
                for e in run.episodes
                if e["kind"] == s.kind and not any(matches(e, lb) for lb in run.labels)
            ]
            failures.append(f"{s.kind} precision {s.precision:.2f}, e.g. {false[:5]}")
    assert not failures, "\n".join(failures)


def test_a_normal_day_of_the_fleet_raises_no_alarm():
    """No anomaly injected: the noisy, drifting, near-threshold and coarse devices included, a
    whole day (one window) raises nothing."""
    fleet, rules = load_fleet(), load_rules()
    start = DAY + timedelta(days=10)
    messages = (
        Message(m.payload, "simulator", m.received_at)
        for m in simulate(fleet, start - rules.lookback, start + timedelta(days=1), anomaly_rate=0)
    )
    readings = normalize_messages(messages, batch_id="normal").readings
    episodes = detect_episodes(
        readings,
        rules,
        window_start=start,
        window_end=start + timedelta(days=1),
        cadences=fleet.cadences(),
    )
    assert readings.num_rows > 90_000
    assert episodes.to_pylist() == []
