"""The dbt models as Dagster assets on the embedded DuckDB warehouse: the asset graph, the manifest
prepared from a fresh clone, partition windows, model values against figures computed in Python
from the readings, optional sources, and dbt tests surfacing as asset checks.

Each Dagster run of the dbt assets takes ~10-15 s (dbt starts, parses, builds), so the runs are
shared by the tests of this module."""

import os
import shutil
import statistics
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pytest
from dagster_dbt import DbtProject

from sensor_platform.analytics.dbt_project import (
    dbt_profile_env,
    manifest_is_stale,
    partition_vars,
    prepare_manifest,
    project_dir,
)
from sensor_platform.datasets import REGISTRY
from sensor_platform.defs.dbt import DbtWarehouseResource, dbt_models
from sensor_platform.defs.partitions import Partitions
from sensor_platform.defs.resources import WarehouseResource
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.rollups.compute import minute_aggregates, rollup
from sensor_platform.rollups.schema import AGGREGATE_SCHEMA
from sensor_platform.warehouse.store import TableSpec, Warehouse
from sensor_platform_tests.readings_factory import readings_table

pytestmark = pytest.mark.integration  # Dagster runs

DBT_PROJECT_DIR = project_dir()
DAILY = Partitions.starting("2026-01-01").daily
sensor_dbt_models = dbt_models(
    DbtProject(project_dir=DBT_PROJECT_DIR), Partitions.starting("2026-01-01")
)
ANOMALY_TABLE = REGISTRY.get("sensor_anomalies").table_spec()
DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
END = DAY1 + timedelta(days=2)
CADENCES = {"dev-a": 60, "dev-b": 60, "dev-c": 60}  # dev-d's cadence is unknown
MODELS = {
    "devices",
    "site_daily_health",
    "device_daily_uptime",
    "site_metric_last_7_days",
    "alert_history",
}
AGGREGATES = ("sensor_readings_minute", "sensor_readings_hourly", "sensor_readings_daily")


# -- seed data: readings with known figures, rolled up by the pipeline's own code ---------------
def reading_rows(days: list[datetime], *, without: tuple[str, datetime] | None = None) -> list:
    rows = []
    for day in days:

        def add(device, site, metric, minute, value, unit, day=day):
            if without != (device, day):
                rows.append(
                    dict(
                        event_time=day + timedelta(minutes=minute),
                        device_id=device,
                        site_id=site,
                        metric=metric,
                        value=value,
                        unit=unit,
                    )
                )

        for m in range(180):  # 00:00-02:59
            add("dev-a", "gh-1", "temperature", m, 20.0 + m % 7, "°C")
            if m % 2 == 0:
                add("dev-b", "gh-1", "temperature", m, 25.5 + m % 3, "°C")
        for m in range(60):
            add("dev-c", None, "humidity", m, 50.0 + m / 10, "%")
        for m in [*range(10), *range(300, 310)]:  # hours 00 and 05
            add("dev-d", "gh-2", "co2", m, 400.0 + m, "ppm")
    return rows


def aggregate_tables(rows: list) -> dict[str, pa.Table]:
    minute = minute_aggregates(readings_table(rows), CADENCES)
    hourly = rollup(minute, timedelta(hours=1), CADENCES)
    return dict(
        zip(AGGREGATES, (minute, hourly, rollup(hourly, timedelta(days=1), CADENCES)), strict=True)
    )


def episode(episode_id, hour, device, site, metric, severity) -> dict:
    return {
        "episode_id": episode_id,
        "partition_hour": hour,
        "device_id": device,
        "site_id": site,
        "metric": metric,
        "unit": None,
        "rule": "test_rule",
        "kind": "threshold" if metric else "status",
        "severity": severity,
        "status": "open",
        "start_time": hour,
        "end_time": hour + timedelta(minutes=5),
        "closed_at": None,
        "reading_count": 3,
        "peak_value": 99.0,
        "peak_time": hour,
        "peak_score": 99.0,
        "threshold": 90.0,
    }


def attempt(notification, channel, outcome, minutes, attempts) -> dict:
    return {
        "recorded_at": DAY1 + timedelta(hours=4, minutes=minutes),
        "notification_id": notification,
        "episode_id": "ep-1",
        "event": "opened",
        "channel": channel,
        "outcome": outcome,
        "severity": "critical",
        "device_id": "dev-a",
        "site_id": "gh-1",
        "metric": "temperature",
        "rule": "test_rule",
        "episode_start": DAY1 + timedelta(hours=1),
        "attempts": attempts,
        "http_status": 200 if outcome == "sent" else 503,
        "detail": None,
        "run_id": None,
    }


# ep-1 (dev-a temperature, critical) is active in two hours of day 1 and counts once; ep-2 is
# device-wide (no metric) on dev-c: it counts for the device, not for a site's metric.
EPISODES = [
    episode("ep-1", DAY1 + timedelta(hours=1), "dev-a", "gh-1", "temperature", "warning"),
    episode("ep-1", DAY1 + timedelta(hours=2), "dev-a", "gh-1", "temperature", "critical"),
    episode("ep-2", DAY1, "dev-c", None, None, "warning"),
]
LEDGER = [
    attempt("n-1", "discord", "failed", 0, 3),
    attempt("n-1", "discord", "sent", 10, 1),
    attempt("n-1", "slack", "failed", 0, 3),
    attempt("n-3", "webhook", "attempting", 0, 0),  # a run killed mid-request ...
    attempt("n-3", "webhook", "attempting", 5, 0),  # ... and the retry's request, cut off
    attempt("n-3", "webhook", "unknown", 6, 1),
    attempt("n-4", "slack", "expired", 0, 0),
]


def seed_warehouse(url: str, *, optional_tables: bool = True) -> None:
    """The aggregates of both days, published the way the pipeline publishes them; with
    `optional_tables`, also anomaly episodes and alert ledger rows."""
    warehouse = Warehouse(url)
    for name, table in aggregate_tables(reading_rows([DAY1, DAY2])).items():
        warehouse.replace_window(TableSpec(name, AGGREGATE_SCHEMA), table, DAY1, END)
    if optional_tables:
        episodes = pa.Table.from_pylist(EPISODES, schema=ANOMALY_TABLE.schema)
        warehouse.replace_window(ANOMALY_TABLE, episodes, DAY1, END)
        warehouse.append(LEDGER_TABLE, pa.Table.from_pylist(LEDGER, schema=LEDGER_TABLE.schema))


def run_dbt(url: str, first_day: str, last_day: str | None = None) -> dg.ExecuteInProcessResult:
    """One Dagster run of the dbt assets over a partition range (a single-run backfill)."""
    tags = {
        "dagster/asset_partition_range_start": first_day,
        "dagster/asset_partition_range_end": last_day or first_day,
    }
    return dg.materialize(
        [sensor_dbt_models],
        resources={
            "dbt": DbtWarehouseResource(
                warehouse=WarehouseResource(url=url), project_dir=str(DBT_PROJECT_DIR)
            )
        },
        tags=tags,
        raise_on_error=False,
    )


def model_rows(url: str, model: str, order_by: str) -> list[dict]:
    """Every row of a model as dicts; `model` and `order_by` come from this file, never data."""
    assert model in MODELS and order_by.replace("_", "").replace(", ", "").isalpha()
    warehouse = Warehouse(url)
    columns = warehouse.execute_query(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = :model"
        " ORDER BY ordinal_position",
        {"model": model},
    )
    rows = warehouse.execute_query(f"SELECT * FROM {model} ORDER BY {order_by}")  # noqa: S608
    return [dict(zip([c[0] for c in columns], row, strict=True)) for row in rows]


# -- the graph -----------------------------------------------------------------------------------
def test_dbt_assets_graph_shape():
    specs = {spec.key.to_user_string(): spec for spec in sensor_dbt_models.specs}
    assert set(specs) == MODELS
    deps = {
        key.to_user_string(): sorted(d.to_user_string() for d in sensor_dbt_models.asset_deps[key])
        for key in sensor_dbt_models.keys
    }
    # lineage: warehouse tables -> models, the sources mapped to the Dagster assets that write them
    assert deps["devices"] == ["sensor_readings_daily"]
    assert deps["site_daily_health"] == ["sensor_anomalies", "sensor_readings_daily"]
    assert deps["device_daily_uptime"] == [
        "sensor_anomalies",
        "sensor_readings_daily",
        "sensor_readings_hourly",
        "sensor_readings_minute",
    ]
    assert deps["site_metric_last_7_days"] == ["site_daily_health"]
    assert deps["alert_history"] == ["anomaly_alerts"]
    assert sensor_dbt_models.partitions_def == DAILY
    assert sensor_dbt_models.backfill_policy == dg.BackfillPolicy.single_run()
    assert sensor_dbt_models.node_def.pools == {"warehouse"}
    for spec in specs.values():
        assert spec.group_name == "analytics" and spec.owners and spec.description
        assert spec.automation_condition is not None
        assert {"dagster/column_schema", "dagster/table_name"} <= set(spec.metadata)
    checks = {(c.asset_key.to_user_string(), c.name) for c in sensor_dbt_models.check_specs}
    assert len(checks) == 42
    assert (
        "site_daily_health",
        "unique_combination_site_daily_health_day__site_id__metric",
    ) in checks
    assert ("device_daily_uptime", "value_between_device_daily_uptime_uptime_ratio__1__0") in checks
    assert (
        "device_daily_uptime",
        "relationships_device_daily_uptime_device_id__device_id__ref_devices_",
    ) in checks
    assert (
        "alert_history",
        "accepted_values_alert_history_outcome__sent__failed__unknown__attempting__expired",
    ) in checks


def test_partition_window_becomes_dbt_vars():
    window = (DAY1, DAY1 + timedelta(days=3))
    assert partition_vars(*window) == {"min_date": "2026-03-01", "max_date": "2026-03-04"}


def test_dbt_profile_follows_the_warehouse_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target, env = dbt_profile_env("duckdb:///data/warehouse.duckdb", "main")
    assert target == "duckdb"
    # dbt runs inside dbt_project/: the relative path is resolved where the pipeline resolves it
    assert env["SENSOR_DBT_DUCKDB_PATH"] == str(tmp_path / "data" / "warehouse.duckdb")
    assert env["SENSOR_DBT_SOURCE_SCHEMA"] == env["SENSOR_DBT_SCHEMA"] == "main"

    target, env = dbt_profile_env(
        "postgresql+psycopg2://analyst:p%40ss@db.internal:6543/sensors", "wh", "marts"
    )
    assert target == "postgres"
    assert env == {
        "SENSOR_DBT_PG_HOST": "db.internal",
        "SENSOR_DBT_PG_PORT": "6543",
        "SENSOR_DBT_PG_USER": "analyst",
        "DBT_ENV_SECRET_PG_PASSWORD": "p@ss",  # dbt scrubs DBT_ENV_SECRET_* from its logs
        "SENSOR_DBT_PG_DATABASE": "sensors",
        "SENSOR_DBT_SOURCE_SCHEMA": "wh",
        "SENSOR_DBT_SCHEMA": "marts",
    }
    with pytest.raises(ValueError, match="DuckDB or PostgreSQL"):
        dbt_profile_env("mysql+pymysql://root:secret@127.0.0.1/test", "test")
    with pytest.raises(ValueError) as bad:
        dbt_profile_env("postgresql://u:secret@host:notaport/db", "public")
    assert "secret" not in str(bad.value)


def test_the_manifest_is_prepared_at_install_time_offline_never_at_load(tmp_path, monkeypatch):
    # a fresh clone has no target/; parsing needs no warehouse (the DuckDB file does not exist)
    monkeypatch.setenv("SENSOR_DBT_DUCKDB_PATH", str(tmp_path / "absent" / "warehouse.duckdb"))
    clone = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, clone, ignore=shutil.ignore_patterns("target", "logs"))
    manifest = clone / "target" / "manifest.json"
    assert manifest_is_stale(clone)
    with pytest.raises(FileNotFoundError, match="sensor-platform dbt-parse"):
        dbt_models(DbtProject(project_dir=clone), Partitions.starting("2026-01-01"))
    assert prepare_manifest(clone)  # what `make install`, CI and the Dockerfile run
    assert manifest.exists() and not manifest_is_stale(clone)
    assert not (tmp_path / "absent").exists()
    built = manifest.stat().st_mtime_ns
    assert not prepare_manifest(clone)  # fresh: nothing to do
    assert manifest.stat().st_mtime_ns == built
    later = manifest.stat().st_mtime + 5  # an edit after the parse
    os.utime(clone / "models" / "marts" / "devices.sql", (later, later))
    assert manifest_is_stale(clone)
    models = dbt_models(DbtProject(project_dir=clone), Partitions.starting("2026-01-01"))
    assert {k.to_user_string() for k in models.keys} == MODELS


# -- runs on DuckDB --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def duckdb_runs(tmp_path_factory):
    """Run 1: aggregates only (the anomaly and alert tables do not exist yet), both days in one
    run. Run 2: the same after anomalies and alerts were published. Model rows after each."""
    url = f"duckdb:///{tmp_path_factory.mktemp('dbt') / 'warehouse.duckdb'}"
    seed_warehouse(url, optional_tables=False)
    first = run_dbt(url, "2026-03-01", "2026-03-02")
    before = {
        "site_daily_health": model_rows(url, "site_daily_health", "day, site_id, metric"),
        "alert_history": model_rows(url, "alert_history", "notification_id"),
    }
    seed_warehouse(url)
    second = run_dbt(url, "2026-03-01", "2026-03-02")
    return url, first, before, second


def _by(rows: list[dict], *keys: str) -> dict:
    return {tuple(r[k] for k in keys): r for r in rows}


def test_one_run_materializes_every_model_for_every_day_of_the_range(duckdb_runs):
    _, first, _, second = duckdb_runs
    for result in (first, second):
        assert result.success
        materialized = {
            (e.asset_key.to_user_string(), e.partition)
            for e in result.get_asset_materialization_events()
        }
        assert materialized == {(m, d) for m in MODELS for d in ("2026-03-01", "2026-03-02")}
        assert not _artifacts_of(result)  # removed after a successful run


def _artifacts_of(result: dg.ExecuteInProcessResult) -> list:
    return list((DBT_PROJECT_DIR / "target").glob(f"sensor_dbt_models-{result.run_id[:7]}-*"))


def test_dbt_tests_surface_as_passing_asset_checks(duckdb_runs):
    _, _, _, second = duckdb_runs
    evaluations = second.get_asset_check_evaluations()
    assert len(evaluations) == 42
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]


def test_missing_anomaly_and_alert_tables_read_as_empty(duckdb_runs):
    _, first, before, _ = duckdb_runs
    assert first.success
    assert before["alert_history"] == []
    assert {r["anomaly_count"] for r in before["site_daily_health"]} == {0}


def test_site_daily_health_matches_the_readings(duckdb_runs):
    url = duckdb_runs[0]
    rows = _by(model_rows(url, "site_daily_health", "day, site_id"), "day", "site_id", "metric")
    assert len(rows) == 6  # 3 site/metric pairs x 2 days
    readings = reading_rows([DAY1])
    for site, metric, devices, expected in [
        ("gh-1", "temperature", 2, 2 * 1440.0),
        ("(unassigned)", "humidity", 1, 1440.0),
        ("gh-2", "co2", 1, None),  # dev-d's cadence is unknown
    ]:
        row = rows[(date(2026, 3, 1), site, metric)]
        values = [r["value"] for r in readings if (r["site_id"] or "(unassigned)") == site]
        assert row["device_count"] == devices
        assert row["reading_count"] == len(values)
        assert row["min_value"] == min(values) and row["max_value"] == max(values)
        assert row["mean_value"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert row["stddev_value"] == pytest.approx(statistics.stdev(values), rel=1e-9)
        assert row["expected_count"] == expected
        assert row["completeness"] == (
            None if expected is None else pytest.approx(len(values) / expected)
        )
    health = rows[(date(2026, 3, 1), "gh-1", "temperature")]
    assert (health["anomaly_count"], health["critical_anomaly_count"]) == (1, 1)
    assert rows[(date(2026, 3, 2), "gh-1", "temperature")]["anomaly_count"] == 0
    assert rows[(date(2026, 3, 1), "(unassigned)", "humidity")]["anomaly_count"] == 0


def test_device_daily_uptime_matches_the_readings(duckdb_runs):
    url = duckdb_runs[0]
    rows = _by(model_rows(url, "device_daily_uptime", "day, device_id"), "day", "device_id")
    assert len(rows) == 8
    day1 = date(2026, 3, 1)
    figures = {
        # device: (readings, active hours, active minutes, longest step, completeness, anomalies)
        "dev-a": (180, 3, 180, 1, 180 / 1440, 1),
        "dev-b": (90, 3, 90, 2, 90 / 1440, 0),
        "dev-c": (60, 1, 60, 1, 60 / 1440, 1),
        "dev-d": (20, 2, 20, 291, None, 0),
    }
    for device, (readings, hours, minutes, step, completeness, anomalies) in figures.items():
        row = rows[(day1, device)]
        assert row["reading_count"] == readings
        assert row["active_hours"] == hours and row["uptime_ratio"] == pytest.approx(hours / 24)
        assert row["active_minutes"] == minutes
        assert row["max_minutes_between_readings"] == step
        assert row["completeness"] == (
            None if completeness is None else pytest.approx(completeness)
        )
        assert row["anomaly_count"] == anomalies
    assert rows[(day1, "dev-a")]["first_reading_at"] == DAY1
    assert rows[(day1, "dev-a")]["last_reading_at"] == DAY1 + timedelta(minutes=179)


def test_devices_last_7_days_and_alert_history(duckdb_runs):
    url = duckdb_runs[0]
    devices = _by(model_rows(url, "devices", "device_id"), "device_id")
    assert devices[("dev-a",)]["current_site_id"] == "gh-1"
    assert devices[("dev-c",)]["current_site_id"] is None
    assert devices[("dev-d",)]["first_day"] == date(2026, 3, 1)
    assert devices[("dev-d",)]["last_day"] == date(2026, 3, 2)
    assert devices[("dev-b",)]["reading_count"] == 180

    week = model_rows(url, "site_metric_last_7_days", "site_id, metric, day")
    assert {(r["day"], r["days_ago"]) for r in week} == {
        (date(2026, 3, 1), 1),
        (date(2026, 3, 2), 0),
    }
    alerts = _by(model_rows(url, "alert_history", "channel"), "notification_id", "channel")
    discord, slack = alerts[("n-1", "discord")], alerts[("n-1", "slack")]
    assert (discord["outcome"], discord["delivery_runs"], discord["http_requests"]) == (
        "sent",
        2,
        4,
    )
    assert discord["sent_at"] == DAY1 + timedelta(hours=4, minutes=10)
    assert (slack["outcome"], slack["sent_at"]) == ("failed", None)
    unknown, expired = alerts[("n-3", "webhook")], alerts[("n-4", "slack")]
    assert (unknown["outcome"], unknown["delivery_runs"], unknown["http_requests"]) == (
        "unknown",
        1,
        1,
    )
    assert (expired["outcome"], expired["delivery_runs"], expired["sent_at"]) == (
        "expired",
        0,
        None,
    )


def test_a_partition_run_replaces_its_days_only_and_a_failing_test_fails_its_check(
    duckdb_runs, tmp_path
):
    source = duckdb_runs[0].removeprefix("duckdb:///")
    url = f"duckdb:///{shutil.copy(source, tmp_path / 'warehouse.duckdb')}"
    warehouse = Warehouse(url)
    # day 2 recomputed without dev-b (and its readings gone); a ledger row with an unknown channel
    day2 = aggregate_tables(reading_rows([DAY2], without=("dev-b", DAY2)))
    for name, table in day2.items():
        warehouse.replace_window(TableSpec(name, AGGREGATE_SCHEMA), table, DAY2, END)
    warehouse.append(
        LEDGER_TABLE,
        pa.Table.from_pylist([attempt("n-2", "pager", "sent", 20, 1)], schema=LEDGER_TABLE.schema),
    )

    result = run_dbt(url, "2026-03-02")

    assert not result.success  # dbt build fails on the failing test
    [kept] = _artifacts_of(result)  # a failed run keeps dbt's artifacts for debugging
    assert (kept / "run_results.json").exists()
    shutil.rmtree(kept)
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert failed == {"accepted_values_alert_history_channel__discord__slack__webhook"}
    health = _by(model_rows(url, "site_daily_health", "day"), "day", "site_id", "metric")
    assert health[(date(2026, 3, 2), "gh-1", "temperature")]["device_count"] == 1
    assert health[(date(2026, 3, 2), "gh-1", "temperature")]["reading_count"] == 180
    assert health[(date(2026, 3, 1), "gh-1", "temperature")]["device_count"] == 2  # untouched
    uptime = _by(model_rows(url, "device_daily_uptime", "day"), "day", "device_id")
    assert (date(2026, 3, 2), "dev-b") not in uptime and (date(2026, 3, 1), "dev-b") in uptime
    assert len(health) == 6  # nothing duplicated


def test_a_days_models_wait_for_its_daily_aggregates_before_automation_runs_them():
    """A fresh warehouse: the day's anomalies land first; site_daily_health (reads the daily
    aggregates) is not asked for until sensor_readings_daily exists for that day, while
    alert_history (reads the alert ledger only) does not wait for it."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    hourly = Partitions.starting("2026-01-01").hourly
    upstream = [
        dg.AssetSpec(name, partitions_def=hourly)
        for name in ("sensor_anomalies", "anomaly_alerts", "sensor_readings_minute")
    ] + [dg.AssetSpec(n, partitions_def=DAILY) for n in ("sensor_readings_hourly",
                                                        "sensor_readings_daily")]  # fmt: skip
    dbt = DbtWarehouseResource(
        warehouse=WarehouseResource(url="duckdb:///unused.duckdb"), project_dir=str(DBT_PROJECT_DIR)
    )  # never called: nothing runs here, automation only decides
    definitions = dg.Definitions(assets=[*upstream, sensor_dbt_models], resources={"dbt": dbt})
    instance = dg.DagsterInstance.ephemeral()

    def materialized(name: str, key: str) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(name, partition=key))

    def requested(cursor):
        result = dg.evaluate_automation_conditions(
            defs=definitions, instance=instance, cursor=cursor
        )
        keys = {
            r.key.to_user_string(): r.true_subset.expensively_compute_partition_keys()
            for r in result.results
            if r.true_subset.size and r.key.to_user_string() in MODELS
        }
        return keys, result.cursor

    _, cursor = requested(None)
    for hour in range(24):
        key = hourly.get_partition_key_for_timestamp((day + timedelta(hours=hour)).timestamp())
        for name in ("sensor_anomalies", "anomaly_alerts", "sensor_readings_minute"):
            materialized(name, key)
    first, cursor = requested(cursor)
    day_key = f"{day:%Y-%m-%d}"
    assert first.get("alert_history") == {day_key}
    assert "site_daily_health" not in first and "device_daily_uptime" not in first
    materialized("sensor_readings_hourly", day_key)
    materialized("sensor_readings_daily", day_key)
    second, _ = requested(cursor)
    assert second.get("site_daily_health") == {day_key}
    assert second.get("device_daily_uptime") == {day_key}
