"""The aggregate levels of the dataset registry (minute, hour, day, ...) as assets: each level is
computed from the level below (the finest from raw readings), written to the lake and published to
the warehouse table of the same name, that window's rows replaced at once."""

import time
from datetime import timedelta

import dagster as dg

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.defs.metadata import OWNERS, dataset_metadata, dataset_tags
from sensor_platform.defs.partitions import Partitions, partition_starts
from sensor_platform.defs.resources import (
    FleetResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)

# Recompute a window whenever what it is built from changes (late data included), for the
# last week; older windows are repaired by the daily schedule or a backfill.
RECOMPUTE_ON_UPSTREAM_CHANGE = (
    dg.AutomationCondition.in_latest_time_window(timedelta(days=7))
    & dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("recompute when upstream changes")


def aggregate_assets(datasets: Registry, partitions: Partitions) -> list[dg.AssetsDefinition]:
    return [aggregate_asset(datasets, level, partitions) for level in datasets.aggregates]


def aggregate_asset(
    datasets: Registry, level: Dataset, partitions: Partitions
) -> dg.AssetsDefinition:
    """One aggregate level: for each partition of a run, read what the level is merged from,
    aggregate it, write the partition file and replace its window in the warehouse."""
    source = datasets.get(level.source)

    @dg.asset(
        name=level.name,
        description=level.description,
        partitions_def=partitions.of(level),
        deps=[source.name],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
        pool="warehouse",
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
    ) -> dg.MaterializeResult:
        from sensor_platform.rollups.compute import minute_aggregates, rollup

        started, store, cadences = time.monotonic(), lake.lake(), fleet.fleet().cadences()
        wh, spec = warehouse.warehouse(), level.table_spec()
        files, rows = [], 0
        for start in partition_starts(level, context.partition_time_window):
            end = start + level.partition_length
            inputs = store.dataset(
                [p for p in source.files_in(start, end) if store.exists(p)], source.schema
            )
            if source.is_aggregate:
                table = rollup(inputs, level.window, cadences, **pipeline.engine)
            else:
                table = minute_aggregates(inputs, cadences, **pipeline.engine)
            files.append(store.write_parquet(level.partition_file(start), table))
            rows += wh.replace_window(spec, table, start, end)
        context.log.info(f"published {rows} rows of {level.name} to {wh.display_url}")
        return dg.MaterializeResult(
            metadata={
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
