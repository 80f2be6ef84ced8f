"""The MQTT source against the real Mosquitto on 127.0.0.1:1883: every payload shape lands exactly
once, a run killed before acknowledging loses and duplicates nothing, retained messages, QoS 0,
and `simulate --to mqtt`. Each test has a client id and a topic tree of its own."""

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from sensor_platform.cli import main as cli_main
from sensor_platform.lake import layout
from sensor_platform.lake.compaction import compact_raw_hour
from sensor_platform.lake.landing import land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.mqtt.access import BrokerUnavailable
from sensor_platform.mqtt.drain import drain
from sensor_platform.mqtt.publish import publish
from sensor_platform.readings.normalize import normalize_messages, reading_id
from sensor_platform.readings.schema import QUARANTINE_SCHEMA, READING_SCHEMA
from sensor_platform.simulator.fleet import load_fleet
from sensor_platform_tests.mosquitto import open_session, system_broker, topic_root

pytestmark = pytest.mark.integration

IDLE = 0.3  # seconds of silence that end a drain: the broker sends what it holds at once


def land(lake: Lake, batch) -> set[datetime]:
    """Normalize and land one drained batch (what the ingestion run does); its event hours."""
    normalized = normalize_messages(batch.normalizer_messages(), batch_id=batch.batch_id)
    return set(land_batch(lake, batch.batch_id, normalized.readings, normalized.quarantine).hours)


def raw_readings(lake: Lake, hours: set[datetime]) -> pa.Table:
    for hour in hours:
        compact_raw_hour(lake, hour)
    paths = [layout.raw_partition_file(hour) for hour in sorted(hours)]
    return lake.read_parquet(paths, READING_SCHEMA)


def quarantined(lake: Lake) -> list[dict]:
    files = [f.path for f in lake.list_files(layout.QUARANTINE)]
    return lake.read_parquet(files, QUARANTINE_SCHEMA).to_pylist() if files else []


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shapes(root: str, at: datetime) -> tuple[list[tuple[str, bytes]], set[tuple]]:
    """Every payload shape of the README as (topic, payload), and the readings they must give:
    (device_id, site_id, metric, value, event time in µs)."""
    t = at.replace(microsecond=0)
    messages = [
        # 1. fire equipment: ids in the payload win over the topic's
        (
            f"{root}/topic-site/topic-device",
            {
                "equipment_id": "EQ001",
                "facility_id": "FAC001",
                "equipment_location": "Building A, Floor 1",
                "measured_at": iso(t),
                "temperature": 25.5,
                "humidity": 60.2,
                "smoke_density": 0.001,
                "co_level": 0.005,
                "gas_level": 0.002,
            },
        ),
        # 2. smart farm: epoch milliseconds, numeric strings, error_code
        (
            f"{root}/GH1/GH1-D01",
            {
                "device_id": "GH1-D01",
                "greenhouse_id": "GH1",
                "timestamp": us(t) // 1000,  # epoch milliseconds
                "temperature": 23.1,
                "humidity": "61.0",
                "co2": 420,
                "error_code": "1",
            },
        ),
        # 3. single sensor with an offset timestamp; no site in the payload: the topic's
        (
            f"{root}/Kitchen-site/ignored",
            {
                "sensor_id": "S-1",
                "type": "temperature",
                "unit": "°C",
                "value": 21.4,
                "timestamp": t.astimezone(timezone(timedelta(hours=2))).isoformat(),
            },
        ),
        # 4. canonical
        (
            f"{root}/lab/d-7",
            {
                "device_id": "d-7",
                "site_id": "lab",
                "metric": "pressure",
                "value": 1013.2,
                "unit": "hPa",
                "status_code": 0,
                "event_time": iso(t),
            },
        ),
        # 5. an array of shapes in one message
        (
            f"{root}/array-site/array-device",
            [
                {"device_id": "d-8", "metric": "pressure", "value": 990.0, "event_time": iso(t)},
                {"device_id": "GH2-D01", "greenhouse_id": "GH2", "ts": iso(t), "co2": 700},
            ],
        ),
        # 6. no ids in the payload at all: both from the topic
        (
            f"{root}/site-T/dev-T",
            {"metric": "pressure", "value": 1.5, "unit": "bar", "event_time": iso(t)},
        ),
    ]
    expected = {
        ("EQ001", "FAC001", "temperature", 25.5, us(t)),
        ("EQ001", "FAC001", "humidity", 60.2, us(t)),
        ("EQ001", "FAC001", "smoke_density", 0.001, us(t)),
        ("EQ001", "FAC001", "co_level", 0.005, us(t)),
        ("EQ001", "FAC001", "gas_level", 0.002, us(t)),
        ("GH1-D01", "GH1", "temperature", 23.1, us(t)),
        ("GH1-D01", "GH1", "humidity", 61.0, us(t)),
        ("GH1-D01", "GH1", "co2", 420.0, us(t)),
        ("S-1", "Kitchen-site", "temperature", 21.4, us(t)),
        ("d-7", "lab", "pressure", 1013.2, us(t)),
        ("d-8", "array-site", "pressure", 990.0, us(t)),
        ("GH2-D01", "GH2", "co2", 700.0, us(t)),
        ("dev-T", "site-T", "pressure", 1.5, us(t)),
    }
    return [(topic, orjson.dumps(payload)) for topic, payload in messages], expected


def readings_of(raw: pa.Table) -> list[tuple]:
    return sorted(
        (r["device_id"], r["site_id"], r["metric"], r["value"], us(r["event_time"]))
        for r in raw.to_pylist()
    )


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_every_payload_shape_lands_exactly_once(tmp_path, protocol):
    settings = system_broker(protocol)
    root = topic_root(settings)
    open_session(settings)
    messages, expected = shapes(root, datetime.now(UTC) - timedelta(minutes=5))
    bad = (f"{root}/site/dev", b"\xff not json")
    unmatched = (f"{root}/too/many/levels", b'{"metric": "m", "value": 1, "ts": 1}')
    # the canonical message published twice: redelivery or a re-sending device
    assert publish(settings, [*messages, messages[3], bad, unmatched], qos=1) == 9

    lake = Lake(str(tmp_path / "lake"))
    with drain(settings, idle_seconds=IDLE) as batch:
        assert len(batch.messages) == 9
        assert all(m.qos == 1 and not m.retain for m in batch.messages)
        hours = land(lake, batch)
        assert batch.acknowledge() == 9

    raw = raw_readings(lake, hours)
    assert readings_of(raw) == sorted(expected)
    assert raw["reading_id"].to_pylist() == [
        reading_id(r["device_id"], r["metric"], us(r["event_time"])) for r in raw.to_pylist()
    ]
    assert len(set(raw["reading_id"].to_pylist())) == raw.num_rows == len(expected)
    assert {s.split("/", 1)[0] for s in raw["source"].to_pylist()} == {f"mqtt:{root}"}
    problems = {(q["source"], q["reason"], q["raw"]) for q in quarantined(lake)}
    assert problems == {
        (f"mqtt:{bad[0]}", "not_utf8", bad[1]),
        (f"mqtt:{unmatched[0]}", "missing_device_id", unmatched[1]),
    }
    # acknowledged: the session holds nothing more
    with drain(settings, idle_seconds=IDLE) as batch:
        assert batch.messages == [] and batch.session_present


CHILD = """
import json, sys, time
from sensor_platform.lake.landing import land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.mqtt.access import BrokerUnavailable
from sensor_platform.mqtt.drain import drain
from sensor_platform.mqtt.settings import MqttSettings
from sensor_platform.readings.normalize import normalize_messages

settings = MqttSettings(**json.loads(sys.argv[1]))
with drain(settings, idle_seconds=0.3) as batch:
    normalized = normalize_messages(batch.normalizer_messages(), batch_id=batch.batch_id)
    land_batch(Lake(sys.argv[2]), batch.batch_id, normalized.readings, normalized.quarantine)
    print(json.dumps([[m.topic, m.payload.decode()] for m in batch.messages]), flush=True)
    time.sleep(60)  # killed here: landed, never acknowledged
    batch.acknowledge()
"""


def test_a_run_killed_after_landing_and_before_acknowledging_loses_and_duplicates_nothing(
    tmp_path,
):
    settings = system_broker("5")
    root = topic_root(settings)
    open_session(settings)
    at = datetime.now(UTC) - timedelta(minutes=2)
    sent = [
        (f"{root}/site-{i % 3}/dev-{i}", orjson.dumps({"temperature": 20 + i, "ts": iso(at)}))
        for i in range(30)
    ]
    publish(settings, sent)
    lake = tmp_path / "lake"
    fields = {
        "host": settings.host,
        "port": settings.port,
        "topics": list(settings.topics),
        "client_id": settings.client_id,
        "protocol": settings.protocol,
        "topic_template": settings.topic_template,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(fields), str(lake)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        first = json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert sorted((t, p.encode()) for t, p in first) == sorted(sent)

    # the next run receives the same messages again, flagged as redelivered
    lake_ = Lake(str(lake))
    with drain(settings, idle_seconds=IDLE) as batch:
        assert sorted((m.topic, m.payload) for m in batch.messages) == sorted(sent)
        assert all(m.dup for m in batch.messages)
        hours = land(lake_, batch)
        batch.acknowledge()
    # two landing files of the same readings; raw holds each reading once
    assert len(lake_.list_files(layout.landing_dir(next(iter(hours))))) == 2
    raw = raw_readings(lake_, hours)
    assert readings_of(raw) == sorted(
        (f"dev-{i}", f"site-{i % 3}", "temperature", 20.0 + i, us(at)) for i in range(30)
    )
    with drain(settings, idle_seconds=IDLE) as batch:
        assert batch.messages == []


def test_leaving_the_block_without_acknowledging_keeps_the_messages(tmp_path):
    settings = system_broker("5")
    root = topic_root(settings)
    open_session(settings)
    publish(settings, [(f"{root}/s/d", b'{"n": %d}' % i) for i in range(5)])
    with pytest.raises(RuntimeError, match="landing failed"):
        with drain(settings, idle_seconds=IDLE) as batch:
            assert len(batch.messages) == 5
            raise RuntimeError("landing failed")
    with drain(settings, idle_seconds=IDLE, max_messages=3) as batch:
        # bounded by count: the first three, the other two stay with the session
        assert [m.payload for m in batch.messages] == [b'{"n": %d}' % i for i in range(3)]
        assert batch.stopped_by == "max_messages"
        batch.acknowledge()
    with drain(settings, idle_seconds=IDLE) as batch:
        assert [m.payload for m in batch.messages] == [b'{"n": 3}', b'{"n": 4}']
        batch.acknowledge()


def test_a_second_run_on_the_same_session_takes_it_over_and_loses_nothing():
    # Runs must drain one at a time; if two overlap, the first loses its connection (and cannot
    # acknowledge; Mosquitto 2.0 just closes its socket) and the second receives everything again.
    settings = system_broker("5")
    root = topic_root(settings)
    open_session(settings)
    publish(settings, [(f"{root}/s/d", b'{"n": %d}' % i) for i in range(4)])
    with drain(settings, idle_seconds=IDLE) as first:
        assert len(first.messages) == 4
        with drain(settings, idle_seconds=IDLE) as second:
            assert sorted(m.payload for m in second.messages) == sorted(
                m.payload for m in first.messages
            )
            with pytest.raises(BrokerUnavailable, match="4 landed messages were not acknowledged"):
                first.acknowledge()
            second.acknowledge()
    with drain(settings, idle_seconds=IDLE) as batch:
        assert batch.messages == []


def test_a_drain_is_bounded_in_time_while_messages_keep_coming():
    settings = system_broker("5")
    root = topic_root(settings)
    open_session(settings)
    publish(settings, [(f"{root}/s/d", b"{}")])
    with drain(settings, idle_seconds=5, max_seconds=0.5) as batch:
        # the idle gap (5 s) never came: max_seconds ended the drain
        assert batch.stopped_by == "max_seconds" and len(batch.messages) == 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_messages_reach_a_new_session(protocol):
    settings = system_broker(protocol)
    root = topic_root(settings)
    retained = (f"{root}/site/dev", b'{"temperature": 21.0, "ts": 1}')
    publish(settings, [retained], retain=True)
    try:
        # a session that did not exist when it was published still receives it, flagged retain
        with drain(settings, idle_seconds=IDLE) as batch:
            assert [(m.topic, m.payload, m.retain) for m in batch.messages] == [(*retained, True)]
            batch.acknowledge()
        with drain(settings, idle_seconds=IDLE) as batch:
            again = [(m.topic, m.payload, m.retain) for m in batch.messages]
            batch.acknowledge()
        if protocol == "5":
            # MQTT 5 asks for retained messages only when the subscription is new
            assert again == []
        else:
            # MQTT 3.1.1 re-subscribing sends them again each run (raw de-duplicates them)
            assert again == [(*retained, True)]
    finally:
        publish(settings, [(retained[0], b"")], retain=True)  # an empty payload clears it


def test_qos0_messages_are_kept_only_while_a_run_is_connected():
    settings = system_broker("5")
    root = topic_root(settings)
    open_session(settings)
    # published at QoS 0 while no run is connected: the broker does not keep them
    publish(settings, [(f"{root}/s/d", b"offline-qos0")], qos=0)
    publish(settings, [(f"{root}/s/d", b"offline-qos1")], qos=1)  # ordering marker
    with drain(settings, idle_seconds=IDLE) as batch:
        assert [m.payload for m in batch.messages] == [b"offline-qos1"]
        batch.acknowledge()

    # while a run is connected, a QoS 0 message is delivered (at QoS 0: nothing to acknowledge)
    session = drain(settings, idle_seconds=IDLE, max_messages=2).open()
    try:
        publish(settings, [(f"{root}/s/d", b"live-qos0")], qos=0)
        publish(settings, [(f"{root}/s/d", b"live-qos1")], qos=1)
        received = session.collect()
        assert [(m.payload, m.qos) for m in received] == [(b"live-qos0", 0), (b"live-qos1", 1)]
    finally:
        session.close()  # the run dies before landing: no acknowledgement
    # the QoS 1 message comes again; the QoS 0 one is gone for good
    with drain(settings, idle_seconds=IDLE) as batch:
        assert [(m.payload, m.dup) for m in batch.messages] == [(b"live-qos1", True)]
        batch.acknowledge()


def test_simulate_to_mqtt_publishes_the_fleet_on_template_topics(tmp_path, capsys):
    settings = system_broker("5")
    open_session(settings)
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    code = cli_main(
        [
            "simulate",
            "--to",
            "mqtt",
            "--minutes",
            "1",
            "--start",
            start.isoformat(),
            "--mqtt-port",
            str(settings.port),
            "--mqtt-topic-template",
            settings.topic_template,
        ]
    )
    assert code == 0
    published = int(capsys.readouterr().err.split()[1])
    lake = Lake(str(tmp_path / "lake"))
    with drain(settings, idle_seconds=IDLE) as batch:
        assert len(batch.messages) == published > 0
        hours = land(lake, batch)
        batch.acknowledge()
    raw = raw_readings(lake, hours)
    sites = {d.device_id: d.site_id for d in load_fleet(None).devices}
    assert {r["device_id"] for r in raw.to_pylist()} <= set(sites)
    for topic in {m.topic for m in batch.messages}:
        _, site, device = topic.rsplit("/", 2)
        assert sites[device] == site
    assert quarantined(lake) == []


def test_a_drain_without_a_kept_session_warns_that_messages_were_not_kept():
    from sensor_platform.mqtt.source import MqttSource

    source = MqttSource(system_broker("5"), idle_seconds=IDLE)
    with source.read({}) as first:  # no session for this client id yet
        assert first.summary()["mqtt_session_present"] is False
        [warning] = first.warnings()
        assert "had no session" in warning and source.settings.client_id in warning
    with source.read({}) as second:  # the broker kept the session of the first drain
        assert second.summary()["mqtt_session_present"] is True
        assert second.warnings() == []
