"""The ingest cursor's state machine: pending ranges, retries with backoff, stuck ranges, skips,
and the durable offset that is the only one ever committed."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from sensor_platform.kafka.cursor import (
    Attempt,
    IngestCursor,
    RetryPolicy,
    SkipRequest,
    advance,
    parse_run_key,
)
from sensor_platform.kafka.offsets import Gap, OffsetGapError, OffsetRange, PartitionState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(
    max_attempts=3, first_delay=timedelta(minutes=1), max_delay=timedelta(minutes=3)
)
# A cursor written before retries existed, by the sensor of that time.
OLD_CURSOR = json.dumps(
    {
        "offsets": {"t/0": 30, "t/1": 5},
        "pending": {"t/0": [[10, 20], [20, 30]]},
        "epochs": {"t/1": 1},
        "committed": {"t/0": 10},
        "checked_at": "2026-03-01T11:59:00+00:00",
        "gaps": [{"at": "2026-02-01T00:00:00+00:00", "message": "Kafka data lost ..."}],
    }
)


def tick(cursor, states, now=T0, *, landed=(), failed=(), skips=(), on_gap="fail", chunk=10):
    return advance(
        cursor,
        states,
        now=now,
        landed=set(landed),
        failed=list(failed),
        skips=list(skips),
        max_records_per_run=chunk,
        on_gap=on_gap,
        policy=POLICY,
    )


def keys(attempts: list[Attempt]) -> list[str]:
    return [a.run_key for a in attempts]


def test_a_cursor_written_before_retries_parses_and_keeps_its_meaning():
    cursor = IngestCursor.parse(OLD_CURSOR)
    assert keys(cursor.pending_attempts()) == ["t/0/10-20", "t/0/20-30"]
    assert cursor.durable("t/0") == 10 and cursor.durable("t/1") == 5
    assert cursor.epoch("t/1") == 1 and cursor.stuck() == []
    assert cursor.gaps[0]["message"] == "Kafka data lost ..."
    again = IngestCursor.parse(cursor.dumps())
    assert again == cursor
    assert json.loads(again.dumps())["pending"] == json.loads(OLD_CURSOR)["pending"]


def test_run_keys_name_range_epoch_and_attempt_and_batch_ids_never_change():
    rng = OffsetRange("t", 0, 100, 200)
    first, retry = Attempt(rng), Attempt(rng, number=3)
    assert first.run_key == "t/0/100-200"
    assert retry.run_key == "t/0/100-200#attempt-3"
    assert Attempt(rng, epoch=2).run_key == "t/0/100-200@e2"
    assert Attempt(rng, epoch=2, number=4).run_key == "t/0/100-200@e2#attempt-4"
    assert first.batch_id == retry.batch_id == rng.batch_id
    assert Attempt(rng, epoch=2, number=4).batch_id == f"{rng.batch_id}-e2"
    for attempt in (first, retry, Attempt(rng, 2), Attempt(rng, 2, 4)):
        assert parse_run_key(attempt.run_key) == attempt
    assert parse_run_key("my.topic-x/12/0-5") == Attempt(OffsetRange("my.topic-x", 12, 0, 5))
    for bad in ("t/0/100", "t/0/1-2#attempt-0", "t/0/1-2@ex", "t/0/5-1", "nonsense"):
        with pytest.raises(ValueError):
            parse_run_key(bad)


def test_first_tick_plans_every_range_as_a_first_attempt():
    result = tick(IngestCursor(), [PartitionState("t", 0, 0, 25)])
    assert keys(result.requests) == ["t/0/0-10", "t/0/10-20", "t/0/20-25"]
    assert result.cursor.offsets == {"t/0": 25}
    assert result.cursor.durable("t/0") == 0
    assert result.lag == {"t/0": 25}
    assert result.commit == {"t/0": 0}


def test_advance_leaves_the_given_cursor_alone():
    cursor = IngestCursor.parse(OLD_CURSOR)
    before = cursor.dumps()
    tick(cursor, [PartitionState("t", 0, 0, 50)], landed={("t", 0, 10, 20, 0)})
    assert cursor.dumps() == before


def test_commit_waits_for_the_first_range_not_landed_whatever_lands_after_it():
    states = [PartitionState("t", 0, 0, 30)]
    first = tick(IngestCursor(), states)
    later = tick(first.cursor, states, landed={("t", 0, 10, 20, 0), ("t", 0, 20, 30, 0)})
    assert later.cursor.durable("t/0") == 0
    assert later.lag == {"t/0": 30}
    assert later.commit == {"t/0": 0}
    later.cursor.committed.update(later.commit)  # the sensor records a commit that succeeded
    done = tick(later.cursor, states, landed={("t", 0, 0, 10, 0)})
    assert done.cursor.pending == {} and done.cursor.durable("t/0") == 30
    assert done.commit == {"t/0": 30} and done.lag == {"t/0": 0}
    done.cursor.committed.update(done.commit)
    assert tick(done.cursor, states).commit == {}


def test_a_failed_range_is_retried_with_backoff_under_a_new_run_key():
    states = [PartitionState("t", 0, 0, 10)]
    cursor = tick(IngestCursor(), states).cursor
    [first] = cursor.pending_attempts()
    failed = tick(cursor, states, T0, failed=[first])
    assert failed.requests == []
    assert failed.events == ["t/0/0-10 failed (attempt 1); next attempt at 12:01:00"]
    # not due yet, then due: the second attempt, same range and batch id
    assert tick(failed.cursor, states, T0 + timedelta(seconds=59)).requests == []
    due = tick(failed.cursor, states, T0 + timedelta(minutes=1))
    [retry] = due.requests
    assert retry.run_key == "t/0/0-10#attempt-2" and retry.batch_id == first.batch_id
    # launched once only, and the first attempt's failure, found again, counts once
    again = tick(due.cursor, states, T0 + timedelta(minutes=5), failed=[first])
    assert again.requests == [] and again.events == []
    assert keys(again.cursor.pending_attempts()) == ["t/0/0-10#attempt-2"]


def test_backoff_doubles_up_to_the_cap_and_after_max_attempts_the_range_is_stuck():
    policy = RetryPolicy(
        max_attempts=5, first_delay=timedelta(minutes=1), max_delay=timedelta(minutes=3)
    )
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 3, 3)]
    states = [PartitionState("t", 0, 0, 20)]
    cursor, now = tick(IngestCursor(), states).cursor, T0
    current = cursor.pending_attempts()[0]
    launched = [current.run_key]
    for _ in range(POLICY.max_attempts - 1):
        result = tick(cursor, states, now, failed=[current])
        now += POLICY.delay(current.number)
        result = tick(result.cursor, states, now)
        [current] = [r for r in result.requests if r.range.start == 0]
        launched.append(current.run_key)
        cursor = result.cursor
    assert launched == ["t/0/0-10", "t/0/0-10#attempt-2", "t/0/0-10#attempt-3"]
    stuck = tick(cursor, states, now, failed=[current], landed={("t", 0, 10, 20, 0)})
    assert "stuck" in stuck.events[0]
    assert keys(stuck.stuck) == ["t/0/0-10#attempt-3"]
    # a stuck range is never asked for again and holds the commit, even past ranges that landed
    much_later = tick(stuck.cursor, states, now + timedelta(days=30))
    assert much_later.requests == []
    assert much_later.cursor.durable("t/0") == 0 and much_later.lag == {"t/0": 20}


def test_a_run_that_lands_a_stuck_range_after_all_releases_it():
    cursor = stuck_cursor()
    result = tick(cursor, [PartitionState("t", 0, 0, 10)], landed={("t", 0, 0, 10, 0)})
    assert result.stuck == [] and result.cursor.pending == {} and result.cursor.retries == {}
    assert result.cursor.durable("t/0") == 10


def stuck_cursor() -> IngestCursor:
    states = [PartitionState("t", 0, 0, 10)]
    cursor, now = tick(IngestCursor(), states).cursor, T0
    for _ in range(POLICY.max_attempts):
        [current] = cursor.pending_attempts()
        cursor = tick(cursor, states, now, failed=[current]).cursor
        now += POLICY.max_delay
        cursor = tick(cursor, states, now).cursor
    assert len(cursor.stuck()) == 1
    return cursor


def test_skipping_a_stuck_range_is_recorded_like_a_gap_and_moves_the_commit():
    cursor = stuck_cursor()
    [stuck] = cursor.stuck()
    request = SkipRequest(run_key="t/0/0-10", reason="poison message, ticket OPS-42")
    result = tick(cursor, [PartitionState("t", 0, 0, 10)], T0 + timedelta(days=1), skips=[request])
    assert result.stuck == [] and result.cursor.pending == {}
    assert result.cursor.durable("t/0") == 10 and result.commit == {"t/0": 10}
    [event] = result.events
    assert "skipped by an operator" in event and "OPS-42" in event and stuck.batch_id in event
    assert result.cursor.gaps[-1] == {
        "at": (T0 + timedelta(days=1)).isoformat(),
        "message": event,
        "skipped": "t/0/0-10#attempt-3",
    }
    # the same request found again later changes nothing
    again = tick(result.cursor, [PartitionState("t", 0, 0, 10)], skips=[request])
    assert again.events == [] and again.cursor.gaps == result.cursor.gaps


def test_only_stuck_ranges_can_be_skipped():
    states = [PartitionState("t", 0, 0, 20)]
    cursor = tick(IngestCursor(), states).cursor
    with pytest.raises(ValueError, match=r"t/0/0-10 is not a stuck range \(stuck: none\)"):
        cursor.skip(OffsetRange("t", 0, 0, 10), T0, "impatient")
    result = tick(cursor, states, skips=[SkipRequest("t/0/0-10", "impatient")])
    assert result.events == [
        "skip request for t/0/0-10 ignored: the range is not stuck, it is retried"
    ]
    assert keys(result.cursor.pending_attempts()) == ["t/0/0-10", "t/0/10-20"]
    assert (
        tick(cursor, states, skips=[SkipRequest("bogus", "x")])
        .events[0]
        .startswith("skip request ignored")
    )
    stuck = stuck_cursor()
    with pytest.raises(ValueError, match="reason"):
        stuck.skip(OffsetRange("t", 0, 0, 10), T0, "  ")
    unexplained = tick(stuck, [PartitionState("t", 0, 0, 10)], skips=[SkipRequest("t/0/0-10", "")])
    assert unexplained.events == ["skip request for t/0/0-10 ignored: it needs a reason"]
    assert len(unexplained.stuck) == 1


def test_failures_of_other_epochs_or_ranges_not_pending_are_ignored():
    states = [PartitionState("t", 0, 0, 10)]
    cursor = tick(IngestCursor(), states).cursor
    for stale in (
        Attempt(OffsetRange("t", 0, 0, 10), epoch=1),  # before the broker reset
        Attempt(OffsetRange("t", 0, 0, 5)),  # never planned
        Attempt(OffsetRange("t", 0, 0, 10), number=2),  # an attempt not launched
    ):
        result = tick(cursor, states, failed=[stale])
        assert result.events == [] and result.cursor.retries == {}


def test_broker_reset_drops_pending_retries_and_starts_a_new_epoch():
    states = [PartitionState("t", 0, 0, 30)]
    cursor = tick(IngestCursor(), states).cursor
    cursor = tick(cursor, states, failed=[cursor.pending_attempts()[0]]).cursor
    assert cursor.retries
    reset = tick(cursor, [PartitionState("t", 0, 0, 4)], T0, on_gap="earliest")
    assert reset.cursor.epoch("t/0") == 1 and reset.cursor.retries == {}
    assert "3 requested ranges never landed" in reset.gaps[0]
    assert keys(reset.requests) == ["t/0/0-4@e1"]
    assert reset.requests[0].batch_id.endswith("-e1")
    with pytest.raises(OffsetGapError) as info:
        tick(cursor, [PartitionState("t", 0, 0, 4)], on_gap="fail")
    assert info.value.gaps == [Gap("t", 0, 30, 0, "ahead_of_end")]


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(first_delay=timedelta(hours=2), max_delay=timedelta(hours=1))


def test_backoff_of_a_generous_policy_never_overflows():
    policy = RetryPolicy(max_attempts=10_000, max_delay=timedelta(days=1))
    assert policy.delay(9_999) == timedelta(days=1)


def test_records_per_second_arrived_and_landed_per_partition_since_the_previous_tick():
    first = tick(IngestCursor(), [PartitionState("t", 0, 0, 20), PartitionState("t", 1, 0, 5)])
    assert (first.arrived, first.landed) == ({}, {})  # nothing to compare with yet
    assert first.cursor.ends == {"t/0": 20, "t/1": 5}
    assert first.cursor.checked_at == T0.isoformat()
    landed = {a.identity for a in first.requests if a.range.partition == 0}  # t/0: 0-10, 10-20
    second = tick(
        first.cursor,
        [PartitionState("t", 0, 0, 80), PartitionState("t", 1, 0, 5)],
        T0 + timedelta(seconds=30),
        landed=landed,
    )
    assert second.arrived == {"t/0": 2.0, "t/1": 0.0}  # 60 new offsets in 30 s; none
    assert second.landed == {"t/0": 20 / 30, "t/1": 0.0}
    # landed runs found again by a later tick count once; offsets that started over give no rate
    third = tick(
        second.cursor,
        [PartitionState("t", 0, 0, 80), PartitionState("t", 1, 0, 2)],
        T0 + timedelta(seconds=40),
        landed=landed,
        on_gap="earliest",
    )
    assert third.landed == {"t/0": 0.0, "t/1": 0.0}
    assert third.arrived == {"t/0": 0.0}


def test_a_stuck_range_knows_since_when():
    cursor = IngestCursor()
    first = cursor.request(OffsetRange("t", 0, 0, 10))
    assert cursor.stuck_since(first) is None
    cursor.mark_failed(first, T0, POLICY)
    [retry] = cursor.due_retries(T0 + timedelta(minutes=1))
    cursor.mark_requested(retry)
    cursor.mark_failed(retry, T0 + timedelta(minutes=2), POLICY)
    [third] = cursor.due_retries(T0 + timedelta(minutes=4))
    cursor.mark_requested(third)
    assert cursor.stuck_since(third) is None
    cursor.mark_failed(third, T0 + timedelta(minutes=5), POLICY)
    assert cursor.stuck() == [third]
    assert cursor.stuck_since(third) == T0 + timedelta(minutes=5)
