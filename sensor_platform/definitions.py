"""The code location: one Definitions object assembled from defs/."""

import dagster as dg

from sensor_platform.defs import (
    aggregates,
    alerts,
    automation,
    catalog,
    dbt,
    feed,
    kafka,
    landing,
    quality,
    raw,
)
from sensor_platform.defs.resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    resources = {**build_resources(), **alerts.build_alert_resources()}
    resources["dbt"] = dbt.DbtWarehouseResource(warehouse=resources["warehouse"])
    core = dg.Definitions(
        assets=[
            kafka.kafka_topics,
            landing.quarantined_messages,
            raw.raw_sensor_readings,
            aggregates.sensor_readings_minute,
            aggregates.sensor_readings_hourly,
            aggregates.sensor_readings_daily,
            alerts.sensor_anomalies,
            alerts.anomaly_alerts,
            dbt.sensor_dbt_models,
        ],
        jobs=[
            feed.simulated_feed_job,
            kafka.kafka_ingest_job,
            automation.raw_job,
            automation.minute_job,
            automation.rollups_job,
            alerts.anomaly_alerts_job,
            dbt.analytics_job,
        ],
        sensors=[
            feed.simulated_feed_sensor,
            kafka.kafka_ingest_sensor,
            automation.raw_partitions_sensor,
        ],
        schedules=[
            automation.repair_raw_partitions,
            automation.repair_minute_partitions,
            automation.repair_rollup_partitions,
            alerts.retry_pending_alerts,
        ],
        resources=resources,
    )
    return dg.Definitions.merge(core, quality.quality_definitions(), catalog.catalog_definitions())
