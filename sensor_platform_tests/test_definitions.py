"""Pins the shape of both code locations exactly (assets, partitions, dependencies, checks, jobs,
sensors and schedules), so that a structural change is always deliberate; shows that a new
aggregate level is one registry entry; and checks that the platform's location loads without
dbt, slow libraries, the environment or the disk at import."""

import dataclasses
import json
import subprocess
import sys
from datetime import timedelta

import dagster as dg
import pytest

from sensor_platform.datasets import REGISTRY, Registry, aggregate
from sensor_platform.definitions import build_definitions
from sensor_platform.settings import load_settings
from sensor_platform_tests.platform import definitions_for

ASSETS = {
    # asset: (partitioning, upstream assets)
    "kafka_topics": (None, []),
    "quarantined_messages": (None, []),
    "quality_exclusions": ("hourly", []),
    "raw_sensor_readings": ("hourly", []),
    "sensor_readings_minute": ("hourly", ["raw_sensor_readings"]),
    "sensor_readings_hourly": ("daily", ["sensor_readings_minute"]),
    "sensor_readings_daily": ("daily", ["sensor_readings_hourly"]),
    "sensor_anomalies": ("hourly", ["raw_sensor_readings"]),
    "anomaly_alerts": ("hourly", ["sensor_anomalies"]),
    # The catalog describes every dataset: their lineage into it (it reads metadata only).
    "data_catalog": (
        None,
        [
            "quality_exclusions",
            "quarantined_messages",
            "raw_sensor_readings",
            "sensor_anomalies",
            "sensor_readings_daily",
            "sensor_readings_hourly",
            "sensor_readings_minute",
        ],
    ),
}
CHECKS = {
    ("raw_sensor_readings", name)
    for name in ("completeness", "validity", "uniqueness", "integrity", "timeliness")
} | {
    ("raw_sensor_readings", "freshness_check"),
    ("sensor_readings_minute", "consistency"),
    ("sensor_readings_minute", "uniqueness"),
    ("sensor_readings_minute", "completeness"),
    ("sensor_readings_minute", "integrity"),
    ("sensor_readings_hourly", "consistency"),
    ("sensor_readings_hourly", "uniqueness"),
    ("sensor_readings_daily", "consistency"),
    ("sensor_readings_daily", "uniqueness"),
    ("sensor_readings_daily", "completeness"),
    ("anomaly_alerts", "alerts_delivered"),
    ("data_catalog", "no_breaking_schema_changes"),
    ("kafka_topics", "no_stuck_ranges"),
}
JOBS = {
    "simulated_feed_job",
    "kafka_ingest_job",
    "kafka_skip_range_job",
    "platform_notice_job",
    "mqtt_ingest_job",
    "raw_job",
    "minute_job",
    "rollups_job",
    "anomaly_alerts_job",
    "catalog_job",
}
SENSORS = {
    "simulated_feed_sensor": dg.DefaultSensorStatus.RUNNING,
    "kafka_ingest_sensor": dg.DefaultSensorStatus.STOPPED,
    "mqtt_ingest_sensor": dg.DefaultSensorStatus.STOPPED,
    "raw_partitions_sensor": dg.DefaultSensorStatus.RUNNING,
    "raw_freshness_sensor": dg.DefaultSensorStatus.RUNNING,
    "platform_automation_sensor": dg.DefaultSensorStatus.RUNNING,
}
SCHEDULES = {
    "repair_raw_partitions",
    "repair_minute_partitions",
    "repair_rollup_partitions",
    "retry_pending_alerts",
    "refresh_data_catalog",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> dg.Definitions:
    return definitions_for(tmp_path_factory.mktemp("data"))


def _partitioning(node) -> str | None:
    return {
        dg.HourlyPartitionsDefinition: "hourly",
        dg.DailyPartitionsDefinition: "daily",
    }.get(type(node.partitions_def))


def test_assets_partitions_and_dependencies(platform):
    graph = platform.resolve_asset_graph()
    shape = {
        key.to_user_string(): (
            _partitioning(graph.get(key)),
            sorted(p.to_user_string() for p in graph.get(key).parent_keys),
        )
        for key in graph.get_all_asset_keys()
    }
    assert shape == ASSETS


def test_checks_jobs_sensors_and_schedules(platform):
    graph = platform.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == CHECKS
    # no check blocks: the quality gate keeps bad readings out of the aggregates on every path,
    # and alarms never wait for quality
    assert not [k for k in graph.asset_check_keys if graph.get_check_spec(k).blocking]
    jobs = {j.name for j in platform.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == JOBS
    assert {s.name: s.default_status for s in platform.sensors} == SENSORS
    assert {s.name for s in platform.schedules} == SCHEDULES
    # the UI says what each one does (the freshness sensor carries Dagster's own text)
    assert [s.name for s in [*platform.sensors, *platform.schedules] if not s.description] == []


def test_every_materializable_asset_is_described_for_the_catalog(platform):
    graph = platform.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.description, key
        assert node.group_name != "default", key
        assert node.owners, key
        assert "dagster/column_schema" in node.metadata, key
        assert "dagster/table_name" in node.metadata, key


def test_settings_choose_the_feed_and_the_partitions(tmp_path):
    definitions = definitions_for(
        tmp_path, SENSOR_SOURCE="kafka", SENSOR_PARTITIONS_START="2026-06-01"
    )
    status = {s.name: s.default_status for s in definitions.sensors}
    assert status["kafka_ingest_sensor"] == dg.DefaultSensorStatus.RUNNING
    assert status["simulated_feed_sensor"] == dg.DefaultSensorStatus.STOPPED
    raw = definitions.resolve_assets_def("raw_sensor_readings")
    assert raw.partitions_def.get_first_partition_key() == "2026-06-01-00:00"
    # lineage follows the source: Kafka's topics feed raw and the quarantine
    graph = definitions.resolve_asset_graph()
    for name in ("raw_sensor_readings", "quarantined_messages"):
        assert graph.get(dg.AssetKey(name)).parent_keys == {dg.AssetKey("kafka_topics")}


@pytest.mark.integration  # runs the catalog
def test_a_new_aggregate_level_is_one_registry_entry(tmp_path):
    quarter = aggregate(
        "sensor_readings_15min",
        window=timedelta(minutes=15),
        partitioning="daily",
        source="sensor_readings_minute",
        description="Per device, site, metric and UTC quarter hour, merged from the minutes.",
        quality=("consistency", "uniqueness", "completeness"),
    )
    datasets = Registry((*REGISTRY.datasets, quarter))
    definitions = build_definitions(load_settings({"SENSOR_DATA_DIR": str(tmp_path)}), datasets)
    graph = definitions.resolve_asset_graph()
    node = graph.get(dg.AssetKey("sensor_readings_15min"))
    assert [p.to_user_string() for p in node.parent_keys] == ["sensor_readings_minute"]
    assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
    assert node.automation_condition is not None
    assert node.metadata["partition_path"] == (
        "aggregates/sensor_readings_15min/date=YYYY-MM-DD/part-0.parquet"
    )
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == node.key}
    assert checks == {"consistency", "uniqueness", "completeness"}
    rollups = definitions.resolve_job_def("rollups_job")
    assert node.key in rollups.asset_layer.executable_asset_keys
    catalog = definitions.resolve_job_def("catalog_job").execute_in_process()
    assert catalog.success
    document = json.loads((tmp_path / "lake" / "catalog" / "catalog.json").read_text())
    [entry] = [d for d in document["datasets"] if d["name"] == "sensor_readings_15min"]
    assert (entry["layer"], entry["partitioning"], entry["table_name"]) == (
        "aggregate",
        "daily",
        "sensor_readings_15min",
    )
    assert [c["name"] for c in entry["columns"]][:4] == [
        "window_start", "device_id", "site_id", "metric",
    ]  # fmt: skip


def test_the_registry_refuses_levels_that_cannot_merge():
    minute = REGISTRY.get("sensor_readings_minute")
    seven = dataclasses.replace(
        minute, name="odd", prefix="aggregates/odd", window=timedelta(minutes=7),
        source="sensor_readings_hourly", partitioning="daily",
    )  # fmt: skip
    with pytest.raises(ValueError, match="multiple"):
        Registry((*REGISTRY.datasets, seven))
    with pytest.raises(ValueError, match="duplicate"):
        Registry((*REGISTRY.datasets, minute))


@pytest.mark.integration  # loads dbt
def test_the_analytics_location_holds_the_dbt_models_only():
    from sensor_platform.dbt_definitions import defs

    graph = defs().resolve_asset_graph()
    models = {k.to_user_string() for k in graph.materializable_asset_keys}
    assert models == {
        "devices",
        "site_daily_health",
        "device_daily_uptime",
        "site_metric_last_7_days",
        "alert_history",
    }
    assert {j.name for j in defs().resolve_all_job_defs()} - {"__ASSET_JOB"} == {"analytics_job"}


LOAD = """
import json, os, sys, time
env_reads, opened = [], []
_get = os.environ.__class__.__getitem__


def _reader():  # the module that asked, past os.environ.get (a library copying the environment
    frame = sys._getframe(2)  # as a whole, as platform.architecture() does, is not a read)
    while frame.f_code.co_filename.endswith(("os.py", "os>", "_collections_abc.py", "_collections_abc>")):
        frame = frame.f_back
    return frame.f_code.co_filename


def _logged(self, k):
    if "sensor_platform" in _reader():
        env_reads.append(k)
    return _get(self, k)


os.environ.__class__.__getitem__ = _logged
_open = open
import builtins
builtins.open = lambda f, *a, **k: opened.append(str(f)) or _open(f, *a, **k)
started = time.perf_counter()
import sensor_platform.definitions
imported = time.perf_counter() - started
builtins.open = _open
os.environ.__class__.__getitem__ = _get
slow = [m for m in ("dagster_dbt", "dbt", "great_expectations", "pandas", "duckdb", "kafka", "celery",
                    "sqlalchemy", "httpx", "pyarrow.dataset") if m in sys.modules]
started = time.perf_counter()
sensor_platform.definitions.defs()
print(json.dumps([round(imported, 2), round(time.perf_counter() - started, 2), slow,
      [k for k in env_reads if k.startswith("SENSOR_")],
      [f for f in opened if "sensor_platform" in f and not f.endswith(".py")]]))
"""


@pytest.mark.integration  # a fresh interpreter
def test_the_platform_location_loads_without_dbt_slow_imports_env_or_disk():
    out = subprocess.run(
        [sys.executable, "-c", LOAD], capture_output=True, text=True, check=True
    ).stdout
    imported, built, slow, env_reads, files = json.loads(out)
    print(f"import {imported} s, build {built} s (benchmarks/load_time.py measures the ratio)")
    assert slow == [] and env_reads == [] and files == []
    assert imported + built < 20  # generous: machines are noisy; the benchmark has the target
