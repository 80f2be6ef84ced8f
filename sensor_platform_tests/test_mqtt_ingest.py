"""MQTT through the platform, as `SENSOR_SOURCE=mqtt make ui` runs it: the real daemon (its
mqtt_ingest_sensor asks for drain runs, one at a time; each run its own process), the real
Mosquitto, and the raw sensor compacting what landed. Every payload shape lands exactly once in
raw, and the session's ids come from the topic template where a payload lacks them."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.mqtt.drain import drain
from sensor_platform.mqtt.publish import publish
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform_tests.daemon import running_daemon
from sensor_platform_tests.mosquitto import system_broker, topic_root
from sensor_platform_tests.test_mqtt_drain import readings_of, shapes

pytestmark = pytest.mark.integration  # a daemon and Mosquitto


def test_every_shape_lands_once_in_raw_through_the_daemon(tmp_path):
    mqtt = system_broker("5")
    root = topic_root(mqtt)
    with drain(mqtt, idle_seconds=0.3):
        pass  # the session exists from now on: the broker keeps what is published
    now = datetime.now(UTC)
    messages, expected = shapes(root, now - timedelta(minutes=5))
    settings = {
        "SENSOR_SOURCE": "mqtt",
        "SENSOR_DATA_DIR": str(tmp_path / "data"),
        "SENSOR_PARTITIONS_START": (now - timedelta(days=1)).date().isoformat(),
        "SENSOR_MQTT_HOST": mqtt.host,
        "SENSOR_MQTT_PORT": str(mqtt.port),
        "SENSOR_MQTT_TOPICS": ",".join(mqtt.topics),
        "SENSOR_MQTT_CLIENT_ID": mqtt.client_id,
        "SENSOR_MQTT_TOPIC_TEMPLATE": mqtt.topic_template or "",
        "SENSOR_MQTT_POLL_INTERVAL_SECONDS": "2",
        "SENSOR_MQTT_IDLE_SECONDS": "0.5",
        "SENSOR_RAW_SENSOR_INTERVAL_SECONDS": "2",
    }
    lake = Lake(str(tmp_path / "data" / "lake"))
    with running_daemon(tmp_path, settings, DEV_INSTANCE_YAML) as daemon:
        publish(mqtt, messages, qos=1)

        def landed_in_raw():
            files = [f.path for f in lake.list_files(layout.RAW)]
            raw = lake.read_parquet(files, READING_SCHEMA)
            return raw if raw.num_rows >= len(expected) else None

        raw = daemon.wait_for("every reading in raw", landed_in_raw, timeout_s=120)
        assert sorted(expected) == readings_of(raw)  # every shape, each reading once
        drains = daemon.runs("mqtt_ingest_job", [dg.DagsterRunStatus.SUCCESS])
        assert drains and all(r.tags["sensor_platform/feed"] == "mqtt" for r in drains)
        sources = {r["source"] for r in raw.to_pylist()}
        assert all(s.startswith(f"mqtt:{root}/") for s in sources)
