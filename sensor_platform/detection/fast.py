"""The fast path of detection: the rules that need no long history (thresholds and device faults,
with their duration and repetition conditions), run on a batch as soon as it lands.

It runs the same detection as the hourly `sensor_anomalies` asset (detect_episodes), on the same
readings (the raw partitions and every landing file of the hours the batch touches, de-duplicated
like raw, for the batch's devices only) and with the same previous hour, so an episode found here
gets the same id the hourly detection gives it later: it is announced once, whichever path sees it
first. Limits: an episode that began before the look-back and whose previous hour has not been
detected yet gets a later start (and so another id) here than in the hourly detection.
"""

import dataclasses
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.detection.episodes import detect_episodes
from sensor_platform.detection.rules import RuleSet
from sensor_platform.detection.schema import EPISODE_SCHEMA, anomalies_partition_file
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.readings.schema import READING_SCHEMA

FAST_KINDS = frozenset({"threshold", "status"})
HOUR = timedelta(hours=1)

_DEDUPLICATED_SQL = """
SELECT * FROM found
QUALIFY row_number() OVER (PARTITION BY reading_id ORDER BY ingest_time, source) = 1
"""


def fast_rules(rules: RuleSet) -> RuleSet:
    """The rules the fast path evaluates (the others need the hourly detection's history)."""
    return dataclasses.replace(rules, rules=tuple(r for r in rules.rules if r.kind in FAST_KINDS))


def batch_episodes(
    lake: Lake, batch: pa.Table, rules: RuleSet, *, since: datetime | None = None
) -> pa.Table:
    """Episodes of the fast rules for the devices of `batch` (just landed), in every hour the
    batch touches (hours before `since` skipped: their news is too old to announce)."""
    fast = fast_rules(rules)
    if batch.num_rows == 0 or not fast.rules:
        return EPISODE_SCHEMA.empty_table()
    devices = pc.unique(batch["device_id"])
    hours = sorted(
        h.astimezone(UTC)
        for h in pc.unique(pc.floor_temporal(batch["event_time"], unit="hour")).to_pylist()
    )
    if since is not None:
        hours = [h for h in hours if h + HOUR > since]
    found = []
    for hour in hours:
        readings = recent_readings(lake, devices, hour - fast.lookback, hour + HOUR)
        before = anomalies_partition_file(hour - HOUR)
        previous = lake.read_parquet([before], EPISODE_SCHEMA) if lake.exists(before) else None
        found.append(
            detect_episodes(readings, fast, window_start=hour, window_end=hour + HOUR,
                            previous=previous)
        )  # fmt: skip
    return pa.concat_tables(found) if found else EPISODE_SCHEMA.empty_table()


def recent_readings(lake: Lake, devices: pa.Array, start: datetime, end: datetime) -> pa.Table:
    """The readings of `devices` in [start, end) from raw and from every landing file of those
    hours (merged or not), de-duplicated by reading_id the way raw compaction does."""
    paths, hour = [], start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        raw = layout.raw_partition_file(hour)
        paths += [raw] if lake.exists(raw) else []
        paths += [f.path for f in lake.list_files(layout.landing_dir(hour))]
        hour += HOUR
    if not paths:
        return READING_SCHEMA.empty_table()
    wanted = (
        pc.field("device_id").isin(devices)
        & (pc.field("event_time") >= start)
        & (pc.field("event_time") < end)
    )
    table = lake.dataset(paths, READING_SCHEMA).to_table(filter=wanted)
    con = duckdb.connect()
    try:
        con.register("found", table)
        return con.sql(_DEDUPLICATED_SQL).to_arrow_table().cast(READING_SCHEMA)
    finally:
        con.close()
