"""Kafka ingestion: a sensor that plans exact offset ranges, a job that lands one range, and the
operator's job that gives up a stuck range.

Exactly once: the sensor's cursor (kafka/cursor.py) holds, per topic-partition, the next offset to
plan; each new range becomes one run whose run key names exactly that range; the run reads exactly
its range and lands it under a batch id named by the range, so a retry or re-execution rewrites
the same files, and the raw partitions de-duplicate by reading_id on top of that.

Runs finish in any order, so a run cannot know whether the ranges before its own are durable. The
sensor tracks the ranges it requested until a successful run has landed each; a range whose run
failed is requested again with backoff (a new run key per attempt, the same batch id) until it is
stuck; and it commits to the consumer group (when one is configured) only up to the first range
still pending: never an offset that no run has made durable.
"""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.defs.landing import BATCH_ID_TAG, land_messages
from sensor_platform.defs.metadata import OWNERS
from sensor_platform.defs.resources import (
    AlertsResource,
    AnomalyRulesResource,
    KafkaResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)
from sensor_platform.kafka.attempts import Attempt, Landed, parse_run_key
from sensor_platform.kafka.cursor import IngestCursor, SkipRequest
from sensor_platform.kafka.offsets import OffsetRange, split_key
from sensor_platform.settings import Settings

if TYPE_CHECKING:
    from sensor_platform.kafka.settings import KafkaSettings

KAFKA_TOPICS = dg.AssetKey("kafka_topics")
KAFKA_TAGS = {"sensor_platform/feed": "kafka"}
ATTEMPT_TAG = "sensor_platform/attempt"
# A run can finish while a tick is being evaluated: look back past the previous check so that
# no such run is missed (the cursor counts a run found twice once).
RUN_LOOKBACK = timedelta(minutes=10)
BROKER_RETRIES, BROKER_RETRY_WAIT_S = 3, 15


class KafkaRange(dg.Config):
    topic: str
    partition: int
    start: int
    end: int
    epoch: int = 0  # how many times the partition's offsets started over (broker lost its data)


@dg.op(out=dg.Out(dg.Nothing), tags=KAFKA_TAGS)
def land_kafka_range(
    context: dg.OpExecutionContext,
    config: KafkaRange,
    kafka: KafkaResource,
    lake: LakeResource,
    pipeline: PipelineResource,
    anomaly_rules: AnomalyRulesResource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> None:
    """Read exactly [start, end) of one topic-partition, normalize it and land it under a batch id
    named by the range; malformed messages go to quarantine with their topic/partition/offset."""
    from sensor_platform.kafka.client import (
        BrokerAccessDenied,
        BrokerUnavailable,
        KafkaRangeError,
        read_messages,
    )

    rng = OffsetRange(config.topic, config.partition, config.start, config.end)
    try:
        messages = read_messages(kafka.settings(), rng)
    except BrokerAccessDenied as exc:
        raise dg.Failure(str(exc)) from exc  # a person must fix the settings: no retry
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
    land_messages(
        context,
        Attempt(rng, config.epoch).batch_id,
        messages,
        lake=lake,
        pipeline=pipeline,
        anomaly_rules=anomaly_rules,
        warehouse=warehouse,
        alerts=alerts,
    )


# A landing is one short step: run it in the run's own process (no subprocess per step).
@dg.job(tags=KAFKA_TAGS, executor_def=dg.in_process_executor)
def kafka_ingest_job():
    land_kafka_range()


class SkipRange(dg.Config):
    run_key: str  # the stuck range, as kafka_topics lists it: topic/partition/start-end[@eN]
    reason: str  # why its data is given up (kept with the gap in the sensor's cursor)


@dg.op
def skip_kafka_range(context: dg.OpExecutionContext, config: SkipRange) -> None:
    """An operator gives up a stuck Kafka range: this run only records the decision, checked;
    the ingestion sensor's next tick applies it (removes the range, records it like a gap with
    the reason, commits past it). Only a stuck range is skipped."""
    attempt = parse_run_key(config.run_key)  # a malformed key fails the run, naming the problem
    if not config.reason.strip():
        raise dg.Failure("a skip needs a reason")
    context.log.info(f"skip of {attempt.range.run_key} requested: {config.reason}")


@dg.job(description="Give up a stuck Kafka range (run config: run_key and reason).")
def kafka_skip_range_job():
    skip_kafka_range()


kafka_topics = dg.AssetSpec(
    KAFKA_TOPICS,
    description="The Kafka topics readings arrive on; observed by the ingestion sensor with the "
    "consumer lag (offsets not yet landed in the lake) of every topic-partition.",
    group_name="raw",
    kinds={"kafka"},
    owners=OWNERS,
    tags={"domain": "iot", "tier": "source", "pii": "none"},
)


def finished_runs(
    instance: dg.DagsterInstance, cursor: IngestCursor, now: datetime
) -> tuple[set[Landed], list[Attempt]]:
    """Ranges landed by a successful run, and attempts whose run failed, among the pending ones.

    Runs are found by the batch id tag the sensor set (shared by every attempt of a range) and,
    for runs launched or re-executed without it, by every run finished since the previous check;
    the range is read from the run's config, the one thing a re-execution always keeps, and the
    attempt from its tag (a run without one is a first attempt)."""
    pending = cursor.pending_attempts()
    if not pending:
        return set(), []
    finished = {
        "job_name": kafka_ingest_job.name,
        "statuses": [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
    }
    batch_ids = sorted({a.batch_id for a in pending})
    runs = instance.get_runs(dg.RunsFilter(**finished, tags={BATCH_ID_TAG: batch_ids}))
    runs += instance.get_runs(dg.RunsFilter(**finished, updated_after=_since(cursor, now)))
    landed, failed = set(), []
    for run in runs:
        config = run.run_config.get("ops", {}).get("land_kafka_range", {}).get("config", {})
        if not {"topic", "partition", "start", "end"} <= config.keys():
            continue
        rng = OffsetRange(config["topic"], config["partition"], config["start"], config["end"])
        attempt = Attempt(rng, config.get("epoch", 0), int(run.tags.get(ATTEMPT_TAG, "1")))
        if run.status == dg.DagsterRunStatus.SUCCESS:
            landed.add(attempt.identity)
        else:
            failed.append(attempt)
    return landed, failed


def skip_requests(
    instance: dg.DagsterInstance, cursor: IngestCursor, now: datetime
) -> list[SkipRequest]:
    """The skips operators launched (successful kafka_skip_range_job runs) since the last check."""
    runs = instance.get_runs(
        dg.RunsFilter(
            job_name=kafka_skip_range_job.name,
            statuses=[dg.DagsterRunStatus.SUCCESS],
            updated_after=_since(cursor, now),
        )
    )
    requests = []
    for run in runs:
        config = run.run_config.get("ops", {}).get("skip_kafka_range", {}).get("config", {})
        if "run_key" in config:
            requests.append(SkipRequest(config["run_key"], config.get("reason", "")))
    return requests


def _since(cursor: IngestCursor, now: datetime) -> datetime:
    return datetime.fromisoformat(cursor.checked_at) - RUN_LOOKBACK if cursor.checked_at else now


def run_request(attempt: Attempt) -> dg.RunRequest:
    rng = attempt.range
    config = {"topic": rng.topic, "partition": rng.partition, "start": rng.start, "end": rng.end}
    return dg.RunRequest(
        run_key=attempt.run_key,
        run_config={"ops": {"land_kafka_range": {"config": {**config, "epoch": attempt.epoch}}}},
        tags={BATCH_ID_TAG: attempt.batch_id, ATTEMPT_TAG: str(attempt.number)},
    )


class KafkaDataLost(Exception):
    """The broker no longer holds offsets the cursor expects, and the policy is to stop."""


def ingest_tick(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    """One tick of the Kafka ingestion sensor (see kafka_ingest_sensor)."""
    from sensor_platform.kafka.client import BrokerUnavailable, list_partitions, partition_states
    from sensor_platform.kafka.cursor import advance
    from sensor_platform.kafka.offsets import OffsetGapError

    cursor = IngestCursor.parse(context.cursor)
    kafka_settings = kafka.settings()
    try:
        states = partition_states(kafka_settings, list_partitions(kafka_settings))
    except BrokerUnavailable as exc:
        context.log.error(f"Kafka broker unavailable, cursor unchanged: {exc}")
        return dg.SensorResult(skip_reason=f"Kafka broker unavailable, cursor unchanged: {exc}")
    # BrokerAccessDenied propagates: the tick fails with its message (no secret in it).
    now = datetime.now(UTC)
    landed, failed = finished_runs(context.instance, cursor, now)
    try:
        tick = advance(
            cursor,
            states,
            now=now,
            landed=landed,
            failed=failed,
            skips=skip_requests(context.instance, cursor, now),
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
    cursor = tick.cursor
    cursor.checked_at = now.isoformat()
    for message in tick.gaps + tick.events:
        context.log.warning(message)
    for attempt in tick.stuck:
        context.log.error(
            f"Kafka range stuck after {attempt.number} attempts: {attempt.run_key}; launch "
            "kafka_skip_range_job to give it up"
        )
    if kafka_settings.consumer_group and tick.commit:
        _commit_durable(context, kafka_settings, cursor, tick.commit)
    pending_runs = len(cursor.pending_attempts())
    context.log.info(
        f"{len(tick.requests)} runs requested, {pending_runs} ranges not yet landed, "
        f"lag {sum(tick.lag.values())} offsets over {len(tick.lag)} partitions"
    )
    metadata = {
        "total_lag": sum(tick.lag.values()),
        "pending_runs": pending_runs,
        "stuck_ranges": len(tick.stuck),
        **{f"lag {key}": value for key, value in sorted(tick.lag.items())},
    }
    if tick.stuck:
        metadata["stuck"] = dg.MetadataValue.md("\n".join(f"- {a.run_key}" for a in tick.stuck))
    if tick.gaps:
        metadata["data_lost"] = dg.MetadataValue.md("\n".join(f"- {m}" for m in tick.gaps))
    return dg.SensorResult(
        run_requests=[run_request(a) for a in tick.requests],
        cursor=cursor.dumps(),
        asset_events=[dg.AssetObservation(KAFKA_TOPICS, metadata=metadata)],
    )


def _commit_durable(
    context: dg.SensorEvaluationContext,
    kafka_settings: "KafkaSettings",
    cursor: IngestCursor,
    changed: dict[str, int],
) -> None:
    """Commit durable offsets to the consumer group; a failure is logged and retried at the next
    tick, nothing else depends on it."""
    from kafka.errors import KafkaError

    from sensor_platform.kafka.client import BrokerAccessDenied, BrokerUnavailable, commit_offsets

    try:
        commit_offsets(kafka_settings, {split_key(key): off for key, off in changed.items()})
    except (BrokerUnavailable, BrokerAccessDenied, KafkaError) as exc:
        context.log.warning(f"could not commit offsets to the consumer group, will retry: {exc}")
        return
    cursor.committed.update(changed)


def kafka_definitions(settings: Settings) -> dg.Definitions:
    """The Kafka ingestion job, its sensor (running by default when SENSOR_SOURCE=kafka), the
    operator's skip job and the kafka_topics asset the sensor observes."""

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
        chunk, re-requests failed ranges with backoff until they are stuck, reports the consumer
        lag and stuck ranges, and commits the landed offsets to the consumer group (if set).

        Broker down: the tick says so and the cursor stays put. Access refused (credentials,
        ACLs, TLS): the tick fails with a clear message. Broker lost or truncated data: the tick
        says so and follows `on_gap`: fail (the tick fails, nothing moves), or resume from the
        earliest/latest offset, recording the gap in the cursor and on the kafka_topics asset."""
        return ingest_tick(context, kafka)

    return dg.Definitions(
        assets=[kafka_topics],
        jobs=[kafka_ingest_job, kafka_skip_range_job],
        sensors=[kafka_ingest_sensor],
    )
