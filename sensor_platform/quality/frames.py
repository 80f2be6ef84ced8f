"""Read one partition of a dataset from the lake into the small pandas frames its suites validate.

DuckDB does the heavy lifting (derived columns, joins against the level below, group counts) and
hands pandas only the columns the expectations look at, so validation stays fast on big hours.
Every frame gets a fresh RangeIndex: validation reports unexpected rows by index, and the sample
of unexpected rows is read back from the frame by that index.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.lake.store import Lake
from sensor_platform.quality.gate import Gate
from sensor_platform.quality.rules import FleetRegistry, QualityRules
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.rollups.schema import AGGREGATE_SCHEMA

# `ingested_late`: 1 when the reading was ingested after its event hour ended (timeliness).
READINGS_SQL = """
SELECT device_id, site_id, metric, unit, value, status_code, event_time, ingest_time, source,
       reading_id, (ingest_time >= $hour_end)::INTEGER AS ingested_late
FROM raw
"""

SERIES_SQL = """
SELECT device_id, site_id, metric, readings, invalid, out_of_range, unit_not_allowed, in_future,
       out_of_range / readings AS out_of_range_share,
       unit_not_allowed / readings AS unit_not_allowed_share,
       in_future / readings AS in_future_share
FROM gate_series
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

# Coverage of each device and metric over the part of the partition that has elapsed; registry
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


def partition_frames(
    lake: Lake,
    datasets: Registry,
    dataset: Dataset,
    start: datetime,
    fleet: FleetRegistry,
    rules: QualityRules,
    now: datetime,
) -> dict[str, pd.DataFrame]:
    """The frames the suites of `dataset` validate for its partition starting at `start`."""
    if not dataset.is_aggregate:
        return raw_frames(lake, dataset, start, rules)
    source = datasets.get(dataset.source)
    if source.is_aggregate:
        return rollup_frames(lake, dataset, source, start, now)
    return finest_level_frames(lake, datasets, dataset, source, start, fleet, now)


def raw_frames(
    lake: Lake, raw: Dataset, hour: datetime, rules: QualityRules
) -> dict[str, pd.DataFrame]:
    """`readings` (one row per reading, with `ingested_late`) and `series` (one row per
    device and metric: the quality gate's counts of invalid readings and their shares)."""
    source = _source(lake, [raw.partition_file(hour)], READING_SCHEMA)
    with _connection() as con:
        con.register("raw", source)
        con.register("gate_series", Gate(rules).series(source))
        late = {"hour_end": hour + raw.partition_length}
        return {
            "readings": _frame(con.execute(READINGS_SQL, late)),
            "series": _frame(con.execute(SERIES_SQL)),
        }


def finest_level_frames(
    lake: Lake,
    datasets: Registry,
    level: Dataset,
    raw: Dataset,
    start: datetime,
    fleet: FleetRegistry,
    now: datetime,
) -> dict[str, pd.DataFrame]:
    """The level computed straight from raw readings: `level` (its rows), `coverage` (per device
    and metric over the part of the partition that has elapsed) and `totals` (the raw rows of the
    partition, those the quality gate left out, and the total of the level's reading counts)."""
    end = start + level.partition_length
    raw_files = [p for p in raw.files_in(start, end) if lake.exists(p)]
    raw_rows = sum(lake.row_count(p) for p in raw_files)
    exclusions = datasets.get("quality_exclusions")
    excluded = [p for p in exclusions.files_in(start, end) if lake.exists(p)]
    left_out = sum(
        r["readings"] if r["scope"] == "series" else r["invalid_readings"]
        for r in lake.read_parquet(excluded, exclusions.schema).to_pylist()
    )
    elapsed = max(0.0, min(end - start, now - start).total_seconds())
    with _connection() as con:
        con.register("agg", _source(lake, [level.partition_file(start)]))
        con.register("registry", _registry_table(fleet))
        rows = _frame(con.execute(LEVEL_SQL))
        coverage = (
            _frame(con.execute(COVERAGE_SQL, {"elapsed_seconds": elapsed}))
            if elapsed > 0
            else pd.DataFrame(columns=["device_id", "site_id", "metric", "coverage"])
        )
    totals = pd.DataFrame(
        {
            "partition_start": [start],
            "raw_rows": [raw_rows],
            "left_out_by_gate": [left_out],
            "raw_rows_kept": [raw_rows - left_out],
            "level_total": [int(rows["reading_count"].sum())],
        }
    )
    return {"level": rows, "coverage": coverage, "totals": totals}


def rollup_frames(
    lake: Lake, level: Dataset, source: Dataset, start: datetime, now: datetime
) -> dict[str, pd.DataFrame]:
    """A level merged from another: `level` (each row with `finer_count` summed from the level
    below) and `presence` (every window of the level below that has ended inside the partition,
    `missing_window` set when the level below holds no row for it)."""
    end = start + level.partition_length
    finer_files = source.files_in(start, end)
    with _connection() as con:
        con.register("agg", _source(lake, [level.partition_file(start)]))
        con.register("finer", _source(lake, finer_files))
        rows = _frame(con.execute(LEVEL_WITH_FINER_SQL, {"width": level.window}))
        present = {
            ts for (ts,) in con.execute("SELECT DISTINCT window_start FROM finer").fetchall()
        }
    ended, window = [], start
    while window < end and window + source.window <= now:
        ended.append(window)
        window += source.window
    presence = pd.DataFrame(
        {
            "window_start": [w.isoformat() for w in ended],
            "missing_window": [None if w in present else w.isoformat() for w in ended],
        },
        dtype="object",
    )
    return {"level": rows, "presence": presence}


def _source(
    lake: Lake, paths: list[str], schema: pa.Schema = AGGREGATE_SCHEMA
) -> pa.Table | ds.Dataset:
    """The files that exist, as one lazy dataset; an empty table when none does."""
    existing = [p for p in paths if lake.exists(p)]
    return lake.dataset(existing, schema) if existing else schema.empty_table()


def _registry_table(fleet: FleetRegistry) -> pa.Table:
    return pa.table(
        {
            "device_id": pa.array(list(fleet.cadences), pa.string()),
            "cadence_seconds": pa.array(list(fleet.cadences.values()), pa.float64()),
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
