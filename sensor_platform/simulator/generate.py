"""Generate the fleet's messages for a window of received time, and the injected anomaly labels.

Deterministic and split-invariant: `simulate(a, c)` yields exactly `simulate(a, b)` followed by
`simulate(b, c)` for any b. Ticks are aligned to multiples of each device's cadence since the
epoch, and every random draw is a hash of (seed, device, metric, tick or hour), so a retried run
regenerates its window byte for byte.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

import numpy as np

from sensor_platform.simulator.draws import stream_key, uniform
from sensor_platform.simulator.episodes import (
    HOUR,
    AnomalyLabel,
    apply_episodes,
    device_episodes,
)
from sensor_platform.simulator.fleet import Device, Fleet
from sensor_platform.simulator.payloads import (
    MALFORMED_KINDS,
    malform,
    render_single,
    render_wide,
)
from sensor_platform.simulator.signals import normal_values

__all__ = [
    "AnomalyLabel",
    "SimulatedMessage",
    "anomaly_labels",
    "simulate",
    "write_jsonl",
    "write_labels",
]

LATE_DELAY = timedelta(minutes=70)
MIN_LATENCY_US = 50_000
MAX_LATENCY_US = 2_000_000  # exclusive: ordinary messages arrive within 2 s of their event
_US = 1_000_000
_LATE_US = LATE_DELAY // timedelta(microseconds=1)
_CHUNK_US = 6 * HOUR * _US  # bounds memory on long windows; any chunking gives the same output
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimulatedMessage:
    payload: bytes  # JSON
    key: bytes  # device id (Kafka message key)
    event_time: datetime  # UTC
    received_at: datetime  # UTC: event_time + latency < 2 s; late ones: event_time + 70 min


def simulate(
    fleet: Fleet,
    start: datetime,
    end: datetime,
    *,
    seed: int = 42,
    anomaly_rate: float = 0.1,
    late_rate: float = 0.0,
    malformed_rate: float = 0.0,
) -> Iterator[SimulatedMessage]:
    """Every message whose received_at falls in [start, end), ordered by received_at (ties: fleet
    order, then metric order). A `malformed_rate` share of them is broken the way field devices
    break messages (payloads.MALFORMED_KINDS), for the quarantine to catch."""
    start_us, end_us = _micros(start, "start"), _micros(end, "end")
    _check_rate("anomaly_rate", anomaly_rate)
    _check_rate("late_rate", late_rate)
    _check_rate("malformed_rate", malformed_rate)
    lookback_us = MAX_LATENCY_US + (_LATE_US if late_rate > 0 else 0)
    rates = _Rates(anomaly_rate, late_rate, malformed_rate)
    return _messages(fleet, start_us, end_us, lookback_us, seed, rates)


def anomaly_labels(
    fleet: Fleet, start: datetime, end: datetime, *, seed: int = 42, anomaly_rate: float = 0.1
) -> list[AnomalyLabel]:
    """The injected episodes overlapping [start, end) in event time, ordered by start then device."""
    start_us, end_us = _micros(start, "start"), _micros(end, "end")
    _check_rate("anomaly_rate", anomaly_rate)
    if start_us >= end_us:
        return []
    first_hour, last_hour = start_us // (HOUR * _US), (end_us - 1) // (HOUR * _US)
    labels = [
        episode.label()
        for device in fleet.devices
        for episode in device_episodes(
            device,
            seed=seed,
            anomaly_rate=anomaly_rate,
            first_hour=first_hour,
            last_hour=last_hour,
        )
        if episode.start_s * _US < end_us and episode.end_s * _US > start_us
    ]
    order = {device.device_id: i for i, device in enumerate(fleet.devices)}
    return sorted(labels, key=lambda label: (label.start, order[label.device_id]))


def write_jsonl(messages: Iterable[SimulatedMessage], out: TextIO) -> int:
    """Write one JSON payload per line; returns the number of messages written."""
    count = 0
    for message in messages:
        out.write(message.payload.decode("utf-8"))
        out.write("\n")
        count += 1
    return count


def write_labels(labels: Iterable[AnomalyLabel], out: TextIO) -> int:
    """Write one JSON object per label (times ISO-8601 UTC); returns the number written."""
    count = 0
    for label in labels:
        row = {
            "device_id": label.device_id,
            "metric": label.metric,
            "kind": label.kind,
            "start": _iso(label.start),
            "end": _iso(label.end),
        }
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


@dataclass(frozen=True)
class _Rates:
    anomaly: float
    late: float
    malformed: float


@dataclass
class _Batch:
    """The messages of one device in one chunk, unordered."""

    received_us: np.ndarray
    event_us: np.ndarray
    metric_index: np.ndarray  # position of the metric for single sensors, else 0
    payloads: list[bytes]


def _messages(
    fleet: Fleet,
    start_us: int,
    end_us: int,
    lookback_us: int,
    seed: int,
    rates: _Rates,
) -> Iterator[SimulatedMessage]:
    keys = [device.device_id.encode() for device in fleet.devices]
    chunk_start = start_us
    while chunk_start < end_us:
        chunk_end = min(chunk_start + _CHUNK_US, end_us)
        batches = [
            _device_batch(d, chunk_start, chunk_end, lookback_us, seed, rates)
            for d in fleet.devices
        ]
        received = np.concatenate([b.received_us for b in batches])
        event = np.concatenate([b.event_us for b in batches])
        device_index = np.repeat(np.arange(len(batches)), [len(b.payloads) for b in batches])
        metric_index = np.concatenate([b.metric_index for b in batches])
        payloads = [payload for b in batches for payload in b.payloads]
        order = np.lexsort((metric_index, device_index, received))
        for i, device, event_at, received_at in zip(
            order.tolist(),
            device_index[order].tolist(),
            event[order].tolist(),
            received[order].tolist(),
            strict=True,
        ):
            yield SimulatedMessage(
                payloads[i],
                keys[device],
                _EPOCH + timedelta(microseconds=event_at),
                _EPOCH + timedelta(microseconds=received_at),
            )
        chunk_start = chunk_end


def _device_batch(
    device: Device,
    start_us: int,
    end_us: int,
    lookback_us: int,
    seed: int,
    rates: _Rates,
) -> _Batch:
    """The device's messages received in [start_us, end_us), from every tick that could send one."""
    cadence_us = device.cadence_seconds * _US
    first = -(-(start_us - lookback_us) // cadence_us)
    last = -(-end_us // cadence_us)  # exclusive
    tick_s = np.arange(first, max(first, last), dtype=np.int64) * device.cadence_seconds
    values = {
        spec.name: normal_values(seed, device.device_id, spec, tick_s) for spec in device.metrics
    }
    status = np.zeros(len(tick_s), dtype=np.int64)
    present = np.ones(len(tick_s), dtype=bool)
    if len(tick_s):
        episodes = device_episodes(
            device,
            seed=seed,
            anomaly_rate=rates.anomaly,
            first_hour=int(tick_s[0]) // HOUR,
            last_hour=int(tick_s[-1]) // HOUR,
        )
        apply_episodes(
            device,
            episodes,
            seed=seed,
            tick_s=tick_s,
            values=values,
            status=status,
            present=present,
        )
    event_us = tick_s * _US
    if device.payload != "single":
        received = event_us + _delays(seed, device.device_id, "", tick_s, rates.late)
        send = present & (received >= start_us) & (received < end_us)
        payloads = render_wide(
            device, event_us[send], {k: v[send] for k, v in values.items()}, status[send]
        )
        payloads = _malformed(
            payloads, seed, device.device_id, "", tick_s[send], rates.malformed,
            value_key=device.metrics[0].name,
        )  # fmt: skip
        return _Batch(received[send], event_us[send], np.zeros(len(payloads), np.int64), payloads)
    parts = []
    for index, spec in enumerate(device.metrics):
        received = event_us + _delays(seed, device.device_id, spec.name, tick_s, rates.late)
        send = present & (received >= start_us) & (received < end_us)
        payloads = render_single(
            device, spec.name, event_us[send], values[spec.name][send], status[send]
        )
        payloads = _malformed(
            payloads, seed, device.device_id, spec.name, tick_s[send], rates.malformed,
            value_key="value",
        )  # fmt: skip
        parts.append(
            _Batch(received[send], event_us[send], np.full(len(payloads), index), payloads)
        )
    return _Batch(
        np.concatenate([p.received_us for p in parts]),
        np.concatenate([p.event_us for p in parts]),
        np.concatenate([p.metric_index for p in parts]),
        [payload for p in parts for payload in p.payloads],
    )


def _malformed(
    payloads: list[bytes],
    seed: int,
    device_id: str,
    metric: str,
    tick_s: np.ndarray,
    rate: float,
    *,
    value_key: str,
) -> list[bytes]:
    """Break the payloads whose tick draws below `rate` (a pure function of the tick, like every
    draw: any split of the time range breaks the same messages the same way)."""
    if rate <= 0 or not payloads:
        return payloads
    hit = np.flatnonzero(uniform(stream_key(seed, device_id, metric, "malformed"), tick_s) < rate)
    if not len(hit):
        return payloads
    kinds = uniform(stream_key(seed, device_id, metric, "malformed-kind"), tick_s[hit])
    out = list(payloads)
    for i, draw in zip(hit.tolist(), kinds.tolist(), strict=True):
        out[i] = malform(out[i], MALFORMED_KINDS[int(draw * len(MALFORMED_KINDS))], value_key)
    return out


def _delays(
    seed: int, device_id: str, metric: str, tick_s: np.ndarray, late_rate: float
) -> np.ndarray:
    """received_at - event_time in microseconds for each tick: network latency, or LATE_DELAY."""
    latency = uniform(stream_key(seed, device_id, metric, "latency"), tick_s)
    delays = MIN_LATENCY_US + (latency * (MAX_LATENCY_US - MIN_LATENCY_US)).astype(np.int64)
    if late_rate > 0:
        late = uniform(stream_key(seed, device_id, metric, "late"), tick_s) < late_rate
        delays[late] = _LATE_US
    return delays


def _micros(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {rate}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
