"""The anomaly episode schema, its deterministic id, and where episodes live in the lake.

An episode is one anomaly of one device (and metric, unless the rule is device-wide) under one
rule, from its first anomalous reading to its last. Each hourly partition holds every episode that
was active in the hour, closed by a reading of the hour, or still open at its end, as known at the
end of the hour: an episode crossing hours keeps its id and appears in each of them, the row of its
latest hour being its current state.
"""

import hashlib
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from sensor_platform.lake import layout
from sensor_platform.readings.schema import UTC_MICROS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EPISODE_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    # name: (type, nullable, description)
    "episode_id": (pa.string(), False, "Deterministic id of device, metric, rule and start_time."),
    "partition_hour": (
        UTC_MICROS,
        False,
        "The hour (UTC) this row describes: the episode as known at the end of that hour.",
    ),
    "device_id": (pa.string(), False, "Device the anomaly belongs to."),
    "site_id": (pa.string(), True, "Site of the device, if known."),
    "metric": (pa.string(), True, "Metric concerned; NULL for device-wide rules (status, silent)."),
    "unit": (pa.string(), True, "Unit of peak_value for metric rules."),
    "rule": (pa.string(), False, "Name of the rule that fired (see detection/rules.json)."),
    "kind": (pa.string(), False, "threshold, status, spike, stuck, silent or rate."),
    "severity": (pa.string(), False, "warning or critical: the worst reached so far."),
    "status": (pa.string(), False, "open (still anomalous at the end of the data) or closed."),
    "start_time": (UTC_MICROS, False, "First anomalous reading (silent: the last reading heard)."),
    "end_time": (
        UTC_MICROS,
        False,
        "Last anomalous reading (silent: the reading that ended the silence, or the data's end).",
    ),
    "closed_at": (UTC_MICROS, True, "The first normal reading after the episode, when closed."),
    "reading_count": (
        pa.int64(),
        False,
        "Anomalous readings in the episode (silent: readings missed at the device's cadence).",
    ),
    "peak_value": (
        pa.float64(),
        False,
        "Worst value: the highest (above) or lowest (below) value, the spike, the fastest rate "
        "per minute, the status code, the stuck value, or the silence in seconds.",
    ),
    "peak_time": (UTC_MICROS, False, "When the worst value was seen."),
    "peak_score": (
        pa.float64(),
        False,
        "How bad the peak is, higher is worse: the value (above) or its negation (below), the "
        "robust spike score, the absolute rate, the absolute status code, the silence in seconds.",
    ),
    "threshold": (
        pa.float64(),
        True,
        "The limit crossed: threshold level, spike score, rate per minute, silence in seconds.",
    ),
}

EPISODE_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, (typ, nullable, _) in EPISODE_COLUMNS.items()]
)


def empty_episodes() -> pa.Table:
    return EPISODE_SCHEMA.empty_table()


def episode_id(device_id: str, metric: str | None, rule: str, start_time: datetime) -> str:
    """The id DuckDB computes in detection/episodes.py, for callers and tests in Python."""
    start_us = (start_time - EPOCH) // timedelta(microseconds=1)
    key = "\x1f".join([device_id, metric or "", rule, str(start_us)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def anomalies_partition_file(hour: datetime) -> str:
    return f"{layout.hour_dir(layout.ANOMALIES, hour)}/{layout.PART_FILE}"
