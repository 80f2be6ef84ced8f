"""Quality checks inside Dagster: a blocking ERROR on raw readings keeps the partition's minute
aggregates from being built (and fixing the data clears it), WARN never blocks, a single-run
backfill validates every partition of its range, every result lands in the history table, and
the code location still loads fast without importing Great Expectations."""

import json
import math
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sensor_platform.datasets import REGISTRY
from sensor_platform.lake import layout
from sensor_platform.lake.landing import land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.quality.data_docs import DOCS_PREFIX
from sensor_platform.quality.results import RESULTS_TABLE
from sensor_platform.quality.suites import suites_for
from sensor_platform.readings.schema import empty_quarantine
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.platform import definitions_for
from sensor_platform_tests.readings_factory import readings_table

pytestmark = pytest.mark.integration  # Dagster runs

RAW = dg.AssetKey("raw_sensor_readings")
MINUTE = dg.AssetKey("sensor_readings_minute")
DAILY = dg.AssetKey("sensor_readings_daily")

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
KEY = "2026-03-01-10:00"
DEVICE, SITE = "GH1-D01", "GH1"
METRICS = [("temperature", "°C", 22.0), ("humidity", "%", 70.0), ("co2", "ppm", 800.0)]
# A one-device fleet, so that every device of the registry reports in these tests.
FLEET = [
    {
        "device_id": DEVICE,
        "site_id": SITE,
        "location": "Greenhouse 1",
        "kind": "farm",
        "payload": "farm",
        "cadence_seconds": 60,
        "metrics": {
            metric: {"unit": unit, "min": base - 5, "max": base + 5, "daily_amplitude": 1,
                     "noise": 0.1}
            for metric, unit, base in METRICS
        },
    }
]  # fmt: skip


def hour_rows(hour: datetime, device: str = DEVICE, site: str = SITE) -> list[dict]:
    return [
        {
            "event_time": hour + timedelta(minutes=m, seconds=3),
            "device_id": device,
            "site_id": site,
            "metric": metric,
            "unit": unit,
            "value": base + (m % 7) * 0.1,
        }
        for metric, unit, base in METRICS
        for m in range(60)
    ]


@pytest.fixture
def env(tmp_path):
    fleet_file = tmp_path / "fleet.json"
    fleet_file.write_text(json.dumps(FLEET))
    definitions = definitions_for(tmp_path / "data", SENSOR_FLEET_FILE=str(fleet_file))
    return {
        "definitions": definitions,
        "lake": Lake(str(tmp_path / "data" / "lake")),
        "warehouse": Warehouse(f"duckdb:///{tmp_path / 'data' / 'warehouse.duckdb'}"),
        "job": definitions.resolve_job_def("raw_job"),
        "rollups_job": definitions.resolve_job_def("rollups_job"),
        "instance": dg.DagsterInstance.ephemeral(),
    }


def land(lake: Lake, batch_id: str, rows: list[dict]) -> None:
    land_batch(lake, batch_id, readings_table(rows), empty_quarantine())


def run(env, **kwargs) -> dg.ExecuteInProcessResult:
    return env["job"].execute_in_process(instance=env["instance"], raise_on_error=False, **kwargs)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], object]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def metadata(evaluation) -> dict[str, object]:
    return {k: v.value for k, v in evaluation.metadata.items()}


def minute_rows(env) -> list[dict]:
    return env["warehouse"].read(REGISTRY.get("sensor_readings_minute").table_spec()).to_pylist()


def test_an_error_on_raw_keeps_its_series_out_of_the_aggregates_until_fixed(env):
    lake, instance = env["lake"], env["instance"]
    bad = hour_rows(HOUR)
    bad[5]["value"] = 5000.0  # an impossible temperature: 1 of the series' 60 > 1 %
    land(lake, "batch-1", bad)

    result = run(env, partition_key=KEY)
    assert result.success  # nothing blocks: the gate keeps the bad series out instead
    checks = evaluations(result)
    validity = checks[("raw_sensor_readings", "validity")]
    assert not validity.passed and validity.severity == dg.AssetCheckSeverity.ERROR
    assert not validity.blocking
    figures = metadata(validity)
    failures = {(f["rule"], f["subject"]): f for f in figures["failures"]}
    assert set(failures) == {
        ("value_in_range", "temperature"),
        ("any_value_out_of_range", "temperature"),
    }
    [series] = failures[("value_in_range", "temperature")]["unexpected_sample"]
    assert (series["device_id"], series["out_of_range"], series["readings"]) == (DEVICE, 1, 60)
    assert figures["partition"] == KEY and figures["rows_validated"] == 3  # 3 series
    # A link a browser opens from the UI: the docs server (`make ui` starts it), not file://.
    assert figures["data_docs"].startswith("http://127.0.0.1:3030/validations/raw_sensor_")
    assert figures["data_docs"].endswith("/failed-error.html")
    assert validity.partition == KEY  # in Dagster's own field, not only in the metadata
    assert validity.description.startswith(f"ERROR on {KEY}")
    assert "temperature values outside [-90, 1000]" in validity.description
    # The series is out of the minute aggregates, the others are in, and the exclusion is
    # published beside them; raw keeps every reading.
    assert instance.get_materialized_partitions(MINUTE) == {KEY}
    assert {r["metric"] for r in minute_rows(env)} == {"humidity", "co2"}
    [excluded] = env["warehouse"].read(REGISTRY.get("quality_exclusions").table_spec()).to_pylist()
    assert (excluded["device_id"], excluded["metric"], excluded["scope"]) == (
        DEVICE,
        "temperature",
        "series",
    )
    [minute] = [
        m.metadata
        for m in result.asset_materializations_for_node("sensor_readings_minute")
        if m.asset_key == MINUTE
    ]
    assert minute["series_left_out"].value == [f"{DEVICE} / temperature (2026-03-01 10:00)"]
    assert lake.row_count(layout.raw_partition_file(HOUR)) == 180

    # Fix the data: the bad batch is replaced and the hour rebuilt from it.
    lake.delete(layout.raw_partition_file(HOUR))
    land(lake, "batch-1", hour_rows(HOUR))
    fixed = run(env, partition_key=KEY)
    assert fixed.success
    fixed_validity = evaluations(fixed)[("raw_sensor_readings", "validity")]
    assert fixed_validity.passed and fixed_validity.severity == dg.AssetCheckSeverity.ERROR
    quality = {k: e for k, e in evaluations(fixed).items() if k[0] != "anomaly_alerts"}
    assert all(e.passed for e in quality.values())  # (alerts warn: no channel configured)
    assert {r["metric"] for r in minute_rows(env)} == {"temperature", "humidity", "co2"}
    assert env["warehouse"].read(REGISTRY.get("quality_exclusions").table_spec()).num_rows == 0

    history = env["warehouse"].read(RESULTS_TABLE).to_pylist()
    assert {r["run_id"] for r in history} == {result.run_id, fixed.run_id}
    failed_rows = [r for r in history if not r["success"]]
    assert {(r["run_id"], r["asset"], r["partition"], r["check_name"], r["rule"]) for r in failed_rows} == {
        (result.run_id, "raw_sensor_readings", KEY, "validity", "value_in_range"),
        (result.run_id, "raw_sensor_readings", KEY, "validity", "any_value_out_of_range"),
    }  # fmt: skip
    assert {r["severity"] for r in failed_rows} == {"error", "warn"}
    assert all(r["unexpected_count"] == 1 and r["check_passed"] is False for r in failed_rows)


def test_a_null_like_value_is_an_error_and_stays_out(env):
    rows = hour_rows(HOUR)
    rows[0]["value"] = math.nan
    land(env["lake"], "batch-nan", rows)
    result = run(env, partition_key=KEY)
    assert result.success
    completeness = evaluations(result)[("raw_sensor_readings", "completeness")]
    assert not completeness.passed and completeness.severity == dg.AssetCheckSeverity.ERROR
    [failure] = metadata(completeness)["failures"]
    assert (failure["rule"], failure["subject"], failure["unexpected_count"]) == (
        "required_not_null",
        "value",
        1,
    )
    # 1 of 60: above 1 %, the series stays out of the minutes
    assert {r["metric"] for r in minute_rows(env)} == {"humidity", "co2"}


def test_warnings_never_block(env):
    rows = hour_rows(HOUR) + hour_rows(HOUR, device="ROGUE-1", site="NOWHERE")[:5]
    land(env["lake"], "batch-warn", rows)
    result = run(env, partition_key=KEY)
    assert result.success
    integrity = evaluations(result)[("raw_sensor_readings", "integrity")]
    assert not integrity.passed and integrity.severity == dg.AssetCheckSeverity.WARN
    failures = {f["rule"]: f for f in metadata(integrity)["failures"]}
    assert set(failures) == {"device_known", "site_known"}
    assert failures["device_known"]["unexpected_count"] == 5
    assert failures["device_known"]["unexpected_sample"][0]["device_id"] == "ROGUE-1"
    assert env["instance"].get_materialized_partitions(MINUTE) == {KEY}


def test_aggregate_checks_report_an_incomplete_day_without_failing_the_run(env):
    land(env["lake"], "batch-day", hour_rows(HOUR))
    assert run(env, partition_key=KEY).success
    result = env["rollups_job"].execute_in_process(
        instance=env["instance"], partition_key="2026-03-01", raise_on_error=False
    )
    assert result.success  # aggregate checks never block, even with ERROR severity
    checks = evaluations(result)
    assert checks[("sensor_readings_hourly", "consistency")].passed
    assert checks[("sensor_readings_daily", "consistency")].passed
    completeness = checks[("sensor_readings_daily", "completeness")]
    assert not completeness.passed and completeness.severity == dg.AssetCheckSeverity.ERROR
    [failure] = metadata(completeness)["failures"]
    assert (failure["unexpected_count"], failure["element_count"]) == (23, 24)
    assert failure["unexpected_sample"][0] == {
        "window_start": "2026-03-01T00:00:00+00:00",
        "missing_window": "2026-03-01T00:00:00+00:00",
    }
    assert env["instance"].get_materialized_partitions(DAILY) == {"2026-03-01"}


def test_a_single_run_backfill_validates_every_partition_of_its_range(env):
    hours = [HOUR + timedelta(hours=i) for i in range(3)]
    rows = [row for hour in hours for row in hour_rows(hour)]
    rows[200]["unit"] = "K"  # one temperature of the second hour: 1 of 60 is above 1 %
    land(env["lake"], "batch-range", rows)
    tags = {
        "dagster/asset_partition_range_start": "2026-03-01-10:00",
        "dagster/asset_partition_range_end": "2026-03-01-12:00",
    }
    result = run(env, tags=tags)
    assert result.success  # the bad hour's temperature series stays out; nothing blocks
    evaluation = evaluations(result)[("raw_sensor_readings", "validity")]
    assert evaluation.partition is None  # one result for a range: Dagster has no field for it
    validity = metadata(evaluation)
    assert validity["partitions_validated"] == 3 and validity["rows_validated"] == 9
    assert validity["partition"] == "2026-03-01-10:00 … 2026-03-01-12:00 (3 partitions)"
    assert validity["failed_partitions"] == ["2026-03-01-11:00"]
    failure = next(f for f in validity["failures"] if f["rule"] == "unit_allowed")
    assert failure["element_count"] == 3 and failure["unexpected_count"] == 1
    assert failure["unexpected_sample"][0]["partition"] == "2026-03-01-11:00"

    history = env["warehouse"].read(RESULTS_TABLE).to_pylist()
    assert {r["partition"] for r in history} == {
        "2026-03-01-10:00",
        "2026-03-01-11:00",
        "2026-03-01-12:00",
    }
    assert {r["partition"] for r in history if not r["success"]} == {"2026-03-01-11:00"}
    docs = env["lake"].list_files(f"{DOCS_PREFIX}/validations/raw_sensor_readings", suffix=".html")
    assert len(docs) == 3 * len(suites_for(REGISTRY.raw, REGISTRY))


def test_raw_freshness_check_fails_until_raw_is_materialized(env):
    freshness = dg.AssetCheckKey(RAW, "freshness_check")
    job = dg.Definitions.merge(
        env["definitions"],
        dg.Definitions(
            jobs=[dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(freshness))]
        ),
    ).resolve_job_def("freshness")
    instance = env["instance"]

    [stale] = job.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["dagster/freshness_params"].value["lower_bound_delta_seconds"] == 7200

    env["definitions"].resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=KEY, asset_selection=[RAW]
    )
    [fresh] = job.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert fresh.passed and "dagster/last_updated_timestamp" in fresh.metadata
