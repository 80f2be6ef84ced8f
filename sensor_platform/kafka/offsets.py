"""Plan which Kafka offset ranges to ingest next from a cursor and what the broker holds (no I/O).

The cursor maps `topic/partition` to the next offset to ingest. Every offset between the cursor and
the end of a partition is planned, in ranges of at most `max_records_per_run` offsets, and the new
cursor points past the last planned range. Offsets the broker no longer has (or never had) are a
`Gap`: never skipped silently.
"""

import hashlib
from dataclasses import dataclass
from typing import Literal

from sensor_platform.kafka.settings import check_topic
from sensor_platform.lake.layout import check_batch_id

GapPolicy = Literal["fail", "earliest", "latest"]
StartPolicy = Literal["earliest", "latest"]
GAP_POLICIES = ("fail", "earliest", "latest")
START_POLICIES = ("earliest", "latest")

# Batch ids are capped at 200 characters; a long topic name is shortened and made unique again
# with a digest of the full name, so two long topics never share landing files.
_MAX_TOPIC_IN_BATCH_ID = 120


def cursor_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def split_key(key: str) -> tuple[str, int]:
    """(topic, partition) of a cursor key `topic/partition` (topic names never hold a '/')."""
    topic, partition = key.rsplit("/", 1)
    return topic, int(partition)


@dataclass(frozen=True)
class OffsetRange:
    """Offsets [start, end) of one topic-partition: the work of one run."""

    topic: str
    partition: int
    start: int
    end: int

    def __post_init__(self) -> None:
        check_topic(self.topic)
        if self.partition < 0 or self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid offset range {self.run_key}")

    @property
    def run_key(self) -> str:
        return f"{self.topic}/{self.partition}/{self.start}-{self.end}"

    @property
    def batch_id(self) -> str:
        topic = self.topic
        if len(topic) > _MAX_TOPIC_IN_BATCH_ID:
            digest = hashlib.sha256(topic.encode()).hexdigest()[:12]
            topic = f"{topic[:_MAX_TOPIC_IN_BATCH_ID]}.{digest}"
        return check_batch_id(f"kafka-{topic}-p{self.partition}-{self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PartitionState:
    """What the broker holds for one topic-partition: offsets [earliest, end)."""

    topic: str
    partition: int
    earliest: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.earliest <= self.end:
            raise ValueError(
                f"invalid state of {self.topic}/{self.partition}: "
                f"earliest {self.earliest}, end {self.end}"
            )


@dataclass(frozen=True)
class Gap:
    """The cursor pointed at offsets the broker does not have; ingestion resumed elsewhere."""

    topic: str
    partition: int
    expected_next: int
    resumed_at: int
    reason: Literal["truncated", "ahead_of_end"]

    def describe(self) -> str:
        if self.reason == "truncated":
            why = "retention removed offsets below the earliest"
        else:
            why = "the partition ends before the cursor (broker lost data or was reset)"
        return (
            f"{self.topic}/{self.partition}: expected offset {self.expected_next}, "
            f"resumable at {self.resumed_at}: {why}"
        )


class OffsetGapError(Exception):
    """Raised under policy `fail` when the cursor points at offsets the broker does not have."""

    def __init__(self, gaps: list[Gap]):
        self.gaps = gaps
        super().__init__(
            "Kafka offsets missing, nothing planned: " + "; ".join(g.describe() for g in gaps)
        )


@dataclass(frozen=True)
class Plan:
    ranges: list[OffsetRange]
    new_cursor: dict[str, int]
    gaps: list[Gap]
    lag: dict[str, int]  # offsets not yet ingested per cursor key (end - next)


def plan_ranges(
    cursor: dict[str, int],
    states: list[PartitionState],
    *,
    max_records_per_run: int,
    on_gap: GapPolicy,
    new_partition_start: StartPolicy = "earliest",
    busy: frozenset[str] = frozenset(),
) -> Plan:
    """Plan every offset range not yet ingested, in chunks of at most `max_records_per_run`.

    For the partitions in `busy` (keys with a run queued or running) only whole chunks are
    planned: their newest offsets wait until that run has ended, so while runs are slower than
    the sensor's ticks they grow instead of multiplying (every run is a new process).

    Cursor entries of partitions absent from `states` are kept unchanged: a topic briefly missing
    from metadata must not restart from its earliest offset when it reappears.
    """
    if max_records_per_run < 1:
        raise ValueError("max_records_per_run must be at least 1")
    if on_gap not in GAP_POLICIES:
        raise ValueError(f"on_gap must be one of {GAP_POLICIES}, got {on_gap!r}")
    if new_partition_start not in START_POLICIES:
        raise ValueError(f"new_partition_start must be one of {START_POLICIES}")

    new_cursor = dict(cursor)
    ranges: list[OffsetRange] = []
    gaps: list[Gap] = []
    lag: dict[str, int] = {}
    for state in sorted(states, key=lambda s: (s.topic, s.partition)):
        key = cursor_key(state.topic, state.partition)
        if key not in cursor:
            next_offset = state.earliest if new_partition_start == "earliest" else state.end
        else:
            next_offset = cursor[key]
            gap = _gap(state, next_offset, on_gap)
            if gap is not None:
                gaps.append(gap)
                next_offset = gap.resumed_at
        lag[key] = state.end - next_offset
        stop = state.end
        if key in busy:  # whole chunks only
            stop = (
                next_offset
                + max(0, stop - next_offset) // max_records_per_run * max_records_per_run
            )
        for start in range(next_offset, stop, max_records_per_run):
            end = min(start + max_records_per_run, stop)
            ranges.append(OffsetRange(state.topic, state.partition, start, end))
        new_cursor[key] = max(stop, next_offset)
    if gaps and on_gap == "fail":
        raise OffsetGapError(gaps)
    return Plan(ranges=ranges, new_cursor=new_cursor, gaps=gaps, lag=lag)


def _gap(state: PartitionState, next_offset: int, on_gap: GapPolicy) -> Gap | None:
    if next_offset > state.end:
        reason = "ahead_of_end"
    elif next_offset < state.earliest:
        reason = "truncated"
    else:
        return None
    # Under `fail` nothing resumes; the earliest is recorded only to say where it could.
    resumed_at = state.end if on_gap == "latest" else state.earliest
    return Gap(state.topic, state.partition, next_offset, resumed_at, reason)
