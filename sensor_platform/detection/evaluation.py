"""Detection quality against the simulator's ground truth: precision, recall and false alarms.

Simulated days of a fleet are normalized like the pipeline does, detected hour by hour like the
asset does, and compared with the injected anomaly labels by device, metric and overlap in time
(a `tolerance` either side). For every rule kind:

- recall: the share of the labels of the injected kind it is meant for that its episodes find;
- precision: the share of its episodes that coincide with an injected anomaly of any kind (a
  fire's fast rise also crosses the 60 °C threshold, and that alarm is right); the strict
  variant counts the same kind only;
- false alarms per device-day: its episodes that coincide with no injected anomaly, per device
  and day of data.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from sensor_platform.detection.episodes import detect_hour_by_hour
from sensor_platform.detection.rules import RuleSet
from sensor_platform.readings.normalize import Message, normalize_messages
from sensor_platform.simulator.fleet import Fleet
from sensor_platform.simulator.generate import AnomalyLabel, anomaly_labels, simulate

DETECTOR_FOR = {  # rule kind -> the injected anomaly kind it is meant to find
    "threshold": "threshold",
    "status": "error_code",
    "spike": "spike",
    "stuck": "stuck",
    "silent": "dropout",
    "rate": "rise",
}
TOLERANCE = timedelta(minutes=2)


@dataclass(frozen=True)
class Run:
    """Episodes (the latest row of each) and labels of simulated days, and what they cover."""

    episodes: list[dict]
    labels: list[AnomalyLabel]
    readings: int
    device_days: float


@dataclass(frozen=True)
class KindScore:
    kind: str  # rule kind
    injected: str  # the anomaly kind it is meant to find
    labelled: int
    found: int  # episodes of the rule kind
    true_positives: int  # of them, on an injected anomaly of any kind
    same_kind: int  # of them, on an injected anomaly of its own kind
    recalled: int  # labels of its kind found

    @property
    def precision(self) -> float:
        return self.true_positives / self.found if self.found else math.nan

    @property
    def strict_precision(self) -> float:
        return self.same_kind / self.found if self.found else math.nan

    @property
    def recall(self) -> float:
        return self.recalled / self.labelled if self.labelled else math.nan

    def false_per_device_day(self, device_days: float) -> float:
        return (self.found - self.true_positives) / device_days


def simulate_and_detect(
    fleet: Fleet,
    rules: RuleSet,
    start: datetime,
    days: int,
    *,
    seed: int,
    anomaly_rate: float,
) -> Run:
    """Simulate `days` from `start` (plus the rules' look-back before it) and detect them hour by
    hour, each hour continuing the episodes of the one before."""
    end = start + timedelta(days=days)
    messages = (
        Message(m.payload, "simulator", m.received_at)
        for m in simulate(fleet, start - rules.lookback, end, seed=seed, anomaly_rate=anomaly_rate)
    )
    readings: pa.Table = normalize_messages(messages, batch_id="evaluation").readings
    latest = {}  # episode id -> its row of the latest hour
    for hour in detect_hour_by_hour(
        readings, rules, start=start, hours=24 * days, cadences=fleet.cadences()
    ):
        latest |= {row["episode_id"]: row for row in hour.to_pylist()}
    labels = anomaly_labels(fleet, start, end, seed=seed, anomaly_rate=anomaly_rate)
    return Run(list(latest.values()), labels, readings.num_rows, len(fleet.devices) * days)


def matches(episode: dict, label: AnomalyLabel, tolerance: timedelta = TOLERANCE) -> bool:
    """The episode is on the label's device (and metric, if both have one) and overlaps it."""
    if episode["device_id"] != label.device_id:
        return False
    if label.metric is not None and episode["metric"] not in (None, label.metric):
        return False
    return (
        episode["start_time"] <= label.end + tolerance
        and episode["end_time"] >= label.start - tolerance
    )


def score(episodes: list[dict], labels: list[AnomalyLabel]) -> list[KindScore]:
    """One score per rule kind of DETECTOR_FOR, in its order."""
    scores = []
    for kind, injected in DETECTOR_FOR.items():
        mine = [e for e in episodes if e["kind"] == kind]
        wanted = [lb for lb in labels if lb.kind == injected]
        scores.append(
            KindScore(
                kind=kind,
                injected=injected,
                labelled=len(wanted),
                found=len(mine),
                true_positives=sum(any(matches(e, lb) for lb in labels) for e in mine),
                same_kind=sum(any(matches(e, lb) for lb in wanted) for e in mine),
                recalled=sum(any(matches(e, lb) for e in mine) for lb in wanted),
            )
        )
    return scores


def combine(scores: Iterable[list[KindScore]]) -> list[KindScore]:
    """Several runs' scores added up per rule kind."""
    total: dict[str, KindScore] = {}
    for run in scores:
        for s in run:
            t = total.get(s.kind)
            total[s.kind] = (
                s
                if t is None
                else KindScore(
                    s.kind,
                    s.injected,
                    t.labelled + s.labelled,
                    t.found + s.found,
                    t.true_positives + s.true_positives,
                    t.same_kind + s.same_kind,
                    t.recalled + s.recalled,
                )
            )
    return list(total.values())


def table(scores: list[KindScore], device_days: float) -> str:
    """The scores as a Markdown table (the README's figures)."""
    lines = [
        "| rule kind | finds injected | labelled | episodes | true positives | precision "
        "| recall | false alarms / device-day | same-kind precision |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.kind} | {s.injected} | {s.labelled} | {s.found} | {s.true_positives} "
            f"| {s.precision:.2f} | {s.recall:.2f} | {s.false_per_device_day(device_days):.3f} "
            f"| {s.strict_precision:.2f} |"
        )
    return "\n".join(lines)
