"""Anomaly episodes: which device-hours get one, of which kind, when, and what it does to the data.

Every (device, UTC hour) is a slot. A device's anomalous slots are spread evenly at
`anomaly_rate` (slot h is chosen when floor(rate * h + phase) steps up, with a per-device random
phase), so the fraction of anomalous device-hours is the rate over any long window, and a short
window still sees every kind. A device's successive episodes cycle through its kinds from a
per-device random offset. Position, length, metric and code inside the hour are hash draws of
(seed, device, hour), and an episode never leaves its hour, so every tick knows its episode from
its own time alone: the generator stays split-invariant.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from sensor_platform.simulator.draws import stream_key, uniform, uniform_one
from sensor_platform.simulator.fleet import Device
from sensor_platform.simulator.signals import (
    normal_values,
    rise_values,
    spike_value,
    threshold_values,
)

ANOMALY_KINDS = ("spike", "stuck", "dropout", "error_code", "threshold", "rise")
THRESHOLD_METRIC = "temperature"  # threshold and rise (a fire's fast rise) episodes
HOUR = 3600
# Over-temperature and a fast rise are the fire monitor's headline alarms and only fire devices
# can raise them, so they take most of their episodes; fleet-wide every kind then comes out often
# enough to measure.
_FIRE_CYCLE = (
    *("threshold", "rise", "spike", "threshold", "stuck"),
    *("rise", "threshold", "dropout", "rise", "error_code"),
)
_OTHER_CYCLE = ("spike", "stuck", "dropout", "error_code")


@dataclass(frozen=True)
class AnomalyLabel:
    device_id: str
    metric: str | None  # None: the whole device (dropout, error_code)
    kind: str
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive


@dataclass(frozen=True)
class Episode:
    device_id: str
    kind: str
    metric: str | None
    start_s: int  # event time of the first affected tick (epoch seconds)
    end_s: int  # exclusive: one cadence after the last affected tick
    code: int  # error_code / status_code reported during an error_code episode, else 0

    def label(self) -> AnomalyLabel:
        return AnomalyLabel(
            self.device_id,
            self.metric,
            self.kind,
            datetime.fromtimestamp(self.start_s, UTC),
            datetime.fromtimestamp(self.end_s, UTC),
        )


def kind_cycle(device: Device) -> tuple[str, ...]:
    if device.kind == "fire" and device.metric(THRESHOLD_METRIC) is not None:
        cycle = _FIRE_CYCLE
    else:
        cycle = _OTHER_CYCLE
    if not _stuck_metrics(device):
        # A coarse sensor repeats its readings for long stretches when healthy: an episode of
        # 10 to 20 identical minutes would be no anomaly in its data, so none is labelled.
        cycle = tuple(kind for kind in cycle if kind != "stuck")
    return cycle


def _stuck_metrics(device: Device) -> list[str]:
    return [spec.name for spec in device.metrics if not spec.resolution]


def device_episodes(
    device: Device, *, seed: int, anomaly_rate: float, first_hour: int, last_hour: int
) -> list[Episode]:
    """The device's episodes in hour slots first_hour..last_hour (hours since the epoch)."""
    if anomaly_rate <= 0 or last_hour < first_hour:
        return []
    hours = np.arange(first_hour, last_hour + 1, dtype=np.int64)
    phase = uniform_one(stream_key(seed, device.device_id, "anomaly-phase"), 0)
    before = np.floor(hours * anomaly_rate + phase)
    after = np.floor((hours + 1) * anomaly_rate + phase)
    chosen = after > before
    if not chosen.any():
        return []
    cycle = kind_cycle(device)
    offset = int(uniform_one(stream_key(seed, device.device_id, "kind-offset"), 0) * len(cycle))
    draws = {
        name: uniform(stream_key(seed, device.device_id, "episode", name), hours[chosen])
        for name in ("start", "length", "metric", "code")
    }
    episodes = []
    for i, (hour, ordinal) in enumerate(
        zip(hours[chosen].tolist(), before[chosen].tolist(), strict=True)
    ):
        kind = cycle[(int(ordinal) + offset) % len(cycle)]
        episodes.append(_place(device, kind, hour, {k: float(v[i]) for k, v in draws.items()}))
    return episodes


def _place(device: Device, kind: str, hour: int, draw: dict[str, float]) -> Episode:
    cadence = device.cadence_seconds
    hour_start = hour * HOUR
    first_tick = -(-hour_start // cadence) * cadence
    ticks_in_hour = -(-(hour_start + HOUR - first_tick) // cadence)

    def ticks_for(seconds: int) -> int:
        return -(-seconds // cadence)

    if kind == "spike":
        length = 1
    elif kind == "stuck":  # 10+ minutes between the first and last identical reading
        length = ticks_for(600) + 1 + int(draw["length"] * ticks_for(600))
    elif kind == "dropout":  # 10+ minutes and at least 10 cadences without a message
        length = max(ticks_for(600), 10) + int(draw["length"] * ticks_for(600))
    elif kind == "error_code":  # a few minutes
        length = ticks_for(180) + int(draw["length"] * ticks_for(300))
    elif kind == "rise":  # a fire: 2 to 4 minutes of fast rise
        length = ticks_for(120) + int(draw["length"] * ticks_for(120))
    else:  # threshold: 6 to 12 minutes above the level
        length = ticks_for(360) + int(draw["length"] * ticks_for(360))
    length = min(length, ticks_in_hour)
    start = first_tick + int(draw["start"] * (ticks_in_hour - length + 1)) * cadence
    metric: str | None = None
    if kind == "spike":
        metric = device.metrics[int(draw["metric"] * len(device.metrics))].name
    elif kind == "stuck":
        candidates = _stuck_metrics(device)
        metric = candidates[int(draw["metric"] * len(candidates))]
    elif kind in ("threshold", "rise"):
        metric = THRESHOLD_METRIC
    code = 0
    if kind == "error_code":  # farms report "1" or "2" (seed 004); others a status code 1..5
        code = 1 + int(draw["code"] * (2 if device.payload == "farm" else 5))
    return Episode(device.device_id, kind, metric, start, start + length * cadence, code)


def apply_episodes(
    device: Device,
    episodes: list[Episode],
    *,
    seed: int,
    tick_s: np.ndarray,
    values: dict[str, np.ndarray],
    status: np.ndarray,
    present: np.ndarray,
) -> None:
    """Write the episodes' effects into the device's columns (sorted ticks), in place."""
    for episode in episodes:
        lo, hi = np.searchsorted(tick_s, [episode.start_s, episode.end_s]).tolist()
        if lo == hi:
            continue
        if episode.kind == "dropout":
            present[lo:hi] = False
        elif episode.kind == "error_code":
            status[lo:hi] = episode.code
        else:
            spec = device.metric(episode.metric or "")
            assert spec is not None
            if episode.kind == "threshold":
                values[spec.name][lo:hi] = threshold_values(
                    seed, device.device_id, spec, tick_s[lo:hi]
                )
            elif episode.kind == "rise":
                values[spec.name][lo:hi] = rise_values(
                    seed,
                    device.device_id,
                    spec,
                    tick_s[lo:hi],
                    episode.start_s,
                    device.cadence_seconds,
                )
            elif episode.kind == "spike":
                values[spec.name][lo:hi] = spike_value(
                    seed, device.device_id, spec, episode.start_s
                )
            else:  # stuck at the reading the episode starts with
                start = np.array([episode.start_s], dtype=np.int64)
                values[spec.name][lo:hi] = normal_values(seed, device.device_id, spec, start)[0]
