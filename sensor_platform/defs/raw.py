"""`raw_sensor_readings`: hourly partitions compacted from landed batches."""

import time
from datetime import UTC, datetime

import dagster as dg

from sensor_platform.defs.metadata import table_schema
from sensor_platform.defs.partitions import HOURLY, hours_in
from sensor_platform.defs.resources import LakeResource, PipelineResource
from sensor_platform.lake import layout
from sensor_platform.lake.compaction import cleanup_landing, compact_raw_hour
from sensor_platform.readings.schema import READING_COLUMNS


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="raw_sensor_readings",
    group_name="raw",
    kinds={"parquet", "duckdb"},
    owners=["team:data-platform"],
    tags={"domain": "iot", "tier": "bronze", "pii": "none"},
    metadata={
        "dagster/column_schema": table_schema(READING_COLUMNS),
        "dagster/table_name": "raw_sensor_readings",
        "partition_path": f"{layout.RAW}/date=YYYY-MM-DD/hour=HH/{layout.PART_FILE}",
    },
)
def raw_sensor_readings(
    context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineResource
) -> dg.MaterializeResult:
    """Every valid reading whose event_time falls in the hour (UTC), de-duplicated by reading_id
    and sorted by device, metric and time, in one Parquet file per hour. Rebuilt from the previous
    file plus every landed batch of that hour, so late readings join their hour and re-runs never
    duplicate. Landing files merged here are deleted after the landing retention."""
    store = lake.lake()
    started = time.monotonic()
    reports = [
        compact_raw_hour(
            store, hour, memory_limit=pipeline.duckdb_memory_limit, threads=pipeline.duckdb_threads
        )
        for hour in hours_in(context.partition_time_window)
    ]
    now = datetime.now(UTC)
    deleted = sum(
        len(cleanup_landing(store, r.hour, retention=pipeline.landing_retention, now=now))
        for r in reports
    )
    written = [r for r in reports if r.file is not None]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r.rows for r in reports),
            "dagster/uri": store.uri(layout.RAW),
            "new_rows": sum(r.new_rows for r in reports),
            "late_rows": sum(r.late_rows for r in reports),
            "landing_files_merged": sum(r.landing_files for r in reports),
            "landing_files_deleted": deleted,
            "devices": max((r.devices for r in reports), default=0),
            "metrics": max((r.metrics for r in reports), default=0),
            "bytes": sum(r.file.size for r in written),
            "processing_seconds": round(time.monotonic() - started, 3),
            "files": dg.MetadataValue.md(
                "\n".join(
                    f"- `{store.uri(r.file.path)}` ({r.file.size:,} bytes, {r.rows:,} rows)"
                    for r in written
                )
                or "(no readings in this window)"
            ),
        }
    )
