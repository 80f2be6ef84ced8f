"""The pipeline on two Celery workers that share only services (dagster-celery; see
celery_cluster.py): a moto S3 lake, a PostgreSQL warehouse, the production instance in PostgreSQL
and RabbitMQ. Each worker starts in an empty folder with a HOME of its own and no DAGSTER_HOME.

Landing, raw partitions and the aggregates run with their steps on the workers; one worker is
killed (SIGKILL to its whole process group) in the middle of the raw compaction, and the broker
gives the step to the other worker. Then: every landed reading is in raw exactly once, every
aggregate level equals SQL over raw, and neither worker left a file in its folder or HOME (nor
the run in DAGSTER_HOME): nothing that another worker needs was kept on a local disk.
"""

import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from sensor_platform.datasets import REGISTRY
from sensor_platform.lake import layout
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform_tests.celery_cluster import (
    RABBITMQ,
    celery_cluster,
    partition_range_tags,
    run_job,
)
from sensor_platform_tests.conftest import require_server
from sensor_platform_tests.platform import feed_run_request, hour_key

pytestmark = pytest.mark.integration  # Celery workers, RabbitMQ, PostgreSQL, S3

START, HOURS = datetime(2026, 3, 1, 0, tzinfo=UTC), 3
KILLED_STEP = "raw_sensor_readings"
RUN_TIMEOUT_S = 240
LEVELS = {
    "sensor_readings_minute": "minute",
    "sensor_readings_hourly": "hour",
    "sensor_readings_daily": "day",
}


@pytest.fixture
def cluster(tmp_path, postgres_url, s3_endpoint, monkeypatch):
    require_server("RabbitMQ", *RABBITMQ)
    with celery_cluster(tmp_path, postgres_url, s3_endpoint) as cluster:
        for name, value in cluster.env.items():  # this process orchestrates the runs
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        yield cluster


def test_two_workers_run_the_pipeline_and_a_killed_workers_step_moves_on(cluster):
    workers = [cluster.start_worker(name) for name in ("w1", "w2")]
    for worker in workers:
        worker.wait_ready()
    with cluster.instance() as instance:
        for hour in range(HOURS):  # landing: one run per hour of the simulated feed
            start = START + timedelta(hours=hour)
            request = feed_run_request(start, start + timedelta(hours=1))
            landed = run_job(
                instance, "simulated_feed_job", run_config=request.run_config, tags=request.tags
            )
            assert landed.success

        last = hour_key(START + timedelta(hours=HOURS - 1))
        raw_run = _run_killing_the_worker_of(
            cluster, instance, "raw_job", partition_range_tags(hour_key(START), last), KILLED_STEP
        )
        assert raw_run.result.success
        killed, survivor = raw_run.killed, next(w for w in workers if w is not raw_run.killed)
        # the killed worker had started the step, the other one ran it again from its start
        attempts = _step_events(instance, raw_run.result.run_id, KILLED_STEP)
        assert [worker for kind, worker in attempts if kind == "executing"] == [
            killed.hostname,
            survivor.hostname,
        ]
        assert [kind for kind, _ in attempts] == [
            "executing", "started", "executing", "started", "succeeded"
        ]  # fmt: skip

        rollups = run_job(instance, "rollups_job", tags={"dagster/partition": "2026-03-01"})
        assert rollups.success

    _assert_exact(cluster)
    for worker in workers:  # nothing left on a worker's disk, nor in the instance's folder
        assert list(worker.folder.iterdir()) == [] and list(worker.home.iterdir()) == []
        assert "celery-worker: warning" not in worker.log.read_text()  # nothing single-node
    assert [p.name for p in cluster.dagster_home.iterdir()] == ["dagster.yaml"]


class _KilledRun:
    result: dg.JobExecutionResult
    killed: object


def _run_killing_the_worker_of(cluster, instance, job_name, tags, step_key) -> _KilledRun:
    """Run the job; once a worker has started `step_key`, kill that worker."""
    outcome, done = _KilledRun(), threading.Event()

    def run() -> None:
        try:
            outcome.result = run_job(instance, job_name, tags=tags)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not hasattr(outcome, "killed"):
        assert not done.is_set(), f"the run ended before a worker started {step_key}"
        assert time.monotonic() < deadline, f"no worker started {step_key}"
        runs = instance.get_runs(dg.RunsFilter(job_name=job_name), limit=1)
        attempts = _step_events(instance, runs[0].run_id, step_key) if runs else []
        if [kind for kind, _ in attempts] == ["executing", "started"]:
            hostname = attempts[0][1]
            outcome.killed = next(w for w in cluster.workers if w.hostname == hostname)
            outcome.killed.kill()
        time.sleep(0.05)
    thread.join(timeout=max(1.0, deadline - time.monotonic()))
    assert done.is_set(), f"{job_name} did not finish after its worker was killed"
    return outcome


def _step_events(instance, run_id: str, step_key: str) -> list[tuple[str, str | None]]:
    """The step's attempts as they appear in the event log: ("executing", worker hostname) when
    a Celery worker takes it, then ("started", None) and ("succeeded", None)."""
    kinds = {
        dg.DagsterEventType.STEP_START.value: "started",
        dg.DagsterEventType.STEP_SUCCESS.value: "succeeded",
        dg.DagsterEventType.STEP_FAILURE.value: "failed",
    }
    events = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key != step_key:
            continue
        if event.event_type_value in kinds:
            events.append((kinds[event.event_type_value], None))
        elif event.event_type_value == "ENGINE_EVENT" and "in celery worker" in (
            event.message or ""
        ):
            entries = event.engine_event_data.metadata
            events.append(("executing", entries["Celery worker"].value))
    return events


def _assert_exact(cluster) -> None:
    lake = cluster.lake()
    hours = [START + timedelta(hours=h) for h in range(HOURS)]  # a window also lands late
    landed_files = [f.path for h in hours for f in lake.list_files(layout.landing_dir(h))]
    landed = lake.read_parquet(landed_files, READING_SCHEMA)  # readings of earlier hours
    raw = lake.read_parquet([f.path for f in lake.list_files(layout.RAW)], READING_SCHEMA)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("landed", landed)
    con.register("raw", raw)
    (rows, distinct, missing, extra) = con.execute(
        """SELECT (SELECT count(*) FROM raw), (SELECT count(DISTINCT reading_id) FROM raw),
                  (SELECT count(*) FROM (SELECT reading_id FROM landed EXCEPT SELECT reading_id FROM raw)),
                  (SELECT count(*) FROM (SELECT reading_id FROM raw EXCEPT SELECT reading_id FROM landed))"""
    ).fetchall()[0]  # fmt: skip
    assert rows == distinct > 10_000 and (missing, extra) == (0, 0)
    warehouse = cluster.warehouse()
    for level, unit in LEVELS.items():
        table = warehouse.read(REGISTRY.get(level).table_spec())
        con.register("level", table)
        (windows, total, mismatches) = con.execute(
            f"""
            WITH truth AS (
              SELECT date_trunc('{unit}', event_time) AS window_start, device_id, metric,
                     count(*) AS n, min(value) AS lo, max(value) AS hi, avg(value) AS mean,
                     stddev_samp(value) AS sd
              FROM raw GROUP BY ALL)
            SELECT (SELECT count(*) FROM level), (SELECT sum(reading_count) FROM level),
                   count(*) FILTER (WHERE l.reading_count IS DISTINCT FROM t.n
                     OR l.min_value <> t.lo OR l.max_value <> t.hi
                     OR abs(l.mean_value - t.mean) > 1e-9 * (1 + abs(t.mean))
                     OR abs(coalesce(l.stddev_value, 0) - coalesce(t.sd, 0))
                        > 1e-6 * (1 + coalesce(t.sd, 0)))
            FROM truth t FULL JOIN level l USING (window_start, device_id, metric)
            """  # noqa: S608 - the unit comes from LEVELS, a fixed list
        ).fetchall()[0]
        assert windows > 0 and total == rows and mismatches == 0, level
        con.unregister("level")
