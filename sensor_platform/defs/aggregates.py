"""The aggregate levels of the dataset registry (minute, hour, day, ...) as assets: each level is
computed from the level below (the finest from raw readings), written to the lake and published to
the warehouse table of the same name, that window's rows replaced at once."""

import time
from datetime import timedelta

import dagster as dg

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.defs.metadata import OWNERS, dataset_metadata, dataset_tags
from sensor_platform.defs.partitions import EXISTING_UPSTREAM, Partitions, partition_starts
from sensor_platform.defs.pools import WAREHOUSE_POOL
from sensor_platform.defs.resources import (
    FleetResource,
    LakeResource,
    PipelineResource,
    QualityResource,
    WarehouseResource,
)

EXCLUSIONS = "quality_exclusions"

# Recompute a window whenever what it is built from changes (late data included), for the
# last week; older windows are repaired by the daily schedule or a backfill.
RECOMPUTE_ON_UPSTREAM_CHANGE = (
    dg.AutomationCondition.in_latest_time_window(timedelta(days=7))
    & dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("recompute when upstream changes")


def aggregate_assets(datasets: Registry, partitions: Partitions) -> list[dg.AssetsDefinition]:
    return [aggregate_asset(datasets, level, partitions) for level in datasets.aggregates]


def aggregate_asset(
    datasets: Registry, level: Dataset, partitions: Partitions
) -> dg.AssetsDefinition:
    """One aggregate level: for each partition of a run, read what the level is merged from,
    aggregate it, write the partition file and replace its window in the warehouse. The level
    computed from raw readings passes them through the quality gate first (quality/gate.py): on
    every path that builds it (automation, schedules, backfills, the UI), invalid readings and
    series with too many of them stay out, and what stayed out is published as
    quality_exclusions."""
    source = datasets.get(level.source)
    exclusions = None if source.is_aggregate else datasets.get(EXCLUSIONS)

    @dg.asset(
        name=level.name,
        description=level.description,
        partitions_def=partitions.of(level),
        deps=[dg.AssetDep(source.name, partition_mapping=EXISTING_UPSTREAM)],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
        pool=WAREHOUSE_POOL,
        group_name="aggregates",
        kinds={"parquet", "duckdb", "sql"},
        owners=OWNERS,
        tags=dataset_tags(level),
        metadata=dataset_metadata(level),
    )
    def _aggregate(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        fleet: FleetResource,
        pipeline: PipelineResource,
        quality: QualityResource,
    ) -> dg.MaterializeResult:
        from sensor_platform.quality.gate import Gate
        from sensor_platform.rollups.compute import minute_aggregates, rollup

        started, store, cadences = time.monotonic(), lake.lake(), fleet.fleet().cadences()
        wh, spec = warehouse.warehouse(), level.table_spec()
        gate = None if exclusions is None else Gate(quality.rules())
        files, rows, left_out = [], 0, []
        for start in partition_starts(level, context.partition_time_window):
            end = start + level.partition_length
            inputs = store.dataset(
                [p for p in source.files_in(start, end) if store.exists(p)], source.schema
            )
            if gate is None:
                table = rollup(inputs, level.window, cadences, **pipeline.engine)
            else:
                excluded = gate.judge(inputs, start)
                keep = gate.filter(excluded)
                table = minute_aggregates(inputs, cadences, keep=keep, **pipeline.engine)
                _publish_exclusions(context, store, wh, exclusions, excluded, start, end)
                left_out += excluded.to_pylist()
            files.append(store.write_parquet(level.partition_file(start), table))
            rows += wh.replace_window(spec, table, start, end)
        context.log.info(f"published {rows} rows of {level.name} to {wh.display_url}")
        series_out = [
            f"{r['device_id']} / {r['metric']} ({r['partition_hour']:%Y-%m-%d %H:00})"
            for r in left_out
            if r["scope"] == "series"
        ]
        if series_out:
            context.log.warning(f"left out of the aggregates by the quality gate: {series_out}")
        gate_metadata = (
            {}
            if gate is None
            else {
                "series_left_out": dg.MetadataValue.json(series_out),
                "invalid_readings_left_out": sum(r["invalid_readings"] for r in left_out),
            }
        )
        return dg.MaterializeResult(
            metadata={
                **gate_metadata,
                "dagster/row_count": rows,
                "dagster/uri": store.uri(level.prefix),
                "warehouse": wh.display_url,
                "bytes": sum(f.size for f in files),
                "processing_seconds": round(time.monotonic() - started, 3),
                "files": dg.MetadataValue.md(
                    "\n".join(f"- `{store.uri(f.path)}` ({f.size:,} bytes)" for f in files)
                ),
            }
        )

    return _aggregate


def exclusions_spec(exclusions: Dataset, partitions: Partitions) -> dg.AssetSpec:
    """The quality gate's exclusions: written by the runs that build the minute aggregates."""
    return dg.AssetSpec(
        EXCLUSIONS,
        description=exclusions.description,
        partitions_def=partitions.of(exclusions),
        group_name="quality",
        kinds={"parquet", "sql"},
        owners=OWNERS,
        tags=dataset_tags(exclusions),
        metadata=dataset_metadata(exclusions),
    )


def _publish_exclusions(context, store, wh, exclusions: Dataset, rows, start, end) -> None:
    """What the gate kept out of one raw hour, in the lake and the warehouse (replaced whole, so
    re-running the hour leaves no stale row), reported on the quality_exclusions asset."""
    written = store.write_parquet(exclusions.partition_file(start), rows)
    wh.replace_window(exclusions.table_spec(), rows, start, end)
    context.log_event(
        dg.AssetMaterialization(
            EXCLUSIONS,
            partition=exclusions.partition_key(start),
            description=f"{rows.num_rows} series with readings kept out of the aggregates",
            metadata={
                "dagster/row_count": rows.num_rows,
                "dagster/uri": store.uri(written.path),
                "series_left_out": sum(1 for s in rows["scope"].to_pylist() if s == "series"),
            },
        )
    )
