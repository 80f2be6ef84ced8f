"""The data catalog: entries for every asset matching the files on disk, schema versions and diffs,
the HTML page in a real headless browser, and the analysts' DuckDB views answering the README's
example questions."""

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sensor_platform.catalog.analytics_db import refresh_analytics_db
from sensor_platform.catalog.entries import CatalogEntry, ColumnInfo
from sensor_platform.catalog.html_page import render_catalog_page
from sensor_platform.catalog.lake_inspection import lake_prefix, read_lake_bytes
from sensor_platform.catalog.publishing import (
    CATALOG_COLUMNS_TABLE,
    CATALOG_TABLE,
    HTML_PAGE,
    JSON_DOCUMENT,
    SCHEMA_HISTORY,
)
from sensor_platform.catalog.schema_versions import SchemaHistory, SchemaSnapshot, diff_schemas
from sensor_platform.datasets import REGISTRY
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.quality.results import RESULTS_TABLE
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.platform import definitions_for, run_simulated_hours

pytestmark = pytest.mark.integration  # Dagster runs

START = datetime(2026, 3, 1, 10, tzinfo=UTC)  # two hours of one day
HOURS = 2
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
T0 = datetime(2026, 3, 1, tzinfo=UTC)

# Three of the README's example queries (test_readme_shows_the_example_queries_that_are_tested),
# checked here against the lake itself.
EXAMPLE_QUERIES = {
    "Temperature of greenhouse GH1 over the last 7 days of data, hour by hour": """
SELECT window_start, device_id, round(mean_value, 2) AS mean_temperature,
       min_value, max_value, reading_count
FROM sensor_readings_hourly
WHERE site_id = 'GH1' AND metric = 'temperature'
  AND window_start >= (SELECT max(window_start) FROM sensor_readings_hourly) - INTERVAL 7 DAY
ORDER BY window_start, device_id
""",
    "Devices that reported less than 99 % of their expected readings, per whole day": """
SELECT date, device_id, metric, reading_count, expected_count, round(coverage, 3) AS coverage
FROM sensor_readings_daily
WHERE coverage < 0.99 AND date < current_date
ORDER BY coverage, device_id, metric
""",
    "Readings and error codes per site, metric and day, straight from the raw partitions": """
SELECT date, site_id, metric, count(*) AS readings,
       count(*) FILTER (WHERE status_code <> 0) AS error_readings
FROM raw_sensor_readings
GROUP BY ALL
ORDER BY date, site_id, metric
""",
}


# -- schema versions (ground floor) ----------------------------------------------------------


def test_schema_history_versions_and_diffs():
    history = SchemaHistory()
    v1 = SchemaSnapshot({"event_time": "timestamp[us, tz=UTC]", "value": "double"}, ("co2",))
    first, new = history.record("raw", v1, T0)
    assert (first.version, first.diff, new) == (1, None, True)
    assert history.record("raw", v1, T0 + timedelta(hours=1)) == (first, False)

    v2 = SchemaSnapshot(dict(v1.columns), ("co2", "temperature"))
    second, new = history.record("raw", v2, T0 + timedelta(hours=2))
    assert new and second.version == 2
    assert second.diff.added_metrics == ("temperature",)
    assert not second.breaking

    v3 = SchemaSnapshot({"event_time": "timestamp[us, tz=UTC]", "value": "float"}, ("co2",))
    third, _ = history.record("raw", v3, T0 + timedelta(hours=3))
    assert third.version == 3
    assert third.diff.type_changes == (("value", "double", "float"),)
    assert third.diff.removed_metrics == ("temperature",)
    assert third.breaking

    restored = SchemaHistory.from_json(history.to_json())
    assert [v.version for v in restored.versions["raw"]] == [1, 2, 3]
    assert restored.record("raw", v3, T0 + timedelta(hours=4)) == (restored.latest("raw"), False)
    assert restored.latest("raw").diff == third.diff
    assert diff_schemas(v3, v1).is_empty is False
    assert diff_schemas(v1, v1).is_empty


def test_lake_prefix_of_partition_path_templates():
    assert lake_prefix("raw/sensor_readings/date=YYYY-MM-DD/hour=HH/part-0.parquet") == (
        "raw/sensor_readings"
    )
    assert lake_prefix("quarantine/date=YYYY-MM-DD/<batch_id>.parquet") == "quarantine"
    with pytest.raises(ValueError):
        lake_prefix("date=YYYY-MM-DD/part-0.parquet")


def test_html_page_escapes_what_it_shows():
    entry = CatalogEntry(
        name="odd",
        description="<script>alert(1)</script>",
        owner="team:x",
        layer="raw",
        group="raw",
        kinds=(),
        tags={},
        location="/lake/odd",
        storage_format="parquet",
        lake_prefix="odd",
        table_name=None,
        partitioning="none",
        columns=(ColumnInfo("a", "string", "<b>bold</b>"),),
        metrics=(),
        schema_version=1,
        schema_diff=None,
        row_count=None,
        size_bytes=None,
        file_count=None,
        partitions=(),
        last_update=None,
        freshness_hours=None,
        freshness_status="never",
        quality_status="no checks",
    )
    page = render_catalog_page([entry], T0)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "http://" not in page and "https://" not in page  # self-contained


# -- the asset, on a real pipeline run -------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The simulated feed, raw and aggregates for two hours, then the catalog, on a temp data dir."""
    data = tmp_path_factory.mktemp("catalog") / "data"
    definitions = definitions_for(data)
    instance = dg.DagsterInstance.ephemeral()
    run_simulated_hours(definitions, instance, START, START + timedelta(hours=HOURS))
    env = {
        "definitions": definitions,
        "instance": instance,
        "lake": Lake(str(data / "lake")),
        "warehouse": Warehouse(f"duckdb:///{data}/warehouse.duckdb"),
        "analytics": str(data / "analytics.duckdb"),
    }
    env["first"] = _run_catalog(env)
    return env


def _run_catalog(env) -> dg.ExecuteInProcessResult:
    result = (
        env["definitions"]
        .resolve_job_def("catalog_job")
        .execute_in_process(instance=env["instance"])
    )
    assert result.success
    return result


def _document(env) -> dict:
    return json.loads(read_lake_bytes(env["lake"], JSON_DOCUMENT))


def _files_on_disk(lake: Lake, prefix: str) -> tuple[int, int, int, dict[str, str]]:
    files = lake.list_files(prefix)
    rows = sum(lake.row_count(f.path) for f in files)
    schema = pq.read_schema(lake.full_path(files[-1].path))
    return len(files), sum(f.size for f in files), rows, {f.name: str(f.type) for f in schema}


def test_catalog_has_an_entry_for_every_asset_matching_the_lake(built):
    graph = built["definitions"].resolve_asset_graph()
    expected = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"quarantined_messages", "data_catalog", "raw_sensor_readings"} <= expected
    entries = {d["name"]: d for d in _document(built)["datasets"]}
    assert set(entries) == expected
    lake = built["lake"]
    prefixes = {d.name: d.prefix for d in [REGISTRY.raw, *REGISTRY.aggregates]}
    for name, prefix in prefixes.items():
        entry = entries[name]
        files, size, rows, columns = _files_on_disk(lake, prefix)
        assert entry["location"] == lake.uri(prefix)
        assert (entry["file_count"], entry["size_bytes"], entry["row_count"]) == (files, size, rows)
        assert rows > 0
        assert {c["name"]: c["type"] for c in entry["columns"]} == columns
        assert all(c["description"] for c in entry["columns"]), name
        assert entry["owner"] == "team:data-platform"
        assert entry["last_update"] and entry["freshness_status"] in {"fresh", "stale"}
        assert entry["schema_version"] == 1
    raw = entries["raw_sensor_readings"]
    assert raw["layer"] == "raw" and entries["sensor_readings_daily"]["layer"] == "aggregate"
    assert raw["partitions"] == ["date=2026-03-01/hour=10", "date=2026-03-01/hour=11"]
    assert {"temperature", "humidity", "co2"} <= set(raw["metrics"])
    assert raw["quality_checks"] and raw["quality_status"] in {"passed", "warn", "failed"}
    assert entries["data_catalog"]["layer"] == "catalog"

    wh = built["warehouse"]
    catalog = wh.read(CATALOG_TABLE)
    assert sorted(catalog["dataset"].to_pylist()) == sorted(expected)
    columns = wh.read(CATALOG_COLUMNS_TABLE)
    raw_columns = [r for r in columns.to_pylist() if r["dataset"] == "raw_sensor_readings"]
    assert [r["column_name"] for r in sorted(raw_columns, key=lambda r: r["position"])] == list(
        _files_on_disk(lake, layout.RAW)[3]
    )

    materialization = built["first"].asset_materializations_for_node("data_catalog")[0]
    assert materialization.metadata["dagster/row_count"].value == len(expected)
    assert materialization.metadata["catalog_page"].value == os.path.abspath(
        lake.full_path(HTML_PAGE)
    )
    (check,) = built["first"].get_asset_check_evaluations()
    assert check.passed


def test_a_new_metric_and_a_removed_column_make_new_versions(built):
    lake = built["lake"]
    raw_file = layout.raw_partition_file(START)
    raw = pq.read_table(lake.full_path(raw_file))
    extra = raw.slice(0, 1).set_column(
        raw.schema.get_field_index("metric"), "metric", pa.array(["soil_moisture"])
    )
    lake.write_parquet(raw_file, pa.concat_tables([raw, extra.cast(raw.schema)]))
    for f in lake.list_files(REGISTRY.get("sensor_readings_daily").prefix):
        lake.write_parquet(f.path, pq.read_table(lake.full_path(f.path)).drop_columns(["m2"]))

    result = _run_catalog(built)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert set(check.metadata["breaking_changes"].value) == {"sensor_readings_daily"}

    entries = {d["name"]: d for d in _document(built)["datasets"]}
    raw_entry, daily = entries["raw_sensor_readings"], entries["sensor_readings_daily"]
    assert raw_entry["schema_version"] == 2
    assert raw_entry["schema_diff"]["added_metrics"] == ["soil_moisture"]
    assert not raw_entry["schema_diff"]["breaking"]
    assert daily["schema_version"] == 2
    assert daily["schema_diff"]["removed_columns"] == ["m2"]
    assert daily["schema_diff"]["breaking"]
    assert entries["sensor_readings_hourly"]["schema_version"] == 1
    history = SchemaHistory.from_json(read_lake_bytes(lake, SCHEMA_HISTORY))
    assert [v.version for v in history.versions["sensor_readings_daily"]] == [1, 2]

    # nothing changed since: no new version, the check passes again
    (check,) = _run_catalog(built).get_asset_check_evaluations()
    assert check.passed


def _dump_dom(page: str) -> str:
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_html_page_lists_every_dataset_in_a_real_browser(built):
    assert os.path.exists(CHROMIUM), "chromium is needed: apt-get install -y chromium"
    from html.parser import HTMLParser

    names = {d["name"] for d in _document(built)["datasets"]}
    url = "file://" + os.path.abspath(built["lake"].full_path(HTML_PAGE))

    class Sections(HTMLParser):
        def __init__(self):
            super().__init__()
            self.sections, self.search, self.shown = {}, False, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "section" and "data-dataset" in attrs:
                self.sections[attrs["data-dataset"]] = "hidden" in attrs
            if tag == "input" and attrs.get("id") == "catalog-search":
                self.search = attrs.get("type") == "search"
            if tag == "body":
                self.shown = attrs.get("data-shown")

    everything = Sections()
    everything.feed(_dump_dom(url))
    assert everything.search
    assert set(everything.sections) == names
    assert not any(everything.sections.values())
    assert everything.shown == str(len(names))  # the script ran

    filtered = Sections()
    filtered.feed(_dump_dom(url + "#q=sensor_readings_minute"))
    assert filtered.sections["sensor_readings_minute"] is False
    assert filtered.sections["raw_sensor_readings"] is True
    assert 0 < int(filtered.shown) < len(names)


def test_analytics_views_answer_the_readme_questions_outside_dagster(built):
    path = built["analytics"]
    script = (
        "import duckdb, json, sys;"
        "con = duckdb.connect(sys.argv[1], read_only=True);"
        "queries = json.loads(sys.argv[2]);"
        "print(json.dumps([con.execute(q).fetchall() for q in queries], default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, path, json.dumps(list(EXAMPLE_QUERIES.values()))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    greenhouse, coverage, per_day = json.loads(out)

    lake = built["lake"]
    with duckdb.connect() as con:
        (hourly,) = con.execute(
            "SELECT count(*) FROM read_parquet($glob) "
            "WHERE site_id = 'GH1' AND metric = 'temperature'",
            {"glob": lake.full_path(REGISTRY.get("sensor_readings_hourly").prefix) + "/**/*"},
        ).fetchone()
        (low_coverage,) = con.execute(
            "SELECT count(*) FROM read_parquet($glob) WHERE coverage < 0.99",
            {"glob": lake.full_path(REGISTRY.get("sensor_readings_daily").prefix) + "/**/*"},
        ).fetchone()
    assert len(greenhouse) == hourly > 0
    assert all(row[-1] > 0 for row in greenhouse)  # reading_count
    assert len(coverage) == low_coverage
    assert all(row[-1] < 0.99 for row in coverage)
    raw_rows = sum(lake.row_count(f.path) for f in lake.list_files(layout.RAW))
    assert sum(row[3] for row in per_day) == raw_rows
    assert {row[0] for row in per_day} == {"2026-03-01"}

    with duckdb.connect(path, read_only=True) as con:
        query = "SELECT table_name FROM information_schema.tables"
        tables = {r[0] for r in con.execute(query).fetchall()}
        assert {"raw_sensor_readings", "sensor_readings_hourly", "data_catalog"} <= tables
        # the dashboard's copies of the warehouse tables it may not open itself
        (copied,) = con.execute("SELECT count(*) FROM data_quality_results").fetchone()
        assert "anomaly_alert_ledger" in tables
    results = built["warehouse"].read(RESULTS_TABLE)
    assert copied == results.num_rows > 0  # every check of this module's runs


def test_analytics_file_is_replaced_while_an_analyst_holds_it_open(tmp_path, lake):
    lake.write_parquet("x/date=2026-03-01/part-0.parquet", pa.table({"v": [1, 2]}))
    path = str(tmp_path / "analytics.duckdb")
    refresh_analytics_db(path, lake, {"x": "x"})
    with duckdb.connect(path, read_only=True) as analyst:
        lake.write_parquet("x/date=2026-03-02/part-0.parquet", pa.table({"v": [3]}))
        report = refresh_analytics_db(path, lake, {"x": "x", "missing": "nothing/here"})
        assert analyst.execute("SELECT count(*) FROM x").fetchone()[0] == 3  # views read live
    assert report.views == ("x",) and "missing" in report.skipped
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("SELECT sum(v), count(DISTINCT date) FROM x").fetchone() == (6, 2)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_s3_lake_is_inspected_and_gets_documents_but_no_views(tmp_path, s3_endpoint):
    from sensor_platform.catalog.lake_inspection import inspect_lake_dataset, write_lake_bytes
    from sensor_platform_tests.readings_factory import hour, readings_table

    lake = Lake(
        "s3://catalog-lake/prod",
        s3_endpoint_url=s3_endpoint,
        s3_access_key="testing",
        s3_secret_key="testing",
    )
    rows = [
        {"event_time": hour(10), "device_id": "d1", "metric": "co2", "value": 400},
        {"event_time": hour(10), "device_id": "d2", "metric": "humidity", "value": 40},
    ]
    lake.write_parquet(layout.raw_partition_file(hour(10)), readings_table(rows))
    stats = inspect_lake_dataset(lake, layout.RAW)
    assert (stats.files, stats.rows, stats.metrics) == (1, 2, ("co2", "humidity"))
    assert stats.partitions == ("date=2026-03-01/hour=10",)

    write_lake_bytes(lake, HTML_PAGE, b"<html></html>")
    assert read_lake_bytes(lake, HTML_PAGE) == b"<html></html>"
    assert read_lake_bytes(lake, JSON_DOCUMENT) is None

    report = refresh_analytics_db(str(tmp_path / "a.duckdb"), lake, {"raw": layout.RAW})
    assert report.views == () and "S3" in report.skipped["raw"]


def test_readme_shows_the_example_queries_that_are_tested():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for title, sql in EXAMPLE_QUERIES.items():
        assert title in readme
        assert f"{sql.strip()};" in readme
