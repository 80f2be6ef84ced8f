"""`raw_sensor_readings`: hourly partitions compacted from landed batches."""

import time
from datetime import UTC, datetime

import dagster as dg

from sensor_platform.datasets import Dataset
from sensor_platform.defs.metadata import OWNERS, dataset_metadata, dataset_tags
from sensor_platform.defs.partitions import Partitions, partition_starts
from sensor_platform.defs.pools import RAW_POOL
from sensor_platform.defs.resources import LakeResource, PipelineResource


def raw_asset(
    raw: Dataset, partitions: Partitions, upstream: tuple[dg.AssetKey, ...] = ()
) -> dg.AssetsDefinition:
    """`upstream`: what the readings come from, for lineage (the active source's asset)."""

    @dg.asset(
        name=raw.name,
        description=raw.description,
        deps=list(upstream),
        partitions_def=partitions.of(raw),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=RAW_POOL,
        group_name="raw",
        kinds={"parquet", "duckdb"},
        owners=OWNERS,
        tags=dataset_tags(raw),
        metadata=dataset_metadata(raw),
    )
    def raw_sensor_readings(
        context: dg.AssetExecutionContext, lake: LakeResource, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        from sensor_platform.lake.compaction import cleanup_landing, compact_raw_hour

        store = lake.lake()
        started = time.monotonic()
        reports = [
            compact_raw_hour(store, hour, **pipeline.engine)
            for hour in partition_starts(raw, context.partition_time_window)
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
                "dagster/uri": store.uri(raw.prefix),
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

    return raw_sensor_readings
