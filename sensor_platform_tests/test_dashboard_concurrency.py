"""The dashboard and the pipeline never wait on each other. A pipeline process (spawned, like a
Dagster run worker) holds the DuckDB warehouse file in a write transaction, then rewrites minute
partitions, replaces their warehouse window and rebuilds the analysts' file round after round,
while this process runs every page's reads:

- with the warehouse file locked by the writer, every page still reads (it never opens that file);
- with a dashboard connection held open, the pipeline completes its writes and its rebuild (the
  rename never waits for a reader, nor does a lake file replacement);
- running together, no read fails and every partition read is whole: its values are those of one
  round, never a mix.

No timing is asserted: a side that waited on the other would not finish (bounded waits fail)."""

import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pytest

from sensor_platform.catalog.analytics_db import refresh_analytics_db
from sensor_platform.dashboard import alarms, pages
from sensor_platform.dashboard.sources import DashboardConfig, DashboardSource
from sensor_platform.datasets import REGISTRY
from sensor_platform.detection.rules import load_rules
from sensor_platform.lake.store import Lake
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.dashboard_data import build_small_platform

# A pipeline process looping for several seconds: kept out of `make test-fast` (under a minute).
pytestmark = pytest.mark.integration

END = datetime(2026, 3, 2, 12, tzinfo=UTC)
HOURS = 3
ROUNDS = 12
SHIFTS = (100.0, 200.0)  # round i adds SHIFTS[i % 2] to every minute mean
WAIT_S = 120  # a bound on waiting for the other side, never a measured figure
MINUTE = REGISTRY.get("sensor_readings_minute")


def _pipeline(root: str, events: dict, results) -> None:
    """The writer: runs in its own process."""
    try:
        lake = Lake(f"{root}/lake")
        path = f"{root}/warehouse.duckdb"
        warehouse = Warehouse(f"duckdb:///{path}", lock_timeout_s=WAIT_S)
        hours = [END - timedelta(hours=h + 1) for h in range(HOURS)]
        originals = {h: lake.read_parquet([MINUTE.partition_file(h)], MINUTE.schema) for h in hours}

        # A run in the middle of its warehouse transaction: the file is locked for writing.
        con = duckdb.connect(path)
        con.begin()
        con.execute("DELETE FROM sensor_readings_minute WHERE window_start >= $h", {"h": hours[0]})
        events["holding"].set()
        if not events["release"].wait(WAIT_S):
            raise TimeoutError("the dashboard never finished reading")
        con.rollback()
        con.close()

        if not events["reader_open"].wait(WAIT_S):
            raise TimeoutError("the dashboard never opened its connection")
        for i in range(ROUNDS):
            for hour in hours:
                table = originals[hour]
                column = table.schema.get_field_index("mean_value")
                shifted = pc.add(table["mean_value"], SHIFTS[i % 2])
                table = table.set_column(column, "mean_value", shifted)
                lake.write_parquet(MINUTE.partition_file(hour), table)
                warehouse.replace_window(
                    MINUTE.table_spec(), table, hour, hour + timedelta(hours=1)
                )
            refresh_analytics_db(
                f"{root}/analytics.duckdb",
                lake,
                {d.name: d.prefix for d in REGISTRY},
                warehouse=warehouse,
                now=END,
            )
            events["round"].set()
        results.put(("done", ROUNDS))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put(("error", repr(exc)))


def every_page(con: duckdb.DuckDBPyConnection, *, start: datetime, end: datetime) -> None:
    rules = load_rules()
    overview = pages.overview_page(con, now=end, stale_after=rules.stale_after)
    assert len(overview["sites"]) == 3
    choices = pages.explorer_choices(con)
    assert not choices["inventory"].empty
    explored = pages.explorer_page(
        con,
        level=MINUTE.name,
        site_id="GH1",
        devices=["GH1-D01", "GH1-D02"],
        metric="temperature",
        start=start,
        end=end,
        device="GH1-D01",
    )
    assert len(explored["series"]) > 0
    shown = pages.alarms_page(con, chosen=alarms.AlarmFilter(start, end))
    assert len(shown["notices"]) > 0
    assert len(pages.quality_page(con, since=start)["grid"]) > 0


def partition_sums(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, float]]:
    rows = con.execute(
        "SELECT date::VARCHAR || ' ' || hour, count(*), sum(mean_value) "
        "FROM sensor_readings_minute GROUP BY ALL"
    ).fetchall()
    return {key: (count, total) for key, count, total in rows}


@pytest.fixture
def platform(tmp_path):
    return build_small_platform(tmp_path, end=END, hours=HOURS)


def test_dashboard_and_pipeline_never_wait_on_each_other(platform):
    root = str(platform.root)
    source = DashboardSource(
        DashboardConfig(platform.analytics_db, f"{root}/lake", platform.warehouse_url)
    )
    with source.connect() as con:
        base = partition_sums(con)
    allowed = {
        key: {round(total + n * shift, 6) for shift in (0.0, *SHIFTS)}
        for key, (n, total) in base.items()
    }
    context = multiprocessing.get_context("spawn")
    events = {name: context.Event() for name in ("holding", "release", "reader_open", "round")}
    results = context.Queue()
    writer = context.Process(target=_pipeline, args=(root, events, results), daemon=True)
    writer.start()
    try:
        # 1. the warehouse file is locked by a writer: the dashboard reads every page anyway
        assert events["holding"].wait(WAIT_S), results.get(timeout=5)
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(platform.warehouse_url.removeprefix("duckdb:///"), read_only=True)
        with source.connect() as con:
            every_page(con, start=platform.start, end=platform.end)
        events["release"].set()

        # 2. a dashboard connection stays open while the pipeline writes and rebuilds the file
        with source.connect() as held:
            held.execute("SELECT count(*) FROM anomaly_alert_ledger").fetchall()
            events["reader_open"].set()
            assert events["round"].wait(WAIT_S), "the pipeline waited on the dashboard"
            # the old snapshot still answers (its lake views read the files as they are now)
            source.read(every_page, start=platform.start, end=platform.end)
            held.execute("SELECT count(*) FROM anomaly_alert_ledger").fetchall()

        # 3. both at full speed: page reads never fail and see whole partitions
        reads = 0
        while writer.is_alive() or reads == 0:
            source.read(every_page, start=platform.start, end=platform.end)
            for key, (count, total) in source.read(partition_sums).items():
                assert count == base[key][0]
                assert round(total, 6) in allowed[key], (key, total)
            reads += 1
        writer.join(WAIT_S)
        assert results.get(timeout=5) == ("done", ROUNDS)
        # the last round is what a new connection sees
        with source.connect() as con:
            last = SHIFTS[(ROUNDS - 1) % 2]
            for key, (count, total) in partition_sums(con).items():
                assert round(total, 6) == round(base[key][1] + count * last, 6)
        assert not any(Path(root).glob("analytics.duckdb.*.tmp")), os.listdir(root)
    finally:
        events["release"].set()
        events["reader_open"].set()
        writer.join(10)
        if writer.is_alive():
            writer.kill()
            writer.join()
