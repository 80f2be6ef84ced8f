"""Minute, hour and day aggregates: each level computed from the level below, written to the lake
and published to the warehouse table of the same name (that window's rows replaced at once)."""

import time
from datetime import datetime, timedelta

import dagster as dg
import pyarrow as pa

from sensor_platform.defs.metadata import table_schema
from sensor_platform.defs.partitions import DAILY, HOURLY, days_in, hours_in
from sensor_platform.defs.raw import raw_sensor_readings
from sensor_platform.defs.resources import (
    FleetResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.rollups.compute import minute_aggregates, rollup
from sensor_platform.rollups.schema import AGGREGATE_COLUMNS, AGGREGATE_SCHEMA
from sensor_platform.warehouse.store import TableSpec

MINUTE, HOURLY_TABLE, DAILY_TABLE = (
    "sensor_readings_minute",
    "sensor_readings_hourly",
    "sensor_readings_daily",
)
TABLES = {
    name: TableSpec(name=name, schema=AGGREGATE_SCHEMA, time_column="window_start")
    for name in (MINUTE, HOURLY_TABLE, DAILY_TABLE)
}

# Recompute a window whenever what it is built from changes (late data included), for the
# last week; older windows are repaired by the daily schedule or a backfill.
RECOMPUTE_ON_UPSTREAM_CHANGE = (
    dg.AutomationCondition.in_latest_time_window(timedelta(days=7))
    & dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("recompute when upstream changes")


def _aggregate_asset(name: str, *, partitions_def, dep, description: str):
    return dg.asset(
        name=name,
        description=description,
        partitions_def=partitions_def,
        deps=[dep],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
        pool="warehouse",
        group_name="aggregates",
        kinds={"parquet", "duckdb", "sql"},
        owners=["team:data-platform"],
        tags={"domain": "iot", "tier": "silver", "pii": "none"},
        metadata={
            "dagster/column_schema": table_schema(AGGREGATE_COLUMNS),
            "dagster/table_name": name,
            "partition_path": layout.aggregate_partition_file(name, datetime(1970, 1, 1))
            .replace("1970-01-01", "YYYY-MM-DD")
            .replace("hour=00", "hour=HH"),
        },
    )


def _publish(
    context: dg.AssetExecutionContext,
    store: Lake,
    warehouse: WarehouseResource,
    name: str,
    windows: list[tuple[datetime, datetime, pa.Table]],
    started: float,
) -> dg.MaterializeResult:
    """Write each window's aggregates to the lake, then replace its rows in the warehouse."""
    wh = warehouse.warehouse()
    files, rows = [], 0
    for start, end, table in windows:
        files.append(store.write_parquet(layout.aggregate_partition_file(name, start), table))
        rows += wh.replace_window(TABLES[name], table, start, end)
    context.log.info(f"published {rows} rows of {name} to {wh.display_url}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "dagster/uri": store.uri(layout.AGGREGATES[name]),
            "warehouse": wh.display_url,
            "bytes": sum(f.size for f in files),
            "processing_seconds": round(time.monotonic() - started, 3),
            "files": dg.MetadataValue.md(
                "\n".join(f"- `{store.uri(f.path)}` ({f.size:,} bytes)" for f in files)
            ),
        }
    )


def _existing(store: Lake, paths: list[str]) -> list[str]:
    return [p for p in paths if store.exists(p)]


@_aggregate_asset(
    MINUTE,
    partitions_def=HOURLY,
    dep=raw_sensor_readings,
    description=(
        "Per device, site, metric and UTC minute: count, min, max, mean, sample stddev, first and "
        "last value, mergeable partials (m2) and coverage against the device's cadence."
    ),
)
def sensor_readings_minute(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    fleet: FleetResource,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    started, store, cadences = time.monotonic(), lake.lake(), fleet.fleet().cadences()
    windows = []
    for hour in hours_in(context.partition_time_window):
        raw = store.dataset(_existing(store, [layout.raw_partition_file(hour)]), READING_SCHEMA)
        table = minute_aggregates(
            raw,
            cadences,
            memory_limit=pipeline.duckdb_memory_limit,
            threads=pipeline.duckdb_threads,
        )
        windows.append((hour, hour + timedelta(hours=1), table))
    return _publish(context, store, warehouse, MINUTE, windows, started)


@_aggregate_asset(
    HOURLY_TABLE,
    partitions_def=DAILY,
    dep=sensor_readings_minute,
    description=(
        "Per device, site, metric and UTC hour, merged exactly from the minute aggregates "
        "(count-weighted means and Chan-merged variances: never an average of averages)."
    ),
)
def sensor_readings_hourly(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    fleet: FleetResource,
) -> dg.MaterializeResult:
    started, store, cadences = time.monotonic(), lake.lake(), fleet.fleet().cadences()
    windows = []
    for day in days_in(context.partition_time_window):
        minute_files = _existing(
            store,
            [layout.aggregate_partition_file(MINUTE, day + timedelta(hours=h)) for h in range(24)],
        )
        table = rollup(store.dataset(minute_files, AGGREGATE_SCHEMA), "hour", cadences)
        windows.append((day, day + timedelta(days=1), table))
    return _publish(context, store, warehouse, HOURLY_TABLE, windows, started)


@_aggregate_asset(
    DAILY_TABLE,
    partitions_def=DAILY,
    dep=sensor_readings_hourly,
    description="Per device, site, metric and UTC day, merged exactly from the hourly aggregates.",
)
def sensor_readings_daily(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    fleet: FleetResource,
) -> dg.MaterializeResult:
    started, store, cadences = time.monotonic(), lake.lake(), fleet.fleet().cadences()
    windows = []
    for day in days_in(context.partition_time_window):
        hourly = _existing(store, [layout.aggregate_partition_file(HOURLY_TABLE, day)])
        table = rollup(store.dataset(hourly, AGGREGATE_SCHEMA), "day", cadences)
        windows.append((day, day + timedelta(days=1), table))
    return _publish(context, store, warehouse, DAILY_TABLE, windows, started)
