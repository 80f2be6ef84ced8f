"""Read one partition of an asset from the lake into the small pandas frames its suites validate.

DuckDB does the heavy lifting (derived columns, joins against the level below, group counts) and
hands pandas only the columns the expectations look at, so validation stays fast on big hours.
Every frame gets a fresh RangeIndex: validation reports unexpected rows by index, and the sample
of unexpected rows is read back from the frame by that index.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.rollups.schema import AGGREGATE_SCHEMA

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
MINUTE_ASSET, HOURLY_ASSET, DAILY_ASSET = layout.AGGREGATES


@dataclass(frozen=True)
class Registry:
    """What the fleet registry knows: devices with their cadence, and sites."""

    cadences: dict[str, int]  # device_id -> cadence_seconds
    sites: frozenset[str]

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(self.cadences)


READINGS_SQL = """
SELECT device_id, site_id, metric, unit, value, status_code, event_time, ingest_time, source,
       reading_id,
       epoch(event_time) - epoch(ingest_time) AS seconds_ahead_of_ingest
FROM raw
"""

LATE_SHARE_SQL = """
SELECT $hour AS hour_start, count(*) AS readings,
       count(*) FILTER (WHERE ingest_time >= $hour_end) AS late_readings,
       coalesce(count(*) FILTER (WHERE ingest_time >= $hour_end) / nullif(count(*), 0), 0.0)
           AS late_share
FROM raw
"""

# Consistency columns shared by every aggregate level: `mean_outside_min_max` is how far the mean
# lies outside [min, max] (<= 0 when it lies inside), so a failure shows by how much.
LEVEL_SQL = """
SELECT window_start, device_id, site_id, metric, reading_count, min_value, mean_value, max_value,
       stddev_value, greatest(min_value - mean_value, mean_value - max_value) AS mean_outside_min_max
FROM agg
"""

# The same level with the reading count of each group summed from the level below: a full outer
# join, so a group missing on either side shows up as a count of 0 on that side.
LEVEL_WITH_FINER_SQL = """
WITH finer_counts AS (
    SELECT time_bucket($width, window_start, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS window_start,
           device_id, site_id, metric, sum(reading_count)::BIGINT AS finer_count
    FROM finer
    GROUP BY ALL
)
SELECT coalesce(a.window_start, f.window_start) AS window_start,
       coalesce(a.device_id, f.device_id) AS device_id,
       coalesce(a.site_id, f.site_id) AS site_id,
       coalesce(a.metric, f.metric) AS metric,
       coalesce(a.reading_count, 0) AS reading_count,
       a.min_value, a.mean_value, a.max_value, a.stddev_value,
       greatest(a.min_value - a.mean_value, a.mean_value - a.max_value) AS mean_outside_min_max,
       coalesce(f.finer_count, 0) AS finer_count
FROM agg AS a
FULL OUTER JOIN finer_counts AS f
  ON a.window_start = f.window_start AND a.device_id = f.device_id
 AND a.site_id IS NOT DISTINCT FROM f.site_id AND a.metric = f.metric
ORDER BY ALL
"""

# Coverage of each device and metric over the part of the hour that has elapsed; registry
# devices with no reading at all appear with metric NULL and coverage 0.
COVERAGE_SQL = """
WITH counts AS (
    SELECT device_id, site_id, metric, sum(reading_count)::BIGINT AS reading_count
    FROM agg GROUP BY ALL
), seen AS (
    SELECT c.device_id, c.site_id, c.metric, c.reading_count, r.cadence_seconds FROM counts AS c
    LEFT JOIN registry AS r USING (device_id)
), silent AS (
    SELECT r.device_id, NULL AS site_id, NULL AS metric, 0 AS reading_count, r.cadence_seconds
    FROM registry AS r WHERE r.device_id NOT IN (SELECT device_id FROM counts)
)
SELECT device_id, site_id, metric, reading_count,
       $elapsed_seconds / cadence_seconds AS expected_count,
       reading_count / ($elapsed_seconds / cadence_seconds) AS coverage
FROM (SELECT * FROM seen UNION ALL SELECT * FROM silent)
ORDER BY device_id, metric NULLS FIRST
"""


def raw_frames(lake: Lake, hour: datetime) -> dict[str, pd.DataFrame]:
    """`readings` (one row per reading, with seconds_ahead_of_ingest) and `late_share` (one row)."""
    path = layout.raw_partition_file(hour)
    with _connection() as con:
        con.register("raw", _source(lake, [path], READING_SCHEMA))
        params = {"hour": hour, "hour_end": hour + HOUR}
        return {
            "readings": _frame(con.execute(READINGS_SQL)),
            "late_share": _frame(con.execute(LATE_SHARE_SQL, params)),
        }


def minute_frames(
    lake: Lake, hour: datetime, registry: Registry, now: datetime
) -> dict[str, pd.DataFrame]:
    """`minutes` (the aggregates), `coverage` (per device and metric over the hour) and `totals`
    (the raw row count of the hour next to the total of its minute counts)."""
    raw_path = layout.raw_partition_file(hour)
    minute_path = layout.aggregate_partition_file(MINUTE_ASSET, hour)
    raw_rows = lake.row_count(raw_path) if lake.exists(raw_path) else 0
    elapsed = max(0.0, min(HOUR, now - hour).total_seconds())
    with _connection() as con:
        con.register("agg", _source(lake, [minute_path], AGGREGATE_SCHEMA))
        con.register("registry", _registry_table(registry))
        minutes = _frame(con.execute(LEVEL_SQL))
        coverage = (
            _frame(con.execute(COVERAGE_SQL, {"elapsed_seconds": elapsed}))
            if elapsed > 0
            else pd.DataFrame(columns=["device_id", "site_id", "metric", "coverage"])
        )
    totals = pd.DataFrame(
        {
            "hour_start": [hour],
            "raw_rows": [raw_rows],
            "minute_total": [int(minutes["reading_count"].sum())],
        }
    )
    return {"minutes": minutes, "coverage": coverage, "totals": totals}


def hourly_frames(lake: Lake, day: datetime) -> dict[str, pd.DataFrame]:
    """`level`: each hourly aggregate of the day with `finer_count` summed from its minutes."""
    minute_files = [
        layout.aggregate_partition_file(MINUTE_ASSET, day + timedelta(hours=h)) for h in range(24)
    ]
    return {"level": _level_with_finer(lake, HOURLY_ASSET, day, minute_files, HOUR)}


def daily_frames(lake: Lake, day: datetime, now: datetime) -> dict[str, pd.DataFrame]:
    """`level`: the day's aggregates with `finer_count` summed from its hours, and
    `hour_presence`: every hour of the day that has ended, `missing_hour` set when
    sensor_readings_hourly holds no row for it."""
    hourly_file = layout.aggregate_partition_file(HOURLY_ASSET, day)
    level = _level_with_finer(lake, DAILY_ASSET, day, [hourly_file], DAY)
    with _connection() as con:
        con.register("hourly", _source(lake, [hourly_file], AGGREGATE_SCHEMA))
        present = {
            ts for (ts,) in con.execute("SELECT DISTINCT window_start FROM hourly").fetchall()
        }
    hours = [day + timedelta(hours=h) for h in range(24) if day + timedelta(hours=h + 1) <= now]
    presence = pd.DataFrame(
        {
            "hour_start": [h.isoformat() for h in hours],
            "missing_hour": [None if h in present else h.isoformat() for h in hours],
        },
        dtype="object",
    )
    return {"level": level, "hour_presence": presence}


def _level_with_finer(
    lake: Lake, asset: str, window: datetime, finer_files: list[str], width: timedelta
) -> pd.DataFrame:
    with _connection() as con:
        con.register("agg", _source(lake, [layout.aggregate_partition_file(asset, window)]))
        con.register("finer", _source(lake, finer_files))
        return _frame(con.execute(LEVEL_WITH_FINER_SQL, {"width": width}))


def _source(
    lake: Lake, paths: list[str], schema: pa.Schema = AGGREGATE_SCHEMA
) -> pa.Table | ds.Dataset:
    """The files that exist, as one lazy dataset; an empty table when none does."""
    existing = [p for p in paths if lake.exists(p)]
    return lake.dataset(existing, schema) if existing else schema.empty_table()


def _registry_table(registry: Registry) -> pa.Table:
    return pa.table(
        {
            "device_id": pa.array(list(registry.cadences), pa.string()),
            "cadence_seconds": pa.array(list(registry.cadences.values()), pa.float64()),
        }
    )


def _frame(result: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return result.df().reset_index(drop=True)


@contextmanager
def _connection() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()
