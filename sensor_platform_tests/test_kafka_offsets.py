"""Offset planning: every offset planned exactly once, in bounded chunks, and lost data never hidden."""

import pytest

from sensor_platform.kafka.offsets import (
    Gap,
    OffsetGapError,
    OffsetRange,
    PartitionState,
    cursor_key,
    plan_ranges,
)
from sensor_platform.lake.layout import check_batch_id


def spans(plan) -> list[tuple[str, int, int, int]]:
    return [(r.topic, r.partition, r.start, r.end) for r in plan.ranges]


def test_first_run_plans_every_partition_from_earliest_in_chunks():
    states = [
        PartitionState("readings", 0, earliest=0, end=25),
        PartitionState("readings", 1, earliest=5, end=12),
        PartitionState("readings", 2, earliest=0, end=0),
    ]
    plan = plan_ranges({}, states, max_records_per_run=10, on_gap="fail")
    assert spans(plan) == [
        ("readings", 0, 0, 10),
        ("readings", 0, 10, 20),
        ("readings", 0, 20, 25),
        ("readings", 1, 5, 12),
    ]
    assert plan.new_cursor == {"readings/0": 25, "readings/1": 12, "readings/2": 0}
    assert plan.lag == {"readings/0": 25, "readings/1": 7, "readings/2": 0}
    assert plan.gaps == []


def test_chunks_exactly_at_the_limit_and_one_past_it():
    exact = plan_ranges(
        {"t/0": 100}, [PartitionState("t", 0, 0, 120)], max_records_per_run=20, on_gap="fail"
    )
    assert spans(exact) == [("t", 0, 100, 120)]
    one_more = plan_ranges(
        {"t/0": 100}, [PartitionState("t", 0, 0, 121)], max_records_per_run=20, on_gap="fail"
    )
    assert spans(one_more) == [("t", 0, 100, 120), ("t", 0, 120, 121)]
    assert all(len(r) <= 20 for r in one_more.ranges)


def test_ranges_tile_the_new_offsets_without_gap_or_overlap():
    plan = plan_ranges(
        {"t/0": 7}, [PartitionState("t", 0, 0, 1_000)], max_records_per_run=33, on_gap="fail"
    )
    covered = [offset for r in plan.ranges for offset in range(r.start, r.end)]
    assert covered == list(range(7, 1_000))
    assert max(len(r) for r in plan.ranges) == 33


def test_a_busy_partition_gets_whole_chunks_only_and_its_tail_waits():
    states = [PartitionState("t", 0, 0, 125), PartitionState("t", 1, 0, 7)]
    cursor = {"t/0": 100, "t/1": 0}
    busy = plan_ranges(cursor, states, max_records_per_run=10, on_gap="fail", busy={"t/0", "t/1"})
    assert spans(busy) == [("t", 0, 100, 110), ("t", 0, 110, 120)]  # 120-125 and t/1 wait
    assert busy.new_cursor == {"t/0": 120, "t/1": 0}
    assert busy.lag == {"t/0": 25, "t/1": 7}
    # once the runs ended, the next plan takes the tail: every offset exactly once
    idle = plan_ranges(busy.new_cursor, states, max_records_per_run=10, on_gap="fail")
    assert spans(idle) == [("t", 0, 120, 125), ("t", 1, 0, 7)]


def test_caught_up_cursor_plans_nothing_and_keeps_position():
    plan = plan_ranges(
        {"t/0": 50}, [PartitionState("t", 0, 10, 50)], max_records_per_run=10, on_gap="fail"
    )
    assert plan.ranges == []
    assert plan.new_cursor == {"t/0": 50}
    assert plan.lag == {"t/0": 0}


def test_new_partition_and_new_topic_start_at_earliest_by_default():
    cursor = {"t/0": 30}
    states = [
        PartitionState("t", 0, 0, 40),
        PartitionState("t", 1, 3, 8),  # partition added to a known topic
        PartitionState("u", 0, 100, 104),  # a topic never seen (e.g. matched by a pattern)
    ]
    plan = plan_ranges(cursor, states, max_records_per_run=1_000, on_gap="fail")
    assert spans(plan) == [("t", 0, 30, 40), ("t", 1, 3, 8), ("u", 0, 100, 104)]
    assert plan.new_cursor == {"t/0": 40, "t/1": 8, "u/0": 104}


def test_new_partition_start_latest_skips_history_but_not_known_partitions():
    states = [PartitionState("t", 0, 0, 40), PartitionState("t", 1, 0, 500)]
    plan = plan_ranges(
        {"t/0": 30},
        states,
        max_records_per_run=1_000,
        on_gap="fail",
        new_partition_start="latest",
    )
    assert spans(plan) == [("t", 0, 30, 40)]
    assert plan.new_cursor == {"t/0": 40, "t/1": 500}
    assert plan.lag == {"t/0": 10, "t/1": 0}
    assert plan.gaps == []  # starting a new partition at latest is a choice, not lost data


def test_cursor_of_a_partition_absent_from_metadata_is_kept():
    plan = plan_ranges(
        {"gone/0": 77, "t/0": 1},
        [PartitionState("t", 0, 0, 2)],
        max_records_per_run=10,
        on_gap="fail",
    )
    assert plan.new_cursor == {"gone/0": 77, "t/0": 2}
    assert "gone/0" not in plan.lag


def test_planning_with_the_new_cursor_plans_nothing_again():
    states = [PartitionState("t", 0, 0, 95), PartitionState("t", 1, 0, 3)]
    first = plan_ranges({}, states, max_records_per_run=10, on_gap="fail")
    second = plan_ranges(first.new_cursor, states, max_records_per_run=10, on_gap="fail")
    assert second.ranges == []
    assert second.new_cursor == first.new_cursor


def test_truncated_partition_fails_by_default_naming_the_offsets():
    states = [PartitionState("t", 0, 0, 10), PartitionState("t", 1, 500, 900)]
    with pytest.raises(OffsetGapError) as info:
        plan_ranges({"t/0": 5, "t/1": 120}, states, max_records_per_run=100, on_gap="fail")
    message = str(info.value)
    assert "t/1" in message and "120" in message and "500" in message
    assert info.value.gaps == [Gap("t", 1, 120, 500, "truncated")]


def test_cursor_ahead_of_end_fails_by_default():
    with pytest.raises(OffsetGapError, match=r"t/0.*expected offset 300") as info:
        plan_ranges(
            {"t/0": 300}, [PartitionState("t", 0, 0, 40)], max_records_per_run=10, on_gap="fail"
        )
    assert info.value.gaps[0].reason == "ahead_of_end"


def test_truncated_resumes_at_earliest_and_records_the_gap():
    plan = plan_ranges(
        {"t/0": 120}, [PartitionState("t", 0, 500, 530)], max_records_per_run=20, on_gap="earliest"
    )
    assert plan.gaps == [Gap("t", 0, 120, 500, "truncated")]
    assert spans(plan) == [("t", 0, 500, 520), ("t", 0, 520, 530)]
    assert plan.new_cursor == {"t/0": 530}
    assert plan.lag == {"t/0": 30}


def test_truncated_resumes_at_latest_and_records_the_gap():
    plan = plan_ranges(
        {"t/0": 120}, [PartitionState("t", 0, 500, 530)], max_records_per_run=20, on_gap="latest"
    )
    assert plan.gaps == [Gap("t", 0, 120, 530, "truncated")]
    assert plan.ranges == []
    assert plan.new_cursor == {"t/0": 530}
    assert plan.lag == {"t/0": 0}


def test_broker_reset_resumes_at_earliest_and_records_the_gap():
    # A memory broker restarted: the partition starts again at 0 with new data.
    plan = plan_ranges(
        {"t/0": 300, "t/1": 4},
        [PartitionState("t", 0, 0, 12), PartitionState("t", 1, 0, 6)],
        max_records_per_run=100,
        on_gap="earliest",
    )
    assert plan.gaps == [Gap("t", 0, 300, 0, "ahead_of_end")]
    assert spans(plan) == [("t", 0, 0, 12), ("t", 1, 4, 6)]
    assert plan.new_cursor == {"t/0": 12, "t/1": 6}


def test_cursor_at_exact_bounds_is_not_a_gap():
    states = [PartitionState("t", 0, 10, 20), PartitionState("t", 1, 10, 20)]
    plan = plan_ranges({"t/0": 10, "t/1": 20}, states, max_records_per_run=100, on_gap="fail")
    assert plan.gaps == []
    assert spans(plan) == [("t", 0, 10, 20)]


def test_invalid_arguments_are_rejected():
    states = [PartitionState("t", 0, 0, 1)]
    with pytest.raises(ValueError):
        plan_ranges({}, states, max_records_per_run=0, on_gap="fail")
    with pytest.raises(ValueError):
        plan_ranges({}, states, max_records_per_run=1, on_gap="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PartitionState("t", 0, earliest=5, end=4)
    with pytest.raises(ValueError):
        OffsetRange("t", 0, 10, 9)
    with pytest.raises(ValueError):
        OffsetRange("bad/topic", 0, 0, 1)


def test_run_key_batch_id_and_cursor_key_formats():
    rng = OffsetRange("sensor.readings_v2-eu", 3, 1_000, 51_000)
    assert rng.run_key == "sensor.readings_v2-eu/3/1000-51000"
    assert rng.batch_id == "kafka-sensor.readings_v2-eu-p3-1000-51000"
    assert check_batch_id(rng.batch_id) == rng.batch_id
    assert cursor_key("sensor.readings_v2-eu", 3) == "sensor.readings_v2-eu/3"
    assert len(rng) == 50_000


def test_batch_ids_of_long_topics_stay_valid_and_distinct():
    a = OffsetRange("a" * 240 + "x", 0, 0, 10)
    b = OffsetRange("a" * 240 + "y", 0, 0, 10)
    assert check_batch_id(a.batch_id) and check_batch_id(b.batch_id)
    assert a.batch_id != b.batch_id
    assert a.batch_id.endswith("-p0-0-10")
