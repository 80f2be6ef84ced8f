"""`sensor-platform demo`: simulate a few hours of the fleet and run the whole graph in Dagster on
the embedded defaults (local lake folder, DuckDB warehouse, local Dagster instance)."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.settings import load_settings

DEV_INSTANCE_YAML = """\
# Local Dagster instance for `make demo` / `make ui` (SQLite under this folder, no server).
# Production uses the repository's dagster.yaml (PostgreSQL) instead; the run queue, pools, run
# retries and run monitoring behave the same in both.
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  pools:
    default_limit: 1
# A run whose process died (killed, out of memory) is failed by its code server at once and run
# again; a failing step is not (its failure would repeat).
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
# Slots of pools held by a run that died are freed 10 s after it ended.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 10
  free_slots_after_run_end_seconds: 10
"""


def dev_instance() -> dg.DagsterInstance:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DEV_INSTANCE_YAML)
    return dg.DagsterInstance.get()


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def run_demo(hours: int = 6, now: datetime | None = None) -> dict[str, object]:
    from sensor_platform.datasets import REGISTRY
    from sensor_platform.definitions import build_definitions
    from sensor_platform.defs.ingest import source_named
    from sensor_platform.simulator.source import window_unit

    instance = dev_instance()
    settings = load_settings()
    definitions = build_definitions(settings)
    hour_key = REGISTRY.raw.partition_key
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    print(f"Simulating {hours} h of the fleet ({start:%Y-%m-%d %H:%M} .. {end:%H:%M} UTC) ...")

    feed_job = definitions.resolve_job_def("simulated_feed_job")
    window = start
    while window < end:
        request = source_named("simulator").run_request(
            window_unit(window, min(window + timedelta(minutes=15), end))
        )
        _run(feed_job, instance, run_config=request.run_config, tags=request.tags)
        window += timedelta(minutes=15)

    first_hour, last_hour = hour_key(start), hour_key(end - timedelta(hours=1))
    print(
        f"Materializing raw_sensor_readings and minute aggregates {first_hour} .. {last_hour} ..."
    )
    for job in ("raw_job", "minute_job"):
        _run(definitions.resolve_job_def(job), instance, tags=_range_tags(first_hour, last_hour))
    first_day, last_day = f"{start:%Y-%m-%d}", f"{end - timedelta(hours=1):%Y-%m-%d}"
    print(f"Materializing hourly and daily aggregates {first_day} .. {last_day} ...")
    _run(
        definitions.resolve_job_def("rollups_job"), instance, tags=_range_tags(first_day, last_day)
    )

    summary = _summary(Lake(settings.lake_root))
    print()
    print("Demo finished.")
    print(f"  readings in the lake     {summary['readings']:,}")
    print(f"  raw hourly partitions    {summary['raw_partitions']}")
    print(f"  quarantined messages     {summary['quarantined']:,}")
    print(f"  anomaly episodes         {summary['anomaly_episodes']:,}")
    print(f"  lake                     {Path(settings.lake_root).resolve()}")
    print(f"  warehouse (DuckDB)       {Path(settings.data_dir, 'warehouse.duckdb').resolve()}")
    print(f"  Dagster instance         {os.environ['DAGSTER_HOME']}")
    print("  open the UI              make ui   (then http://127.0.0.1:3000)")
    return summary


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: dict | None = None, **kwargs
) -> None:
    config = {**(run_config or {}), **QUIET}
    result = job.execute_in_process(
        instance=instance, run_config=config, raise_on_error=False, **kwargs
    )
    if not result.success:
        raise RuntimeError(f"run {result.run_id} of {job.name} failed; see `make ui` for its logs")


def _summary(lake: Lake) -> dict[str, object]:
    raw = lake.list_files(layout.RAW)
    quarantine = lake.list_files(layout.QUARANTINE)
    anomalies = [lake.full_path(f.path) for f in lake.list_files(layout.ANOMALIES)]
    episodes = (
        duckdb.sql(
            "SELECT count(DISTINCT episode_id) FROM read_parquet($files)",
            params={"files": anomalies},
        ).fetchall()[0][0]
        if anomalies
        else 0
    )
    return {
        "readings": sum(lake.row_count(f.path) for f in raw),
        "raw_partitions": len(raw),
        "quarantined": sum(lake.row_count(f.path) for f in quarantine),
        "anomaly_episodes": episodes,
    }
