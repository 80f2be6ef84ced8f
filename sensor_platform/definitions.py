"""The code location: one Definitions object assembled from defs/, built from the settings and the
dataset registry when Dagster loads the location (nothing is read or built at import)."""

import dagster as dg

from sensor_platform.datasets import REGISTRY, Registry
from sensor_platform.defs.aggregates import aggregate_assets, exclusions_spec
from sensor_platform.defs.alerts import alerts_definitions
from sensor_platform.defs.anomalies import anomalies_asset
from sensor_platform.defs.automation import automation_definitions
from sensor_platform.defs.catalog import catalog_definitions
from sensor_platform.defs.executor import run_executor
from sensor_platform.defs.ingest import SOURCES, ingest_definitions
from sensor_platform.defs.landing import quarantine_spec
from sensor_platform.defs.partitions import Partitions
from sensor_platform.defs.quality import quality_definitions
from sensor_platform.defs.raw import raw_asset
from sensor_platform.defs.resources import build_resources
from sensor_platform.settings import Settings, load_settings


def build_definitions(settings: Settings, datasets: Registry = REGISTRY) -> dg.Definitions:
    """Everything the platform runs: ingestion, raw partitions, the aggregate levels of
    `datasets`, anomalies and alerts, quality checks, the catalog, and their resources."""
    from sensor_platform.quality.rules import load_rules

    partitions = Partitions.starting(settings.partitions_start)
    # Celery (SENSOR_RUN_EXECUTOR) runs every job's steps on the workers; locally the hourly
    # jobs run in their run's own process and the others a subprocess per step.
    celery = run_executor(settings)
    hourly_executor = celery or dg.in_process_executor
    anomalies = datasets.get("sensor_anomalies")
    # lineage: the active source's asset (kafka_topics) feeds raw and the quarantine
    upstream = tuple(s.asset.key for s in SOURCES if s.name == settings.source and s.asset)
    complete: list[dg.Definitions] = []  # the catalog describes the finished whole
    platform = dg.Definitions.merge(
        ingest_definitions(settings, SOURCES, hourly_executor),
        dg.Definitions(
            assets=[
                quarantine_spec(datasets.get("quarantined_messages"), upstream),
                raw_asset(datasets.raw, partitions, upstream),
                *aggregate_assets(datasets, partitions),
                exclusions_spec(datasets.get("quality_exclusions"), partitions),
                anomalies_asset(anomalies, datasets.raw, partitions),
            ],
            resources=build_resources(settings),
            executor=celery,
        ),
        alerts_definitions(anomalies, partitions, hourly_executor),
        automation_definitions(
            datasets, partitions, settings.raw_sensor_interval_seconds, hourly_executor
        ),
        quality_definitions(
            datasets, load_rules(settings.quality_rules_file).freshness_hours, partitions
        ),
        catalog_definitions(lambda: complete[0], datasets),
    )
    complete.append(platform)
    return platform


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())
