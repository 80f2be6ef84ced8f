"""The dashboard's queries against a small platform built with the pipeline's ground floor (raw
partitions, rollups, detected episodes, ledger rows, quality results, the analysts' file): each
figure checked against the data it comes from, hostile ids as plain data, missing relations read
as empty, and the charts' specifications."""

import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sensor_platform.catalog.analytics_db import COPY_HORIZON, refresh_analytics_db
from sensor_platform.dashboard import alarms, charts, data_quality, explorer, overview
from sensor_platform.dashboard.relations import has_relation, open_episodes
from sensor_platform.dashboard.sources import (
    LAKE_DATASETS,
    WAREHOUSE_TABLES,
    DashboardConfig,
    DashboardSource,
)
from sensor_platform.datasets import REGISTRY
from sensor_platform.detection.rules import load_rules
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.settings import load_settings, read_secret
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.dashboard_data import (
    HOSTILE_DEVICE,
    HOSTILE_SITE,
    build_small_platform,
    ledger_for,
)

END = datetime(2026, 3, 2, 12, tzinfo=UTC)
RULES = load_rules()
STALE = RULES.stale_after


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return build_small_platform(tmp_path_factory.mktemp("dashboard"), end=END, hours=3)


def source_for(platform, **overrides) -> DashboardSource:
    config = {
        "analytics_db": platform.analytics_db,
        "lake_root": platform.lake.root_uri,
        "warehouse_url": platform.warehouse_url,
    } | overrides
    return DashboardSource(DashboardConfig(**config))


@pytest.fixture(scope="module")
def source(platform):
    return source_for(platform)


def _readings(platform, since: datetime | None = None) -> pd.DataFrame:
    frame = platform.readings.to_pandas()
    return frame if since is None else frame[frame["event_time"] >= since]


# -- overview --------------------------------------------------------------------------------------
def test_overview_counts_each_site_from_its_data(platform, source):
    with source.connect() as con:
        sites = overview.sites(con, now=END, open_now=open_episodes(con, STALE))
    assert sites["site_id"].tolist() == sorted(["GH1", "FAC001", HOSTILE_SITE])
    by_site = sites.set_index("site_id")
    raw = _readings(platform)
    last_hour = _readings(platform, END - timedelta(hours=1))
    for site, row in by_site.iterrows():
        mine = raw[raw["site_id"] == site]
        assert row["devices"] == mine["device_id"].nunique()
        assert row["readings_last_hour"] == (last_hour["site_id"] == site).sum()
    # the open alarms and silences the detector left open, counted from the episodes written
    latest = [e for e in platform.latest_episodes() if e["status"] == "open"]
    for site, row in by_site.iterrows():
        mine = [e for e in latest if e["site_id"] == site]
        assert row["open_critical"] == sum(e["severity"] == "critical" for e in mine)
        assert row["open_warning"] == sum(e["severity"] == "warning" for e in mine)
        assert row["silent_devices"] == len({e["device_id"] for e in mine if e["kind"] == "silent"})
    assert by_site.loc["FAC001", "open_critical"] == 1  # EQ001 above 60 °C at the end
    assert by_site.loc["GH1", "silent_devices"] == 1  # GH1-D02 went quiet
    totals = overview.totals(sites)
    assert totals["devices"] == 4 and totals["open_critical"] == 1


def test_silent_devices_freshness_and_feeds(platform, source):
    with source.connect() as con:
        silent = overview.silent_devices(open_episodes(con, STALE))
        fresh = overview.freshness(con, now=END).set_index("dataset")
        feeds = overview.feeds(con, now=END)
    assert silent["device_id"].tolist() == ["GH1-D02"]
    last_heard = _readings(platform).query("device_id == 'GH1-D02'")["event_time"].max()
    assert silent["last_heard"].iloc[0] == last_heard
    newest = platform.readings["event_time"]
    latest = pc.max(newest).as_py()
    assert fresh.loc["raw_sensor_readings", "latest_reading"] == latest
    assert fresh.loc["raw_sensor_readings", "newest_partition"] == REGISTRY.raw.partition_key(
        END - timedelta(hours=1)
    )
    assert fresh.loc["sensor_readings_minute", "newest_window"] == latest.replace(second=0)
    assert fresh.loc["sensor_readings_daily", "newest_partition"] == "2026-03-02"
    assert fresh.loc["raw_sensor_readings", "age_minutes"] == round((END - latest).seconds / 60)
    assert feeds["feed"].tolist() == ["test"]
    assert (
        feeds["readings"].iloc[0]
        == len(_readings(platform, latest - timedelta(hours=1)))
        - (_readings(platform)["event_time"] == latest - timedelta(hours=1)).sum()
    )
    assert feeds["delay_p50_s"].iloc[0] == 1.0  # readings_table lands them a second later


def test_feeds_read_kafka_offsets_per_topic_partition(tmp_path):
    lake_root = tmp_path / "lake"
    from sensor_platform.lake.store import Lake
    from sensor_platform_tests.readings_factory import readings_table

    hour = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = [
        {
            "event_time": hour + timedelta(seconds=i),
            "device_id": "d",
            "metric": "m",
            "value": i,
            "source": f"kafka:sensor-readings/{i % 2}/{100 + i}",
        }
        for i in range(10)
    ]
    Lake(str(lake_root)).write_parquet(REGISTRY.raw.partition_file(hour), readings_table(rows))
    config = DashboardConfig(str(tmp_path / "none.duckdb"), str(lake_root), "duckdb:///x.duckdb")
    with DashboardSource(config).connect() as con:
        feeds = overview.feeds(con, now=hour + timedelta(hours=1))
    assert feeds[["feed", "readings", "last_offset"]].values.tolist() == [
        ["kafka:sensor-readings/0", 5, 108],
        ["kafka:sensor-readings/1", 5, 109],
    ]


# -- explorer --------------------------------------------------------------------------------------
def test_level_follows_the_range():
    start = datetime(2026, 3, 1, tzinfo=UTC)
    names = {
        span: explorer.level_for(start, start + span).name
        for span in (timedelta(hours=1), timedelta(hours=6), timedelta(days=1))
    }
    assert names == {
        timedelta(hours=1): "sensor_readings_minute",
        timedelta(hours=6): "sensor_readings_minute",
        timedelta(days=1): "sensor_readings_hourly",
    }
    assert explorer.level_for(start, start + timedelta(days=7)).name == "sensor_readings_hourly"
    assert explorer.level_for(start, start + timedelta(days=30)).name == "sensor_readings_daily"


def test_series_are_the_aggregates_of_the_raw_readings(platform, source):
    start, end = platform.start, platform.end
    devices = ["GH1-D01", "GH1-D02"]
    with source.connect() as con:
        inventory = explorer.inventory(con)
        hourly = explorer.series(
            con,
            REGISTRY.get("sensor_readings_hourly"),
            site_id="GH1",
            devices=devices,
            metric="temperature",
            start=start,
            end=end,
        )
        minute = explorer.series(
            con,
            REGISTRY.get("sensor_readings_minute"),
            site_id="GH1",
            devices=["GH1-D01"],
            metric="temperature",
            start=start,
            end=start + timedelta(hours=1),
        )
        assert explorer.data_end(con) == end
    assert set(inventory["site_id"]) == {"GH1", "FAC001", HOSTILE_SITE}
    assert len(inventory) == 4 * 2  # four devices, two metrics
    raw = _readings(platform).query("metric == 'temperature' and site_id == 'GH1'")
    expected = raw.groupby(["device_id", raw["event_time"].dt.floor("h")])["value"].agg(
        ["mean", "min", "max", "count"]
    )
    got = hourly.set_index(["device_id", "window_start"])
    assert len(got) == len(expected) == 2 * 3
    for key, row in expected.iterrows():
        assert got.loc[key, "mean_value"] == pytest.approx(row["mean"])
        assert (got.loc[key, "min_value"], got.loc[key, "max_value"]) == (row["min"], row["max"])
        assert got.loc[key, "reading_count"] == row["count"]
    assert len(minute) == 60 and minute["reading_count"].tolist() == [2] * 60
    assert minute["max_value"].max() == raw.query("device_id == 'GH1-D01'")["value"].max()


def test_episodes_thresholds_and_latest_readings(platform, source):
    with source.connect() as con:
        spans = explorer.episodes(
            con,
            site_id="GH1",
            devices=["GH1-D01", "GH1-D02"],
            metric="temperature",
            start=platform.start,
            end=platform.end,
        )
        later = explorer.episodes(
            con,
            site_id="GH1",
            devices=["GH1-D01"],
            metric="temperature",
            start=platform.end - timedelta(hours=1),
            end=platform.end,
        )
        latest = explorer.latest_readings(con, device_id="EQ001", limit=5)
    rules = set(spans["rule"])
    assert {"temperature_high", "silent_device"} <= rules
    hot = spans[spans["rule"] == "temperature_high"].iloc[0]
    assert (hot["device_id"], hot["severity"], hot["status"]) == ("GH1-D01", "warning", "closed")
    assert spans.loc[spans["rule"] == "silent_device", "metric"].isna().all()  # device-wide
    assert later.empty  # GH1-D01's episodes all ended in the first hour
    levels = explorer.thresholds(RULES, "temperature")
    assert levels[["severity", "level"]].values.tolist() == [["critical", 60.0], ["warning", 40.0]]
    assert explorer.thresholds(RULES, "pressure").empty
    eq = (
        _readings(platform)
        .query("device_id == 'EQ001'")
        .sort_values(["event_time", "metric"], ascending=[False, True])
    )
    assert latest["event_time"].tolist() == eq["event_time"].head(5).tolist()
    assert latest["value"].tolist() == eq["value"].head(5).tolist()


# -- hostile ids -----------------------------------------------------------------------------------
def test_hostile_ids_are_bound_values_never_sql(platform, source):
    with source.connect() as con:
        theirs = explorer.series(
            con,
            REGISTRY.get("sensor_readings_hourly"),
            site_id=HOSTILE_SITE,
            devices=[HOSTILE_DEVICE],
            metric="temperature",
            start=platform.start,
            end=platform.end,
        )
        readings = explorer.latest_readings(con, device_id=HOSTILE_DEVICE, limit=500)
        injected = explorer.latest_readings(con, device_id="x' OR '1'='1", limit=500)
        faults = alarms.episodes(
            con,
            alarms.AlarmFilter(platform.start, platform.end, sites=(HOSTILE_SITE,), no_site=False),
        )
        # the ids did not drop or change anything
        assert has_relation(con, "sensor_readings_hourly")
    assert len(theirs) == 3 and len(readings) == 500
    assert set(readings["site_id"]) == {HOSTILE_SITE}
    assert injected.empty
    assert faults["device_id"].tolist() == [HOSTILE_DEVICE]
    assert faults["rule"].tolist() == ["device_fault"]


# -- alarms ----------------------------------------------------------------------------------------
def test_alarm_episodes_filters_and_delivery_states(platform, source):
    everything = alarms.AlarmFilter(platform.start, platform.end)
    with source.connect() as con:
        episodes = alarms.episodes(con, everything)
        critical = alarms.episodes(
            con, alarms.AlarmFilter(platform.start, platform.end, severities=("critical",))
        )
        open_now = alarms.episodes(
            con, alarms.AlarmFilter(platform.start, platform.end, statuses=("open",))
        )
        at_fac = alarms.episodes(
            con, alarms.AlarmFilter(platform.start, platform.end, sites=("FAC001",), no_site=False)
        )
        notices = alarms.notices(con, episodes["episode_id"].tolist())
    latest = platform.latest_episodes()
    assert sorted(episodes["episode_id"]) == sorted(e["episode_id"] for e in latest)
    assert sorted(critical["episode_id"]) == sorted(
        e["episode_id"] for e in latest if e["severity"] == "critical"
    )
    assert set(open_now["rule"]) == {"temperature_high", "silent_device"}
    assert set(at_fac["site_id"]) == {"FAC001"}
    # Discord took every notice, Slack refused the critical ones (ledger_for)
    states = notices.groupby("channel")["state"].agg(set).to_dict()
    assert states == {"discord": {"sent"}, "slack": {"failed"}}
    assert len(notices[notices["channel"] == "discord"]) == len(latest)
    assert not notices["possible_duplicate"].any()
    table = alarms.delivery_by_episode(episodes, notices).set_index("episode_id")
    for episode in latest:
        row = table.loc[episode["episode_id"]]
        assert row["discord"] == "opened: sent"
        if episode["severity"] == "critical":
            assert row["slack"] == "opened: failed"
        else:
            assert pd.isna(row["slack"])
    counts = alarms.counts(episodes).set_index(["severity", "rule"])
    assert counts.loc[("critical", "temperature_high"), "open"] == 1
    assert counts[["open", "closed"]].to_numpy().sum() == len(latest)


# -- data quality ----------------------------------------------------------------------------------
def test_quality_grid_failures_samples_and_docs(platform, source):
    with source.connect() as con:
        grid = data_quality.grid(con, since=platform.start)
        failures = data_quality.latest_failures(con, since=platform.start)
        assert data_quality.exclusions(con).empty  # nothing was kept out in this fixture
    last = REGISTRY.raw.partition_key(platform.end - timedelta(hours=1))
    status = {(r.asset, r.dimension, r.partition): r.status for r in grid.itertuples()}
    assert status[("raw_sensor_readings", "validity", last)] == "fail"
    assert status[("sensor_readings_minute", "completeness", last)] == "warn"
    assert set(status.values()) == {"pass", "warn", "fail"}
    assert sum(s == "pass" for s in status.values()) == 3 * 3 - 2
    assert (grid["end"] - grid["start"] == pd.Timedelta(hours=1)).all()
    summary = data_quality.summary(grid).set_index(["asset", "dimension"])
    assert summary.loc[("raw_sensor_readings", "validity")].tolist() == [2, 0, 1]
    assert failures["severity"].tolist() == ["error", "warn"]
    sample = data_quality.sample_rows(failures["unexpected_sample"].iloc[0])
    assert sample.to_dict("records") == [{"device_id": HOSTILE_DEVICE, "value": "1500.0"}]
    link = data_quality.docs_link(platform.lake, failures["docs_page"].iloc[0])
    assert link.startswith("file://") and link.endswith(".html")
    assert data_quality.sample_rows(None).empty
    assert data_quality.sample_rows("not json").to_dict("records") == [{"sample": "not json"}]


def test_a_recheck_replaces_what_a_partition_showed(platform, tmp_path):
    """The latest run of a partition wins: a repaired partition turns green."""
    from sensor_platform.quality.results import RESULTS_TABLE

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(platform.warehouse_url.removeprefix("duckdb:///"), copy)
    warehouse = Warehouse(f"duckdb:///{copy}")
    rows = warehouse.read(RESULTS_TABLE)
    last = REGISTRY.raw.partition_key(platform.end - timedelta(hours=1))
    fixed = rows.filter(pc.equal(rows["partition"], last)).to_pylist()
    for row in fixed:
        row.update(checked_at=END + timedelta(minutes=5), run_id="repair", success=True)
        row.update(check_passed=True)
    warehouse.append(RESULTS_TABLE, pa.Table.from_pylist(fixed, schema=RESULTS_TABLE.schema))
    analytics = tmp_path / "analytics.duckdb"
    refresh_analytics_db(
        str(analytics), platform.lake, {}, warehouse=warehouse, now=END + timedelta(minutes=5)
    )
    with source_for(platform, analytics_db=str(analytics)).connect() as con:
        grid = data_quality.grid(con, since=platform.start)
        assert data_quality.latest_failures(con, since=platform.start).empty
    assert set(grid["status"]) == {"pass"}


def test_exclusions_are_shown_as_data():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE quality_exclusions AS SELECT TIMESTAMPTZ '2026-03-02 10:00:00+00' AS hour, "
        "'<b>d</b>' AS device, 'GH1' AS site, 'temperature' AS metric, 3 AS readings, "
        "'out of range' AS reason"
    )
    table = data_quality.exclusions(con)
    assert table.to_dict("records")[0]["device"] == "<b>d</b>"


# -- sources ---------------------------------------------------------------------------------------
def test_the_analytics_file_carries_recent_warehouse_copies(platform):
    with duckdb.connect(platform.analytics_db, read_only=True) as con:
        tables = {
            name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        assert {spec.name for spec in WAREHOUSE_TABLES} <= tables
        [(ledger_rows,)] = con.execute("SELECT count(*) FROM anomaly_alert_ledger").fetchall()
    assert ledger_rows == Warehouse(platform.warehouse_url).read(LEDGER_TABLE).num_rows


def test_copies_keep_the_horizon_only(platform, tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path}/w.duckdb")
    old = ledger_for(platform.latest_episodes()[:1], END - COPY_HORIZON - timedelta(days=1))
    new = ledger_for(platform.latest_episodes()[:2], END)
    warehouse.append(LEDGER_TABLE, pa.concat_tables([old, new]))
    path = tmp_path / "analytics.duckdb"
    report = refresh_analytics_db(str(path), platform.lake, {}, warehouse=warehouse, now=END)
    assert set(report.tables) == {spec.name for spec in WAREHOUSE_TABLES}
    with duckdb.connect(str(path), read_only=True) as con:
        [(rows,)] = con.execute("SELECT count(*) FROM anomaly_alert_ledger").fetchall()
        [(empty,)] = con.execute("SELECT count(*) FROM data_quality_results").fetchall()
    assert rows == new.num_rows and empty == 0  # a table never written copies as empty


def test_without_the_analytics_file_the_lake_is_read_directly(platform, tmp_path):
    source = source_for(platform, analytics_db=str(tmp_path / "missing.duckdb"))
    status = source.status()
    assert "does not exist yet" in status.notes[0]
    # the warehouse copies, and the exclusions this fixture has none of
    assert set(status.empty) == {spec.name for spec in WAREHOUSE_TABLES} | {"quality_exclusions"}
    with source.connect() as con:
        sites = overview.sites(con, now=END, open_now=open_episodes(con, STALE))
        notices = alarms.notices(con, [e["episode_id"] for e in platform.latest_episodes()])
    assert overview.totals(sites)["devices"] == 4
    assert notices.empty


def test_a_new_platform_renders_every_query_empty(tmp_path):
    config = DashboardConfig(
        str(tmp_path / "analytics.duckdb"), str(tmp_path / "lake"), "duckdb:///w.duckdb"
    )
    source = DashboardSource(config)
    assert set(source.status().empty) == {
        *(d.name for d in LAKE_DATASETS),
        *(s.name for s in WAREHOUSE_TABLES),
    }
    window = alarms.AlarmFilter(END - timedelta(days=1), END)
    with source.connect() as con:
        assert overview.sites(con, now=END, open_now=open_episodes(con, STALE)).empty
        assert overview.silent_devices(open_episodes(con, STALE)).empty
        assert overview.freshness(con, now=END)["latest_reading"].isna().all()
        assert overview.feeds(con, now=END).empty
        assert explorer.inventory(con).empty and explorer.data_end(con) is None
        assert explorer.latest_readings(con, device_id="d").empty
        assert alarms.episodes(con, window).empty and alarms.notices(con, ["x"]).empty
        assert data_quality.grid(con, since=END).empty
        assert data_quality.latest_failures(con, since=END).empty


def test_the_dashboard_never_opens_the_warehouse_file(platform, tmp_path):
    # A writer holding the DuckDB warehouse (even in another configuration) does not matter: the
    # dashboard's connection is the analysts' file, read-only.
    holder = duckdb.connect(platform.warehouse_url.removeprefix("duckdb:///"))
    try:
        with source_for(platform).connect() as con:
            files = {
                path
                for (path,) in con.execute("SELECT path FROM duckdb_databases()").fetchall()
                if path
            }
            assert files == {platform.analytics_db}
            [(read_only,)] = con.execute(
                "SELECT readonly FROM duckdb_databases() WHERE path = $p",
                {"p": platform.analytics_db},
            ).fetchall()
            assert read_only
            assert not overview.sites(con, now=END, open_now=open_episodes(con, STALE)).empty
    finally:
        holder.close()


def test_settings_and_secrets_reach_the_config(monkeypatch, tmp_path):
    env = {
        "SENSOR_DATA_DIR": str(tmp_path),
        "SENSOR_WAREHOUSE_URL": "postgresql+psycopg2://u:hunter2@db/x",
        "SENSOR_DASHBOARD_CACHE_TTL_SECONDS": "5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = DashboardConfig.from_settings(load_settings())
    assert config.warehouse_url == env["SENSOR_WAREHOUSE_URL"] and not config.duckdb_warehouse
    assert config.cache_ttl_s == 5 and config.analytics_db == f"{tmp_path}/analytics.duckdb"
    assert "hunter2" not in repr(config)
    assert "hunter2" not in DashboardSource(config).status().reading
    with pytest.raises(ValueError, match="not a secret"):
        read_secret("SENSOR_DATA_DIR")
    with pytest.raises(ValueError, match="SENSOR_DASHBOARD_PORT"):
        load_settings({"SENSOR_DASHBOARD_PORT": "70000"})


# -- charts ----------------------------------------------------------------------------------------
def test_series_chart_draws_thresholds_and_episodes(platform, source):
    params = dict(
        site_id="GH1",
        devices=["GH1-D01"],
        metric="temperature",
        start=platform.start,
        end=platform.end,
    )
    with source.connect() as con:
        series = explorer.series(con, REGISTRY.get("sensor_readings_minute"), **params)
        spans = explorer.episodes(con, **params)
    spec = charts.series_chart(
        series,
        explorer.thresholds(RULES, "temperature"),
        spans,
        start=platform.start,
        end=platform.end,
        value_title="temperature (°C)",
    ).to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["rect", "area", "line", "rule", "text"]
    datasets = spec["datasets"]
    levels = sorted((r["level"], r["label"]) for d in datasets.values() for r in d if "level" in r)
    assert levels == [(40.0, "warning 40"), (60.0, "critical 60")]  # lines and labels share it
    rects = [r for d in datasets.values() for r in d if "span_end" in r]
    assert {r["rule"] for r in rects} == set(spans["rule"])


def test_heatmap_and_timeline_specs(platform, source):
    with source.connect() as con:
        grid = data_quality.grid(con, since=platform.start)
        episodes = alarms.episodes(con, alarms.AlarmFilter(platform.start, platform.end))
    heat = charts.quality_heatmap(grid).to_dict()
    assert heat["encoding"]["color"]["scale"]["domain"] == ["pass", "warn", "fail"]
    timeline = charts.alarms_timeline(episodes, bucket="h").to_dict()
    assert timeline["encoding"]["y"]["aggregate"] == "count"
    empty = charts.alarms_timeline(episodes.iloc[0:0], bucket="h").to_dict()
    assert empty["mark"]["type"] == "bar"


def test_a_torn_read_is_read_again_and_a_query_mistake_is_not(source):
    calls = []

    def torn_once(con):
        calls.append(con)
        if len(calls) == 1:
            raise duckdb.Error("TProtocolException: Invalid data")
        return con.execute("SELECT 42").fetchall()

    assert source.read(torn_once) == [(42,)]
    assert len(calls) == 2 and calls[0] is not calls[1]  # a new connection the second time

    def mistaken(con):
        calls.append(con)
        return con.execute("SELECT no_such_column FROM sensor_readings_hourly").fetchall()

    calls.clear()
    with pytest.raises(duckdb.BinderException):
        source.read(mistaken)
    assert len(calls) == 1
