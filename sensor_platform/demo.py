"""`sensor-platform demo`: simulate a day of the fleet and run the whole graph in Dagster on the
embedded defaults (local lake folder, DuckDB warehouse, local Dagster instance)."""

import dataclasses
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
    # raw_sensor_readings and warehouse are created with their limits by dev_instance()
    # (defs/pools.py); this default applies only to a pool it has not created yet.
    default_limit: 1
# A run whose process died (killed, out of memory) is failed by its code server at once and run
# again; a failing step is not (its failure would repeat).
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
# Slots of pools held by a run that died are freed 10 s after it ended. A run still going after
# its dagster/max_runtime tag (landing runs: SENSOR_LANDING_MAX_RUNTIME_SECONDS), or any other
# after 12 hours, is failed.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 10
  free_slots_after_run_end_seconds: 10
  max_runtime_seconds: 43200
"""


def dev_instance() -> dg.DagsterInstance:
    """The local instance of `make demo` / `make ui`, its pools created (defs/pools.py)."""
    from sensor_platform.defs.pools import create_pools

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DEV_INSTANCE_YAML)
    instance = dg.DagsterInstance.get()
    create_pools(instance)
    return instance


def _range_tags(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


# The demo's fleet sends a few malformed messages, so the quarantine has something to show; its
# day has no neighbour for late messages to fall into, so none are late (the live feed's are).
DEMO_SETTINGS = {"simulator_malformed_rate": 0.002, "simulator_late_rate": 0.0}
FEED_WINDOW = timedelta(hours=1)
# What the demo's data is expected to warn about, and why (anything else is worth a look).
EXPECTED = {
    "anomaly_alerts.alerts_delivered": "the demo configures no webhook (README: Anomalies and "
    "alerts); the episodes are in the warehouse table sensor_anomalies",
    "sensor_readings_minute.completeness": "the simulator injects dropouts: devices that go "
    "silent for a while deliver less than their cadence in that hour",
}


def run_demo(days: int = 1, now: datetime | None = None) -> dict[str, object]:
    """Simulate the last `days` whole UTC days (ending at the last midnight), then run what the
    daemon would: landing, raw hours with their minutes, anomalies and alerts, the hour and day
    rollups, the catalog with the analysts' file, and the dbt models; print where to look."""
    from sensor_platform.datasets import REGISTRY
    from sensor_platform.dbt_definitions import defs as analytics_definitions
    from sensor_platform.definitions import build_definitions
    from sensor_platform.defs.ingest import source_named
    from sensor_platform.simulator.source import window_unit

    instance = dev_instance()
    settings = load_settings()
    overrides = {
        name: value
        for name, value in DEMO_SETTINGS.items()
        if f"SENSOR_{name.upper()}" not in os.environ
    }
    settings = dataclasses.replace(settings, **overrides)
    definitions = build_definitions(settings)
    hour_key = REGISTRY.raw.partition_key
    end = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    print(
        f"Simulating {days} day(s) of the fleet ({start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC) ..."
    )
    checks: list[dg.AssetCheckEvaluation] = []
    feed_job = definitions.resolve_job_def("simulated_feed_job")
    window = start
    while window < end:
        request = source_named("simulator").run_request(window_unit(window, window + FEED_WINDOW))
        _run(feed_job, instance, run_config=request.run_config, tags=request.tags)
        window += FEED_WINDOW

    first_hour, last_hour = hour_key(start), hour_key(end - timedelta(hours=1))
    first_day, last_day = f"{start:%Y-%m-%d}", f"{end - timedelta(days=1):%Y-%m-%d}"
    print(
        f"Materializing raw_sensor_readings, minute aggregates and anomalies {first_hour} .. {last_hour} ..."
    )
    checks += _run(
        definitions.resolve_job_def("raw_job"), instance, tags=_range_tags(first_hour, last_hour)
    )
    print(f"Materializing hourly and daily aggregates {first_day} .. {last_day} ...")
    checks += _run(
        definitions.resolve_job_def("rollups_job"), instance, tags=_range_tags(first_day, last_day)
    )
    print("Building the data catalog and the analysts' file ...")
    checks += _run(definitions.resolve_job_def("catalog_job"), instance)
    print(f"Running the dbt models {first_day} .. {last_day} ...")
    analytics = analytics_definitions()
    checks += _run(
        analytics.resolve_job_def("analytics_job"), instance, tags=_range_tags(first_day, last_day)
    )

    summary = _summary(Lake(settings.lake_root))
    lake_root = Path(settings.lake_root).resolve()
    print()
    print("Demo finished.")
    print(f"  readings in the lake     {summary['readings']:,}")
    print(f"  raw hourly partitions    {summary['raw_partitions']}")
    print(
        f"  quarantined messages     {summary['quarantined']:,}   (lake: quarantine/, UI: quarantined_messages)"
    )
    print(f"  anomaly episodes         {summary['anomaly_episodes']:,}")
    print(f"  lake                     {lake_root}")
    print(f"  warehouse (DuckDB)       {Path(settings.data_dir, 'warehouse.duckdb').resolve()}")
    print(f"  Dagster instance         {os.environ['DAGSTER_HOME']}")
    print()
    print("Where to look:")
    print("  make ui          the Dagster UI, http://127.0.0.1:3000 (PORT=...), and the Data Docs")
    print("                   its checks link to, http://127.0.0.1:3030")
    print(f"  catalog page     {lake_root / 'catalog' / 'index.html'}")
    print(f"  make sql         SQL on the analysts' file {Path(settings.analytics_db).resolve()}")
    print("  make dashboard   the operations dashboard, http://127.0.0.1:8501")
    not_passed = [c for c in checks if not c.passed]
    print()
    print(f"Checks: {len(checks)} evaluated, {len(checks) - len(not_passed)} passed.")
    for check in not_passed:
        level = "ERROR" if check.severity == dg.AssetCheckSeverity.ERROR else "WARN"
        name = f"{check.asset_key.to_user_string()}.{check.check_name}"
        print(f"  {level} {name}: {check.description}")
        if name in EXPECTED:
            print(f"      expected: {EXPECTED[name]}")
    summary["checks"] = {f"{c.asset_key.to_user_string()}.{c.check_name}": c.passed for c in checks}
    return summary


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: dict | None = None, **kwargs
) -> list[dg.AssetCheckEvaluation]:
    config = {**(run_config or {}), **QUIET}
    result = job.execute_in_process(
        instance=instance, run_config=config, raise_on_error=False, **kwargs
    )
    if not result.success:
        raise RuntimeError(f"run {result.run_id} of {job.name} failed; see `make ui` for its logs")
    return result.get_asset_check_evaluations()


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
