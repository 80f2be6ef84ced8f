"""The production dagster.yaml on the real PostgreSQL (db `test`) through dagster-postgres: the
instance it describes, a partition materialized and read back from the event log, and the real
daemon ticking a sensor whose run goes through the queue, a pool slot and a run worker.

The file is used exactly as shipped; only the DAGSTER_PG_* variables it reads are set. They name
a role created for the test whose schema (the role's "$user" schema, first on the search path)
receives every Dagster table; the schema and the role are dropped at the end."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from sqlalchemy.engine import make_url

from sensor_platform_tests.conftest import postgres_role

pytestmark = pytest.mark.integration  # a daemon and PostgreSQL

REPO = Path(__file__).resolve().parents[1]

PROBE_DEFINITIONS = """
import dagster as dg

DAILY = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_date="2026-03-04")


@dg.asset(partitions_def=DAILY, pool="warehouse")
def probe_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    print(f"probe stdout for {context.partition_key}")  # lands in the S3 compute logs
    return dg.MaterializeResult(metadata={"dagster/row_count": 3, "day": context.partition_key})


probe_job = dg.define_asset_job("probe_job", selection=[probe_daily], partitions_def=DAILY)


@dg.sensor(job=probe_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def probe_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key="2026-03-02",
                run_key="probe/2026-03-02",
                tags={"sensor_platform/feed": "kafka"},
            )
        ],
        cursor="2026-03-02",
    )


defs = dg.Definitions(assets=[probe_daily], jobs=[probe_job], sensors=[probe_sensor])
"""


LOGS_BUCKET = "dagster-compute-logs"


@pytest.fixture
def dagster_home(postgres_url, s3_endpoint, tmp_path, monkeypatch):
    """DAGSTER_HOME holding the repository's dagster.yaml, a PostgreSQL role of its own, and a
    (moto) S3 bucket for the compute logs."""
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", LOGS_BUCKET)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    _s3(s3_endpoint).create_bucket(Bucket=LOGS_BUCKET)
    with postgres_role(postgres_url, "sensor_dagster_test") as role:
        admin_url = make_url(postgres_url)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("DAGSTER_PG_HOST", admin_url.host or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_PORT", str(admin_url.port or 5432))
        monkeypatch.setenv("DAGSTER_PG_USER", role)
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")
        monkeypatch.setenv("DAGSTER_PG_DB", admin_url.database or "test")
        yield home, role


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _tables_of(role: str) -> set[str]:
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (role,)
            )
            return {row[0] for row in cur.fetchall()}


def test_instance_stores_a_partition_in_postgres_and_reads_it_back(dagster_home):
    home, role = dagster_home

    @dg.asset(
        partitions_def=dg.DailyPartitionsDefinition(start_date="2026-03-01"), pool="warehouse"
    )
    def probe_daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"dagster/row_count": 3})

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        limits = concurrency.run_queue_config.tag_concurrency_limits
        assert {"key": "sensor_platform/feed", "value": "kafka", "limit": 3} in limits

        result = dg.materialize([probe_daily], instance=instance, partition_key="2026-03-02")
        assert result.success

        assert instance.get_materialized_partitions(probe_daily.key) == {"2026-03-02"}
        [record] = instance.fetch_materializations(probe_daily.key, limit=10).records
        assert record.run_id == result.run_id
        assert record.asset_materialization.partition == "2026-03-02"
        assert record.asset_materialization.metadata["dagster/row_count"].value == 3
        events = {
            e.dagster_event_type for e in instance.all_logs(result.run_id) if e.is_dagster_event
        }
        assert dg.DagsterEventType.RUN_SUCCESS in events
        # the step held a slot of the `warehouse` pool, limited by dagster.yaml's default_limit
        assert instance.event_log_storage.get_concurrency_info("warehouse").slot_count == 1
    assert {"runs", "event_logs", "jobs", "job_ticks"} <= _tables_of(role)


def test_daemon_ticks_a_sensor_and_its_queued_run_materializes(dagster_home, s3_endpoint, tmp_path):
    home, _ = dagster_home
    (tmp_path / "probe_definitions.py").write_text(PROBE_DEFINITIONS)
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: probe_definitions.py\n"
        "      location_name: probe\n"
    )
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
        cwd=tmp_path,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = _wait_for_successful_run(instance, daemon, log, timeout_s=75)
            [run] = runs
            assert run.tags["dagster/partition"] == "2026-03-02"
            assert run.tags["dagster/run_key"] == "probe/2026-03-02"
            assert run.tags["sensor_platform/feed"] == "kafka"

            [state] = [s for s in instance.all_instigator_state() if s.name == "probe_sensor"]
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            launched = [t for t in ticks if t.run_ids]
            assert launched and launched[-1].run_ids == [run.run_id]
            assert launched[-1].status.value == "SUCCESS"
            assert state.instigator_data.cursor == "2026-03-02"

            [record] = instance.fetch_materializations(dg.AssetKey("probe_daily"), limit=5).records
            assert record.run_id == run.run_id
            assert record.asset_materialization.partition == "2026-03-02"
            assert record.asset_materialization.metadata["day"].value == "2026-03-02"
            assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        # the run worker's stdout is in S3, where a webserver on any machine reads it
        listing = _s3(s3_endpoint).list_objects_v2(
            Bucket=LOGS_BUCKET, Prefix="dagster/compute-logs/"
        )
        keys = [o["Key"] for o in listing.get("Contents", [])]
        bodies = [
            _s3(s3_endpoint).get_object(Bucket=LOGS_BUCKET, Key=k)["Body"].read() for k in keys
        ]
        assert any(b"probe stdout for 2026-03-02" in body for body in bodies), keys
    finally:
        _stop(daemon)


def _wait_for_successful_run(instance, daemon, log: Path, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited: {log.read_text()[-3000:]}")
        runs = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/sensor_name": "probe_sensor"})
        )
        if runs and runs[0].status == dg.DagsterRunStatus.SUCCESS:
            return runs
        if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:
            pytest.fail(f"the sensor's run failed: {runs[0].run_id}")
        time.sleep(1)
    pytest.fail(f"no successful sensor run within {timeout_s}s: {log.read_text()[-3000:]}")


def _stop(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)  # the daemon and the code server it started
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
