"""Alarms through the real daemon, as users run the platform: the Kafka sensor, the run queue and
the run launcher (every run its own process), a Kafka-protocol broker and a webhook receiver.

- A reading above the critical threshold is announced by the landing run of its batch.
- A landing run SIGKILLed while its webhook request is in flight (the endpoint took it and has not
  answered) holds nothing the next runs need: the run is failed and run again, the notice goes
  out again under the same idempotency key, the endpoint (honouring keys) takes it once, and the
  ledger records the attempt the killed run left behind.
"""

import os
import signal
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform.kafka.client import ensure_topic, produce
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.notify.receiver import Reply, WebhookReceiver
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.daemon import running_daemon
from sensor_platform_tests.readings_factory import fire_equipment_message

pytestmark = pytest.mark.integration  # a daemon, a broker and an HTTP receiver

PATH = "hooks/alarms"


@pytest.fixture
def setup(kafka_broker, tmp_path):
    topic = f"daemon.alarms.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(kafka_broker.bootstrap, topics=(topic,))
    ensure_topic(kafka, topic, 1)
    receiver = WebhookReceiver().start()
    receiver.honour_idempotency_keys(PATH)  # a generic webhook that supports Idempotency-Key
    today = datetime.now(UTC).date()
    settings = {
        "SENSOR_SOURCE": "kafka",
        "SENSOR_DATA_DIR": str(tmp_path / "data"),
        "SENSOR_PARTITIONS_START": (today - timedelta(days=1)).isoformat(),
        "SENSOR_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SENSOR_KAFKA_TOPICS": topic,
        "SENSOR_KAFKA_POLL_INTERVAL_SECONDS": "2",
        "SENSOR_RAW_SENSOR_INTERVAL_SECONDS": "3600",  # raw runs are not what this is about
        "SENSOR_ALERT_WEBHOOK_URL": receiver.url(PATH),
    }
    yield {"kafka": kafka, "topic": topic, "receiver": receiver, "settings": settings}
    receiver.stop()


def notices(receiver: WebhookReceiver) -> list[tuple[str, str, str]]:
    return [
        (n["episode"]["device_id"], n["episode"]["rule"], n["events"][0])
        for r in receiver.received(PATH)
        for n in r.payload["notices"]
    ]


def test_a_fire_reading_is_announced_by_the_landing_run_on_the_daemon(setup, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    with running_daemon(tmp_path, setup["settings"], DEV_INSTANCE_YAML) as daemon:
        produce(
            setup["kafka"],
            setup["topic"],
            [(None, fire_equipment_message("FIRE-EQ-001", now, 24.0))],
        )
        daemon.wait_for(
            "a landing run",
            lambda: daemon.runs("kafka_ingest_job", [dg.DagsterRunStatus.SUCCESS]),
            timeout_s=90,
        )
        assert notices(setup["receiver"]) == []  # nothing to say about 24 °C
        produced = datetime.now(UTC)
        produce(
            setup["kafka"],
            setup["topic"],
            [(None, fire_equipment_message("FIRE-EQ-001", now + timedelta(seconds=10), 75.0))],
        )
        daemon.wait_for("the alarm", lambda: notices(setup["receiver"]), timeout_s=90)
        [notice] = setup["receiver"].received(PATH)
        print(f"produced to webhook: {(notice.received_at - produced).total_seconds():.1f} s")
        assert notices(setup["receiver"]) == [("FIRE-EQ-001", "temperature_high", "opened")]
        episode = notice.payload["notices"][0]["episode"]
        assert episode["severity"] == "critical" and episode["peak_value"] == 75.0
        # no hourly detection or alert run has run: the landing run announced it
        assert not daemon.runs("raw_job") and not daemon.runs("anomaly_alerts_job")


def test_a_landing_run_killed_mid_request_blocks_nothing_and_sends_once(setup, tmp_path):
    receiver = setup["receiver"]
    receiver.script(PATH, Reply(204, delay_s=120))  # takes the request, answers far too late
    now = datetime.now(UTC).replace(microsecond=0)
    with running_daemon(tmp_path, setup["settings"], DEV_INSTANCE_YAML) as daemon:
        produce(
            setup["kafka"],
            setup["topic"],
            [(None, fire_equipment_message("FIRE-EQ-001", now, 75.0))],
        )
        [first] = daemon.wait_for("the first request", lambda: receiver.requests(PATH), 90)
        assert first.processed  # the endpoint acted on it although it has not answered
        [run] = daemon.runs("kafka_ingest_job", [dg.DagsterRunStatus.STARTED])
        pid = daemon.wait_for("the run worker's pid", lambda: daemon.worker_pid(run.run_id), 30)
        killed = datetime.now(UTC)
        os.kill(pid, signal.SIGKILL)  # the worker dies while its request is in flight

        daemon.wait_for(
            "the killed run failed",
            lambda: daemon.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
            timeout_s=60,
        )
        retried = daemon.wait_for(
            "a run of the range that succeeded",
            lambda: daemon.runs("kafka_ingest_job", [dg.DagsterRunStatus.SUCCESS]),
            timeout_s=120,
        )
        again = daemon.wait_for("the notice sent again", lambda: receiver.requests(PATH)[1:], 60)
        print(f"kill to the next request: {(again[0].received_at - killed).total_seconds():.1f} s")
        assert again[0].headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
        assert len(receiver.received(PATH)) == 1  # the endpoint took the notice once
        assert notices(receiver) == [("FIRE-EQ-001", "temperature_high", "opened")]
        ledger = Warehouse(
            f"duckdb:///{setup['settings']['SENSOR_DATA_DIR']}/warehouse.duckdb"
        ).read(LEDGER_TABLE)
        outcomes = [(r["run_id"], r["outcome"]) for r in ledger.to_pylist()]
        assert (run.run_id, "attempting") in outcomes  # the trace the killed run left
        assert not [o for r, o in outcomes if r == run.run_id and o != "attempting"]
        assert any(o == "sent" for _, o in outcomes)
        assert retried[0].run_id != run.run_id
