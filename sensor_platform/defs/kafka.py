"""Kafka ingestion: a sensor that plans exact offset ranges, and a job that lands one range.

Exactly once: the sensor's cursor holds, per topic-partition, the next offset to plan; each new
range becomes one run whose run key names exactly that range; the run reads exactly its range and
lands it under a batch id named by the range, so a retry or re-execution rewrites the same files,
and the raw partitions de-duplicate by reading_id on top of that. The raw partitions sensor
(defs/automation.py) then asks for every hour the landed files touch, late hours included.

Runs finish in any order, so a run cannot know whether the ranges before its own are durable.
The sensor therefore tracks the ranges it requested ("pending") until a successful run has landed
each, and commits to the consumer group (when one is configured) only up to the first range still
pending: never an offset that no run has made durable.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.defs.landing import BATCH_ID_TAG, land_messages
from sensor_platform.defs.metadata import OWNERS
from sensor_platform.defs.resources import KafkaResource, LakeResource, PipelineResource
from sensor_platform.kafka.offsets import Gap, OffsetRange, cursor_key
from sensor_platform.lake.layout import check_batch_id
from sensor_platform.settings import Settings

if TYPE_CHECKING:
    from sensor_platform.kafka.settings import KafkaSettings

KAFKA_TOPICS = dg.AssetKey("kafka_topics")
KAFKA_TAGS = {"sensor_platform/feed": "kafka"}
MAX_GAPS_KEPT = 50
# A run can succeed while a tick is being evaluated: look back past the previous check so that
# no such run is missed (finding a landed range twice is harmless).
RUN_LOOKBACK = timedelta(minutes=10)
BROKER_RETRIES, BROKER_RETRY_WAIT_S = 3, 15


class KafkaRange(dg.Config):
    topic: str
    partition: int
    start: int
    end: int
    epoch: int = 0  # how many times the partition's offsets started over (broker lost its data)


def split_key(key: str) -> tuple[str, int]:
    """(topic, partition) of a cursor key `topic/partition` (topic names never hold a '/')."""
    topic, partition = key.rsplit("/", 1)
    return topic, int(partition)


def run_key(rng: OffsetRange, epoch: int) -> str:
    """`topic/partition/start-end`; after the broker lost a partition's data its offsets start
    over, so the epoch is appended to keep run keys (and batch ids) unique: a reused run key
    would make Dagster drop the run silently, and a reused batch id would hide the new data."""
    return rng.run_key if epoch == 0 else f"{rng.run_key}@e{epoch}"


def batch_id(rng: OffsetRange, epoch: int) -> str:
    return rng.batch_id if epoch == 0 else check_batch_id(f"{rng.batch_id}-e{epoch}")


@dg.op(out=dg.Out(dg.Nothing), tags=KAFKA_TAGS)
def land_kafka_range(
    context: dg.OpExecutionContext,
    config: KafkaRange,
    kafka: KafkaResource,
    lake: LakeResource,
    pipeline: PipelineResource,
) -> None:
    """Read exactly [start, end) of one topic-partition, normalize it and land it under a batch id
    named by the range; malformed messages go to quarantine with their topic/partition/offset."""
    from sensor_platform.kafka.client import BrokerUnavailable, KafkaRangeError, read_messages

    rng = OffsetRange(config.topic, config.partition, config.start, config.end)
    try:
        messages = read_messages(kafka.settings(), rng)
    except BrokerUnavailable as exc:
        context.log.warning(f"Kafka unavailable, retrying: {exc}")
        raise dg.RetryRequested(
            max_retries=BROKER_RETRIES, seconds_to_wait=BROKER_RETRY_WAIT_S
        ) from exc
    except KafkaRangeError as exc:
        raise dg.Failure(
            f"{exc}. If the broker no longer holds these offsets, the ingestion sensor reports "
            "the gap and follows its on_gap policy."
        ) from exc
    land_messages(context, lake.lake(), batch_id(rng, config.epoch), messages, pipeline.limits())


@dg.job(tags=KAFKA_TAGS)
def kafka_ingest_job():
    land_kafka_range()


kafka_topics = dg.AssetSpec(
    KAFKA_TOPICS,
    description="The Kafka topics readings arrive on; observed by the ingestion sensor with the "
    "consumer lag (offsets not yet landed in the lake) of every topic-partition.",
    group_name="raw",
    kinds={"kafka"},
    owners=OWNERS,
    tags={"domain": "iot", "tier": "source", "pii": "none"},
)


@dataclass
class IngestCursor:
    """The sensor's state, kept as JSON in the Dagster cursor; keys are `topic/partition`."""

    offsets: dict[str, int] = field(default_factory=dict)  # next offset to plan
    pending: dict[str, list[list[int]]] = field(default_factory=dict)  # [start, end], in order
    epochs: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)  # last commit to the consumer group
    checked_at: str | None = None  # when landed runs were last looked up
    gaps: list[dict] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> "IngestCursor":
        return cls(**json.loads(raw)) if raw else cls()

    def dumps(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def durable(self, key: str) -> int:
        """Every offset below this one is in the lake (or was recorded as lost)."""
        pending = self.pending.get(key)
        return pending[0][0] if pending else self.offsets[key]

    def pending_ranges(self) -> list[tuple[OffsetRange, int]]:
        """Every requested range not yet landed, with its partition's epoch."""
        return [
            (OffsetRange(*split_key(key), start, end), self.epoch(key))
            for key, spans in self.pending.items()
            for start, end in spans
        ]

    def epoch(self, key: str) -> int:
        return self.epochs.get(key, 0)

    def mark_landed(self, landed: set[tuple]) -> None:
        for rng, epoch in self.pending_ranges():
            if (rng.topic, rng.partition, rng.start, rng.end, epoch) in landed:
                key = cursor_key(rng.topic, rng.partition)
                self.pending[key].remove([rng.start, rng.end])
        self.pending = {key: spans for key, spans in self.pending.items() if spans}

    def record_gap(self, gap: Gap, policy: str, at: datetime) -> str:
        """Follow a resuming policy on one partition; returns what happened, for the log."""
        key = cursor_key(gap.topic, gap.partition)
        lost = self.pending.pop(key, [])  # requested but never landed: those offsets are gone
        if gap.reason == "ahead_of_end":
            self.epochs[key] = self.epoch(key) + 1
        message = f"Kafka data lost, policy on_gap={policy}: {gap.describe()}"
        if lost:
            message += f"; {len(lost)} requested ranges never landed: " + ", ".join(
                f"{s}-{e}" for s, e in lost
            )
        self.gaps = [*self.gaps, {"at": at.isoformat(), "message": message}][-MAX_GAPS_KEPT:]
        return message


def landed_ranges(instance: dg.DagsterInstance, cursor: IngestCursor, now: datetime) -> set[tuple]:
    """(topic, partition, start, end, epoch) of the pending ranges a successful run has landed.

    Runs are found by the batch id tag the sensor set and, for runs launched or re-executed
    without it, by every success since the previous check; either way the range is read from
    the run's config, the one thing a re-execution always keeps."""
    pending = cursor.pending_ranges()
    if not pending:
        return set()
    success = {"job_name": kafka_ingest_job.name, "statuses": [dg.DagsterRunStatus.SUCCESS]}
    runs = instance.get_runs(
        dg.RunsFilter(**success, tags={BATCH_ID_TAG: [batch_id(r, e) for r, e in pending]})
    )
    since = datetime.fromisoformat(cursor.checked_at) - RUN_LOOKBACK if cursor.checked_at else now
    runs += instance.get_runs(dg.RunsFilter(**success, updated_after=since))
    landed = set()
    for run in runs:
        config = run.run_config.get("ops", {}).get("land_kafka_range", {}).get("config", {})
        if {"topic", "partition", "start", "end"} <= config.keys():
            span = (config["topic"], config["partition"], config["start"], config["end"])
            landed.add((*span, config.get("epoch", 0)))
    return landed


def run_request(rng: OffsetRange, epoch: int) -> dg.RunRequest:
    config = {"topic": rng.topic, "partition": rng.partition, "start": rng.start, "end": rng.end}
    return dg.RunRequest(
        run_key=run_key(rng, epoch),
        run_config={"ops": {"land_kafka_range": {"config": {**config, "epoch": epoch}}}},
        tags={BATCH_ID_TAG: batch_id(rng, epoch)},
    )


class KafkaDataLost(Exception):
    """The broker no longer holds offsets the cursor expects, and the policy is to stop."""


def _commit_durable(
    context: dg.SensorEvaluationContext,
    kafka_settings: "KafkaSettings",
    cursor: IngestCursor,
    keys: list[str],
) -> None:
    """Commit the durable offset of each partition in `keys` to the consumer group when it
    changed; a failure is logged and retried at the next tick, nothing else depends on it."""
    changed = {
        key: cursor.durable(key) for key in keys if cursor.committed.get(key) != cursor.durable(key)
    }
    if not changed:
        return
    from kafka.errors import KafkaError

    from sensor_platform.kafka.client import BrokerUnavailable, commit_offsets

    try:
        commit_offsets(kafka_settings, {split_key(key): off for key, off in changed.items()})
    except (BrokerUnavailable, KafkaError) as exc:
        context.log.warning(f"could not commit offsets to the consumer group, will retry: {exc}")
        return
    cursor.committed.update(changed)


def ingest_tick(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    """One tick of the Kafka ingestion sensor (see kafka_ingest_sensor)."""
    from sensor_platform.kafka.client import BrokerUnavailable, list_partitions, partition_states
    from sensor_platform.kafka.offsets import OffsetGapError, plan_ranges

    cursor = IngestCursor.parse(context.cursor)
    kafka_settings = kafka.settings()
    try:
        states = partition_states(kafka_settings, list_partitions(kafka_settings))
    except BrokerUnavailable as exc:
        context.log.error(f"Kafka broker unavailable, cursor unchanged: {exc}")
        return dg.SensorResult(skip_reason=f"Kafka broker unavailable, cursor unchanged: {exc}")
    now = datetime.now(UTC)
    cursor.mark_landed(landed_ranges(context.instance, cursor, now))
    cursor.checked_at = now.isoformat()
    try:
        plan = plan_ranges(
            cursor.offsets,
            states,
            max_records_per_run=kafka_settings.max_records_per_run,
            on_gap=kafka.on_gap,
        )
    except OffsetGapError as exc:
        message = (
            f"{exc}. Policy on_gap=fail: nothing planned, cursor unchanged. To resume, set "
            "SENSOR_KAFKA_ON_GAP to 'earliest' or 'latest' (the gap is then recorded)."
        )
        context.log.error(message)
        raise KafkaDataLost(message) from exc
    gap_messages = [cursor.record_gap(gap, kafka.on_gap, now) for gap in plan.gaps]
    for message in gap_messages:
        context.log.warning(message)
    cursor.offsets = plan.new_cursor
    requests = []
    for rng in plan.ranges:
        key = cursor_key(rng.topic, rng.partition)
        cursor.pending.setdefault(key, []).append([rng.start, rng.end])
        requests.append(run_request(rng, cursor.epoch(key)))
    ends = {cursor_key(s.topic, s.partition): s.end for s in states}
    if kafka_settings.consumer_group:
        _commit_durable(context, kafka_settings, cursor, list(ends))
    lag = {key: end - cursor.durable(key) for key, end in ends.items()}
    pending_runs = sum(len(spans) for spans in cursor.pending.values())
    context.log.info(
        f"{len(requests)} new ranges requested, {pending_runs} not yet landed, "
        f"lag {sum(lag.values())} offsets over {len(lag)} partitions"
    )
    metadata = {
        "total_lag": sum(lag.values()),
        "pending_runs": pending_runs,
        **{f"lag {key}": value for key, value in sorted(lag.items())},
    }
    if gap_messages:
        metadata["data_lost"] = dg.MetadataValue.md("\n".join(f"- {m}" for m in gap_messages))
    return dg.SensorResult(
        run_requests=requests,
        cursor=cursor.dumps(),
        asset_events=[dg.AssetObservation(KAFKA_TOPICS, metadata=metadata)],
    )


def kafka_definitions(settings: Settings) -> dg.Definitions:
    """The Kafka ingestion job, its sensor (running by default when SENSOR_SOURCE=kafka) and the
    kafka_topics asset it observes."""

    @dg.sensor(
        job=kafka_ingest_job,
        minimum_interval_seconds=settings.kafka_poll_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if settings.source == "kafka"
            else dg.DefaultSensorStatus.STOPPED
        ),
    )
    def kafka_ingest_sensor(
        context: dg.SensorEvaluationContext, kafka: KafkaResource
    ) -> dg.SensorResult:
        """Plans the new offset ranges of every matching topic-partition, one run per bounded
        chunk, reports the consumer lag, and commits the landed offsets to the consumer group.

        Broker down: the tick says so and the cursor stays put. Broker lost or truncated data: the
        tick says so and follows `on_gap`: fail (the tick fails, nothing moves), or resume from the
        earliest/latest offset, recording the gap in the cursor and on the kafka_topics asset."""
        return ingest_tick(context, kafka)

    return dg.Definitions(
        assets=[kafka_topics], jobs=[kafka_ingest_job], sensors=[kafka_ingest_sensor]
    )
