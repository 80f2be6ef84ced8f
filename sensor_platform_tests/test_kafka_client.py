"""Kafka client functions against a real Kafka-protocol broker (Tansu, the session's kafka_broker)."""

import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from sensor_platform.kafka.broker import LocalBroker
from sensor_platform.kafka.client import (
    BrokerUnavailable,
    KafkaRangeError,
    commit_offsets,
    ensure_topic,
    list_partitions,
    partition_states,
    produce,
    read_range,
)
from sensor_platform.kafka.offsets import OffsetRange, PartitionState, plan_ranges
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform_tests.conftest import free_port

TOPICS = ("sensors.alpha", "sensors.beta")
# Records per partition, sent in two produce calls each (so partitions hold several batches).
COUNTS = {0: 12, 1: 30, 2: 0}


def value(topic: str, partition: int, i: int) -> bytes:
    return f'{{"topic":"{topic}","p":{partition},"i":{i}}}'.encode()


@pytest.fixture(scope="module")
def loaded(kafka_broker: LocalBroker) -> KafkaSettings:
    settings = KafkaSettings(kafka_broker.bootstrap, topics=TOPICS, request_timeout_ms=5_000)
    for topic in TOPICS:
        assert ensure_topic(settings, topic, 3) is True
        for partition, count in COUNTS.items():
            half = count // 2
            for lo, hi in ((0, half), (half, count)):
                messages = [
                    (f"dev-{i}".encode(), value(topic, partition, i)) for i in range(lo, hi)
                ]
                assert produce(settings, topic, messages, partition=partition) == hi - lo
    return settings


def test_ensure_topic_reports_an_existing_topic(loaded: KafkaSettings):
    assert ensure_topic(loaded, "sensors.alpha", 3) is False


def test_list_partitions_of_explicit_topics(loaded: KafkaSettings):
    assert list_partitions(loaded) == [(t, p) for t in TOPICS for p in range(3)]


def test_list_partitions_by_pattern_picks_up_topics_created_later(loaded: KafkaSettings):
    by_pattern = KafkaSettings(loaded.bootstrap_servers, topic_pattern=r"fleet\.[a-z]+")
    ensure_topic(loaded, "fleet.north", 2)
    ensure_topic(loaded, "old-fleet.west", 1)  # contains a match, but the whole name does not
    assert list_partitions(by_pattern) == [("fleet.north", 0), ("fleet.north", 1)]
    ensure_topic(loaded, "fleet.south", 1)
    assert list_partitions(by_pattern) == [
        ("fleet.north", 0),
        ("fleet.north", 1),
        ("fleet.south", 0),
    ]


def test_listing_a_missing_topic_does_not_create_it(loaded: KafkaSettings):
    missing = KafkaSettings(loaded.bootstrap_servers, topics=("never.created",))
    assert list_partitions(missing) == []
    with KafkaConsumer(bootstrap_servers=loaded.bootstrap_servers) as consumer:
        assert "never.created" not in consumer.topics()


def test_partition_states_are_exact(loaded: KafkaSettings):
    states = partition_states(loaded, list_partitions(loaded))
    assert states == [PartitionState(t, p, 0, COUNTS[p]) for t in TOPICS for p in range(3)]


def test_partition_end_comes_from_the_fetch_high_watermark_not_list_offsets(
    loaded: KafkaSettings,
):
    topic, tp = "quirk", TopicPartition("quirk", 0)
    ensure_topic(loaded, topic, 1)
    produce(loaded, topic, [(None, b"first batch %d" % i) for i in range(10)], partition=0)
    produce(loaded, topic, [(None, b"second batch %d" % i) for i in range(5)], partition=0)

    with KafkaConsumer(bootstrap_servers=loaded.bootstrap_servers) as consumer:
        listed_end = consumer.end_offsets([tp])[tp]
        consumer.assign([tp])
        consumer.seek(tp, 0)
        deadline = time.monotonic() + 5
        while consumer.highwater(tp) is None and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
        highwater = consumer.highwater(tp)
    # Tansu answers ListOffsets(latest) with the last batch's base offset + 1 (here 11); the
    # fetch response's high watermark is the true end. Apache Kafka would give 15 for both.
    assert highwater == 15
    assert listed_end < highwater, "the broker no longer shows the ListOffsets quirk"
    assert partition_states(loaded, [(topic, 0)]) == [PartitionState(topic, 0, 0, 15)]
    records = read_range(loaded, OffsetRange(topic, 0, 0, 15), timeout_s=5)
    assert [r.offset for r in records] == list(range(15))


def test_read_range_returns_exactly_the_middle_of_a_partition(loaded: KafkaSettings):
    # 3..25 spans both produced batches of sensors.beta/1 (0-14 and 15-29).
    records = read_range(loaded, OffsetRange("sensors.beta", 1, 3, 25), timeout_s=5)
    assert [r.offset for r in records] == list(range(3, 25))
    assert [r.value for r in records] == [value("sensors.beta", 1, i) for i in range(3, 25)]
    assert [r.key for r in records] == [f"dev-{i}".encode() for i in range(3, 25)]
    assert {(r.topic, r.partition) for r in records} == {("sensors.beta", 1)}
    now_ms = time.time() * 1000
    assert all(now_ms - 600_000 < r.timestamp_ms <= now_ms + 1_000 for r in records)


def test_planned_ranges_read_every_record_exactly_once(loaded: KafkaSettings):
    states = partition_states(loaded, list_partitions(loaded))
    plan = plan_ranges({}, states, max_records_per_run=7, on_gap="fail")
    read = [r for rng in plan.ranges for r in read_range(loaded, rng, timeout_s=5)]
    expected = sorted(value(t, p, i) for t in TOPICS for p, n in COUNTS.items() for i in range(n))
    assert sorted(r.value for r in read) == expected
    assert len({(r.topic, r.partition, r.offset) for r in read}) == len(expected)


def test_empty_range_reads_nothing(loaded: KafkaSettings):
    assert read_range(loaded, OffsetRange("sensors.alpha", 2, 0, 0)) == []


def test_range_beyond_the_end_raises_instead_of_returning_part_of_it(loaded: KafkaSettings):
    started = time.monotonic()
    with pytest.raises(KafkaRangeError, match=r"sensors\.alpha/0/10-20"):
        read_range(loaded, OffsetRange("sensors.alpha", 0, 10, 20), timeout_s=0.5)
    with pytest.raises(KafkaRangeError):
        read_range(loaded, OffsetRange("sensors.alpha", 0, 500, 510), timeout_s=0.5)
    assert time.monotonic() - started < 5


def test_committed_offsets_are_visible_to_the_consumer_group(loaded: KafkaSettings):
    group = KafkaSettings(
        loaded.bootstrap_servers, topics=TOPICS, consumer_group="sensor-platform-lake"
    )
    commit_offsets(group, {("sensors.alpha", 0): 12, ("sensors.beta", 1): 25})
    with KafkaConsumer(
        bootstrap_servers=loaded.bootstrap_servers,
        group_id="sensor-platform-lake",
        enable_auto_commit=False,
    ) as consumer:
        assert consumer.committed(TopicPartition("sensors.alpha", 0)) == 12
        assert consumer.committed(TopicPartition("sensors.beta", 1)) == 25
        assert consumer.committed(TopicPartition("sensors.alpha", 1)) is None
    with pytest.raises(ValueError, match="consumer_group"):
        commit_offsets(loaded, {("sensors.alpha", 0): 12})


def test_unreachable_broker_raises_broker_unavailable_quickly():
    dead = KafkaSettings(f"127.0.0.1:{free_port()}", topics=("t",), request_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        list_partitions(dead)
    with pytest.raises(BrokerUnavailable):
        partition_states(dead, [("t", 0)])
    with pytest.raises(BrokerUnavailable):
        produce(dead, "t", [(None, b"x")])
    assert time.monotonic() - started < 5


def test_settings_never_show_passwords():
    settings = KafkaSettings(
        "broker:9093",
        topics=("t",),
        security={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "lake",
            "sasl_plain_password": "hunter2",
        },
    )
    config = settings.client_config()
    assert config["sasl_plain_password"] == "hunter2"  # kafka-python gets the real value
    assert config["bootstrap_servers"] == ["broker:9093"]
    for shown in (repr(settings), str(settings), repr(config), str(config)):
        assert "hunter2" not in shown
        assert "lake" in shown and "SASL_SSL" in shown


def test_settings_reject_bad_configuration():
    with pytest.raises(ValueError, match="exactly one"):
        KafkaSettings("b:9092")
    with pytest.raises(ValueError, match="exactly one"):
        KafkaSettings("b:9092", topics=("t",), topic_pattern="t.*")
    with pytest.raises(ValueError, match="topic"):
        KafkaSettings("b:9092", topics=("bad topic",))
    with pytest.raises(ValueError, match="security"):
        KafkaSettings("b:9092", topics=("t",), security={"bootstrap_servers": "evil:9092"})
    with pytest.raises(ValueError):
        KafkaSettings("b:9092", topic_pattern="(unclosed")
