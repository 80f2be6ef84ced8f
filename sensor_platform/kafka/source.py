"""Kafka as a source (ingest.Source): units are exact offset ranges of one topic-partition.

Exactly once: the state (kafka/cursor.py) holds, per topic-partition, the next offset to plan; each
new range becomes one unit whose run key names exactly that range; a run reads exactly its range
and lands it under a batch id named by the range, so a retry or re-execution rewrites the same
files. Runs finish in any order, so the tick tracks the ranges it asked for until a run has landed
each; a range whose run failed is asked for again with backoff (a new run key per attempt, the
same batch id) until it is stuck, then reported (kafka/stuck.py: a failing check on the source's
asset and one platform notice per range); and offsets are committed to the consumer group (when
one is set) only up to the first range still pending: never an offset no run has made durable.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sensor_platform.broker_access import BrokerUnavailable
from sensor_platform.ingest import Plan, Replayed, RunLog, Unit, UnitUnreadable
from sensor_platform.kafka.attempts import DEFAULT_RETRY_POLICY, Attempt, Landed, RetryPolicy
from sensor_platform.kafka.cursor import IngestCursor, SkipRequest
from sensor_platform.kafka.offsets import GapPolicy, OffsetRange, cursor_key, split_key
from sensor_platform.kafka.settings import KafkaSettings

SOURCE = "kafka"
ATTEMPT_TAG = "sensor_platform/attempt"
# A run can finish while a tick is being evaluated: look back past the previous check so that
# no such run is missed (the cursor counts a run found twice once).
RUN_LOOKBACK = timedelta(minutes=10)
RANGE_KEYS = ("topic", "partition", "start", "end")


class KafkaDataLost(Exception):
    """The broker no longer holds offsets the cursor expects, and the policy is to stop."""


def range_unit(attempt: Attempt) -> Unit:
    rng = attempt.range
    return Unit(
        run_key=attempt.run_key,
        batch_id=attempt.batch_id,
        config={
            "topic": rng.topic,
            "partition": rng.partition,
            "start": rng.start,
            "end": rng.end,
            "epoch": attempt.epoch,
        },
        tags={ATTEMPT_TAG: str(attempt.number)},
    )


@dataclass(frozen=True)
class KafkaSource:
    settings: KafkaSettings
    on_gap: GapPolicy = "fail"
    retry: RetryPolicy = DEFAULT_RETRY_POLICY
    name: str = SOURCE

    def plan(self, state: str | None, now: datetime, runs: RunLog) -> Plan:
        """Plan new ranges and due retries, report lag and stuck ranges, commit what is durable.
        Broker down: a skip, state unchanged. Data lost with on_gap='fail': KafkaDataLost."""
        from sensor_platform.kafka.client import list_partitions, partition_states
        from sensor_platform.kafka.cursor import advance
        from sensor_platform.kafka.offsets import OffsetGapError
        from sensor_platform.kafka.stuck import stuck_notice, stuck_ranges, stuck_verdict

        cursor = IngestCursor.parse(state)
        try:
            states = partition_states(self.settings, list_partitions(self.settings))
        except BrokerUnavailable as exc:
            message = f"Kafka broker unavailable, cursor unchanged: {exc}"
            return Plan([], None, skip_reason=message, notes=[("error", message)])
        landed, failed = self._finished(cursor, now, runs)
        since = _since(cursor, now)
        skips = [
            SkipRequest(config["run_key"], config.get("reason", ""))
            for config in runs.operator_requests(since)
            if "run_key" in config
        ]
        try:
            tick = advance(
                cursor,
                states,
                now=now,
                landed=landed,
                failed=failed,
                skips=skips,
                max_records_per_run=self.settings.max_records_per_run,
                on_gap=self.on_gap,
                policy=self.retry,
                busy=frozenset(
                    cursor_key(c["topic"], c["partition"])
                    for c in runs.in_flight()
                    if "topic" in c and "partition" in c
                ),
            )
        except OffsetGapError as exc:
            raise KafkaDataLost(
                f"{exc}. Policy on_gap=fail: nothing planned, cursor unchanged. To resume, set "
                "SENSOR_KAFKA_ON_GAP to 'earliest' or 'latest' (the gap is then recorded)."
            ) from exc
        cursor = tick.cursor
        stuck = stuck_ranges(cursor)
        notes = [("warning", m) for m in tick.gaps + tick.events]
        notes += [
            ("error", f"Kafka range stuck after {s.last.number} attempts: {s.last.run_key}; "
                      "re-execute its run once fixed, or launch kafka_skip_range_job to give it up")
            for s in stuck
        ]  # fmt: skip
        if self.settings.consumer_group and tick.commit:
            notes += self._commit(cursor, tick.commit)
        pending = len(cursor.pending_attempts())
        notes.append(
            ("info", f"{len(tick.requests)} runs requested, {pending} ranges not yet landed, lag "
                     f"{sum(tick.lag.values())} offsets over {len(tick.lag)} partitions")
        )  # fmt: skip
        stuck_per = {key: sum(s.last.key == key for s in stuck) for key in tick.lag}
        observation = {
            "total_lag": sum(tick.lag.values()),
            "pending_runs": pending,
            "stuck_ranges": len(stuck),
            **({"records/s in": _rate(sum(tick.arrived.values()))} if tick.arrived else {}),
            **({"records/s landed": _rate(sum(tick.landed.values()))} if tick.landed else {}),
            **{f"lag {key}": value for key, value in sorted(tick.lag.items())},
            **{f"records/s in {key}": _rate(v) for key, v in sorted(tick.arrived.items())},
            **{f"records/s landed {key}": _rate(v) for key, v in sorted(tick.landed.items())},
            **{f"stuck {key}": count for key, count in sorted(stuck_per.items())},
            "stuck": [s.last.run_key for s in stuck],
            "data_lost": tick.gaps,
        }
        return Plan(
            [range_unit(a) for a in tick.requests],
            cursor.dumps(),
            notes=notes,
            observation=observation,
            verdicts=[stuck_verdict(stuck)],
            notices=[stuck_notice(s) for s in stuck],
        )

    @contextmanager
    def read(self, config: dict[str, Any]):
        from sensor_platform.kafka.client import KafkaRangeError, read_messages

        rng = OffsetRange(config["topic"], config["partition"], config["start"], config["end"])
        try:
            messages = read_messages(self.settings, rng)
        except KafkaRangeError as exc:
            raise UnitUnreadable(
                f"{exc}. If the broker no longer holds these offsets, the ingestion sensor "
                "reports the gap and follows its on_gap policy."
            ) from exc
        yield Replayed(Attempt(rng, config.get("epoch", 0)).batch_id, messages)

    def _finished(
        self, cursor: IngestCursor, now: datetime, runs: RunLog
    ) -> tuple[set[Landed], list[Attempt]]:
        """Ranges landed by a successful run, and attempts whose run failed. Runs are found by
        the batch id tag (shared by every attempt of a range) and by every run finished since the
        previous check; the range comes from the run's config, which a re-execution keeps, and
        the attempt from its tag (a run without one is a first attempt)."""
        pending = cursor.pending_attempts()
        if not pending:
            return set(), []
        landed, failed = set(), []
        batch_ids = sorted({a.batch_id for a in pending})
        for run in runs.finished(batch_ids, _since(cursor, now)):
            if not set(RANGE_KEYS) <= run.config.keys():
                continue
            rng = OffsetRange(*(run.config[k] for k in RANGE_KEYS))
            attempt = Attempt(rng, run.config.get("epoch", 0), int(run.tags.get(ATTEMPT_TAG, 1)))
            if run.succeeded:
                landed.add(attempt.identity)
            else:
                failed.append(attempt)
        return landed, failed

    def _commit(self, cursor: IngestCursor, changed: dict[str, int]) -> list[tuple[str, str]]:
        """Commit durable offsets to the consumer group; a failure is reported and retried at the
        next tick, nothing else depends on it."""
        from kafka.errors import KafkaError

        from sensor_platform.broker_access import BrokerAccessDenied
        from sensor_platform.kafka.client import commit_offsets

        try:
            commit_offsets(self.settings, {split_key(k): off for k, off in changed.items()})
        except (BrokerUnavailable, BrokerAccessDenied, KafkaError) as exc:
            return [
                ("warning", f"could not commit offsets to the consumer group, will retry: {exc}")
            ]
        cursor.committed.update(changed)
        return []


def _rate(per_second: float) -> float:
    return round(per_second, 2)


def _since(cursor: IngestCursor, now: datetime) -> datetime:
    return datetime.fromisoformat(cursor.checked_at) - RUN_LOOKBACK if cursor.checked_at else now
