"""A Kafka range that can never land, through the real daemon (sensor, run queue, a process per
run), a Kafka-protocol broker and a webhook receiver: it is asked for again under a new run key,
declared stuck after its last attempt (tick log, kafka_topics figures, a failing check), announced
once to the alert channel as a platform notice, and given up by an operator's skip run, after
which the check passes, offsets are committed past it and the gap is recorded. Meanwhile the other
partitions land exactly once.

The fault is a real one: a regular file where the landing folder of the range's hour must be
created, so landing that hour fails on every attempt, and only that hour.
"""

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import orjson
import pyarrow.compute as pc
import pytest
from kafka import KafkaConsumer, TopicPartition

from sensor_platform.defs.ingest import kafka_skip_range_job, sensor_cursor
from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform.kafka.client import ensure_topic, produce
from sensor_platform.kafka.cursor import IngestCursor
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.notify.receiver import WebhookReceiver
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform_tests.daemon import running_daemon

pytestmark = pytest.mark.integration  # a daemon, a broker and an HTTP receiver

PATH = "hooks/platform-token-0123456789"  # a secret path: it must show nowhere
TOPICS = dg.AssetKey("kafka_topics")
CHECK = dg.AssetCheckKey(TOPICS, "no_stuck_ranges")
SENSOR = "kafka_ingest_sensor"
PER_PARTITION = 5


def readings(at: datetime, partition: int) -> list[tuple[None, bytes]]:
    return [
        (
            None,
            orjson.dumps(
                {
                    "equipment_id": f"EQ-{partition}-{i}",
                    "facility_id": "FAC-001",
                    "measured_at": (at + timedelta(minutes=i)).isoformat(),
                    "temperature": 21.0 + i,
                    "humidity": 40.0,
                }
            ),
        )  # fmt: skip
        for i in range(PER_PARTITION)
    ]


def run_keys(daemon, job: str, status: dg.DagsterRunStatus) -> list[str]:
    return sorted(r.tags.get("dagster/run_key", "") for r in daemon.runs(job, [status]))


def observations(daemon) -> list[dict]:
    records = daemon.instance.fetch_observations(TOPICS, limit=1000).records
    return [
        {k: v.value for k, v in r.asset_observation.metadata.items()}
        for r in records  # newest first
    ]


def latest_check(daemon):
    record = daemon.instance.get_latest_asset_check_evaluation_record(CHECK)
    return record.event.asset_check_evaluation if record and record.event else None


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int | None]:
    with KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    ) as consumer:
        return [consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]


def test_a_range_that_never_lands_is_retried_reported_announced_once_then_skipped(
    kafka_broker, tmp_path
):
    topic, group = f"daemon.stuck.{uuid.uuid4().hex[:8]}", f"stuck-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(kafka_broker.bootstrap, topics=(topic,))
    ensure_topic(kafka, topic, 3)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    poisoned, good = hour - timedelta(hours=3), hour - timedelta(hours=1)
    data = tmp_path / "data"
    blocker = data / "lake" / layout.landing_dir(poisoned)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the hour's landing folder must go")
    produce(kafka, topic, readings(poisoned, 0), partition=0)
    for partition in (1, 2):
        produce(kafka, topic, readings(good, partition), partition=partition)
    receiver = WebhookReceiver().start()
    settings = {
        "SENSOR_SOURCE": "kafka",
        "SENSOR_DATA_DIR": str(data),
        "SENSOR_PARTITIONS_START": (hour - timedelta(days=1)).date().isoformat(),
        "SENSOR_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SENSOR_KAFKA_TOPICS": topic,
        "SENSOR_KAFKA_CONSUMER_GROUP": group,
        "SENSOR_KAFKA_POLL_INTERVAL_SECONDS": "2",
        "SENSOR_KAFKA_MAX_ATTEMPTS": "2",
        "SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS": "2",
        "SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS": "2",
        "SENSOR_RAW_SENSOR_INTERVAL_SECONDS": "3600",  # raw runs are not what this is about
        "SENSOR_ALERT_WEBHOOK_URL": receiver.url(PATH),
    }
    stuck_key = f"{topic}/0/0-{PER_PARTITION}#attempt-2"
    try:
        with running_daemon(tmp_path, settings, DEV_INSTANCE_YAML) as daemon:
            failed = daemon.wait_for(
                "the second attempt failed",
                lambda: (
                    stuck_key in run_keys(daemon, "kafka_ingest_job", dg.DagsterRunStatus.FAILURE)
                ),
                timeout_s=120,
            )
            assert failed
            [notice] = daemon.wait_for("the platform notice", receiver.received, timeout_s=90)
            figures = daemon.wait_for(
                "kafka_topics reporting the stuck range",
                lambda: [o for o in observations(daemon) if o["stuck_ranges"] == 1],
                timeout_s=30,
            )[0]
            evaluation = daemon.wait_for("the failing check", lambda: latest_check(daemon), 30)
            # a few more ticks: the notice is asked for again, and not sent again
            seen = len(observations(daemon))
            daemon.wait_for(
                "three more ticks", lambda: len(observations(daemon)) >= seen + 3, timeout_s=60
            )

            # the re-request: a new run key, the same batch id, and nothing else for partition 0
            assert run_keys(daemon, "kafka_ingest_job", dg.DagsterRunStatus.FAILURE) == [
                f"{topic}/0/0-{PER_PARTITION}",
                stuck_key,
            ]
            batch_ids = {
                r.tags["sensor_platform/batch_id"]
                for r in daemon.runs("kafka_ingest_job", [dg.DagsterRunStatus.FAILURE])
            }
            assert len(batch_ids) == 1
            # the stuck report: figures per partition, and the check
            assert figures[f"stuck {topic}/0"] == 1 and figures[f"stuck {topic}/1"] == 0
            assert figures[f"lag {topic}/0"] == PER_PARTITION
            assert stuck_key in figures["stuck"]
            assert {f"records/s in {topic}/{p}" for p in range(3)} <= figures.keys()
            assert not evaluation.passed
            assert evaluation.severity == dg.AssetCheckSeverity.ERROR
            [described] = evaluation.metadata["stuck"].value
            assert (described["run_key"], described["attempts"]) == (stuck_key, 2)
            # one platform notice, from one run, however many ticks asked for it
            assert len(receiver.received(PATH)) == 1
            body = notice.payload["platform_notice"]
            assert body["key"] == f"platform/kafka-stuck/{topic}/0/0-{PER_PARTITION}"
            assert notice.payload["severity"] == "platform"
            assert len(daemon.runs("platform_notice_job")) == 1
            # meanwhile the other partitions landed, each exactly once
            landed = run_keys(daemon, "kafka_ingest_job", dg.DagsterRunStatus.SUCCESS)
            assert landed == [f"{topic}/1/0-{PER_PARTITION}", f"{topic}/2/0-{PER_PARTITION}"]
            lake = Lake(str(data / "lake"))
            files = [f.path for f in lake.list_files(layout.LANDING)]
            rows = lake.read_parquet(files, READING_SCHEMA)
            assert len(files) == 2 and rows.num_rows == 2 * PER_PARTITION * 2  # 2 metrics each
            assert pc.count_distinct(rows["reading_id"]).as_py() == rows.num_rows
            before = committed(kafka_broker.bootstrap, group, topic, 3)
            assert before == [0, PER_PARTITION, PER_PARTITION]  # partition 0 waits

            # the operator gives the range up
            skip = kafka_skip_range_job.execute_in_process(
                instance=daemon.instance,
                run_config={
                    "ops": {
                        "skip_kafka_range": {
                            "config": {"run_key": stuck_key, "reason": "poisoned hour, see OPS-42"}
                        }
                    }
                },  # fmt: skip
            )
            assert skip.success
            daemon.wait_for(
                "the check passing again",
                lambda: (e := latest_check(daemon)) is not None and e.passed,
                timeout_s=60,
            )
            daemon.wait_for(
                "offsets committed past the skipped range",
                lambda: committed(kafka_broker.bootstrap, group, topic, 3) == [PER_PARTITION] * 3,
                timeout_s=30,
            )
            # the tick commits to the group before the daemon stores its cursor: wait for both
            cursor = daemon.wait_for(
                "the cursor with nothing pending",
                lambda: (
                    (c := IngestCursor.parse(sensor_cursor(daemon.instance, SENSOR))).pending == {}
                    and c
                ),
                timeout_s=30,
            )
            assert cursor.retries == {}
            [gap] = [g for g in cursor.gaps if g.get("skipped")]
            assert gap["skipped"] == stuck_key and "OPS-42" in gap["message"]
            assert len(receiver.received(PATH)) == 1
            log = daemon.log.read_text(errors="replace")
            assert "platform-token" not in log
            for run in daemon.runs("platform_notice_job"):
                messages = [e.message or "" for e in daemon.instance.all_logs(run.run_id)]
                assert not [m for m in messages if "platform-token" in m]
    finally:
        receiver.stop()
