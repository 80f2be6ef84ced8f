"""`sensor_anomalies`: anomaly episodes of each hour, detected from the raw readings."""

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.datasets import Dataset
from sensor_platform.defs.aggregates import RECOMPUTE_ON_UPSTREAM_CHANGE
from sensor_platform.defs.metadata import OWNERS, dataset_metadata, dataset_tags
from sensor_platform.defs.partitions import Partitions, partition_starts
from sensor_platform.defs.pools import WAREHOUSE_POOL
from sensor_platform.defs.resources import (
    AnomalyRulesResource,
    FleetResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from sensor_platform.lake.store import Lake


def readings_with_lookback(
    store: "Lake", raw: Dataset, hour: datetime, lookback: timedelta
) -> "pa.Table | ds.Dataset":
    """The raw partitions holding the hour and its look-back, scanned lazily by DuckDB."""
    first = (hour - lookback).replace(minute=0, second=0, microsecond=0)
    files = [p for p in raw.files_in(first, hour + timedelta(hours=1)) if store.exists(p)]
    return store.dataset(files, raw.schema) if files else raw.schema.empty_table()


def anomalies_asset(
    anomalies: Dataset, raw: Dataset, partitions: Partitions
) -> dg.AssetsDefinition:
    @dg.asset(
        name=anomalies.name,
        description=anomalies.description,
        partitions_def=partitions.of(anomalies),
        deps=[raw.name],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
        pool=WAREHOUSE_POOL,
        group_name="anomalies",
        kinds={"parquet", "duckdb", "sql"},
        owners=OWNERS,
        tags=dataset_tags(anomalies),
        metadata=dataset_metadata(anomalies),
    )
    def sensor_anomalies(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        fleet: FleetResource,
        pipeline: PipelineResource,
        anomaly_rules: AnomalyRulesResource,
    ) -> dg.MaterializeResult:
        from sensor_platform.detection.episodes import detect_episodes

        started, store, rules = time.monotonic(), lake.lake(), anomaly_rules.rules()
        cadences, wh, spec = fleet.fleet().cadences(), warehouse.warehouse(), anomalies.table_spec()
        previous, rows, files, tally = None, 0, [], {}
        for hour in partition_starts(anomalies, context.partition_time_window):
            end = hour + timedelta(hours=1)
            if previous is None:
                before = anomalies.partition_file(hour - timedelta(hours=1))
                previous = (
                    store.read_parquet([before], anomalies.schema) if store.exists(before) else None
                )
            episodes = detect_episodes(
                readings_with_lookback(store, raw, hour, rules.lookback),
                rules,
                window_start=hour,
                window_end=end,
                previous=previous,
                cadences=cadences,
                **pipeline.engine,
            )
            files.append(store.write_parquet(anomalies.partition_file(hour), episodes))
            rows += wh.replace_window(spec, episodes, hour, end)
            for rule, severity, status in zip(
                *(episodes[c].to_pylist() for c in ("rule", "severity", "status")), strict=True
            ):
                key = f"{rule}/{severity}/{status}"
                tally[key] = tally.get(key, 0) + 1
            previous = episodes
        context.log.info(f"{rows} episode rows published to {wh.display_url}: {tally}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/uri": store.uri(anomalies.prefix),
                "warehouse": wh.display_url,
                "episodes_by_rule": dg.MetadataValue.json(dict(sorted(tally.items()))),
                "open_episodes": sum(n for k, n in tally.items() if k.endswith("/open")),
                "bytes": sum(f.size for f in files),
                "processing_seconds": round(time.monotonic() - started, 3),
            }
        )

    return sensor_anomalies
