"""The platform's definitions built for a test: settings from a plain mapping (never the test
process's environment), data under a temporary folder."""

from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from sensor_platform.datasets import REGISTRY
from sensor_platform.definitions import build_definitions
from sensor_platform.defs.ingest import source_named
from sensor_platform.settings import Settings, load_settings
from sensor_platform.simulator.source import feed_windows, window_unit

hour_key = REGISTRY.raw.partition_key


def feed_run_request(start: datetime, end: datetime):
    """The run the simulated feed's sensor asks for the window [start, end)."""
    return source_named("simulator").run_request(window_unit(start, end))


def settings_for(data_dir: Path, **env: str) -> Settings:
    """Settings of a platform whose embedded defaults live in `data_dir`, plus `env`."""
    return load_settings({"SENSOR_DATA_DIR": str(data_dir), **env})


def definitions_for(data_dir: Path, **env: str) -> dg.Definitions:
    return build_definitions(settings_for(data_dir, **env))


def run_simulated_hours(
    definitions: dg.Definitions, instance: dg.DagsterInstance, start: datetime, end: datetime
) -> None:
    """The simulated feed's runs for [start, end), then one run of raw_job over those hours (raw,
    minute aggregates, anomalies, alerts) and one of rollups_job over their days."""
    feed = definitions.resolve_job_def("simulated_feed_job")
    for s, e in feed_windows(start, end):
        request = feed_run_request(s, e)
        feed.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    last_hour = end - timedelta(hours=1)
    days = REGISTRY.get("sensor_readings_hourly").partition_key
    for job, first, last in (
        ("raw_job", hour_key(start), hour_key(last_hour)),
        ("rollups_job", days(start), days(last_hour)),
    ):
        result = definitions.resolve_job_def(job).execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
        )
        assert result.success, job
