"""Kafka ingestion end to end against a real Kafka-protocol broker (Tansu): sensor ticks, runs,
landing, raw partitions, quarantine, lost data, commits, and simulator -> topic -> aggregates."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pyarrow.compute as pc
import pytest
from kafka import KafkaConsumer, TopicPartition

from sensor_platform.datasets import REGISTRY
from sensor_platform.defs.ingest import landing_job, source_named
from sensor_platform.defs.partitions import Partitions
from sensor_platform.defs.raw import raw_asset
from sensor_platform.defs.resources import (
    AlertsResource,
    AnomalyRulesResource,
    KafkaResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)
from sensor_platform.kafka import client as kafka_client
from sensor_platform.kafka.broker import start_local_broker
from sensor_platform.kafka.client import ensure_topic, produce
from sensor_platform.kafka.offsets import PartitionState
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.kafka.source import KafkaDataLost
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.readings.normalize import Message, normalize_messages
from sensor_platform.readings.schema import QUARANTINE_SCHEMA, READING_SCHEMA
from sensor_platform_tests.conftest import free_port
from sensor_platform_tests.platform import definitions_for, hour_key

pytestmark = pytest.mark.integration  # Dagster runs

# The platform's sensors and assets; each test gives the resources it runs them with.
PLATFORM = definitions_for(Path("data"))
kafka_ingest_sensor = PLATFORM.resolve_sensor_def("kafka_ingest_sensor")
raw_partitions_sensor = PLATFORM.resolve_sensor_def("raw_partitions_sensor")
raw_sensor_readings = raw_asset(REGISTRY.raw, Partitions.starting("2026-01-01"))
kafka_ingest_job = landing_job(source_named("kafka"))

# Recent event times: the normalizer judges them against the Kafka record timestamp (now).
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
PLUS_TWO = timezone(timedelta(hours=2))


class QuickKafkaResource(KafkaResource):
    """The production resource with a short request timeout, so a dead broker is reported fast."""

    def settings(self) -> KafkaSettings:
        return dataclasses.replace(super().settings(), request_timeout_ms=500)


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- payload shapes (see test_normalize.py), each with the readings it must become --------------


def fire(i: int, at: datetime):
    values = {
        "temperature": 20 + i / 10,
        "humidity": 50 + i,
        "smoke_density": i / 1000,
        "co_level": 0.5,
        "gas_level": 2.0 + i,
    }
    payload = {
        "equipment_id": f"EQ{i:03d}",
        "facility_id": "FAC1",
        "equipment_location": "Building A",
        "measured_at": iso(at),
        **values,
    }
    return payload, [(f"EQ{i:03d}", m, us(at), float(v)) for m, v in values.items()]


def farm(i: int, at: datetime):
    stamp = int(at.timestamp())
    payload = {
        "device_id": f"GH-{i}",
        "greenhouse_id": "GH1",
        "timestamp": stamp,
        "temperature": 23.5,
        "humidity": 61.0,
        "co2": str(400 + i),
        "error_code": "1",
    }
    seconds = datetime.fromtimestamp(stamp, UTC)
    return payload, [
        (f"GH-{i}", "temperature", us(seconds), 23.5),
        (f"GH-{i}", "humidity", us(seconds), 61.0),
        (f"GH-{i}", "co2", us(seconds), float(400 + i)),
    ]


def single(i: int, at: datetime):
    payload = {
        "sensor_id": f"S-{i}",
        "type": "temperature",
        "unit": "°F",
        "value": 70 + i,
        "timestamp": at.astimezone(PLUS_TWO).isoformat(),
        "location": "Kitchen",
    }
    # °F is converted to °C on the way in (readings/units.py).
    return payload, [(f"S-{i}", "temperature", us(at), (70 + i - 32) * 5 / 9)]


def canonical(i: int, at: datetime):
    payload = {
        "device_id": f"dev-{i}",
        "site_id": "site-1",
        "metric": "pressure_bar",
        "value": str(1 + i / 100),
        "unit": "bar",
        "status_code": 7,
        "event_time": iso(at),
    }
    return payload, [(f"dev-{i}", "pressure_bar", us(at), 1 + i / 100)]


def array(i: int, at: datetime):
    first, first_rows = fire(1000 + i, at)
    second, second_rows = canonical(1000 + i, at + timedelta(seconds=1))
    return [first, second], first_rows + second_rows


SHAPES = [fire, farm, single, canonical, array]


def shaped_messages(count: int, offset: int = 0) -> tuple[list[bytes], list[tuple]]:
    """`count` messages cycling through every shape, 2 minutes apart across two hours."""
    payloads, expected = [], []
    for i in range(offset, offset + count):
        payload, rows = SHAPES[i % len(SHAPES)](i, BASE + timedelta(minutes=2 * i))
        payloads.append(orjson.dumps(payload))
        expected.extend(rows)
    return payloads, expected


# -- running the pieces like the daemon would ---------------------------------------------------


def kafka_resource(bootstrap: str, **config) -> KafkaResource:
    return KafkaResource(bootstrap_servers=bootstrap, **config)


def tick(instance, resource: KafkaResource, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"kafka": resource}
    )
    return kafka_ingest_sensor(context)


def run_range(instance, request: dg.RunRequest, resource, lake: Lake, raise_on_error=True):
    return kafka_ingest_job.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        resources={
            "kafka": resource,
            "lake": LakeResource(root=lake.root_uri),
            "pipeline": PipelineResource(),
            "anomaly_rules": AnomalyRulesResource(),
            "warehouse": WarehouseResource(url=f"duckdb:///{lake.full_path('warehouse.duckdb')}"),
            "alerts": AlertsResource(),  # no channel: the fast alarm path has nothing to do
        },
        raise_on_error=raise_on_error,
    )


def materialize_raw(instance, lake: Lake, retention_hours: int = 24) -> list[str]:
    """Materialize every raw partition the raw partitions sensor asks for; their keys."""
    resources = {
        "lake": LakeResource(root=lake.root_uri),
        "pipeline": PipelineResource(landing_retention_hours=retention_hours),
    }
    context = dg.build_sensor_context(instance=instance, resources=resources)
    keys = [r.partition_key for r in raw_partitions_sensor(context).run_requests]
    for key in keys:
        result = dg.materialize(
            [raw_sensor_readings], partition_key=key, resources=resources, instance=instance
        )
        assert result.success
    return keys


def raw_rows(lake: Lake) -> list[dict]:
    files = [f.path for f in lake.list_files(layout.RAW)]
    return lake.read_parquet(files, READING_SCHEMA).to_pylist()


def lake_bytes(lake: Lake, prefix: str = "") -> dict[str, bytes]:
    return {
        f.path: lake.fs.open_input_file(lake.full_path(f.path)).read()
        for f in lake.list_files(prefix)
    }


def new_topic(broker, name: str, partitions: int) -> KafkaSettings:
    settings = KafkaSettings(broker.bootstrap, topics=(name,))
    assert ensure_topic(settings, name, partitions)
    return settings


# -- every payload shape, several topics and partitions, exactly once ---------------------------

SHAPE_TOPICS = {"ingest.shapes.a": 3, "ingest.shapes.b": 2}


@pytest.fixture(scope="module")
def ingested(kafka_broker, tmp_path_factory):
    """Every shape produced to 5 partitions of 2 topics (one message delivered twice), ingested
    through sensor ticks and runs, and compacted into raw partitions."""
    expected, produced, index = [], {}, 0
    produce_started = datetime.now(UTC)
    for topic, partitions in SHAPE_TOPICS.items():
        settings = new_topic(kafka_broker, topic, partitions)
        for partition in range(partitions):
            payloads, rows = shaped_messages(11, offset=index)
            index += 11
            if (topic, partition) == ("ingest.shapes.a", 1):
                payloads.append(payloads[3])  # a producer retry: the same message twice
            produce(settings, topic, [(None, p) for p in payloads], partition=partition)
            produced[(topic, partition)] = len(payloads)
            expected.extend(rows)
    produce_ended = datetime.now(UTC)
    resource = kafka_resource(
        kafka_broker.bootstrap, topic_pattern=r"ingest\.shapes\..*", max_records_per_run=4
    )
    instance = dg.DagsterInstance.ephemeral()
    lake = Lake(str(tmp_path_factory.mktemp("shapes") / "lake"))
    result = tick(instance, resource)
    for request in result.run_requests:
        assert run_range(instance, request, resource, lake).success
    hours = materialize_raw(instance, lake)
    return {
        "instance": instance,
        "lake": lake,
        "resource": resource,
        "result": result,
        "expected": expected,
        "produced": produced,
        "hours": hours,
        "produced_between": (produce_started - timedelta(milliseconds=1), produce_ended),
    }


def test_every_payload_shape_lands_in_raw_exactly_once(ingested):
    rows = raw_rows(ingested["lake"])
    got = sorted((r["device_id"], r["metric"], us(r["event_time"]), r["value"]) for r in rows)
    assert got == sorted(ingested["expected"])  # same count, same values, no duplicates
    assert len({r["reading_id"] for r in rows}) == len(rows)
    # every reading names the exact message it came from
    sources = {r["source"] for r in rows}
    assert sources <= {
        f"kafka:{t}/{p}/{o}" for (t, p), n in ingested["produced"].items() for o in range(n)
    }
    assert len(ingested["hours"]) >= 2  # the messages span more than one hour
    # ingest_time is the Kafka record timestamp, so a re-read yields the same rows
    first, last = ingested["produced_between"]
    assert all(first <= r["ingest_time"] <= last for r in rows)


def test_sensor_chunks_every_partition_into_bounded_ranges(ingested):
    result, produced = ingested["result"], ingested["produced"]
    keys = [r.run_key for r in result.run_requests]
    assert len(set(keys)) == len(keys)
    covered: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for request in result.run_requests:
        config = request.run_config["ops"]["land_kafka_range"]["config"]
        start, end = config["start"], config["end"]
        assert request.run_key == f"{config['topic']}/{config['partition']}/{start}-{end}"
        assert 0 < end - start <= 4 and config["epoch"] == 0
        covered.setdefault((config["topic"], config["partition"]), []).append((start, end))
    for tp, spans in covered.items():  # contiguous from 0 to the end, no overlap
        assert [s for s, _ in spans] == [0, *[e for _, e in spans[:-1]]]
        assert spans[-1][1] == produced[tp]
    assert set(covered) == set(produced)
    cursor = json.loads(result.cursor)
    assert cursor["offsets"] == {f"{t}/{p}": n for (t, p), n in produced.items()}
    [lag, check] = result.asset_events
    assert lag.asset_key == dg.AssetKey("kafka_topics")
    assert lag.metadata["total_lag"].value == sum(produced.values())  # nothing landed yet
    assert "records/s in ingest.shapes.a/0" not in lag.metadata  # a first tick has no rate yet
    assert (check.check_name, check.passed) == ("no_stuck_ranges", True)
    # once every run has landed, the next tick has nothing to do and reports no lag
    again = tick(ingested["instance"], ingested["resource"], result.cursor)
    assert not again.run_requests
    assert json.loads(again.cursor)["pending"] == {}
    figures = again.asset_events[0].metadata
    assert figures["total_lag"].value == 0
    landed = sum(figures[f"records/s landed {t}/{p}"].value for t, p in produced)
    assert landed > 0  # every range landed between the two ticks


def test_reexecuting_a_finished_run_changes_nothing(ingested):
    instance, lake = ingested["instance"], ingested["lake"]
    before = lake_bytes(lake)
    for request in ingested["result"].run_requests[:3]:
        assert run_range(instance, request, ingested["resource"], lake).success
    assert lake_bytes(lake) == before  # the same files with the same bytes
    assert materialize_raw(instance, lake) == []  # nothing new for the raw partitions


def test_a_run_killed_midway_and_retried_lands_exactly_what_a_clean_run_lands(
    kafka_broker, tmp_path, monkeypatch
):
    settings = new_topic(kafka_broker, "ingest.crash", 1)
    payloads, _ = shaped_messages(40)  # 80 minutes of messages: one range, 2-3 landing files
    produce(settings, "ingest.crash", [(None, p) for p in payloads], partition=0)
    resource = kafka_resource(kafka_broker.bootstrap, topics=["ingest.crash"])
    instance = dg.DagsterInstance.ephemeral()
    [request] = tick(instance, resource).run_requests
    clean, crashed = Lake(str(tmp_path / "clean")), Lake(str(tmp_path / "crashed"))
    assert run_range(instance, request, resource, clean).success
    materialize_raw(instance, clean)

    real_write, writes = Lake.write_parquet, []

    def write_then_crash(self, relpath, data):
        if writes:
            raise OSError("simulated crash after the first landing file")
        writes.append(relpath)
        return real_write(self, relpath, data)

    monkeypatch.setattr(Lake, "write_parquet", write_then_crash)
    assert not run_range(instance, request, resource, crashed, raise_on_error=False).success
    monkeypatch.setattr(Lake, "write_parquet", real_write)
    assert [f.path for f in crashed.list_files(layout.LANDING)] == writes
    materialize_raw(instance, crashed)  # the raw sensor may merge the partial batch meanwhile
    assert run_range(instance, request, resource, crashed).success  # the retry
    materialize_raw(instance, crashed)
    assert lake_bytes(crashed, layout.LANDING) == lake_bytes(clean, layout.LANDING)
    assert sorted(raw_rows(crashed), key=str) == sorted(raw_rows(clean), key=str)


# -- sensor ticks ------------------------------------------------------------------------------


def test_ticks_move_the_cursor_pick_up_new_partitions_and_topics(kafka_broker, tmp_path):
    settings = new_topic(kafka_broker, "ingest.ticks", 3)
    for partition, count in {0: 25, 1: 3, 2: 4}.items():
        produce(settings, "ingest.ticks", [(None, b"{}")] * count, partition=partition)
    resource = kafka_resource(
        kafka_broker.bootstrap, topic_pattern=r"ingest\.ticks(\.[a-z]+)?", max_records_per_run=10
    )
    instance, lake = dg.DagsterInstance.ephemeral(), Lake(str(tmp_path / "lake"))
    # partition 2 is new to this cursor: it is planned from its earliest offset
    cursor = json.dumps({"offsets": {"ingest.ticks/0": 0, "ingest.ticks/1": 0}})
    first = tick(instance, resource, cursor)
    assert [r.run_key for r in first.run_requests] == [
        "ingest.ticks/0/0-10",
        "ingest.ticks/0/10-20",
        "ingest.ticks/0/20-25",
        "ingest.ticks/1/0-3",
        "ingest.ticks/2/0-4",
    ]
    state = json.loads(first.cursor)
    assert state["offsets"] == {"ingest.ticks/0": 25, "ingest.ticks/1": 3, "ingest.ticks/2": 4}
    assert first.run_requests[1].tags["sensor_platform/batch_id"] == "kafka-ingest.ticks-p0-10-20"

    # two ranges land, out of order: the lag counts what is not in the lake yet
    for request in (first.run_requests[0], first.run_requests[2]):
        assert run_range(instance, request, resource, lake).success
    produce(settings, "ingest.ticks", [(None, b"{}")] * 5, partition=1)
    new_settings = new_topic(kafka_broker, "ingest.ticks.late", 1)
    produce(new_settings, "ingest.ticks.late", [(None, b"{}")] * 2, partition=0)
    second = tick(instance, resource, first.cursor)
    assert [r.run_key for r in second.run_requests] == [
        "ingest.ticks/1/3-8",
        "ingest.ticks.late/0/0-2",
    ]
    state = json.loads(second.cursor)
    assert state["pending"]["ingest.ticks/0"] == [[10, 20]]
    lag = second.asset_events[0].metadata
    assert lag["lag ingest.ticks/0"].value == 15 and lag["lag ingest.ticks/1"].value == 8
    assert lag["lag ingest.ticks.late/0"].value == 2


def test_offsets_are_committed_only_up_to_the_first_range_not_landed(kafka_broker, tmp_path):
    settings = new_topic(kafka_broker, "ingest.commit", 1)
    produce(settings, "ingest.commit", [(None, b"{}")] * 30, partition=0)
    resource = kafka_resource(
        kafka_broker.bootstrap,
        topics=["ingest.commit"],
        max_records_per_run=10,
        consumer_group="lake-commit-test",
    )
    instance, lake = dg.DagsterInstance.ephemeral(), Lake(str(tmp_path / "lake"))
    tp = TopicPartition("ingest.commit", 0)

    def committed() -> int | None:
        with KafkaConsumer(
            bootstrap_servers=kafka_broker.bootstrap,
            group_id="lake-commit-test",
            enable_auto_commit=False,
        ) as consumer:
            return consumer.committed(tp)

    first = tick(instance, resource)
    assert committed() == 0  # planned is not durable
    for request in first.run_requests[1:]:  # 10-20 and 20-30 land before 0-10
        assert run_range(instance, request, resource, lake).success
    second = tick(instance, resource, first.cursor)
    assert committed() == 0
    assert run_range(instance, first.run_requests[0], resource, lake).success
    tick(instance, resource, second.cursor)
    assert committed() == 30


def test_broker_down_reports_and_keeps_the_cursor():
    resource = QuickKafkaResource(bootstrap_servers=f"127.0.0.1:{free_port()}", topics=["x"])
    cursor = json.dumps({"offsets": {"x/0": 7}})
    result = tick(dg.DagsterInstance.ephemeral(), resource, cursor)
    assert "unavailable" in result.skip_reason.skip_message
    assert result.cursor is None and not result.run_requests


def test_broker_that_lost_its_data_under_each_policy(tmp_path):
    """The broker restarts empty (Tansu keeps data in memory) and gets fewer records than the
    cursor has seen: the partition now ends before the cursor."""
    port = free_port()
    instance, lake = dg.DagsterInstance.ephemeral(), Lake(str(tmp_path / "lake"))
    with start_local_broker(port) as broker:
        settings = new_topic(broker, "ingest.reset", 1)
        produce(settings, "ingest.reset", [(None, p) for p in shaped_messages(10)[0]], partition=0)
        resource = kafka_resource(broker.bootstrap, topics=["ingest.reset"])
        before = tick(instance, resource)
        assert run_range(instance, before.run_requests[0], resource, lake).success
    with start_local_broker(port) as broker:
        settings = new_topic(broker, "ingest.reset", 1)
        produce(
            settings, "ingest.reset", [(None, p) for p in shaped_messages(4, 50)[0]], partition=0
        )

        def under(policy: str) -> dg.SensorResult:
            resource = kafka_resource(broker.bootstrap, topics=["ingest.reset"], on_gap=policy)
            return tick(instance, resource, before.cursor)

        with pytest.raises(
            KafkaDataLost, match=r"ingest\.reset/0: expected offset 10.*on_gap=fail"
        ):
            under("fail")

        earliest = under("earliest")
        [request] = earliest.run_requests
        assert request.run_key == "ingest.reset/0/0-4@e1"  # never the run key of the old 0-4
        assert request.tags["sensor_platform/batch_id"] == "kafka-ingest.reset-p0-0-4-e1"
        state = json.loads(earliest.cursor)
        assert state["offsets"] == {"ingest.reset/0": 4}
        assert state["epochs"] == {"ingest.reset/0": 1}
        assert "expected offset 10, resumable at 0" in state["gaps"][-1]["message"]
        assert "expected offset 10" in earliest.asset_events[0].metadata["data_lost"].value
        assert run_range(instance, request, resource, lake).success
        assert len(lake.list_files(layout.LANDING)) >= 2  # the old batch is kept beside the new

        latest = under("latest")
        assert not latest.run_requests
        state = json.loads(latest.cursor)
        assert state["offsets"] == {"ingest.reset/0": 4} and state["pending"] == {}
        assert "resumable at 4" in state["gaps"][-1]["message"]


@pytest.mark.parametrize(("policy", "resumed"), [("fail", None), ("earliest", 6), ("latest", 9)])
def test_offsets_removed_by_retention_under_each_policy(kafka_broker, monkeypatch, policy, resumed):
    topic = f"ingest.retention.{policy}"
    settings = new_topic(kafka_broker, topic, 1)
    produce(settings, topic, [(None, b"{}")] * 9, partition=0)

    # Tansu implements neither retention nor DeleteRecords: raise the earliest offset it reports.
    def truncated(settings, partitions):
        return [PartitionState(topic, 0, earliest=6, end=9) for _ in partitions]

    monkeypatch.setattr(kafka_client, "partition_states", truncated)
    resource = kafka_resource(kafka_broker.bootstrap, topics=[topic], on_gap=policy)
    cursor = json.dumps({"offsets": {f"{topic}/0": 2}})
    if resumed is None:
        with pytest.raises(KafkaDataLost, match="retention removed offsets below the earliest"):
            tick(dg.DagsterInstance.ephemeral(), resource, cursor)
        return
    result = tick(dg.DagsterInstance.ephemeral(), resource, cursor)
    assert [r.run_key for r in result.run_requests] == ([f"{topic}/0/6-9"] if resumed < 9 else [])
    state = json.loads(result.cursor)
    assert state["offsets"] == {f"{topic}/0": 9} and state["epochs"] == {}  # offsets go on
    assert f"expected offset 2, resumable at {resumed}" in state["gaps"][-1]["message"]


# -- quarantine and landing cleanup -------------------------------------------------------------


def test_malformed_messages_are_quarantined_with_their_offsets(kafka_broker, tmp_path):
    settings = new_topic(kafka_broker, "ingest.bad", 1)
    good, _ = shaped_messages(3)
    no_device = orjson.dumps({"ts": int(BASE.timestamp()), "co2": 1})
    mixed = orjson.dumps([orjson.loads(good[2]), 7])  # a good element and a bad one
    messages = [good[0], b"not json", no_device, good[1], b"", mixed]
    produce(settings, "ingest.bad", [(None, m) for m in messages], partition=0)
    resource = kafka_resource(kafka_broker.bootstrap, topics=["ingest.bad"])
    instance, lake = dg.DagsterInstance.ephemeral(), Lake(str(tmp_path / "lake"))
    result = tick(instance, resource)
    [request] = result.run_requests
    assert run_range(instance, request, resource, lake).success
    quarantine = lake.read_parquet(
        [f.path for f in lake.list_files(layout.QUARANTINE)], QUARANTINE_SCHEMA
    ).to_pylist()
    assert [(q["source"], q["reason"]) for q in quarantine] == [
        ("kafka:ingest.bad/0/1", "not_json"),
        ("kafka:ingest.bad/0/2", "missing_device_id"),
        ("kafka:ingest.bad/0/4", "not_json"),
        ("kafka:ingest.bad/0/5", "not_object"),
    ]
    assert quarantine[0]["raw"] == b"not json"
    assert {q["batch_id"] for q in quarantine} == {"kafka-ingest.bad-p0-0-6"}
    materialize_raw(instance, lake)
    assert {r["source"] for r in raw_rows(lake)} == {
        "kafka:ingest.bad/0/0",
        "kafka:ingest.bad/0/3",
        "kafka:ingest.bad/0/5",
    }
    # the offsets moved past the bad messages: nothing is asked again
    assert json.loads(result.cursor)["offsets"] == {"ingest.bad/0": 6}
    assert not tick(instance, resource, result.cursor).run_requests


def test_landing_files_are_removed_only_after_raw_has_them_and_retention_passed(
    kafka_broker, tmp_path
):
    settings = new_topic(kafka_broker, "ingest.cleanup", 1)
    payloads, expected = shaped_messages(20)
    produce(settings, "ingest.cleanup", [(None, p) for p in payloads], partition=0)
    resource = kafka_resource(kafka_broker.bootstrap, topics=["ingest.cleanup"])
    instance, lake = dg.DagsterInstance.ephemeral(), Lake(str(tmp_path / "lake"))
    [request] = tick(instance, resource).run_requests
    assert run_range(instance, request, resource, lake).success
    landed = lake.list_files(layout.LANDING)
    hours = materialize_raw(instance, lake, retention_hours=24)
    assert lake.list_files(layout.LANDING) == landed  # merged, but inside the retention
    rows = raw_rows(lake)
    assert len(rows) == len(expected)
    resources = {
        "lake": LakeResource(root=lake.root_uri),
        "pipeline": PipelineResource(landing_retention_hours=0),
    }
    for key in hours:
        dg.materialize(
            [raw_sensor_readings], partition_key=key, resources=resources, instance=instance
        )
    assert lake.list_files(layout.LANDING) == []
    assert sorted(raw_rows(lake), key=str) == sorted(rows, key=str)  # raw keeps every reading


def test_late_readings_join_their_hour_already_in_raw(kafka_broker, tmp_path):
    settings = new_topic(kafka_broker, "ingest.late", 1)
    payloads, expected = shaped_messages(10)  # the first 20 minutes of an hour
    produce(settings, "ingest.late", [(None, p) for p in payloads[:6]], partition=0)
    resource = kafka_resource(kafka_broker.bootstrap, topics=["ingest.late"])
    instance, lake = dg.DagsterInstance.ephemeral(), Lake(str(tmp_path / "lake"))
    first = tick(instance, resource)
    assert run_range(instance, first.run_requests[0], resource, lake).success
    assert materialize_raw(instance, lake) == [hour_key(BASE)]
    produce(settings, "ingest.late", [(None, p) for p in payloads[6:]], partition=0)
    [late] = tick(instance, resource, first.cursor).run_requests
    assert late.run_key == "ingest.late/0/6-10"
    assert run_range(instance, late, resource, lake).success
    assert materialize_raw(instance, lake) == [hour_key(BASE)]  # the same hour, again
    rows = raw_rows(lake)
    assert sorted((r["device_id"], r["metric"], us(r["event_time"])) for r in rows) == sorted(
        row[:3] for row in expected
    )


# -- simulator -> topic -> sensor -> runs -> raw -> aggregates ---------------------------------


def test_simulated_fleet_through_kafka_to_the_warehouse(kafka_broker, tmp_path, monkeypatch):
    from sensor_platform.cli import main
    from sensor_platform.simulator.fleet import load_fleet
    from sensor_platform.simulator.generate import simulate

    topic = "ingest.fleet"
    new_topic(kafka_broker, topic, 2)
    start = BASE + timedelta(minutes=30)
    argv = (
        f"simulate --to kafka --topic {topic} --minutes 60 --seed 5 --start {start.isoformat()} "
        f"--bootstrap-servers {kafka_broker.bootstrap}"
    ).split()
    assert main(argv) == 0
    simulated = list(simulate(load_fleet(), start, start + timedelta(minutes=60), seed=5))
    expected = normalize_messages(
        [Message(m.payload, "sim", datetime.now(UTC)) for m in simulated], batch_id="expected"
    ).readings

    definitions = definitions_for(
        tmp_path / "data",
        SENSOR_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
        SENSOR_KAFKA_TOPICS=topic,
    )
    instance = dg.DagsterInstance.ephemeral()
    resources = {"kafka": definitions.resources["kafka"], "lake": definitions.resources["lake"]}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    requests = kafka_ingest_sensor(context).run_requests
    assert [r.run_key.rsplit("/", 1)[0] for r in requests] == [f"{topic}/0", f"{topic}/1"]
    for request in requests:
        result = definitions.resolve_job_def("kafka_ingest_job").execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance
        )
        assert result.success
    hours = [
        r.partition_key
        for r in raw_partitions_sensor(
            dg.build_sensor_context(instance=instance, resources=resources)
        ).run_requests
    ]
    assert hours == sorted(hours) and hours[0] == hour_key(BASE)

    def run_range_of(job: str, first: str, last: str) -> None:
        tags = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        }
        result = definitions.resolve_job_def(job).execute_in_process(instance=instance, tags=tags)
        assert result.success

    run_range_of("raw_job", hours[0], hours[-1])
    run_range_of("rollups_job", hours[0][:10], hours[-1][:10])

    lake = Lake(str(tmp_path / "data" / "lake"))
    rows = raw_rows(lake)
    assert sorted(r["reading_id"] for r in rows) == sorted(expected["reading_id"].to_pylist())
    assert {r["source"].rsplit("/", 1)[0] for r in rows} == {f"kafka:{topic}/0", f"kafka:{topic}/1"}
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    for table in ("sensor_readings_minute", "sensor_readings_hourly", "sensor_readings_daily"):
        (total,) = con.execute(f"SELECT sum(reading_count) FROM {table}").fetchone()  # noqa: S608 - fixed names
        assert total == len(rows) == expected.num_rows, table
    con.close()
    assert pc.sum(expected["value"]).as_py() == pytest.approx(sum(r["value"] for r in rows))


# -- a failed range is requested again, under a new run key and the same batch id ---------------


def test_a_failed_range_is_requested_again_with_backoff_then_lands(
    kafka_broker, tmp_path, monkeypatch
):
    topic = "ingest.retry"
    settings = new_topic(kafka_broker, topic, 1)
    good = orjson.dumps({"device_id": "d", "metric": "m", "value": 1.0, "ts": BASE.isoformat()})
    produce(settings, topic, [(None, good)] * 3, partition=0)
    resource = kafka_resource(kafka_broker.bootstrap, topics=[topic])
    instance = dg.DagsterInstance.ephemeral()
    first = tick(instance, resource)
    [request] = first.run_requests
    assert request.run_key == f"{topic}/0/0-3"
    blocked = tmp_path / "a-file"  # a lake root under a file: landing fails
    blocked.write_text("x")
    assert not run_range(instance, request, resource, Lake(str(blocked / "lake")), False).success

    second = tick(instance, resource, first.cursor)
    assert second.run_requests == []  # backoff: not yet
    assert json.loads(second.cursor)["retries"][f"{topic}/0"]["0-3"]["failures"] == 1

    later = datetime.now(UTC) + timedelta(minutes=2)
    monkeypatch.setattr(
        "sensor_platform.defs.ingest.datetime",
        type("Later", (datetime,), {"now": classmethod(lambda cls, tz=None: later)}),
    )
    third = tick(instance, resource, second.cursor)
    [retry] = third.run_requests
    assert retry.run_key == f"{topic}/0/0-3#attempt-2"
    assert retry.tags["sensor_platform/batch_id"] == request.tags["sensor_platform/batch_id"]
    lake = Lake(str(tmp_path / "lake"))
    assert run_range(instance, retry, resource, lake).success
    state = json.loads(tick(instance, resource, third.cursor).cursor)
    assert state["pending"] == {} and state["retries"] == {}
    assert len(raw_rows_landed(lake)) == 3


def raw_rows_landed(lake: Lake) -> list[dict]:
    files = [f.path for f in lake.list_files(layout.LANDING)]
    return lake.read_parquet(files, READING_SCHEMA).to_pylist()
