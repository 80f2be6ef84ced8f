"""Minute/hour/day aggregates against statistics computed straight from the raw readings."""

import random
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.rollups import compute, slicing
from sensor_platform.rollups.compute import minute_aggregates, rollup
from sensor_platform.rollups.schema import AGGREGATE_SCHEMA
from sensor_platform.rollups.slicing import (
    EVERY_DEVICE,
    DeviceRange,
    device_ranges,
    interleave_windows,
)
from sensor_platform_tests.readings_factory import hour, readings_table

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOSTILE_DEVICE = "d'); DROP TABLE partials; --"
SERIES = [  # device_id, site_id, metric, unit, value offset, noise
    ("d1", "s1", "temperature", "°C", 21.0, 3.0),
    ("d1", "s1", "pressure", "Pa", 101_325.0, 5.0),  # large mean, small spread
    ("d2", None, "humidity", "%", 55.0, 10.0),
    ("d4", "s1", "co2", "ppm", 420.0, 40.0),
    ("d4", None, "co2", None, 415.0, 40.0),  # same device, no site: its own group
    (HOSTILE_DEVICE, "../../etc/passwd", "x' OR '1'='1", "'\"", -3.0, 1.0),
    ("d5", "s2", "leaf_wetness_index_v2", "idx", 0.5, 0.2),  # a metric nobody declared
]
CADENCES = {"d1": 10, "d2": 30, "d4": 7, HOSTILE_DEVICE: 5}  # d5 has no known cadence
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)

ORACLE_SQL = """
WITH windows AS (
    SELECT time_bucket($width, event_time, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS window_start,
           device_id, site_id, metric,
           first(unit ORDER BY event_time, reading_id) AS unit,
           count(*) AS reading_count, min(value) AS min_value, max(value) AS max_value,
           avg(value) AS mean_value, stddev_samp(value) AS stddev_value,
           var_pop(value) * count(*) AS m2,
           first(value ORDER BY event_time, reading_id) AS first_value,
           min(event_time) AS first_event_time,
           last(value ORDER BY event_time, reading_id) AS last_value,
           max(event_time) AS last_event_time
    FROM raw GROUP BY ALL
)
SELECT w.*, $seconds / c.cadence AS expected_count, w.reading_count * c.cadence / $seconds AS coverage
FROM windows AS w LEFT JOIN cadences AS c USING (device_id)
"""
SORT_KEYS = [
    (name, "ascending", "at_end") for name in ("window_start", "device_id", "site_id", "metric")
]
# Sums depend on the order they run in; every other column must match exactly.
APPROXIMATE = {"mean_value", "stddev_value", "m2", "expected_count", "coverage"}


def straight_from_raw(raw: pa.Table, width: timedelta) -> pa.Table:
    """The independent answer: ordered aggregates over the raw readings of each window."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("raw", raw)
    con.register(
        "cadences", pa.table({"device_id": list(CADENCES), "cadence": list(CADENCES.values())})
    )
    params = {"width": width, "seconds": width.total_seconds()}
    return con.sql(ORACLE_SQL, params=params).to_arrow_table()


def assert_matches(ours: pa.Table, expected: pa.Table) -> None:
    assert ours.schema.equals(AGGREGATE_SCHEMA)
    assert ours.equals(ours.sort_by(SORT_KEYS))
    expected = expected.select(AGGREGATE_SCHEMA.names).cast(AGGREGATE_SCHEMA)
    expected = expected.sort_by(SORT_KEYS)
    assert ours.num_rows == expected.num_rows
    for name in AGGREGATE_SCHEMA.names:
        mine, theirs = ours.column(name), expected.column(name)
        if name not in APPROXIMATE:
            assert mine.equals(theirs), name
            continue
        assert mine.is_null().equals(theirs.is_null()), name
        mine, theirs = (c.fill_null(0.0).to_numpy() for c in (mine, theirs))
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12, err_msg=name)


def random_readings(rows_per_series: int = 2500, seed: int = 7) -> pa.Table:
    """Two days of irregular readings, plus readings that tie on event_time within a series."""
    rng = np.random.default_rng(seed)
    parts = []
    for device, site, metric, unit, offset, noise in SERIES:
        micros = np.sort(rng.integers(0, 2 * 86_400_000_000, rows_per_series))
        ties = rng.choice(rows_per_series, 40, replace=False)  # repeat 40 instants
        micros = np.concatenate([micros, micros[ties]])
        n = len(micros)
        events = pa.array(micros + int(T0.timestamp() * 1_000_000), pa.timestamp("us", tz="UTC"))
        # Unique ids whose order among tied readings is unrelated to arrival order.
        ids = [
            f"{device}|{metric}|{m}|{k:05d}"
            for m, k in zip(micros, rng.permutation(n), strict=True)
        ]
        units = [None if i % 997 == 0 else unit for i in range(n)]  # a few readings lack a unit
        parts.append(
            pa.table(
                {
                    "event_time": events,
                    "device_id": [device] * n,
                    "site_id": pa.array([site] * n, pa.string()),
                    "metric": [metric] * n,
                    "value": offset + rng.normal(0, noise, n),
                    "unit": pa.array(units, pa.string()),
                    "status_code": pa.array([0] * n, pa.int32()),
                    "ingest_time": events,
                    "source": ["test"] * n,
                    "reading_id": ids,
                },
                schema=READING_SCHEMA,
            )
        )
    table = pa.concat_tables(parts)
    return table.take(rng.permutation(table.num_rows))  # arrival order is not time order


@pytest.fixture(scope="module")
def raw() -> pa.Table:
    return random_readings()


@pytest.fixture(scope="module")
def minutes(raw) -> pa.Table:
    return minute_aggregates(raw, CADENCES)


def test_minutes_match_raw(raw, minutes):
    assert_matches(minutes, straight_from_raw(raw, MINUTE))


def test_hours_merged_from_minutes_match_raw(raw, minutes):
    assert_matches(rollup(minutes, HOUR, CADENCES), straight_from_raw(raw, HOUR))


def test_any_level_that_divides_the_next_merges_exactly(raw, minutes):
    quarters = rollup(minutes, timedelta(minutes=15), CADENCES)
    assert_matches(quarters, straight_from_raw(raw, timedelta(minutes=15)))
    assert_matches(rollup(quarters, HOUR, CADENCES), straight_from_raw(raw, HOUR))


def test_days_merged_from_hours_match_raw(raw, minutes):
    days = rollup(rollup(minutes, HOUR, CADENCES), DAY, CADENCES)
    assert_matches(days, straight_from_raw(raw, DAY))
    assert set(days.column("window_start").to_pylist()) == {T0, T0 + timedelta(days=1)}


def test_input_order_does_not_change_the_result(raw, minutes):
    shuffled = raw.take(np.random.default_rng(1).permutation(raw.num_rows))
    # Same windows, ids and picks; sums may differ in the last bit with the order they run in.
    assert_matches(minute_aggregates(shuffled, CADENCES), minutes)


def test_rollup_weights_by_count_and_merges_variance():
    # Minute 0 holds 2 readings, minute 1 holds 6: the average of minute means is 6.75 and the
    # average of minute stddevs is about 1.64, but the hour's true figures differ from both.
    values = {0: [0.0, 2.0], 1: [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]}
    raw = readings_table(
        [
            {
                "event_time": hour(9) + timedelta(minutes=m, seconds=s),
                "device_id": "d1",
                "metric": "temperature",
                "value": v,
            }
            for m, vs in values.items()
            for s, v in enumerate(vs)
        ]
    )
    minutes = minute_aggregates(raw, {})
    assert minutes.column("mean_value").to_pylist() == [1.0, 12.5]
    hourly = rollup(minutes, HOUR, {}).to_pylist()[0]
    everything = values[0] + values[1]
    assert hourly["reading_count"] == 8
    assert hourly["mean_value"] == pytest.approx(np.mean(everything), rel=1e-12)
    assert hourly["mean_value"] != pytest.approx(6.75)
    assert hourly["stddev_value"] == pytest.approx(np.std(everything, ddof=1), rel=1e-12)
    pooled_naively = np.mean(minutes.column("stddev_value").to_pylist())
    assert hourly["stddev_value"] != pytest.approx(pooled_naively, rel=1e-3)
    assert hourly["m2"] == pytest.approx(np.var(everything) * 8, rel=1e-12)


def test_ties_on_event_time_are_broken_by_reading_id():
    start, end = hour(3), hour(3) + timedelta(seconds=59)
    rows = [
        # Same first instant: "r-a" sorts first, so its value and unit lead the minute.
        {
            "event_time": start,
            "device_id": "d",
            "metric": "m",
            "value": 2.0,
            "unit": "°F",
            "reading_id": "r-b",
        },
        {
            "event_time": start,
            "device_id": "d",
            "metric": "m",
            "value": 1.0,
            "unit": "°C",
            "reading_id": "r-a",
        },
        {
            "event_time": start + timedelta(seconds=5),
            "device_id": "d",
            "metric": "m",
            "value": 5.0,
            "reading_id": "r-m",
        },
        # Same last instant: "r-z" sorts last, so its value closes the minute.
        {"event_time": end, "device_id": "d", "metric": "m", "value": 9.0, "reading_id": "r-z"},
        {"event_time": end, "device_id": "d", "metric": "m", "value": 8.0, "reading_id": "r-y"},
        # Equal values, different units: the unit still follows reading_id.
        {
            "event_time": start,
            "device_id": "e",
            "metric": "m",
            "value": 4.0,
            "unit": "V",
            "reading_id": "q-2",
        },
        {
            "event_time": start,
            "device_id": "e",
            "metric": "m",
            "value": 4.0,
            "unit": "mV",
            "reading_id": "q-1",
        },
    ]
    for order in (rows, rows[::-1], random.Random(3).sample(rows, len(rows))):
        got = {r["device_id"]: r for r in minute_aggregates(readings_table(order), {}).to_pylist()}
        assert (got["d"]["first_value"], got["d"]["unit"], got["d"]["last_value"]) == (
            1.0,
            "°C",
            9.0,
        )
        assert (got["d"]["first_event_time"], got["d"]["last_event_time"]) == (start, end)
        assert got["e"]["unit"] == "mV"
        hourly = rollup(minute_aggregates(readings_table(order), {}), HOUR, {}).to_pylist()
        assert (hourly[0]["first_value"], hourly[0]["last_value"]) == (1.0, 9.0)


def test_null_site_is_its_own_group_sorted_last():
    rows = [
        {"event_time": hour(1), "device_id": "d", "site_id": site, "metric": "t", "value": v}
        for site, v in ((None, 1.0), ("a", 2.0), (None, 3.0))
    ]
    got = minute_aggregates(readings_table(rows), {}).to_pylist()
    assert [(r["site_id"], r["reading_count"], r["mean_value"]) for r in got] == [
        ("a", 1, 2.0),
        (None, 2, 2.0),
    ]
    assert got[0]["stddev_value"] is None  # one reading: no sample stddev


def test_hostile_ids_pass_through_as_data(minutes):
    hostile = minutes.filter(pc.equal(minutes.column("device_id"), HOSTILE_DEVICE))
    assert hostile.num_rows > 0
    row = hostile.to_pylist()[0]
    assert (row["site_id"], row["metric"]) == ("../../etc/passwd", "x' OR '1'='1")
    assert row["expected_count"] == 60 / CADENCES[HOSTILE_DEVICE]


def test_coverage_against_cadence_and_null_when_unknown():
    rows = [
        {
            "event_time": hour(2) + timedelta(seconds=10 * i),
            "device_id": d,
            "metric": "t",
            "value": i,
        }
        for d in ("known", "unknown")
        for i in range(3)
    ]
    got = {
        r["device_id"]: r
        for r in minute_aggregates(readings_table(rows), {"known": 10}).to_pylist()
    }
    assert (got["known"]["expected_count"], got["known"]["coverage"]) == (6.0, 0.5)
    assert (got["unknown"]["expected_count"], got["unknown"]["coverage"]) == (None, None)
    hourly = {
        r["device_id"]: r
        for r in rollup(
            minute_aggregates(readings_table(rows), {"known": 10}), HOUR, {"known": 10}
        ).to_pylist()
    }
    assert hourly["known"]["coverage"] == pytest.approx(3 / 360)
    assert hourly["unknown"]["coverage"] is None


def test_empty_inputs_give_empty_tables_with_the_schema(tmp_path):
    empty_dataset = ds.dataset([], schema=READING_SCHEMA, format="parquet")
    for raw in (READING_SCHEMA.empty_table(), [], empty_dataset):
        got = minute_aggregates(raw, CADENCES)
        assert got.num_rows == 0 and got.schema.equals(AGGREGATE_SCHEMA)
    for window in (HOUR, DAY):
        got = rollup(AGGREGATE_SCHEMA.empty_table(), window, CADENCES)
        assert got.num_rows == 0 and got.schema.equals(AGGREGATE_SCHEMA)


def test_parquet_files_and_datasets_give_the_same_result(tmp_path, raw, minutes):
    paths = []
    for i, part in enumerate((raw.slice(0, 9000), raw.slice(9000))):
        paths.append(str(tmp_path / f"part-{i}.parquet"))
        pq.write_table(part, paths[-1])
    assert_matches(minute_aggregates(paths, CADENCES), minutes)
    dataset = ds.dataset(paths, schema=READING_SCHEMA)
    assert_matches(minute_aggregates(dataset, CADENCES), minutes)
    # A filtered Dataset goes through Arrow's scanner, which applies the filter.
    only_d1 = pc.field("device_id") == "d1"
    expected = minute_aggregates(raw.filter(only_d1), CADENCES)
    assert_matches(minute_aggregates(dataset.filter(only_d1), CADENCES), expected)
    assert set(expected.column("device_id").to_pylist()) == {"d1"}
    pq.write_table(minutes, tmp_path / "minutes.parquet")
    from_file = rollup([str(tmp_path / "minutes.parquet")], HOUR, CADENCES)
    assert_matches(from_file, rollup(minutes, HOUR, CADENCES))


def test_rejects_a_window_that_does_not_divide_a_day_and_non_positive_cadence(minutes):
    with pytest.raises(ValueError, match="window"):
        rollup(minutes, timedelta(minutes=7), CADENCES)
    with pytest.raises(ValueError, match="positive"):
        minute_aggregates(random_readings(50), {"d1": 10, "d2": 0})


def test_schema_is_the_published_contract():
    assert AGGREGATE_SCHEMA.names == [
        "window_start",
        "device_id",
        "site_id",
        "metric",
        "unit",
        "reading_count",
        "min_value",
        "max_value",
        "mean_value",
        "stddev_value",
        "m2",
        "first_value",
        "first_event_time",
        "last_value",
        "last_event_time",
        "expected_count",
        "coverage",
    ]
    nullable = {f.name for f in AGGREGATE_SCHEMA if f.nullable}
    assert nullable == {"site_id", "unit", "stddev_value", "expected_count", "coverage"}
    assert AGGREGATE_SCHEMA.field("window_start").type == pa.timestamp("us", tz="UTC")


def test_windows_are_utc_floors_even_before_1970():
    times = [datetime(1969, 12, 31, 23, 59, 30, 500, tzinfo=UTC), hour(23) + timedelta(minutes=59)]
    rows = [{"event_time": t, "device_id": "d", "metric": "m", "value": 1.0} for t in times]
    minutes = minute_aggregates(readings_table(rows), {})
    assert minutes.column("window_start").to_pylist() == [
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        hour(23) + timedelta(minutes=59),
    ]
    assert minutes.column("first_event_time").to_pylist() == times
    days = rollup(rollup(minutes, HOUR, {}), DAY, {})
    assert days.column("window_start").to_pylist() == [datetime(1969, 12, 31, tzinfo=UTC), hour(0)]


def lake_ordered(raw: pa.Table) -> pa.Table:
    """The readings in the order a raw partition is written (lake/compaction.py)."""
    keys = ("device_id", "metric", "event_time", "reading_id")
    return raw.sort_by([(k, "ascending") for k in keys])


def test_device_sorted_parquet_is_aggregated_range_by_range(tmp_path, raw, minutes, monkeypatch):
    path = str(tmp_path / "raw.parquet")
    pq.write_table(lake_ordered(raw), path, row_group_size=1000)
    monkeypatch.setattr(compute, "ROWS_PER_SLICE", 3000)
    ranges = device_ranges([path], 3000)
    # Consecutive ranges, cut only where device_id changes (d1 fills several row groups).
    assert ranges == [DeviceRange(None, "d1"), *map(DeviceRange, "d1 d2 d4".split(), "d2 d4 d5".split()),
                      DeviceRange("d5", None)]  # fmt: skip
    sliced = minute_aggregates([path], CADENCES)
    assert_matches(sliced, straight_from_raw(raw, MINUTE))
    assert_matches(sliced, minutes)
    dataset = ds.dataset([path], schema=READING_SCHEMA)
    assert_matches(minute_aggregates(dataset, CADENCES), minutes)


def test_ties_at_a_range_cut_are_broken_by_reading_id(tmp_path, monkeypatch):
    # Device "b" starts a range; its tied first readings sit in two row groups, one of which
    # also holds "a"'s last readings.
    start = hour(5)
    rows = [
        {"event_time": start + timedelta(seconds=s), "device_id": d, "metric": "m", "value": v,
         "reading_id": rid}
        for d, s, v, rid in [
            ("a", 10, 1.0, "a-1"), ("a", 59, 2.0, "a-2"), ("a", 59, 3.0, "a-3"),
            ("b", 0, 7.0, "b-2"), ("b", 0, 6.0, "b-1"), ("b", 30, 5.0, "b-3"),
        ]
    ]  # fmt: skip
    path = str(tmp_path / "raw.parquet")
    pq.write_table(lake_ordered(readings_table(rows)), path, row_group_size=3)
    monkeypatch.setattr(compute, "ROWS_PER_SLICE", 1)
    assert device_ranges([path], 1) == [DeviceRange(None, "b"), DeviceRange("b", None)]
    got = {r["device_id"]: r for r in minute_aggregates([path], {}).to_pylist()}
    assert (got["a"]["first_value"], got["a"]["last_value"]) == (1.0, 3.0)
    assert (got["b"]["first_value"], got["b"]["last_value"]) == (6.0, 5.0)


def test_unsorted_or_unknown_device_order_is_read_in_one_pass(tmp_path, raw):
    shuffled = str(tmp_path / "shuffled.parquet")
    pq.write_table(raw, shuffled, row_group_size=1000)  # arrival order: ranges overlap
    assert device_ranges([shuffled], 10) == [EVERY_DEVICE]
    no_stats = str(tmp_path / "no_stats.parquet")
    pq.write_table(lake_ordered(raw), no_stats, row_group_size=1000, write_statistics=False)
    assert device_ranges([no_stats], 10) == [EVERY_DEVICE]
    sorted_path = str(tmp_path / "sorted.parquet")
    pq.write_table(lake_ordered(raw), sorted_path, row_group_size=1000)
    assert device_ranges([sorted_path], 10**9) == [EVERY_DEVICE]  # fits in one range
    # Two sorted files: every range reads the matching row groups of each.
    assert len(device_ranges([sorted_path, sorted_path], 3000)) > 3
    # A glob is DuckDB's to expand: one pass, the same result.
    assert device_ranges([str(tmp_path / "s*.parquet")], 3000) == [EVERY_DEVICE]
    assert_matches(
        minute_aggregates([str(tmp_path / "s*.parquet")], CADENCES),
        minute_aggregates([shuffled, sorted_path], CADENCES),
    )


def test_interleave_windows_keeps_window_then_device_order(monkeypatch):
    def part(rows):
        return pa.table({"window_start": pa.array([w for w, _ in rows], pa.timestamp("us")),
                         "device_id": [d for _, d in rows]})  # fmt: skip

    parts = [part([(0, "a"), (0, "b"), (2, "a")]), part([]), part([(0, "c"), (1, "c"), (2, "d")])]
    parts = [p.cast(parts[0].schema) for p in parts]
    expected = ["a", "b", "c", "c", "a", "d"]
    together = interleave_windows(parts)  # small pieces: copied in one take
    assert together.column("device_id").to_pylist() == expected
    assert together.column("device_id").num_chunks == 1
    monkeypatch.setattr(slicing, "MIN_PIECE_ROWS", 1)  # big pieces: zero-copy slices
    together = interleave_windows(parts)
    assert together.column("device_id").to_pylist() == expected
    assert together.column("device_id").num_chunks == 5
    assert interleave_windows(parts[:1]) is parts[0]


def test_a_reading_filter_applies_range_by_range(tmp_path, raw, monkeypatch):
    """The quality gate's filter (quality/gate.py) on a sliced input gives the aggregates of
    exactly the readings it keeps."""
    from sensor_platform.quality.gate import Gate
    from sensor_platform.quality.rules import load_rules

    rows = raw.to_pylist()
    for i, row in enumerate(rows):
        if row["device_id"] == "d1" and row["metric"] == "temperature" and i % 7 == 0:
            row["value"] = 5000.0  # implausible: each left out, and the series too (> 1 %)
    humidity = [r for r in rows if r["device_id"] == "d2" and r["metric"] == "humidity"]
    humidity[3]["value"] = -5.0  # one humidity below 0 % of many: left out alone
    dirty = pa.Table.from_pylist(rows, schema=raw.schema)
    path = str(tmp_path / "raw.parquet")
    pq.write_table(lake_ordered(dirty), path, row_group_size=1000)
    monkeypatch.setattr(compute, "ROWS_PER_SLICE", 3000)
    gate = Gate(load_rules())
    exclusions = gate.judge(ds.dataset([path], schema=READING_SCHEMA), hour(0))
    scopes = {(r["device_id"], r["metric"]): r["scope"] for r in exclusions.to_pylist()}
    assert scopes == {("d1", "temperature"): "series", ("d2", "humidity"): "readings"}
    kept = dirty.filter(
        ~((pc.field("device_id") == "d1") & (pc.field("metric") == "temperature"))
        & ~((pc.field("device_id") == "d2") & (pc.field("value") < 0))
    )
    filtered = minute_aggregates([path], CADENCES, keep=gate.filter(exclusions))
    assert_matches(filtered, straight_from_raw(kept, MINUTE))
