"""Compact landed batches into one raw hourly partition, and clean landing files up afterwards.

A raw partition is always `dedup(existing raw rows ∪ every landing file of that hour)`, so
compacting again is idempotent, late batches simply join the union, and a landing file can be
deleted once a raw file lists it as merged. Duplicates (the same reading_id) keep the copy that
arrived first (ingest_time, then source), which makes the result independent of landing order.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake, LakeFile
from sensor_platform.readings.schema import READING_SCHEMA

MERGED_KEY = "sensor_platform.merged_landing_files"

_DEDUP_SQL = """
SELECT * FROM readings
WHERE event_time >= $start AND event_time < $end
QUALIFY row_number() OVER (PARTITION BY reading_id ORDER BY ingest_time, source) = 1
ORDER BY device_id, metric, event_time, reading_id
"""

_STATS_SQL = """
SELECT count(*), count(*) FILTER (WHERE ingest_time >= $end),
       count(DISTINCT device_id), count(DISTINCT metric), min(event_time), max(event_time)
FROM raw
"""


@dataclass(frozen=True)
class CompactionReport:
    hour: datetime
    file: LakeFile | None  # None when the hour has no readings at all
    rows: int
    rows_before: int
    late_rows: int  # rows that arrived (ingest_time) after their hour had ended
    devices: int
    metrics: int
    landing_files: int
    first_event: datetime | None
    last_event: datetime | None

    @property
    def new_rows(self) -> int:
        return self.rows - self.rows_before


def compact_raw_hour(
    lake: Lake, hour: datetime, *, memory_limit: str = "1GB", threads: int = 2
) -> CompactionReport:
    """Rewrite the raw partition of `hour` from itself plus every landing file of that hour."""
    end = hour + timedelta(hours=1)
    raw_path = layout.raw_partition_file(hour)
    had_raw = lake.exists(raw_path)
    landing = [f.path for f in lake.list_files(layout.landing_dir(hour))]
    sources = ([raw_path] if had_raw else []) + landing
    rows_before = lake.row_count(raw_path) if had_raw else 0
    if not sources:
        return CompactionReport(hour, None, 0, 0, 0, 0, 0, 0, None, None)

    con = _connect(memory_limit, threads)
    try:
        con.register("readings", lake.dataset(sources, READING_SCHEMA))
        result = con.sql(_DEDUP_SQL, params={"start": hour, "end": end}).to_arrow_reader()
        schema = READING_SCHEMA.with_metadata({MERGED_KEY: json.dumps(landing)})
        written = lake.write_parquet(raw_path, _conform(result, schema))
        con.register("raw", lake.dataset([raw_path], READING_SCHEMA))
        [(rows, late, devices, metrics, first, last)] = con.execute(
            _STATS_SQL, {"end": end}
        ).fetchall()
    finally:
        con.close()
    return CompactionReport(
        hour, written, rows, rows_before, late, devices, metrics, len(landing), first, last
    )


def cleanup_landing(
    lake: Lake, hour: datetime, *, retention: timedelta, now: datetime
) -> list[str]:
    """Delete landing files of `hour` that the raw partition has merged and that are older than
    `retention`. A file the raw partition does not list as merged is never deleted."""
    raw_path = layout.raw_partition_file(hour)
    if not lake.exists(raw_path):
        return []
    merged = set(json.loads(lake.read_metadata(raw_path).get(MERGED_KEY, "[]")))
    deleted = []
    for f in lake.list_files(layout.landing_dir(hour)):
        if f.path in merged and f.mtime is not None and f.mtime <= now - retention:
            lake.delete(f.path)
            deleted.append(f.path)
    return deleted


def landing_hours(lake: Lake) -> list[datetime]:
    """The UTC hours that have landing files waiting or kept for retention."""
    hours = set()
    for f in lake.list_files(layout.LANDING):
        parts = dict(p.split("=", 1) for p in f.path.split("/") if "=" in p)
        hours.add(datetime.fromisoformat(f"{parts['date']}T{parts['hour']}:00:00+00:00"))
    return sorted(hours)


def _connect(memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads})
    con.execute("SET TimeZone = 'UTC'")
    return con


def _conform(reader: pa.RecordBatchReader, schema: pa.Schema) -> pa.RecordBatchReader:
    """Cast DuckDB's output batches to the canonical schema, streaming."""

    def batches():
        for batch in reader:
            yield pa.RecordBatch.from_arrays(
                [col.cast(field.type) for col, field in zip(batch.columns, schema, strict=True)],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def pending_landing(lake: Lake) -> dict[datetime, list[str]]:
    """Landing files not yet merged into their raw partition, by event hour."""
    pending: dict[datetime, list[str]] = {}
    for hour in landing_hours(lake):
        raw_path = layout.raw_partition_file(hour)
        merged = (
            set(json.loads(lake.read_metadata(raw_path).get(MERGED_KEY, "[]")))
            if lake.exists(raw_path)
            else set()
        )
        waiting = [
            f.path for f in lake.list_files(layout.landing_dir(hour)) if f.path not in merged
        ]
        if waiting:
            pending[hour] = waiting
    return pending
