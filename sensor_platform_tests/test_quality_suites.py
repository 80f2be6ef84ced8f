"""Data-quality suites without Dagster: for every check a clean partition that passes and one
crafted to fail it, asserting the failing rule, its figures and the bounded sample; plus the
rules file, the merge of a range and the history rows (the Data Docs: test_data_docs.py)."""

import dataclasses
import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from sensor_platform.datasets import REGISTRY as DATASETS
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.quality import partition_checks
from sensor_platform.quality.results import RESULTS_SCHEMA, RESULTS_TABLE, results_table, summarize
from sensor_platform.quality.rules import (
    DEFAULT_RULES_FILE,
    FleetRegistry,
    load_rules,
    parse_rules,
)
from sensor_platform.quality.suites import suites_for
from sensor_platform.rollups.compute import minute_aggregates, rollup
from sensor_platform.rollups.schema import AGGREGATE_SCHEMA
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.readings_factory import readings_table

DAY = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = DAY + timedelta(hours=10)
NOW = DAY + timedelta(days=3)
CADENCES = {"D1": 60, "D2": 60}
RAW, MINUTE, HOURLY, DAILY = (
    "raw_sensor_readings",
    "sensor_readings_minute",
    "sensor_readings_hourly",
    "sensor_readings_daily",
)
REGISTRY = FleetRegistry(cadences=CADENCES, sites=frozenset({"S1", "S2"}))
RULES = load_rules()
# device, site, metric, unit, base value: one reading per stream and minute (the cadence).
STREAMS = [
    ("D1", "S1", "temperature", "°C", 21.0),
    ("D1", "S1", "humidity", "%", 48.0),
    ("D2", "S2", "co2", "ppm", 640.0),
]


def clean_rows(hour: datetime, every_minutes: int = 1) -> list[dict]:
    return [
        {
            "event_time": hour + timedelta(minutes=m, seconds=7),
            "device_id": device,
            "site_id": site,
            "metric": metric,
            "unit": unit,
            "value": base + (m % 5) * 0.25,
        }
        for device, site, metric, unit, base in STREAMS
        for m in range(0, 60, every_minutes)
    ]


def write_raw(lake: Lake, hour: datetime, rows: list[dict]) -> pa.Table:
    table = readings_table(rows)
    if any(c.null_count for c in table.columns):
        # Parquet refuses nulls in a non-nullable column: write as a foreign writer would.
        table = table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))
    lake.write_parquet(layout.raw_partition_file(hour), table)
    return table


def write_aggregate(lake: Lake, asset: str, window: datetime, table: pa.Table) -> None:
    lake.write_parquet(DATASETS.get(asset).partition_file(window), table)


def read_aggregate(lake: Lake, asset: str, window: datetime) -> pa.Table:
    return lake.read_parquet([DATASETS.get(asset).partition_file(window)], AGGREGATE_SCHEMA)


def check_partitions(lake: Lake, asset: str, windows: list[datetime], *, registry, **kwargs):
    return partition_checks.check_partitions(
        lake, DATASETS, DATASETS.get(asset), windows, fleet=registry, **kwargs
    )


def build_day(lake: Lake, day: datetime = DAY, cadences: dict[str, int] = CADENCES) -> None:
    """A clean day: raw and minute aggregates of every hour, then the hour and day rollups."""
    minutes = []
    for h in range(24):
        hour = day + timedelta(hours=h)
        raw = write_raw(lake, hour, clean_rows(hour))
        minute = minute_aggregates(raw, cadences)
        write_aggregate(lake, MINUTE, hour, minute)
        minutes.append(minute)
    hourly = rollup(pa.concat_tables(minutes), timedelta(hours=1), cadences)
    write_aggregate(lake, HOURLY, day, hourly)
    write_aggregate(lake, DAILY, day, rollup(hourly, timedelta(days=1), cadences))


@pytest.fixture(scope="module")
def clean_lake_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean") / "lake"
    build_day(Lake(str(root)))
    return root


@pytest.fixture
def clean_lake(clean_lake_dir, tmp_path) -> Lake:
    """A private copy of the clean day, for a test to break."""
    root = tmp_path / "lake"
    shutil.copytree(clean_lake_dir, root)
    return Lake(str(root))


def run_checks(lake: Lake, asset: str, window: datetime, rules=RULES, registry=REGISTRY):
    return check_partitions(
        lake,
        asset,
        [window],
        rules=rules,
        registry=registry,
        now=NOW,
        run_name="test",
        build_docs=False,
    )


def failed(summary) -> dict[tuple[str, str], object]:
    return {(e.rule, e.subject): e for e in summary.failed}


# -- every check passes on clean data ----------------------------------------------------------
@pytest.mark.parametrize("asset,window", [(RAW, HOUR), (MINUTE, HOUR), (HOURLY, DAY), (DAILY, DAY)])
def test_every_check_passes_on_a_clean_partition(clean_lake, asset, window):
    report = run_checks(clean_lake, asset, window)
    assert set(report.summaries) == {s.dimension for s in suites_for(DATASETS.get(asset), DATASETS)}
    for dimension, summary in report.summaries.items():
        assert summary.success, (dimension, [(e.rule, e.subject, e.sample) for e in summary.failed])
        assert summary.rows > 0 and summary.expectations
        assert summary.severity is None


# -- raw_sensor_readings -------------------------------------------------------------------------
def _raw_summary(lake: Lake, rows: list[dict], dimension: str, rules=RULES):
    write_raw(lake, HOUR, rows)
    return run_checks(lake, RAW, HOUR, rules=rules).summaries[dimension]


def test_raw_completeness_fails_on_null_and_nan_required_values(lake):
    rows = clean_rows(HOUR)
    rows[3]["source"] = None
    rows[4]["value"] = float("nan")  # a null-like value: Parquet allows it in a required column
    summary = _raw_summary(lake, rows, "completeness")
    failures = failed(summary)
    assert set(failures) == {("required_not_null", "source"), ("required_not_null", "value")}
    e = failures[("required_not_null", "source")]
    assert (e.unexpected_count, e.element_count, e.severity) == (1, 180, "error")
    assert e.sample[0]["device_id"] == "D1" and e.sample[0]["source"] is None
    nan = failures[("required_not_null", "value")]
    assert nan.unexpected_count == 1 and nan.sample[0]["value"] is None
    assert nan.sample[0]["event_time"] == (HOUR + timedelta(minutes=4, seconds=7)).isoformat()
    assert summary.severity == "error"


def test_raw_validity_impossible_temperature_is_an_error(lake):
    rows = clean_rows(HOUR) + [
        {"event_time": HOUR + timedelta(seconds=1), "device_id": "D1", "site_id": "S1",
         "metric": "temperature", "unit": "°C", "value": 5000.0},
    ]  # fmt: skip
    summary = _raw_summary(lake, rows, "validity")
    failures = failed(summary)
    assert set(failures) == {
        ("value_in_range", "temperature"),
        ("any_value_out_of_range", "temperature"),
    }
    e = failures[("value_in_range", "temperature")]
    # judged per series: the one temperature series of the hour, 1 of its 61 readings (1.6 %)
    assert (e.unexpected_count, e.element_count) == (1, 1)
    assert e.sample == failures[("any_value_out_of_range", "temperature")].sample
    [series] = e.sample
    assert (series["device_id"], series["readings"], series["out_of_range"]) == ("D1", 61, 1)
    assert series["out_of_range_share"] == pytest.approx(1 / 61)
    assert summary.severity == "error"
    # The line the UI shows says what it counts, and names the rule as the Data Docs do.
    assert "1 of 1 series (device and metric) unexpected (100%)" in summary.describe()
    assert e.description.startswith("value_in_range: ")


def test_raw_validity_a_rare_glitch_only_warns(lake):
    # An isolated out-of-range reading below max_invalid_share is a WARN, not a blocking ERROR.
    rules = parse_rules(
        {**json.loads(DEFAULT_RULES_FILE.read_text()), "max_invalid_share": 0.05}, source="t"
    )
    rows = clean_rows(HOUR)
    rows[70]["value"] = 250.0  # humidity above 100 %
    summary = _raw_summary(lake, rows, "validity", rules=rules)
    assert set(failed(summary)) == {("any_value_out_of_range", "humidity")}
    assert summary.severity == "warn"


def test_raw_validity_wrong_unit_future_time_and_unknown_metric(lake):
    rows = clean_rows(HOUR)
    for row in rows[:10]:
        row["unit"] = "K"
    rows[100]["ingest_time"] = rows[100]["event_time"] - timedelta(hours=1)
    rows.append({"event_time": HOUR, "device_id": "D1", "metric": "pressure", "value": 1.0})
    summary = _raw_summary(lake, rows, "validity")
    failures = failed(summary)
    assert set(failures) == {
        ("unit_allowed", "temperature"),
        ("any_unit_not_allowed", "temperature"),
        ("not_in_future", "event_time"),
        ("metric_known", "metric"),
    }
    [units] = failures[("unit_allowed", "temperature")].sample
    assert (units["device_id"], units["unit_not_allowed"], units["readings"]) == ("D1", 10, 60)
    [future] = failures[("not_in_future", "event_time")].sample
    assert (future["metric"], future["in_future"]) == ("humidity", 1)  # 1 of 60 > 1 %
    assert failures[("metric_known", "metric")].severity == "warn"
    assert failures[("metric_known", "metric")].sample[0]["metric"] == "pressure"
    assert summary.severity == "error"


def test_raw_uniqueness_fails_on_a_duplicate_reading_id(lake):
    rows = clean_rows(HOUR)
    rows.append({**rows[5], "source": "replay"})
    summary = _raw_summary(lake, rows, "uniqueness")
    [(key, e)] = failed(summary).items()
    assert key == ("reading_id_unique", "reading_id") and e.unexpected_count == 2
    assert {s["source"] for s in e.sample} == {"test", "replay"}
    assert summary.severity == "error"


def test_raw_integrity_flags_devices_and_sites_unknown_to_the_fleet(lake):
    rows = clean_rows(HOUR)
    rows.append({"event_time": HOUR, "device_id": "DX", "site_id": "S9", "metric": "co2",
                 "unit": "ppm", "value": 500.0})  # fmt: skip
    summary = _raw_summary(lake, rows, "integrity")
    failures = failed(summary)
    assert set(failures) == {("device_known", "device_id"), ("site_known", "site_id")}
    assert failures[("device_known", "device_id")].sample[0]["device_id"] == "DX"
    assert summary.severity == "warn"


def test_raw_timeliness_warns_when_too_many_readings_are_late(lake):
    rows = clean_rows(HOUR)
    for row in rows[:10]:  # 10 of 180 = 5.6 % > 5 %
        row["ingest_time"] = HOUR + timedelta(hours=1, minutes=10)
    summary = _raw_summary(lake, rows, "timeliness")
    [(key, e)] = failed(summary).items()
    assert key == ("late_share", "ingest_time") and e.severity == "warn"
    # Counted in readings: the late ones are the unexpected rows, and the sample shows them.
    assert (e.unexpected_count, e.element_count) == (10, 180)
    assert e.unexpected_percent == pytest.approx(100 * 10 / 180)
    late = {(r["device_id"], r["metric"], r["event_time"]) for r in e.sample}
    assert late == {(r["device_id"], r["metric"], r["event_time"].isoformat()) for r in rows[:10]}
    assert "10 of 180 readings unexpected (5.56%)" in summary.describe()
    rows[0]["ingest_time"] = HOUR + timedelta(minutes=59)  # 9 of 180 = 5 %: at the limit
    assert _raw_summary(lake, rows, "timeliness").success


def test_samples_stay_bounded_however_many_rows_fail(lake):
    rows = [
        {**row, "device_id": f"D{d}", "unit": "bogus"}
        for d in range(40)
        for row in clean_rows(HOUR)
        if row["metric"] == "temperature"
    ]
    summary = _raw_summary(lake, rows, "validity")
    e = failed(summary)[("unit_allowed", "temperature")]
    assert e.unexpected_count == 40 and len(e.sample) == RULES.sample_size
    assert len(json.dumps([list(x.sample) for x in summary.expectations])) < 40_000


# -- sensor_readings_minute ----------------------------------------------------------------------
def _tamper(lake: Lake, asset: str, window: datetime, change) -> None:
    rows = read_aggregate(lake, asset, window).to_pylist()
    write_aggregate(lake, asset, window, pa.Table.from_pylist(change(rows), AGGREGATE_SCHEMA))


def _set(rows: list[dict], index: int, **values) -> list[dict]:
    rows[index] = {**rows[index], **values}
    return rows


def test_minute_consistency_min_mean_max_and_stddev(clean_lake):
    def break_rows(rows):
        _set(rows, 0, mean_value=rows[0]["max_value"] + 1.5)
        return _set(rows, 1, stddev_value=-0.5)

    _tamper(clean_lake, MINUTE, HOUR, break_rows)
    summary = run_checks(clean_lake, MINUTE, HOUR).summaries["consistency"]
    failures = failed(summary)
    assert set(failures) == {
        ("mean_within_min_max", "mean_value"),
        ("stddev_non_negative", "stddev_value"),
    }
    mean = failures[("mean_within_min_max", "mean_value")]
    assert mean.unexpected_count == 1 and mean.sample[0]["device_id"] == "D1"
    assert mean.sample[0]["mean_value"] - mean.sample[0]["max_value"] == pytest.approx(1.5)
    assert failures[("stddev_non_negative", "stddev_value")].sample[0]["stddev_value"] == -0.5
    assert summary.severity == "error"


@pytest.mark.parametrize("asset,window", [(MINUTE, HOUR), (HOURLY, DAY), (DAILY, DAY)])
def test_aggregate_uniqueness_fails_on_a_repeated_window_key(clean_lake, asset, window):
    _tamper(clean_lake, asset, window, lambda rows: rows + [rows[0]])
    summary = run_checks(clean_lake, asset, window).summaries["uniqueness"]
    [(key, e)] = failed(summary).items()
    assert key == ("window_key_unique", "window_key") and e.unexpected_count == 2
    assert e.sample[0]["device_id"] == "D1" and e.severity == "error"


def test_minute_completeness_flags_low_coverage_and_silent_devices(clean_lake):
    rows = [r for r in clean_rows(HOUR) if r["metric"] != "humidity"]
    rows += [r for r in clean_rows(HOUR, every_minutes=2) if r["metric"] == "humidity"]
    raw = write_raw(clean_lake, HOUR, rows)
    write_aggregate(clean_lake, MINUTE, HOUR, minute_aggregates(raw, CADENCES))
    registry = FleetRegistry({**CADENCES, "D3": 30}, REGISTRY.sites)
    summary = run_checks(clean_lake, MINUTE, HOUR, registry=registry).summaries["completeness"]
    [(key, e)] = failed(summary).items()
    assert key == ("coverage", "coverage") and e.severity == "warn"
    assert e.unexpected_count == 2
    found = {(s["device_id"], s["metric"]): s["coverage"] for s in e.sample}
    assert found == {("D1", "humidity"): 0.5, ("D3", None): 0.0}


def test_minute_integrity_minutes_must_cover_exactly_the_raw_hour(clean_lake):
    write_raw(clean_lake, HOUR, clean_rows(HOUR)[:-4])  # the minutes still count 180
    summary = run_checks(clean_lake, MINUTE, HOUR).summaries["integrity"]
    [(key, e)] = failed(summary).items()
    assert key == ("level_total_matches_raw", "reading_count") and e.severity == "error"
    assert e.sample == (
        {
            "partition_start": HOUR.isoformat(),
            "raw_rows": 176,
            "left_out_by_gate": 0,
            "raw_rows_kept": 176,
            "level_total": 180,
        },
    )


def test_an_empty_partition_is_reported_never_a_quiet_green(lake):
    """A backfilled hour where nothing arrived: raw and its minutes have 0 rows, and say so."""
    raw = write_raw(lake, HOUR, [])
    write_aggregate(lake, MINUTE, HOUR, minute_aggregates(raw, CADENCES))
    raw_check = run_checks(lake, RAW, HOUR).summaries["completeness"]
    minute_check = run_checks(lake, MINUTE, HOUR).summaries["integrity"]
    for summary in (raw_check, minute_check):
        [(rule, _)] = failed(summary)
        assert rule == "partition_has_rows" and summary.severity == "warn"
        assert "nothing arrived for it upstream" in summary.describe()
    assert "observed 0" in raw_check.describe()


# -- hourly and daily rollups --------------------------------------------------------------------
@pytest.mark.parametrize("asset", [HOURLY, DAILY])
def test_rollup_count_must_equal_the_sum_of_the_level_below(clean_lake, asset):
    _tamper(clean_lake, asset, DAY, lambda rows: _set(rows, 0, reading_count=7))
    summary = run_checks(clean_lake, asset, DAY).summaries["consistency"]
    [(key, e)] = failed(summary).items()
    assert key == ("count_matches_finer_level", "reading_count") and e.severity == "error"
    assert e.unexpected_count == 1
    per_stream = {HOURLY: 60, DAILY: 24 * 60}[asset]
    assert e.sample[0]["reading_count"] == 7 and e.sample[0]["finer_count"] == per_stream


def test_daily_completeness_flags_a_missing_hour(clean_lake):
    def drop_five_am(rows):
        return [r for r in rows if r["window_start"] != DAY + timedelta(hours=5)]

    _tamper(clean_lake, HOURLY, DAY, drop_five_am)
    hourly = read_aggregate(clean_lake, HOURLY, DAY)
    write_aggregate(clean_lake, DAILY, DAY, rollup(hourly, timedelta(days=1), CADENCES))
    summary = run_checks(clean_lake, DAILY, DAY).summaries["completeness"]
    [(key, e)] = failed(summary).items()
    assert key == ("finer_windows_present", "window_start") and e.severity == "error"
    assert (e.unexpected_count, e.element_count) == (1, 24)
    assert e.sample[0]["missing_window"] == (DAY + timedelta(hours=5)).isoformat()
    # The day in progress is judged on its ended hours only.
    partial = check_partitions(
        clean_lake, DAILY, [DAY], rules=RULES, registry=REGISTRY,
        now=DAY + timedelta(hours=5), run_name="t", build_docs=False,
    ).summaries["completeness"]  # fmt: skip
    assert partial.success and partial.expectations[0].element_count == 5


# -- ranges, history rows and Data Docs ----------------------------------------------------------
def test_a_range_is_validated_partition_by_partition_and_merged(clean_lake):
    bad = clean_rows(HOUR)
    bad[0]["value"] = 5000.0
    write_raw(clean_lake, HOUR, bad)
    hours = [HOUR - timedelta(hours=1), HOUR, HOUR + timedelta(hours=1)]
    report = check_partitions(
        clean_lake, RAW, hours, rules=RULES, registry=REGISTRY, now=NOW, run_name="r",
        build_docs=False,
    )  # fmt: skip
    validity = report.summaries["validity"]
    assert validity.partitions == ("2026-03-01-09:00", "2026-03-01-10:00", "2026-03-01-11:00")
    assert validity.failed_partitions == ["2026-03-01-10:00"]
    # 3 series (device and metric) an hour, judged per series: 9 in the range, 3 temperature
    assert validity.rows == 9 and validity.partition_label.endswith("(3 partitions)")
    e = failed(validity)[("value_in_range", "temperature")]
    assert (e.unexpected_count, e.element_count) == (1, 3)
    assert e.sample[0]["partition"] == "2026-03-01-10:00"

    table = results_table(report.outcomes, run_id="run-1", checked_at=NOW)
    assert table.schema == RESULTS_SCHEMA
    expected_rows = sum(len(o.expectations) for o in report.outcomes)
    assert table.num_rows == expected_rows
    bad_rows = table.filter(pc.invert(table["success"])).to_pylist()
    assert {(r["partition"], r["check_name"], r["rule"]) for r in bad_rows} == {
        ("2026-03-01-10:00", "validity", "value_in_range"),
        ("2026-03-01-10:00", "validity", "any_value_out_of_range"),
    }
    assert json.loads(bad_rows[0]["unexpected_sample"])[0]["out_of_range"] == 1
    assert set(pc.unique(table["partition"]).to_pylist()) == set(validity.partitions)


@pytest.fixture(params=["duckdb", "postgres", "mysql"])
def results_spec(request, tmp_path):
    """The history table's spec under a name no other test uses, on each warehouse engine."""
    url = (
        f"duckdb:///{tmp_path}/warehouse.duckdb"
        if request.param == "duckdb"
        else request.getfixturevalue(f"{request.param}_url")
    )
    spec = dataclasses.replace(RESULTS_TABLE, name=f"dq_results_{uuid.uuid4().hex[:12]}")
    yield Warehouse(url), spec
    if request.param != "duckdb":
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            quoted = conn.dialect.identifier_preparer.quote(spec.name)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quoted}")
        engine.dispose()


def test_history_rows_round_trip_on_every_warehouse(clean_lake, results_spec):
    warehouse, spec = results_spec
    bad = clean_rows(HOUR)
    bad[0]["value"] = 5000.0
    write_raw(clean_lake, HOUR, bad)
    report = run_checks(clean_lake, RAW, HOUR)
    rows = results_table(report.outcomes, run_id="run-1", checked_at=NOW)
    assert warehouse.append(spec, rows) == rows.num_rows
    stored = warehouse.read(spec).to_pylist()
    assert len(stored) == rows.num_rows
    [row] = [r for r in stored if r["rule"] == "value_in_range" and not r["success"]]
    assert (row["asset"], row["partition"], row["check_name"]) == (
        RAW,
        "2026-03-01-10:00",
        "validity",
    )
    assert row["severity"] == "error" and row["check_passed"] is False
    assert row["unexpected_count"] == 1 and row["element_count"] == 1  # the temperature series
    assert json.loads(row["unexpected_sample"])[0]["device_id"] == "D1"
    assert row["checked_at"] == NOW and row["run_id"] == "run-1"


def test_summarize_needs_outcomes():
    with pytest.raises(ValueError, match="nothing to summarize"):
        summarize([], 10)


# -- rules ---------------------------------------------------------------------------------------
def test_rules_override_file_merges_and_typos_fail(tmp_path):
    override = tmp_path / "rules.json"
    override.write_text(json.dumps({
        "max_late_share": 0.2,
        "metrics": {"pressure": {"min": 800, "max": 1200, "units": ["hPa"]}},
        "severity": {"device_known": "error"},
    }))  # fmt: skip
    rules = load_rules(override)
    assert rules.max_late_share == 0.2 and rules.min_coverage == RULES.min_coverage
    assert rules.metrics["pressure"].units == ("hPa",) and "temperature" in rules.metrics
    assert rules.severity_of("device_known") == "error"
    assert rules.severity_of("site_known") == "warn"

    base = json.loads(DEFAULT_RULES_FILE.read_text())
    bad_cases = {
        "unknown keys max_late": {**base, "max_late": 1},
        "between 0 and 1": {**base, "min_coverage": 1.5},
        "min 5.0 is greater": {**base, "metrics": {"x": {"min": 5, "max": 1, "units": ["u"]}}},
        "unknown rules in severity": {**base, "severity": {**base["severity"], "typo": "warn"}},
        "'error' or 'warn'": {**base, "severity": {**base["severity"], "coverage": "fatal"}},
        "units must be": {**base, "metrics": {"x": {"min": 0, "max": 1, "units": []}}},
    }
    for message, document in bad_cases.items():
        with pytest.raises(ValueError, match=message):
            parse_rules(document, source="t")


def test_an_expectation_that_cannot_run_counts_as_a_failure():
    import pandas as pd

    from sensor_platform.quality.gx_validate import GxValidator
    from sensor_platform.quality.suites import SuiteDefinition, raw_uniqueness

    suite = SuiteDefinition(RAW, "uniqueness", "readings", "test", ("device_id",), raw_uniqueness)
    outcome = GxValidator(RULES, REGISTRY).validate(
        suite, pd.DataFrame({"device_id": ["D1"]}), partition="p", run_name="r"
    )
    [e] = outcome.expectations
    assert not e.success and not outcome.success and outcome.severity == "error"
    assert e.error and "reading_id" in e.error
