"""The Kafka ingest sensor's state machine: planned ranges, their attempts, retries, stuck ranges.

Guarantees: every offset is planned once (plan_ranges) and stays pending until a run has landed
it, an operator has skipped it, or the broker lost it (a recorded gap). A failed range is asked
for again with exponential backoff, under a new run key per attempt and the same batch id, so
files stay deterministic; after `RetryPolicy.max_attempts` it is stuck and waits for a person.
The durable offset of a partition, the only one ever committed, is the start of its first range
still pending (stuck ranges included), so nothing unlanded is ever acknowledged.

Limits: whether a run landed or failed is the caller's knowledge (the Dagster instance), passed in
as plain tuples; a failure must name its attempt, so reporting the same failed run twice counts
once. Stored as JSON in the sensor cursor; cursors written before retries existed still parse.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime

from sensor_platform.kafka.attempts import (
    DEFAULT_RETRY_POLICY,
    Attempt,
    Landed,
    RetryPolicy,
    parse_run_key,
)
from sensor_platform.kafka.offsets import (
    Gap,
    GapPolicy,
    OffsetRange,
    PartitionState,
    cursor_key,
    plan_ranges,
    split_key,
)

MAX_GAPS_KEPT = 50


def _span(start: int, end: int) -> str:
    return f"{start}-{end}"


@dataclass
class IngestCursor:
    """The sensor's state, kept as JSON in the Dagster cursor; keys are `topic/partition`."""

    offsets: dict[str, int] = field(default_factory=dict)  # next offset to plan
    pending: dict[str, list[list[int]]] = field(default_factory=dict)  # [start, end], in order
    epochs: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)  # last commit to the consumer group
    checked_at: str | None = None  # when the last tick looked up landed runs and the ends
    ends: dict[str, int] = field(default_factory=dict)  # each partition's end at that tick
    gaps: list[dict] = field(default_factory=list)
    # Per key and span `start-end`, for pending ranges past their first attempt or that failed:
    # {"attempt": n launched, "failures": f, "due": iso | None, "stuck_since": iso | None}.
    # A pending range without an entry is on its first attempt.
    retries: dict[str, dict[str, dict]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "IngestCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def dumps(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    def epoch(self, key: str) -> int:
        return self.epochs.get(key, 0)

    def durable(self, key: str) -> int:
        """Every offset below this one is in the lake (or was recorded as lost or skipped)."""
        pending = self.pending.get(key)
        return pending[0][0] if pending else self.offsets[key]

    def pending_attempts(self) -> list[Attempt]:
        """The current attempt of every range requested and not yet landed, stuck ones included."""
        return [
            Attempt(OffsetRange(*split_key(key), start, end), self.epoch(key), entry["attempt"])
            for key, spans in self.pending.items()
            for start, end in spans
            for entry in [self._entry(key, start, end)]
        ]

    def request(self, rng: OffsetRange) -> Attempt:
        """Record a newly planned range as pending; its first attempt."""
        key = cursor_key(rng.topic, rng.partition)
        self.pending.setdefault(key, []).append([rng.start, rng.end])
        return Attempt(rng, self.epoch(key), 1)

    def mark_landed(self, landed: set[Landed]) -> list[Attempt]:
        """Drop the pending ranges a successful run landed, whatever its attempt; returns them."""
        done = [a for a in self.pending_attempts() if a.identity in landed]
        for attempt in done:
            self._forget(attempt)
        return done

    def mark_failed(
        self, attempt: Attempt, at: datetime, policy: RetryPolicy = DEFAULT_RETRY_POLICY
    ) -> str | None:
        """Count the failure of `attempt` and schedule the next one, or declare the range stuck.

        Returns what happened, for the log, or None when the failure was already counted, is of
        an older attempt, or its range is no longer pending (reporting a run twice is harmless)."""
        current = self._current(attempt)
        if current is None or current["attempt"] != attempt.number or current["due"]:
            return None
        if current["stuck_since"]:
            return None
        entry = self._ensure_entry(attempt)
        entry["failures"] = attempt.number
        if attempt.number >= policy.max_attempts:
            entry["stuck_since"] = at.isoformat()
            return (
                f"{attempt.run_key} failed {attempt.number} times: stuck; its partition's "
                "committed offset waits here until a run lands it or an operator skips it"
            )
        due = at + policy.delay(attempt.number)
        entry["due"] = due.isoformat()
        return (
            f"{attempt.run_key} failed (attempt {attempt.number}); next attempt at {due:%H:%M:%S}"
        )

    def due_retries(self, now: datetime) -> list[Attempt]:
        """The next attempt of every failed range whose backoff is over (not yet launched)."""
        due = []
        for attempt in self.pending_attempts():
            entry = self._current(attempt)
            if entry["due"] and datetime.fromisoformat(entry["due"]) <= now:
                due.append(Attempt(attempt.range, attempt.epoch, attempt.number + 1))
        return due

    def mark_requested(self, retry: Attempt) -> None:
        """Record that a retry from due_retries was launched: it is the current attempt now."""
        entry = self._current(retry)
        if entry is None or not entry["due"] or entry["attempt"] + 1 != retry.number:
            raise ValueError(f"{retry.run_key} is not a due retry")
        entry.update(attempt=retry.number, due=None)

    def stuck(self) -> list[Attempt]:
        """Ranges that failed every attempt: only a run that lands them or a skip moves on."""
        return [a for a in self.pending_attempts() if self._current(a)["stuck_since"]]

    def stuck_since(self, attempt: Attempt) -> datetime | None:
        """When `attempt`'s range was declared stuck (None: it is not)."""
        entry = self._current(attempt)
        return (
            datetime.fromisoformat(entry["stuck_since"]) if entry and entry["stuck_since"] else None
        )

    def skip(self, rng: OffsetRange, at: datetime, reason: str) -> str:
        """An operator gives up on a stuck range: it is recorded like a gap and the partition's
        durable offset moves past it. Only stuck ranges can be skipped."""
        stuck = {
            (a.range.topic, a.range.partition, a.range.start, a.range.end): a for a in self.stuck()
        }
        attempt = stuck.get((rng.topic, rng.partition, rng.start, rng.end))
        if attempt is None:
            shown = ", ".join(a.run_key for a in stuck.values()) or "none"
            raise ValueError(f"{rng.run_key} is not a stuck range (stuck: {shown})")
        if not reason.strip():
            raise ValueError("a skip needs a reason: it is recorded with the data it gives up")
        self._forget(attempt)
        message = (
            f"Kafka range skipped by an operator: {attempt.run_key} ({len(rng)} offsets, "
            f"{attempt.number} failed attempts, batch {attempt.batch_id}): {reason.strip()}"
        )
        self._record(at, message, skipped=attempt.run_key)
        return message

    def record_gap(self, gap: Gap, policy: str, at: datetime) -> str:
        """Follow a resuming on_gap policy on one partition; returns what happened, for the log."""
        key = cursor_key(gap.topic, gap.partition)
        lost = self.pending.pop(key, [])  # requested but never landed: those offsets are gone
        self.retries.pop(key, None)
        if gap.reason == "ahead_of_end":
            self.epochs[key] = self.epoch(key) + 1
        message = f"Kafka data lost, policy on_gap={policy}: {gap.describe()}"
        if lost:
            message += f"; {len(lost)} requested ranges never landed: " + ", ".join(
                f"{s}-{e}" for s, e in lost
            )
        self._record(at, message)
        return message

    def uncommitted(self, keys: list[str]) -> dict[str, int]:
        """Durable offsets of `keys` that differ from the last commit: what to commit now."""
        durable = {key: self.durable(key) for key in keys if key in self.offsets}
        return {key: off for key, off in durable.items() if self.committed.get(key) != off}

    def _entry(self, key: str, start: int, end: int) -> dict:
        entry = self.retries.get(key, {}).get(_span(start, end))
        return entry or {"attempt": 1, "failures": 0, "due": None, "stuck_since": None}

    def _current(self, attempt: Attempt) -> dict | None:
        """The state of `attempt`'s range if it is pending under the same epoch, else None."""
        key, r = attempt.key, attempt.range
        if attempt.epoch != self.epoch(key) or [r.start, r.end] not in self.pending.get(key, []):
            return None
        return self.retries.get(key, {}).get(_span(r.start, r.end)) or self._entry(
            key, r.start, r.end
        )

    def _ensure_entry(self, attempt: Attempt) -> dict:
        r = attempt.range
        spans = self.retries.setdefault(attempt.key, {})
        return spans.setdefault(_span(r.start, r.end), self._entry(attempt.key, r.start, r.end))

    def _forget(self, attempt: Attempt) -> None:
        key, r = attempt.key, attempt.range
        self.pending[key].remove([r.start, r.end])
        if not self.pending[key]:
            del self.pending[key]
        spans = self.retries.get(key, {})
        spans.pop(_span(r.start, r.end), None)
        if not spans:
            self.retries.pop(key, None)

    def _record(self, at: datetime, message: str, **extra: str) -> None:
        self.gaps = [*self.gaps, {"at": at.isoformat(), "message": message, **extra}][
            -MAX_GAPS_KEPT:
        ]


@dataclass(frozen=True)
class Tick:
    """What one sensor evaluation decided; `cursor` is the state to store."""

    cursor: IngestCursor
    requests: list[Attempt]  # new ranges (first attempts), then due retries
    lag: dict[str, int]  # offsets not yet durable per partition (end - durable)
    commit: dict[str, int]  # durable offsets to commit to the consumer group, if one is set
    events: list[str]  # failures counted, retries scheduled, ranges stuck or skipped
    gaps: list[str]  # data the broker lost, as recorded
    stuck: list[Attempt]
    # records per second since the previous tick, per partition: arrived at the broker (its end
    # moved) and landed (ranges whose runs succeeded); empty on a first tick
    arrived: dict[str, float] = field(default_factory=dict)
    landed: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SkipRequest:
    """An operator's decision to give up on a stuck range (named by its run key)."""

    run_key: str
    reason: str


def advance(
    cursor: IngestCursor,
    states: list[PartitionState],
    *,
    now: datetime,
    landed: set[Landed],
    failed: list[Attempt],
    skips: list[SkipRequest],
    max_records_per_run: int,
    on_gap: GapPolicy,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    busy: frozenset[str] = frozenset(),
) -> Tick:
    """One sensor evaluation as a pure function of plain inputs: land, count failures, apply
    skips, plan new ranges, and launch due retries. `cursor` itself is not modified.

    `landed`, `failed` and `skips` may repeat what earlier ticks were told (runs found again
    through a look-back window): each is applied once. Raises OffsetGapError when on_gap='fail'
    and the broker lost data."""
    cursor = IngestCursor.parse(cursor.dumps())
    previous = datetime.fromisoformat(cursor.checked_at) if cursor.checked_at else None
    done = cursor.mark_landed(landed)
    events = [m for m in (cursor.mark_failed(a, now, policy) for a in failed) if m]
    events += [m for m in (_apply_skip(cursor, request, now) for request in skips) if m]
    plan = plan_ranges(
        cursor.offsets, states, max_records_per_run=max_records_per_run, on_gap=on_gap, busy=busy
    )
    gaps = [cursor.record_gap(gap, on_gap, now) for gap in plan.gaps]
    cursor.offsets = plan.new_cursor
    requests = [cursor.request(rng) for rng in plan.ranges]
    for retry in cursor.due_retries(now):
        cursor.mark_requested(retry)
        requests.append(retry)
    ends = {cursor_key(s.topic, s.partition): s.end for s in states}
    lag = {key: end - cursor.durable(key) for key, end in ends.items()}
    arrived, landed_rates = _rates(cursor.ends, ends, done, previous, now)
    cursor.ends, cursor.checked_at = ends, now.isoformat()
    return Tick(
        cursor=cursor,
        requests=requests,
        lag=lag,
        commit=cursor.uncommitted(list(ends)),
        events=events,
        gaps=gaps,
        stuck=cursor.stuck(),
        arrived=arrived,
        landed=landed_rates,
    )


def _rates(
    before: dict[str, int],
    ends: dict[str, int],
    done: list[Attempt],
    previous: datetime | None,
    now: datetime,
) -> tuple[dict[str, float], dict[str, float]]:
    """Records/s per partition between the previous tick and `now`: arrived (the end moved; not
    given where the offsets started over) and landed (the ranges `done` since then)."""
    seconds = (now - previous).total_seconds() if previous else 0.0
    if seconds <= 0:
        return {}, {}
    arrived = {
        key: (end - before[key]) / seconds
        for key, end in ends.items()
        if key in before and end >= before[key]
    }
    landed = dict.fromkeys(ends, 0.0)
    for attempt in done:
        if attempt.key in landed:
            landed[attempt.key] += len(attempt.range) / seconds
    return arrived, landed


def _apply_skip(cursor: IngestCursor, request: SkipRequest, now: datetime) -> str | None:
    """Skip the named range if it is stuck; a request already applied is ignored, one for a range
    still being retried is reported and ignored (the operator may ask again once it is stuck)."""
    try:
        named = parse_run_key(request.run_key)
    except ValueError as exc:
        return f"skip request ignored: {exc}"
    if named.epoch != cursor.epoch(named.key) or [named.range.start, named.range.end] not in (
        cursor.pending.get(named.key, [])
    ):
        return None  # landed, lost or skipped already
    if not any(a.identity == named.identity for a in cursor.stuck()):
        return f"skip request for {request.run_key} ignored: the range is not stuck, it is retried"
    if not request.reason.strip():
        return f"skip request for {request.run_key} ignored: it needs a reason"
    return cursor.skip(named.range, now, request.reason)
