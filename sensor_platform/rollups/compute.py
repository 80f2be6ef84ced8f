"""Compute minute aggregates from raw readings and merge them exactly into hours and days (DuckDB).

Every level keeps mergeable partials (count, mean, m2 = sum of squared deviations from the mean),
so an hour merged from its minutes equals the hour computed straight from its readings: the mean
is count-weighted and m2 is merged with Chan's parallel formula, never an average of averages.
A device-sorted raw partition is aggregated one device_id range at a time (rollups/slicing.py),
so the memory it needs does not grow with the hour.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sensor_platform.rollups.schema import AGGREGATE_SCHEMA, empty_aggregates
from sensor_platform.rollups.slicing import (
    EVERY_DEVICE,
    DeviceRange,
    device_ranges,
    interleave_windows,
)

Source = pa.Table | ds.Dataset | list[str] | list[Path]

MINUTE = timedelta(minutes=1)

# Readings of a device-sorted Parquet input (a raw partition) aggregated at a time, in device_id
# ranges: the hash table holds one range's minute windows, so memory stays flat as the hour grows
# (rollups/slicing.py). Two million readings at a time: the row group at each cut is read by both
# of its ranges, about 10 % more reading; smaller ranges save little more memory.
ROWS_PER_SLICE = 2_000_000

# The readings of one device_id range (rollups/slicing.py); the fragment is picked from this fixed
# list and its bounds are bound parameters.
DEVICE_FILTERS = {
    (False, False): "TRUE",
    (True, False): "device_id >= $low",
    (False, True): "device_id < $high",
    (True, True): "device_id >= $low AND device_id < $high",
}

# The minute pass orders readings inside a window by a BIGINT key: the offset of event_time in the
# minute (< 2^26 us) in the high bits and 37 bits of a hash of (value, unit) in the low bits.
# Ordering by an (event_time, reading_id) struct instead costs 3x the whole baseline GROUP BY:
# scanning the reading_id strings alone costs most of one. Readings that share an event_time but
# differ in value or unit show up as different hashes (first_key vs first_reverse_key), and only
# those windows go through the exact (event_time, reading_id) pass below; a miss needs two
# different readings at the same instant whose 37-bit hashes collide (odds about 1 in 1.4e11).
# 137438953471 is 2^37 - 1, the hash mask. % truncates toward zero, so event_us is first moved
# by 2^32 minutes (257698037760000000 us, more than year 1 is before 1970) to floor with one %.
MINUTE_PARTIALS_SQL = """
CREATE TEMP TABLE partials AS
WITH stamped AS (
    SELECT device_id, site_id, metric, unit, value, epoch_us(event_time) AS event_us
    FROM raw_readings
    WHERE {devices}
), offsets AS (
    SELECT device_id, site_id, metric, unit, value, event_us,
           (event_us + 257698037760000000) % 60000000 AS offset_us,
           (hash(value, unit) >> 27)::BIGINT AS content_hash
    FROM stamped
), keyed AS (
    SELECT device_id, site_id, metric, unit, value, event_us - offset_us AS window_us,
           (offset_us << 37) | content_hash AS order_key,
           (offset_us << 37) | (137438953471 - content_hash) AS reverse_key
    FROM offsets
), grouped AS (
    SELECT window_us, device_id, site_id, metric,
           arg_min_null(unit, order_key) AS unit,
           count(*) AS reading_count,
           min(value) AS min_value,
           max(value) AS max_value,
           avg(value) AS mean_value,
           var_pop(value) * count(*) AS m2,
           arg_min(value, order_key) AS first_value,
           arg_max(value, order_key) AS last_value,
           min(order_key) AS first_key,
           max(order_key) AS last_key,
           min(reverse_key) AS first_reverse_key,
           max(reverse_key) AS last_reverse_key
    FROM keyed
    GROUP BY window_us, device_id, site_id, metric
)
SELECT window_us, device_id, site_id, metric, unit, reading_count, min_value, max_value,
       mean_value, m2, first_value, window_us + (first_key >> 37) AS first_us,
       last_value, window_us + (last_key >> 37) AS last_us,
       (first_key & 137438953471) <> 137438953471 - (first_reverse_key & 137438953471)
           AS first_tied,
       (last_key & 137438953471) <> 137438953471 - (last_reverse_key & 137438953471)
           AS last_tied
FROM grouped
"""

# Readings at the tied first/last instants of the flagged windows, ranked by reading_id (then
# value and unit, so even rows that repeat a reading_id give one answer).
TIED_ENDS_SQL = """
CREATE TEMP TABLE tied_ends AS
WITH instants AS (
    SELECT device_id, site_id, metric, first_us AS event_us FROM partials WHERE first_tied
    UNION
    SELECT device_id, site_id, metric, last_us AS event_us FROM partials WHERE last_tied
)
SELECT i.device_id, i.site_id, i.metric, i.event_us,
       arg_min(r.value, (r.reading_id, r.value, r.unit)) AS lowest_value,
       arg_min_null(r.unit, (r.reading_id, r.value, r.unit)) AS lowest_unit,
       arg_max(r.value, (r.reading_id, r.value, r.unit)) AS highest_value
FROM (SELECT * FROM raw_readings WHERE {devices}) AS r
JOIN instants AS i
  ON r.device_id = i.device_id
 AND r.site_id IS NOT DISTINCT FROM i.site_id
 AND r.metric = i.metric
 AND epoch_us(r.event_time) = i.event_us
GROUP BY i.device_id, i.site_id, i.metric, i.event_us
"""

RESOLVE_FIRST_SQL = """
UPDATE partials AS p
SET first_value = t.lowest_value, unit = t.lowest_unit
FROM tied_ends AS t
WHERE p.first_tied AND p.device_id = t.device_id AND p.site_id IS NOT DISTINCT FROM t.site_id
  AND p.metric = t.metric AND p.first_us = t.event_us
"""

RESOLVE_LAST_SQL = """
UPDATE partials AS p
SET last_value = t.highest_value
FROM tied_ends AS t
WHERE p.last_tied AND p.device_id = t.device_id AND p.site_id IS NOT DISTINCT FROM t.site_id
  AND p.metric = t.metric AND p.last_us = t.event_us
"""

# Chan et al.'s pairwise merge, M2 = M2_a + M2_b + delta^2 * n_a * n_b / n, applied across all k
# partials of a window at once is M2 = sum(M2_i) + sum(n_i * (mean_i - mean)^2), with mean the
# count-weighted mean. Deviations are taken from the merged mean (not sum of squares minus
# n * mean^2), so no precision is lost to cancellation when the variance is small.
ROLLUP_PARTIALS_SQL = """
CREATE TEMP TABLE partials AS
WITH bucketed AS (
    SELECT *, finer_us - ((finer_us % $window_us) + $window_us) % $window_us AS window_us
    FROM (SELECT *, epoch_us(window_start) AS finer_us FROM finer_aggregates)
), weighted AS (
    SELECT *,
           sum(reading_count * mean_value) OVER grp / sum(reading_count) OVER grp AS merged_mean
    FROM bucketed
    WINDOW grp AS (PARTITION BY window_us, device_id, site_id, metric)
)
SELECT window_us, device_id, site_id, metric,
       arg_min_null(unit, first_event_time) AS unit,
       sum(reading_count)::BIGINT AS reading_count,
       min(min_value) AS min_value,
       max(max_value) AS max_value,
       any_value(merged_mean) AS mean_value,
       sum(m2 + reading_count * (mean_value - merged_mean) ** 2) AS m2,
       arg_min(first_value, first_event_time) AS first_value,
       epoch_us(min(first_event_time)) AS first_us,
       arg_max(last_value, last_event_time) AS last_value,
       epoch_us(max(last_event_time)) AS last_us
FROM weighted
GROUP BY window_us, device_id, site_id, metric
"""

# Times leave as epoch microseconds and become timestamps in Arrow's cast, for free: making a
# TIMESTAMPTZ in DuckDB goes through the ICU calendar and made this step half as slow again.
FINISH_SQL = """
SELECT p.window_us AS window_start,
       p.device_id, p.site_id, p.metric, p.unit, p.reading_count,
       p.min_value, p.max_value, p.mean_value,
       CASE WHEN p.reading_count >= 2 THEN sqrt(p.m2 / (p.reading_count - 1)) END AS stddev_value,
       p.m2,
       p.first_value, p.first_us AS first_event_time,
       p.last_value, p.last_us AS last_event_time,
       $window_seconds / c.cadence_seconds AS expected_count,
       p.reading_count / ($window_seconds / c.cadence_seconds) AS coverage
FROM partials AS p
LEFT JOIN cadences AS c ON c.device_id = p.device_id
ORDER BY p.window_us, p.device_id, p.site_id NULLS LAST, p.metric
"""


class ReadingFilter(Protocol):
    """Readings to leave out (quality.gate.ReadingFilter): creates the view `raw_readings` over
    `unfiltered_readings`."""

    def create_view(self, con: duckdb.DuckDBPyConnection) -> None: ...


def minute_aggregates(
    raw: Source,
    cadences: dict[str, int],
    *,
    keep: ReadingFilter | None = None,
    memory_limit: str = "1GB",
    threads: int = 2,
) -> pa.Table:
    """Aggregate raw readings (READING_SCHEMA) per device, site, metric and UTC minute; with
    `keep`, only the readings its view lets through."""
    cadence_table = _cadence_table(cadences)
    with _connection(memory_limit, threads) as con:
        source = "raw_readings" if keep is None else "unfiltered_readings"
        if not _register_source(con, source, raw):
            return empty_aggregates()
        if keep is not None:
            keep.create_view(con)
        paths = _local_parquet_paths(raw)
        ranges = device_ranges(paths, ROWS_PER_SLICE) if paths else [EVERY_DEVICE]
        return interleave_windows([_minutes_of(con, r, cadence_table) for r in ranges])


def rollup(
    finer: Source,
    window: timedelta,
    cadences: dict[str, int],
    *,
    memory_limit: str = "1GB",
    threads: int = 2,
) -> pa.Table:
    """Merge finer aggregates (AGGREGATE_SCHEMA) into windows of `window` (aligned to the epoch,
    so whole hours or UTC days), exactly. `window` must be a whole number of the finer windows."""
    window_us = window // timedelta(microseconds=1)
    if window_us <= 0 or (86_400_000_000 % window_us and window_us % 86_400_000_000):
        raise ValueError(f"window must divide a day or be whole days, not {window}")
    cadence_table = _cadence_table(cadences)
    with _connection(memory_limit, threads) as con:
        if not _register_source(con, "finer_aggregates", finer):
            return empty_aggregates()
        con.execute(ROLLUP_PARTIALS_SQL, {"window_us": window_us})
        return _finish(con, window, cadence_table)


def _minutes_of(
    con: duckdb.DuckDBPyConnection, devices: DeviceRange, cadences: pa.Table
) -> pa.Table:
    """The minute aggregates of the readings in one device_id range, in output order."""
    where = DEVICE_FILTERS[devices.low is not None, devices.high is not None]
    params = {k: v for k, v in (("low", devices.low), ("high", devices.high)) if v is not None}
    con.execute(MINUTE_PARTIALS_SQL.format(devices=where), params)
    tied = con.sql("SELECT count(*) FROM partials WHERE first_tied OR last_tied").fetchall()
    if tied[0][0]:
        con.execute(TIED_ENDS_SQL.format(devices=where), params)
        con.execute(RESOLVE_FIRST_SQL)
        con.execute(RESOLVE_LAST_SQL)
        con.execute("DROP TABLE tied_ends")
    table = _finish(con, MINUTE, cadences)
    con.execute("DROP TABLE partials")
    return table


@contextmanager
def _connection(memory_limit: str, threads: int) -> Iterator[duckdb.DuckDBPyConnection]:
    # A fresh in-memory database per call, spilling to its own temporary folder when a window
    # holds more than memory_limit; the folder goes away with the call.
    with tempfile.TemporaryDirectory(prefix="rollups-") as spill_dir:
        con = duckdb.connect(
            config={
                "memory_limit": memory_limit,
                "threads": threads,
                "temp_directory": spill_dir,
                "preserve_insertion_order": False,
            }
        )
        try:
            # Windows are UTC floors computed on epoch microseconds; a session zone other than
            # UTC would only matter to timestamp text, and there should be none to misread.
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()


def _register_source(con: duckdb.DuckDBPyConnection, name: str, source: Source) -> bool:
    """Expose `source` to SQL as `name`; False when it is known to hold no files."""
    paths = _local_parquet_paths(source)
    if paths is not None:
        if not paths:
            return False
        # DuckDB's own Parquet reader: parallel, projection pushdown, no Python in the loop.
        con.read_parquet(paths, union_by_name=True).create_view(name)
        return True
    if isinstance(source, pa.Table | ds.Dataset):
        con.register(name, source)
        return True
    raise TypeError(f"expected a pyarrow Table, Dataset or list of Parquet paths, not {source!r}")


def _local_parquet_paths(source: Source) -> list[str] | None:
    """The local Parquet files behind `source` for DuckDB to read itself, else None."""
    if isinstance(source, ds.Dataset):
        return _plain_local_parquet_files(source)
    if isinstance(source, list | tuple):
        return [str(path) for path in source]
    return None


def _plain_local_parquet_files(dataset: ds.Dataset) -> list[str] | None:
    """The files of an unfiltered, unpartitioned local Parquet dataset, else None.

    DuckDB reads such files itself about twice as fast, in a third of the memory, as it scans
    them through Arrow's dataset scanner (10M readings: 0.6 s / 270 MB against 1.4 s / 820 MB).
    """
    if not (
        isinstance(dataset, ds.FileSystemDataset)
        and isinstance(dataset.filesystem, pafs.LocalFileSystem)
        and isinstance(dataset.format, ds.ParquetFileFormat)
        and (dataset.partitioning is None or len(dataset.partitioning.schema) == 0)
    ):
        return None
    # pyarrow keeps a Dataset.filter(...) here; if the attribute ever goes, assume a filter.
    if getattr(dataset, "_scan_options", {"filter": "unknown"}):
        return None
    return dataset.files


def _cadence_table(cadences: dict[str, int]) -> pa.Table:
    seconds = pa.array(list(cadences.values()), pa.float64())
    if len(seconds) and not pc.all(pc.greater(seconds, 0.0)).as_py():
        bad = {k: v for k, v in cadences.items() if not v > 0}
        raise ValueError(f"cadence_seconds must be positive: {bad!r}")
    return pa.table(
        {"device_id": pa.array(list(cadences), pa.string()), "cadence_seconds": seconds}
    )


def _finish(con: duckdb.DuckDBPyConnection, window: timedelta, cadences: pa.Table) -> pa.Table:
    con.register("cadences", cadences)
    window_seconds = window.total_seconds()
    table = con.sql(FINISH_SQL, params={"window_seconds": window_seconds}).to_arrow_table()
    return table.cast(AGGREGATE_SCHEMA)
