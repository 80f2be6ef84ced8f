"""The lake: atomic writes, idempotent landing, exact compaction, late data, cleanup, and S3."""

import json
import threading
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sensor_platform.lake import layout
from sensor_platform.lake.compaction import (
    MERGED_KEY,
    cleanup_landing,
    compact_raw_hour,
    landing_hours,
)
from sensor_platform.lake.landing import land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.readings.schema import QUARANTINE_SCHEMA, READING_SCHEMA
from sensor_platform_tests.readings_factory import hour, readings_table

NO_QUARANTINE = QUARANTINE_SCHEMA.empty_table()


def _batch(start_minute: int, n: int, h: int = 10, device: str = "d1") -> pa.Table:
    base = hour(h)
    return readings_table(
        [
            {
                "event_time": base + timedelta(minutes=start_minute + i),
                "device_id": device,
                "metric": "temperature",
                "value": 20 + i,
            }
            for i in range(n)
        ]
    )


def test_write_is_atomic_and_replaces(lake: Lake):
    table = _batch(0, 5)
    first = lake.write_parquet("x/part.parquet", table)
    second = lake.write_parquet("x/part.parquet", table)
    assert first.size == second.size > 0
    assert lake.list_files("x") == [lake.stat("x/part.parquet")]
    assert lake.list_files("_tmp") == []  # nothing half-written is left behind


def test_failed_write_leaves_previous_file_intact(lake: Lake):
    lake.write_parquet("x/part.parquet", _batch(0, 3))

    def broken():
        yield _batch(0, 2).to_batches()[0]
        raise RuntimeError("writer died midway")

    reader = pa.RecordBatchReader.from_batches(READING_SCHEMA, broken())
    with pytest.raises(RuntimeError):
        lake.write_parquet("x/part.parquet", reader)
    assert lake.row_count("x/part.parquet") == 3
    assert lake.list_files("_tmp") == []


def test_readers_never_see_partial_files(lake: Lake):
    big = pa.concat_tables([_batch(0, 60)] * 2000)
    lake.write_parquet("x/part.parquet", big)
    errors, stop = [], threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                assert lake.row_count("x/part.parquet") == big.num_rows
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    for _ in range(5):
        lake.write_parquet("x/part.parquet", big)
    stop.set()
    reader.join()
    assert errors == []


def test_landing_splits_by_hour_and_is_idempotent(lake: Lake):
    batch = pa.concat_tables([_batch(50, 20, h=10)])  # 10:50 .. 11:09
    report = land_batch(lake, "sim-a", batch, NO_QUARANTINE)
    assert report.hours == {hour(10): 10, hour(11): 10}
    before = {f.path: f.size for f in lake.list_files(layout.LANDING)}
    land_batch(lake, "sim-a", batch, NO_QUARANTINE)
    assert {f.path: f.size for f in lake.list_files(layout.LANDING)} == before
    assert landing_hours(lake) == [hour(10), hour(11)]


def test_batch_ids_cannot_escape_the_lake(lake: Lake):
    for bad in ["../x", "a/b", "", "..", "a b"]:
        with pytest.raises(ValueError, match="invalid batch id"):
            land_batch(lake, bad, _batch(0, 1), NO_QUARANTINE)
    assert lake.list_files("") == []


def test_compaction_dedups_sorts_and_counts(lake: Lake):
    land_batch(lake, "b1", _batch(0, 30), NO_QUARANTINE)
    land_batch(lake, "b2", _batch(20, 30), NO_QUARANTINE)  # 10 readings overlap with b1
    land_batch(lake, "b3", _batch(0, 5, device="a0"), NO_QUARANTINE)
    report = compact_raw_hour(lake, hour(10))
    assert (report.rows, report.rows_before, report.landing_files) == (55, 0, 3)
    raw = pq.read_table(lake.full_path(layout.raw_partition_file(hour(10))))
    assert raw.schema.equals(READING_SCHEMA, check_metadata=False)
    assert len(set(raw["reading_id"].to_pylist())) == raw.num_rows == 55
    keys = list(zip(raw["device_id"].to_pylist(), raw["event_time"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    # compacting again changes nothing
    assert compact_raw_hour(lake, hour(10)).new_rows == 0


def test_duplicates_keep_the_first_arrival(lake: Lake):
    early = _batch(0, 1)
    late = readings_table(
        [
            {
                "event_time": hour(10),
                "device_id": "d1",
                "metric": "temperature",
                "value": 99,
                "ingest_time": hour(12),
                "reading_id": early["reading_id"][0].as_py(),
            }
        ]
    )
    land_batch(lake, "late", late, NO_QUARANTINE)
    land_batch(lake, "early", early, NO_QUARANTINE)
    compact_raw_hour(lake, hour(10))
    raw = pq.read_table(lake.full_path(layout.raw_partition_file(hour(10))))
    assert raw["value"].to_pylist() == [20.0]


def test_late_data_touches_only_its_hour(lake: Lake):
    land_batch(
        lake, "b1", pa.concat_tables([_batch(0, 10, h=9), _batch(0, 10, h=10)]), NO_QUARANTINE
    )
    compact_raw_hour(lake, hour(9))
    compact_raw_hour(lake, hour(10))
    h9 = lake.stat(layout.raw_partition_file(hour(9)))
    late = readings_table(
        [
            {
                "event_time": hour(10) + timedelta(minutes=30),
                "device_id": "d9",
                "metric": "co2",
                "value": 400,
                "ingest_time": hour(12),
            }
        ]
    )
    report = land_batch(lake, "b2", late, NO_QUARANTINE)
    assert list(report.hours) == [hour(10)]
    compacted = compact_raw_hour(lake, hour(10))
    assert (compacted.new_rows, compacted.late_rows) == (1, 1)
    assert lake.stat(layout.raw_partition_file(hour(9))) == h9


def test_cleanup_deletes_only_merged_files_past_retention(lake: Lake):
    land_batch(lake, "b1", _batch(0, 5), NO_QUARANTINE)
    compact_raw_hour(lake, hour(10))
    land_batch(lake, "b2", _batch(5, 5), NO_QUARANTINE)  # landed after compaction: not merged yet
    now = lake.stat(layout.landing_file(hour(10), "b2")).mtime + timedelta(hours=2)
    assert cleanup_landing(lake, hour(10), retention=timedelta(days=1), now=now) == []
    deleted = cleanup_landing(lake, hour(10), retention=timedelta(hours=1), now=now)
    assert deleted == [layout.landing_file(hour(10), "b1")]
    assert lake.exists(layout.landing_file(hour(10), "b2"))
    merged = json.loads(lake.read_metadata(layout.raw_partition_file(hour(10)))[MERGED_KEY])
    assert merged == [layout.landing_file(hour(10), "b1")]
    # the raw partition still holds b1's readings, and recompaction keeps them
    assert compact_raw_hour(lake, hour(10)).rows == 10


def test_hostile_ids_are_data_not_paths(lake: Lake):
    hostile = ["../../etc/passwd", "'; DROP TABLE x; --", "온실-1\x00\n", "x" * 5000]
    batch = readings_table(
        [
            {"event_time": hour(10), "device_id": d, "site_id": d, "metric": "m", "value": 1}
            for d in hostile
        ]
    )
    land_batch(lake, "b1", batch, NO_QUARANTINE)
    compact_raw_hour(lake, hour(10))
    files = [f.path for f in lake.list_files("")]
    assert all(".." not in p and "passwd" not in p for p in files)
    raw = pq.read_table(lake.full_path(layout.raw_partition_file(hour(10))))
    assert sorted(raw["device_id"].to_pylist()) == sorted(hostile)


def test_lake_is_readable_with_hive_partitioning(lake: Lake):
    land_batch(lake, "b1", pa.concat_tables([_batch(0, 3, h=9), _batch(0, 4, h=10)]), NO_QUARANTINE)
    compact_raw_hour(lake, hour(9))
    compact_raw_hour(lake, hour(10))
    glob = lake.full_path(f"{layout.RAW}/**/*.parquet")
    rows = duckdb.sql(
        "SELECT hour, count(*) FROM read_parquet($g, hive_partitioning=true) GROUP BY 1 ORDER BY 1",
        params={"g": glob},
    ).fetchall()
    assert [(int(h), n) for h, n in rows] == [(9, 3), (10, 4)]


def test_s3_lake_lands_and_compacts(s3_endpoint):
    lake = Lake(
        "s3://sensor-lake/prod",
        s3_endpoint_url=s3_endpoint,
        s3_access_key="testing",
        s3_secret_key="testing",
    )
    land_batch(lake, "b1", _batch(0, 30), NO_QUARANTINE)
    land_batch(lake, "b2", _batch(20, 30), NO_QUARANTINE)
    assert compact_raw_hour(lake, hour(10)).rows == 50
    assert compact_raw_hour(lake, hour(10)).new_rows == 0
    paths = [f.path for f in lake.list_files(layout.RAW)]
    assert paths == [layout.raw_partition_file(hour(10))]
    assert lake.uri(paths[0]).startswith(
        "s3://sensor-lake/prod/raw/sensor_readings/date=2026-03-01"
    )
    now = lake.stat(paths[0]).mtime + timedelta(days=2)
    assert len(cleanup_landing(lake, hour(10), retention=timedelta(days=1), now=now)) == 2
    assert compact_raw_hour(lake, hour(10)).rows == 50


def test_pending_landing_lists_unmerged_files(lake: Lake):
    from sensor_platform.lake.compaction import pending_landing

    land_batch(lake, "b1", pa.concat_tables([_batch(0, 3, h=9), _batch(0, 3, h=10)]), NO_QUARANTINE)
    assert sorted(pending_landing(lake)) == [hour(9), hour(10)]
    compact_raw_hour(lake, hour(9))
    assert pending_landing(lake) == {hour(10): [layout.landing_file(hour(10), "b1")]}
    compact_raw_hour(lake, hour(10))
    land_batch(lake, "b2", _batch(5, 1, h=9), NO_QUARANTINE)
    assert pending_landing(lake) == {hour(9): [layout.landing_file(hour(9), "b2")]}
