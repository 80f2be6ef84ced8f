"""A killed or hung Kafka landing run recovers without a person, through the real daemon (Kafka
sensor, run queue, run retries, run monitoring; every run its own process), on the local
instance of `make ui` (SQLite) and on the production dagster.yaml (a new PostgreSQL database).

A landing run is caught mid-range: its readings are in landing files, and it waits for the alert
lock (held here) to announce the fire reading of its batch. It is then SIGKILLed, or left until
its maximum runtime ends it. Whatever run retries decide, the range is landed by a later run,
every produced reading is in raw exactly once, and the consumer group's commit reaches the end.
"""

import os
import signal
import threading
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from kafka import KafkaConsumer, TopicPartition

from sensor_platform.defs.alerts import ALERT_LOCK
from sensor_platform.defs.ingest import sensor_cursor
from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform.kafka.attempts import Attempt
from sensor_platform.kafka.client import ensure_topic, produce
from sensor_platform.kafka.cursor import IngestCursor
from sensor_platform.kafka.offsets import OffsetRange
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.lake import layout
from sensor_platform.lake.landing import land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.notify.receiver import WebhookReceiver
from sensor_platform.readings.normalize import Message, normalize_messages
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.daemon import Daemon, running_daemon
from sensor_platform_tests.readings_factory import fire_equipment_message

pytestmark = pytest.mark.integration  # a daemon, a broker, PostgreSQL

MESSAGES, CHUNK, FIRE = 12, 4, 1  # offsets 0-4, 4-8, 8-12; offset 1 reads 75 °C
LANDING = "kafka_ingest_job"


@pytest.fixture(params=["sqlite", "postgres"])
def instance_yaml(request) -> str:
    """The local instance (`make ui`, `make demo`) or the production one on PostgreSQL."""
    if request.param == "sqlite":
        return DEV_INSTANCE_YAML
    return request.getfixturevalue("production_instance")


@pytest.fixture
def feed(kafka_broker, tmp_path):
    """A topic of one partition holding MESSAGES fire-equipment messages (two readings each),
    and the platform's settings to ingest it with a consumer group and a webhook channel."""
    topic = f"recovery.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(kafka_broker.bootstrap, topics=(topic,))
    ensure_topic(kafka, topic, 1)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    payloads = [
        fire_equipment_message(
            f"EQ-{i:02d}", start + timedelta(seconds=10 * i), 75.0 if i == FIRE else 20.0 + i
        )
        for i in range(MESSAGES)
    ]
    produce(kafka, topic, [(None, p) for p in payloads], partition=0)
    receiver = WebhookReceiver().start()
    data, group = tmp_path / "data", f"lake-{topic}"
    settings = {
        "SENSOR_SOURCE": "kafka",
        "SENSOR_DATA_DIR": str(data),
        "SENSOR_PARTITIONS_START": (start.date() - timedelta(days=1)).isoformat(),
        "SENSOR_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SENSOR_KAFKA_TOPICS": topic,
        "SENSOR_KAFKA_MAX_RECORDS_PER_RUN": str(CHUNK),
        "SENSOR_KAFKA_POLL_INTERVAL_SECONDS": "2",
        "SENSOR_KAFKA_CONSUMER_GROUP": group,
        "SENSOR_RAW_SENSOR_INTERVAL_SECONDS": "2",
        "SENSOR_ALERT_WEBHOOK_URL": receiver.url("hooks/alarms"),
    }
    expected = {
        (f"EQ-{i:02d}", metric, start + timedelta(seconds=10 * i))
        for i in range(MESSAGES)
        for metric in ("temperature", "humidity")
    }
    fire_range = Attempt(OffsetRange(topic, 0, 0, CHUNK))
    yield {
        "topic": topic,
        "bootstrap": kafka_broker.bootstrap,
        "group": group,
        "settings": settings,
        "lake": Lake(str(data / "lake")),
        "warehouse": Warehouse(f"duckdb:///{data}/warehouse.duckdb"),
        "expected": expected,
        "batch_id": fire_range.batch_id,
        "receiver": receiver,
    }
    receiver.stop()


def caught_mid_range(daemon: Daemon, feed: dict) -> dg.DagsterRun:
    """The run of the fire reading's range, started, its readings landed, waiting for the lock."""

    def landed_and_waiting():
        runs = daemon.instance.get_runs(
            dg.RunsFilter(
                job_name=LANDING,
                statuses=[dg.DagsterRunStatus.STARTED],
                tags={"sensor_platform/batch_id": feed["batch_id"]},
            )
        )
        files = [f for f in feed["lake"].list_files(layout.LANDING) if feed["batch_id"] in f.path]
        return runs[0] if runs and files else None

    return daemon.wait_for("the fire range's run mid-range", landed_and_waiting, timeout_s=150)


def recovered(daemon: Daemon, feed: dict, ended: dg.DagsterRun) -> list[dg.DagsterRun]:
    """Wait until no range is pending, the group's commit is at the end and raw holds every
    reading; the runs that landed the ended run's range after it."""
    daemon.wait_for("the range landed again", lambda: landed_by_others(daemon, feed, ended), 180)
    daemon.wait_for("the cursor at the end", lambda: cursor_done(daemon), timeout_s=60)
    daemon.wait_for(
        "every reading in raw", lambda: raw_keys(feed["lake"]) >= feed["expected"], timeout_s=120
    )
    return landed_by_others(daemon, feed, ended)


def landed_by_others(daemon: Daemon, feed: dict, ended: dg.DagsterRun) -> list[dg.DagsterRun]:
    runs = daemon.instance.get_runs(
        dg.RunsFilter(
            job_name=LANDING,
            statuses=[dg.DagsterRunStatus.SUCCESS],
            tags={"sensor_platform/batch_id": feed["batch_id"]},
        )
    )
    return [run for run in runs if run.run_id != ended.run_id]


def cursor_done(daemon: Daemon) -> IngestCursor | None:
    """The Kafka sensor's cursor once every offset is landed and committed to the group."""
    cursor = IngestCursor.parse(sensor_cursor(daemon.instance, "kafka_ingest_sensor"))
    done = not cursor.pending and list(cursor.committed.values()) == [MESSAGES]
    return cursor if done else None


def raw_rows(lake: Lake) -> list[dict]:
    files = [f.path for f in lake.list_files(layout.RAW)]
    return lake.read_parquet(files, READING_SCHEMA).to_pylist() if files else []


def raw_keys(lake: Lake) -> set[tuple]:
    return {(r["device_id"], r["metric"], r["event_time"]) for r in raw_rows(lake)}


def child_commands(pid: int) -> list[list[str]]:
    """The command lines of the processes whose parent is `pid` (Linux /proc)."""
    commands = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().decode().split("\0")
        except OSError:  # gone meanwhile
            continue
        if parent == pid:
            commands.append(command)
    return commands


def fire_notices(feed: dict, device: str) -> list[tuple[str, str, str]]:
    return [
        (n["episode"]["rule"], n["episode"]["severity"], n["events"][0])
        for r in feed["receiver"].received("hooks/alarms")
        for n in r.payload["notices"]
        if n["episode"]["device_id"] == device
    ]


def how(runs: list[dg.DagsterRun]) -> str:
    return ", ".join(
        f"{'run retry' if 'dagster/parent_run_id' in r.tags else 'Kafka sensor'} "
        f"(attempt {r.tags.get('sensor_platform/attempt')})"
        for r in runs
    )


def test_a_landing_run_sigkilled_mid_range_is_landed_again_exactly_once(
    instance_yaml, feed, tmp_path
):
    with ExitStack() as held, running_daemon(tmp_path, feed["settings"], instance_yaml) as daemon:
        held.enter_context(feed["warehouse"].exclusive(ALERT_LOCK))
        run = caught_mid_range(daemon, feed)
        pid = daemon.wait_for("the run worker's pid", lambda: daemon.worker_pid(run.run_id), 30)
        # the step runs in the worker's own process, so killing the worker leaves no orphaned
        # step landing the range beside its retry: its only children are Dagster's log tails
        # (`tail -F` and the watcher that ends it when the worker dies)
        for command in child_commands(pid):
            assert command[0] == "tail" or command[1].endswith("watch_orphans.py"), command
        os.kill(pid, signal.SIGKILL)
        held.close()  # the lock is free for the runs that follow
        daemon.wait_for(
            "the killed run failed",
            lambda: daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            timeout_s=90,
        )
        landed = recovered(daemon, feed, run)
        print(f"landed again by: {how(landed)}")
        # the killed run blocks no alarm: the fire is announced, once, after it
        fire = f"EQ-{FIRE:02d}"
        daemon.wait_for("the fire's notice", lambda: fire_notices(feed, fire), timeout_s=60)
        opened = [n for n in fire_notices(feed, fire) if n[2] == "opened"]
        assert opened == [("temperature_high", "critical", "opened")]

    with KafkaConsumer(
        bootstrap_servers=feed["bootstrap"], group_id=feed["group"], enable_auto_commit=False
    ) as consumer:  # the group's commit on the broker itself
        assert consumer.committed(TopicPartition(feed["topic"], 0)) == MESSAGES
    rows = raw_rows(feed["lake"])
    keys = [(r["device_id"], r["metric"], r["event_time"]) for r in rows]
    assert sorted(keys) == sorted(feed["expected"])  # each reading once: no duplicate, no gap
    assert len({r["reading_id"] for r in rows}) == len(rows)


def test_a_hung_landing_run_is_ended_at_its_maximum_runtime_and_asked_for_again(feed, tmp_path):
    """Run retries off (as when they refuse: "No steps needed to be retried"): only the Kafka
    sensor's own retries can land the range again."""
    no_run_retries = DEV_INSTANCE_YAML.replace(
        "run_retries:\n  enabled: true", "run_retries:\n  enabled: false"
    )
    assert no_run_retries != DEV_INSTANCE_YAML
    settings = {
        **feed["settings"],
        "SENSOR_LANDING_MAX_RUNTIME_SECONDS": "20",
        "SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS": "5",
        "SENSOR_RAW_SENSOR_INTERVAL_SECONDS": "3600",  # raw is not what this is about
    }
    with ExitStack() as held, running_daemon(tmp_path, settings, no_run_retries) as daemon:
        held.enter_context(feed["warehouse"].exclusive(ALERT_LOCK))  # the run would wait 60 s
        run = caught_mid_range(daemon, feed)
        assert run.tags["dagster/max_runtime"] == "20"
        # ended as FAILURE, or as CANCELED when the termination reaches the step itself
        ended = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
        daemon.wait_for(
            "run monitoring to end the run",
            lambda: daemon.instance.get_run_by_id(run.run_id).status in ended,
            timeout_s=90,
        )
        held.close()
        messages = [e.message or "" for e in daemon.instance.all_logs(run.run_id)]
        assert any("Exceeded maximum runtime of 20 seconds" in m for m in messages), messages[-5:]
        landed = daemon.wait_for(
            "the range landed again", lambda: landed_by_others(daemon, feed, run), 180
        )
        daemon.wait_for("the cursor at the end", lambda: cursor_done(daemon), timeout_s=60)
    assert [
        (r.tags["sensor_platform/attempt"], r.tags.get("dagster/parent_run_id")) for r in landed
    ] == [("2", None)]  # the sensor's second attempt, a run of its own
    assert landed[0].tags["dagster/run_key"].endswith("#attempt-2")


def test_two_landings_of_one_batch_at_once_leave_the_files_of_one(tmp_path):
    """An orphaned step still landing while the retry of its range lands the same batch: both
    write the same files (temp + rename), so the lake ends as after a single landing."""
    at = datetime(2026, 3, 2, 10, 59, 50, tzinfo=UTC)
    messages = [
        Message(
            fire_equipment_message(f"EQ-{i}", at + timedelta(seconds=i), 20.0), "kafka:t/0/0", at
        )
        for i in range(20)
    ]  # two event hours: two landing files
    batch = normalize_messages(messages, batch_id="t-0-0-20")
    single, concurrent = Lake(str(tmp_path / "single")), Lake(str(tmp_path / "concurrent"))
    land_batch(single, "t-0-0-20", batch.readings, batch.quarantine)
    start = threading.Barrier(2)

    def land() -> None:
        start.wait()
        for _ in range(10):
            land_batch(concurrent, "t-0-0-20", batch.readings, batch.quarantine)

    threads = [threading.Thread(target=land) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def files(lake: Lake) -> dict[str, bytes]:
        return {
            f.path: lake.fs.open_input_file(lake.full_path(f.path)).read()
            for f in lake.list_files("")
            if not f.path.startswith("_tmp")
        }

    assert len(files(single)) == 2
    assert files(concurrent) == files(single)
    assert not concurrent.list_files("_tmp")  # no temporary file left behind
