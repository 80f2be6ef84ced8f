"""Talk to Kafka (kafka-python): list partitions, measure them exactly, read exact ranges, produce.

The end of a partition is taken from the high watermark of a fetch response, never from
ListOffsets(latest) alone: some Kafka-protocol brokers (Tansu) answer ListOffsets with the base
offset of the last record batch + 1, which falls short of the true end when that batch holds several
records. Reads are exact: assign + seek (no group membership, no rebalancing), and a range is
complete only once the consumer's position has reached its end.

Failures: BrokerUnavailable when the cluster cannot be reached right now (try again later),
BrokerAccessDenied when it refuses this client (a person must act; see access.py).
"""

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, RetriableError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from sensor_platform.kafka.access import (
    ACCESS_ERRORS,
    BrokerAccessDenied,
    BrokerUnavailable,
    access_denied,
    describe_error,
    listener_refusal,
    tls_refusal,
)
from sensor_platform.kafka.offsets import OffsetRange, PartitionState
from sensor_platform.kafka.settings import KafkaSettings, check_topic
from sensor_platform.readings.normalize import Message

__all__ = ["BrokerAccessDenied", "BrokerUnavailable", "KafkaRangeError", "RawRecord"]

POLL_MS = 100
PROBE_FETCH_WAIT_MS = 10
READ_FETCH_WAIT_MS = 100
MAX_POLL_RECORDS = 5_000
# kafka-python's default; measured against 128 KiB-4 MiB on Tansu without a difference beyond noise.
MAX_PARTITION_FETCH_BYTES = 1 << 20
PRODUCER_LINGER_MS = 20
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BROKER_DEFAULT_REPLICATION = -1  # CreateTopics v4+: the cluster's default.replication.factor


class KafkaRangeError(Exception):
    """A range could not be read completely; no partial range is ever returned."""


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None  # None for a tombstone
    timestamp_ms: int
    key: bytes | None


# Errors that mean "cannot talk to the cluster right now" (connection, timeout, leader election).
# "May not talk to it" (ACCESS_ERRORS) raises BrokerAccessDenied; anything else is a bug or a bad
# request and propagates.
UNREACHABLE_ERRORS = (RetriableError,)


@contextmanager
def _reachable(settings: KafkaSettings, doing: str) -> Iterator[None]:
    try:
        yield
    except ACCESS_ERRORS as exc:
        raise access_denied(settings, doing, describe_error(exc)) from exc
    except UNREACHABLE_ERRORS as exc:
        # kafka-python reports a refused SASL login, or a listener that drops a client of the
        # wrong security protocol, like a broker that is down: ask the listener before saying so.
        refusal = listener_refusal(settings)
        if refusal:
            raise access_denied(settings, doing, refusal) from exc
        raise BrokerUnavailable(
            settings.redact(
                f"Kafka at {settings.bootstrap_servers} unavailable while {doing}: {exc}"
            )
        ) from exc


def _connect(settings: KafkaSettings, doing: str, client: type, **config):
    """A kafka-python client; a TLS listener is checked first, with a deadline, because
    kafka-python waits forever for a TLS handshake that the listener never answers."""
    refusal = tls_refusal(settings)
    if refusal:
        raise access_denied(settings, doing, refusal)
    with _reachable(settings, doing):
        return client(**config)


def read_consumer_config(settings: KafkaSettings, **overrides) -> dict:
    """The KafkaConsumer settings of every read here (benchmarks measure the same client)."""
    config = settings.client_config()
    config.update(
        group_id=None,
        enable_auto_commit=False,
        # An out-of-range offset must raise: the default ('latest') would silently skip data.
        auto_offset_reset="none",
        # Listing or reading must never create a topic as a side effect.
        allow_auto_create_topics=False,
        max_poll_records=MAX_POLL_RECORDS,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        # Ranges lie below the high watermark, so waiting for new data never helps a read.
        fetch_max_wait_ms=READ_FETCH_WAIT_MS,
    )
    config.update(overrides)
    return config


@contextmanager
def _consumer(settings: KafkaSettings, doing: str, **overrides) -> Iterator[KafkaConsumer]:
    consumer = _connect(
        settings, doing, KafkaConsumer, **read_consumer_config(settings, **overrides)
    )
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False)


def list_partitions(settings: KafkaSettings) -> list[tuple[str, int]]:
    """The (topic, partition) pairs to ingest, sorted; a pattern is matched against the whole
    name of every topic in the cluster, so topics created later are picked up."""
    with _consumer(settings, "listing topics") as consumer, _reachable(settings, "listing topics"):
        if settings.topic_pattern:
            pattern = re.compile(settings.topic_pattern)
            topics = sorted(t for t in consumer.topics() if pattern.fullmatch(t))
        else:
            topics = list(settings.topics)
        return sorted(
            (topic, partition)
            for topic in topics
            for partition in consumer.partitions_for_topic(topic) or ()
        )


def partition_states(
    settings: KafkaSettings, partitions: list[tuple[str, int]]
) -> list[PartitionState]:
    """Earliest offset and exact end of each partition.

    Each partition is positioned at its ListOffsets(latest) answer, which is at or before the true
    end on every broker, and fetched once: the fetch response's high watermark is the true end.
    """
    if not partitions:
        return []
    tps = [TopicPartition(topic, partition) for topic, partition in partitions]
    # A fetch at the end of a partition has no data to return, and the broker holds it back for
    # fetch_max_wait_ms hoping for some; keep that short (Tansu never answers a wait of 0).
    with _consumer(
        settings, "reading partition offsets", fetch_max_wait_ms=PROBE_FETCH_WAIT_MS
    ) as consumer:
        with _reachable(settings, "reading partition offsets"):
            earliest = consumer.beginning_offsets(tps)
            listed_end = consumer.end_offsets(tps)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, max(earliest[tp], listed_end[tp]))
            ends = _await_highwaters(consumer, tps, settings.request_timeout_ms / 1000)
        missing = [f"{tp.topic}/{tp.partition}" for tp in tps if tp not in ends]
        if missing:
            raise BrokerUnavailable(
                f"Kafka at {settings.bootstrap_servers} answered no fetch for {missing} within "
                f"{settings.request_timeout_ms} ms"
            )
    return [PartitionState(tp.topic, tp.partition, earliest[tp], ends[tp]) for tp in tps]


def _await_highwaters(
    consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(ends) < len(tps) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=POLL_MS)  # the records are not needed, only the watermarks
        known = {tp: consumer.highwater(tp) for tp in tps if tp not in ends}
        known = {tp: hw for tp, hw in known.items() if hw is not None}
        if known:
            ends.update(known)
            consumer.pause(*known)  # stop fetching partitions already measured
    return ends


def read_range(
    settings: KafkaSettings, rng: OffsetRange, *, timeout_s: float = 30
) -> list[RawRecord]:
    """Every record with rng.start <= offset < rng.end, in offset order.

    Offsets may be missing inside a range (compaction, transaction markers), so the range is
    complete when the consumer's position reaches rng.end, not when end - start records arrived.
    """
    return [
        RawRecord(r.topic, r.partition, r.offset, r.value, r.timestamp, r.key)
        for records in _range_batches(settings, rng, timeout_s)
        for r in records
    ]


def read_messages(
    settings: KafkaSettings, rng: OffsetRange, *, timeout_s: float = 30
) -> list[Message]:
    """The records of `rng` (as read_range) as normalizer input: payload, source
    `kafka:topic/partition/offset`, and the record's timestamp as received_at, so reading the range
    again yields identical messages. A tombstone becomes an empty payload (quarantined).

    Built straight from the consumer's records, with no intermediate object per record: this loop
    runs once per message on the ingestion hot path.
    """
    prefix = f"kafka:{rng.topic}/{rng.partition}/"
    messages: list[Message] = []
    append = messages.append
    last_ms, received_at = None, EPOCH
    for records in _range_batches(settings, rng, timeout_s):
        for r in records:
            if r.timestamp != last_ms:  # neighbouring records often share a millisecond
                last_ms, received_at = r.timestamp, EPOCH + timedelta(milliseconds=r.timestamp)
            value = r.value
            append(Message(b"" if value is None else value, prefix + str(r.offset), received_at))
    return messages


def _range_batches(settings: KafkaSettings, rng: OffsetRange, timeout_s: float) -> Iterator[list]:
    """The consumer's records of `rng`, poll by poll, until the position reaches rng.end."""
    if rng.start == rng.end:
        return
    tp = TopicPartition(rng.topic, rng.partition)
    with _consumer(settings, f"reading {rng.run_key}") as consumer:
        consumer.assign([tp])
        consumer.seek(tp, rng.start)
        deadline = time.monotonic() + timeout_s
        position = rng.start
        while position < rng.end:
            if time.monotonic() >= deadline:
                raise KafkaRangeError(
                    f"timed out after {timeout_s:g} s reading {rng.run_key}: consumer at offset "
                    f"{position}, partition high watermark {consumer.highwater(tp)}"
                )
            try:
                batches = consumer.poll(timeout_ms=POLL_MS)
                position = consumer.position(tp, timeout_ms=settings.request_timeout_ms)
            except ACCESS_ERRORS as exc:  # e.g. the topic's read ACL was revoked
                raise access_denied(
                    settings, f"reading {rng.run_key}", describe_error(exc)
                ) from exc
            except KafkaError as exc:  # e.g. out of range: the offsets are gone
                raise KafkaRangeError(f"cannot read {rng.run_key}: {exc}") from exc
            records = batches.get(tp)
            if not records:
                continue
            # A fetched batch may reach past the range; filter only when it does.
            if records[0].offset < rng.start or records[-1].offset >= rng.end:
                records = [r for r in records if rng.start <= r.offset < rng.end]
            yield records


def commit_offsets(settings: KafkaSettings, offsets: dict[tuple[str, int], int]) -> None:
    """Commit next-offsets to the consumer group, so standard tools show the lag.

    Call only once the data below these offsets is durable in the lake.
    """
    if not settings.consumer_group:
        raise ValueError("commit_offsets needs settings.consumer_group")
    if not offsets:
        return
    commits = {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }
    with _consumer(settings, "committing offsets", group_id=settings.consumer_group) as consumer:
        with _reachable(settings, "committing offsets"):
            consumer.commit(commits)


def produce(
    settings: KafkaSettings,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    *,
    partition: int | None = None,
) -> int:
    """Send (key, value) messages, wait until all are acknowledged, and return how many."""
    check_topic(topic)
    failures: list[BaseException] = []
    doing = f"producing to {topic}"
    config = {**settings.client_config(), "acks": "all", "linger_ms": PRODUCER_LINGER_MS}
    producer = _connect(settings, doing, KafkaProducer, **config)
    with _reachable(settings, doing):
        try:
            sent = 0
            for key, value in messages:
                future = producer.send(topic, value=value, key=key, partition=partition)
                future.add_errback(failures.append)
                sent += 1
            producer.flush(timeout=settings.request_timeout_ms / 1000 + 30)
        finally:
            producer.close()
    if failures:
        what = f"{len(failures)} of {sent} messages to {topic} not acknowledged"
        if isinstance(failures[0], ACCESS_ERRORS):
            raise access_denied(settings, doing, f"{what}: {describe_error(failures[0])}")
        error = BrokerUnavailable if isinstance(failures[0], UNREACHABLE_ERRORS) else KafkaError
        raise error(settings.redact(f"{what}: {failures[0]}"))
    return sent


def ensure_topic(settings: KafkaSettings, topic: str, partitions: int) -> bool:
    """Create the topic with the broker's default replication factor; False if it existed."""
    check_topic(topic)
    doing = f"creating topic {topic}"
    admin = _connect(settings, doing, KafkaAdminClient, **settings.client_config())
    with _reachable(settings, doing):
        try:
            admin.create_topics([NewTopic(topic, partitions, BROKER_DEFAULT_REPLICATION)])
        except TopicAlreadyExistsError:
            return False
        finally:
            admin.close()
    return True
