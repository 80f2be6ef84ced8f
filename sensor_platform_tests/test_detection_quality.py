"""Detection quality against the simulator's ground truth: seeded days of the default fleet at
anomaly_rate 0.1, normalized like the pipeline does, detected hour by hour like the asset does,
and compared with the injected anomaly labels by device, metric and overlap in time.

Recall of an injected kind: labels of that kind found by the detector meant for it. Precision of
a detector: its episodes that coincide with an injected anomaly (of any kind: a temperature spike
to 3x the normal maximum is also above the 60 °C threshold, and that alarm is right). The strict
variant (same kind only) is printed too.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from sensor_platform.detection.episodes import detect_episodes
from sensor_platform.detection.rules import load_rules
from sensor_platform.readings.normalize import Message, normalize_messages
from sensor_platform.simulator.fleet import load_fleet
from sensor_platform.simulator.generate import anomaly_labels, simulate

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 3  # about 80 injected anomalies
SEED = 7
TOLERANCE = timedelta(minutes=2)
DETECTOR_FOR = {  # injected kind -> the rule kind meant to find it
    "threshold": "threshold",
    "spike": "spike",
    "stuck": "stuck",
    "dropout": "silent",
    "error_code": "status",
}
MIN_LABELS = 10  # a kind with fewer labels says little either way

pytestmark = pytest.mark.integration  # three simulated days of the fleet: tens of seconds


@pytest.fixture(scope="module")
def evaluation():
    fleet, rules = load_fleet(), load_rules()
    first = DAY - rules.lookback
    messages = (
        Message(m.payload, "simulator", m.received_at)
        for m in simulate(fleet, first, DAY + timedelta(days=DAYS), seed=SEED, anomaly_rate=0.1)
    )
    readings = normalize_messages(messages, batch_id="quality").readings
    labels = anomaly_labels(fleet, DAY, DAY + timedelta(days=DAYS), seed=SEED, anomaly_rate=0.1)
    previous, latest = None, {}
    for h in range(24 * DAYS):
        hour = DAY + timedelta(hours=h)
        previous = detect_episodes(
            readings,
            rules,
            window_start=hour,
            window_end=hour + timedelta(hours=1),
            previous=previous,
            cadences=fleet.cadences(),
        )
        latest |= {row["episode_id"]: row for row in previous.to_pylist()}
    return list(latest.values()), labels, readings


def _matches(episode: dict, label, tolerance: timedelta = TOLERANCE) -> bool:
    if episode["device_id"] != label.device_id:
        return False
    if label.metric is not None and episode["metric"] not in (None, label.metric):
        return False
    return (
        episode["start_time"] <= label.end + tolerance
        and episode["end_time"] >= label.start - tolerance
    )


def test_detection_finds_the_injected_anomalies(evaluation):
    episodes, labels, readings = evaluation
    assert isinstance(readings, pa.Table) and readings.num_rows > 75_000 * DAYS
    by_kind = defaultdict(list)
    for label in labels:
        by_kind[label.kind].append(label)
    print(f"\n{len(labels)} labels, {len(episodes)} episodes over {readings.num_rows:,} readings")
    print(f"{'kind':<12}{'labels':>7}{'found':>7}{'recall':>8}  |  detector episodes precision")
    failures = []
    for kind, detector in DETECTOR_FOR.items():
        mine = [e for e in episodes if e["kind"] == detector]
        wanted = by_kind.get(kind, [])
        found = [lb for lb in wanted if any(_matches(e, lb) for e in mine)]
        right = [e for e in mine if any(_matches(e, lb) for lb in labels)]
        strict = [e for e in mine if any(_matches(e, lb) for lb in wanted)]
        recall = len(found) / len(wanted) if wanted else float("nan")
        precision = len(right) / len(mine) if mine else float("nan")
        strict_precision = len(strict) / len(mine) if mine else float("nan")
        print(
            f"{kind:<12}{len(wanted):>7}{len(found):>7}{recall:>8.2f}  |  {detector:<9}"
            f"{len(mine):>5}  {precision:.2f} (same kind only {strict_precision:.2f})"
        )
        if len(wanted) >= MIN_LABELS and recall < 0.9:
            failures.append(f"{kind} recall {recall:.2f}: missed {set(wanted) - set(found)}")
        if mine and precision < 0.9:
            false = [e for e in mine if e not in right][:5]
            failures.append(f"{detector} precision {precision:.2f}, e.g. {false}")
    others = [e for e in episodes if e["kind"] not in DETECTOR_FOR.values()]
    if others:
        right = sum(any(_matches(e, lb) for lb in labels) for e in others)
        print(f"other detectors (rate): {len(others)} episodes, {right} on injected anomalies")
    assert not failures, "\n".join(failures)
    assert all(len(by_kind[k]) >= MIN_LABELS for k in DETECTOR_FOR), dict(by_kind)


def test_a_normal_day_raises_no_alarm():
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
    assert readings.num_rows > 75_000
    assert episodes.to_pylist() == []
