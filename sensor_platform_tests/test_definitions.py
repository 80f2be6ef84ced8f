"""Pins the shape of the asset graph (keys, partitions, dependencies, jobs) so that a structural
change is always deliberate, and checks that the code location loads fast."""

import subprocess
import sys
import time

import dagster as dg

from sensor_platform.definitions import defs

DAILY_ASSETS = {"sensor_readings_hourly", "sensor_readings_daily"}
HOURLY_ASSETS = {
    "raw_sensor_readings",
    "sensor_readings_minute",
    "sensor_anomalies",
    "anomaly_alerts",
}


def _graph():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    return definitions, graph


def test_asset_keys_partitions_and_dependencies():
    _, graph = _graph()
    deps = {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    assert deps["raw_sensor_readings"] == []
    assert deps["sensor_readings_minute"] == ["raw_sensor_readings"]
    assert deps["sensor_readings_hourly"] == ["sensor_readings_minute"]
    assert deps["sensor_readings_daily"] == ["sensor_readings_hourly"]
    assert deps["sensor_anomalies"] == ["raw_sensor_readings"]
    assert deps["anomaly_alerts"] == ["sensor_anomalies"]
    for name in HOURLY_ASSETS:
        assert isinstance(
            graph.get(dg.AssetKey(name)).partitions_def, dg.HourlyPartitionsDefinition
        )
    for name in DAILY_ASSETS:
        assert isinstance(graph.get(dg.AssetKey(name)).partitions_def, dg.DailyPartitionsDefinition)


def test_every_materializable_asset_is_described_for_the_catalog():
    _, graph = _graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.description, key
        assert node.group_name != "default", key
        assert node.owners, key
        assert "dagster/column_schema" in node.metadata, key
        assert "dagster/table_name" in node.metadata, key


def test_jobs_sensors_schedules_are_registered():
    definitions, _ = _graph()
    assert {"simulated_feed_job", "kafka_ingest_job", "raw_job", "minute_job", "rollups_job"} <= {
        j.name for j in definitions.resolve_all_job_defs()
    }
    sensors = {s.name for s in definitions.sensors}
    assert {"simulated_feed_sensor", "kafka_ingest_sensor", "raw_partitions_sensor"} <= sensors
    assert {s.name for s in definitions.schedules} >= {
        "repair_raw_partitions",
        "repair_minute_partitions",
        "repair_rollup_partitions",
    }


def test_code_location_loads_fast_without_slow_imports():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from sensor_platform.definitions import defs; defs();"
        "print(round(time.perf_counter() - t, 2));"
        "print('great_expectations' in sys.modules)"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    print(f"code location loaded in {out[0]} s (process {time.perf_counter() - started:.2f} s)")
    assert out[1] == "False"  # Great Expectations is imported lazily, only when a check runs
    assert float(out[0]) < 20  # generous: a slow import would show here, machines are noisy
