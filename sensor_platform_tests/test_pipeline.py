"""End to end on the embedded defaults: simulated feed → landing → raw → minute/hour/day aggregates
in the lake and the DuckDB warehouse, through Dagster jobs, sensors and the partition machinery."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from sensor_platform.defs.resources import LakeResource
from sensor_platform.lake import layout
from sensor_platform.lake.compaction import landing_hours
from sensor_platform.lake.store import Lake
from sensor_platform.simulator.source import feed_windows
from sensor_platform_tests.platform import definitions_for, feed_run_request, hour_key

pytestmark = pytest.mark.integration  # Dagster runs

START = datetime(2026, 3, 1, 22, tzinfo=UTC)  # three hours crossing midnight
HOURS = 3


@pytest.fixture
def env(tmp_path):
    return {
        "defs": definitions_for(tmp_path / "data"),
        "instance": dg.DagsterInstance.ephemeral(),
        "lake": Lake(str(tmp_path / "data" / "lake")),
        "warehouse": str(tmp_path / "data" / "warehouse.duckdb"),
    }


def _land_feed(env, start: datetime, end: datetime) -> list[str]:
    job = env["defs"].resolve_job_def("simulated_feed_job")
    run_ids = []
    for s, e in feed_windows(start, end):
        request = feed_run_request(s, e)
        result = job.execute_in_process(
            run_config=request.run_config, instance=env["instance"], tags=request.tags
        )
        assert result.success
        run_ids.append(result.run_id)
    return run_ids


def _run_range(env, job_name: str, first: str, last: str) -> dg.ExecuteInProcessResult:
    result = (
        env["defs"]
        .resolve_job_def(job_name)
        .execute_in_process(
            instance=env["instance"],
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
        )
    )
    assert result.success
    return result


def _materialize_all(env):
    end = START + timedelta(hours=HOURS)
    _land_feed(env, START, end)
    _run_range(env, "raw_job", hour_key(START), hour_key(end - timedelta(hours=1)))
    _run_range(env, "rollups_job", "2026-03-01", "2026-03-02")


def _lake_glob(env, prefix: str) -> str:
    return env["lake"].full_path(f"{prefix}/**/*.parquet")


def test_whole_graph_on_embedded_defaults(env):
    _materialize_all(env)
    raw_glob = _lake_glob(env, layout.RAW)
    con = duckdb.connect(env["warehouse"], read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    raw_rows, distinct_ids = con.execute(
        "SELECT count(*), count(DISTINCT reading_id) FROM read_parquet($g)", {"g": raw_glob}
    ).fetchall()[0]
    assert raw_rows == distinct_ids > 10_000
    # every level in the warehouse accounts for every raw reading exactly once
    for table in ("sensor_readings_minute", "sensor_readings_hourly", "sensor_readings_daily"):
        (total,) = con.execute(f"SELECT sum(reading_count) FROM {table}").fetchall()[0]  # noqa: S608 - fixed names
        assert total == raw_rows, table
    # the daily means in the warehouse equal the means straight from the raw readings
    mismatches = con.execute(
        """
        WITH truth AS (
          SELECT date_trunc('day', event_time) AS day, device_id, metric,
                 avg(value) AS mean, stddev_samp(value) AS sd, count(*) AS n
          FROM read_parquet($g) GROUP BY ALL)
        SELECT count(*) FROM truth t JOIN sensor_readings_daily d
          ON d.window_start = t.day AND d.device_id = t.device_id AND d.metric = t.metric
        WHERE d.reading_count <> t.n OR abs(d.mean_value - t.mean) > 1e-9 * (1 + abs(t.mean))
           OR abs(coalesce(d.stddev_value, 0) - coalesce(t.sd, 0)) > 1e-6 * (1 + coalesce(t.sd, 0))
        """,
        {"g": raw_glob},
    ).fetchall()[0][0]
    assert mismatches == 0
    (days,) = con.execute(
        "SELECT count(DISTINCT window_start) FROM sensor_readings_daily"
    ).fetchall()[0]
    assert days == 2
    con.close()


def test_rerunning_everything_changes_nothing(env):
    _materialize_all(env)
    lake = env["lake"]
    before = {f.path: lake.row_count(f.path) for f in lake.list_files("raw")}
    con = duckdb.connect(env["warehouse"], read_only=True)
    minute_before = con.execute("SELECT count(*) FROM sensor_readings_minute").fetchall()
    con.close()
    _materialize_all(env)  # re-executes every feed window and every partition
    assert {f.path: lake.row_count(f.path) for f in lake.list_files("raw")} == before
    con = duckdb.connect(env["warehouse"], read_only=True)
    assert con.execute("SELECT count(*) FROM sensor_readings_minute").fetchall() == minute_before
    con.close()


def test_landing_run_reports_figures_and_quarantine(env):
    end = START + timedelta(minutes=15)
    [run_id] = _land_feed(env, START, end)
    records = env["instance"].get_records_for_run(run_id).records
    outputs = [
        r.event_log_entry.dagster_event for r in records if r.event_log_entry.is_dagster_event
    ]
    metadata = next(e.step_output_data.metadata for e in outputs if e.is_successful_output)
    assert metadata["readings"].value > 0
    assert metadata["batch_id"].value == "sim-20260301T220000-20260301T221500"
    hours = set(metadata["hours"].value)
    # the window's own hour, plus earlier hours for the simulator's late messages (70 min late)
    assert hour_key(START) in hours
    assert hours <= {hour_key(START - timedelta(hours=h)) for h in range(3)}


def test_feed_sensor_cursor_and_chunking(env):
    instance, fleet = env["instance"], {"fleet": env["defs"].resources["fleet"]}
    context = dg.build_sensor_context(
        instance=instance, cursor=json.dumps({"next": START.isoformat()}), resources=fleet
    )
    result = env["defs"].resolve_sensor_def("simulated_feed_sensor")(context)
    # the cursor is in the past: all windows up to now, 15 minutes each at most
    assert result.run_requests
    first = result.run_requests[0]
    assert first.run_key == f"sim/{START.isoformat()}/{(START + timedelta(minutes=15)).isoformat()}"
    starts = [
        datetime.fromisoformat(r.run_config["ops"]["land_simulated_window"]["config"]["start"])
        for r in result.run_requests
    ]
    assert starts == sorted(starts) and starts[0] == START
    assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)
    new_cursor = datetime.fromisoformat(json.loads(result.cursor)["next"])
    assert timedelta(0) <= datetime.now(UTC) - new_cursor < timedelta(minutes=2)
    # caught up: the next tick asks for nothing
    again = env["defs"].resolve_sensor_def("simulated_feed_sensor")(
        dg.build_sensor_context(instance=instance, cursor=result.cursor, resources=fleet)
    )
    assert not again.run_requests


def test_raw_sensor_requests_each_pending_hour_once(env):
    _land_feed(env, START, START + timedelta(minutes=90))
    resources = {"lake": LakeResource(root=env["lake"].root_uri)}
    context = dg.build_sensor_context(instance=env["instance"], resources=resources)
    result = env["defs"].resolve_sensor_def("raw_partitions_sensor")(context)
    keys = [r.partition_key for r in result.run_requests]
    landed = [hour_key(h) for h in landing_hours(env["lake"])]
    assert keys == landed
    assert {hour_key(START), hour_key(START + timedelta(hours=1))} <= set(keys)
    assert all(r.run_key.startswith(f"raw/{r.partition_key}/") for r in result.run_requests)
    _run_range(env, "raw_job", keys[0], keys[-1])
    after = env["defs"].resolve_sensor_def("raw_partitions_sensor")(
        dg.build_sensor_context(instance=env["instance"], resources=resources)
    )
    assert not after.run_requests
    # a new batch asks again for the hours it touched (late readings included), with new run keys
    _land_feed(env, START + timedelta(minutes=90), START + timedelta(minutes=105))
    more = env["defs"].resolve_sensor_def("raw_partitions_sensor")(
        dg.build_sensor_context(instance=env["instance"], resources=resources)
    )
    assert hour_key(START + timedelta(hours=1)) in [r.partition_key for r in more.run_requests]
    assert {r.partition_key for r in more.run_requests} <= set(keys)
    assert not {r.run_key for r in more.run_requests} & {r.run_key for r in result.run_requests}
