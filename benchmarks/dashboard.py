"""Benchmark: how long each dashboard page takes to read its data, on 30 days x 200 devices x 5
metrics of minute, hourly and daily aggregates (43.2 M minute rows, plus today's hours), a day of
raw readings (2.9 M),
anomaly episodes, alert ledger rows and quality results. Target: every page in at most 2 s.

The data is generated once into --data (kept for the next run): minute aggregates written straight
as partitions, hourly and daily ones merged from them by the pipeline's own `rollup`, the
warehouse (DuckDB) holding the ledger and the quality results, and the analysts' file built by
`refresh_analytics_db`, which the dashboard reads. Each page's reads (`dashboard.pages`, exactly
what the app runs, uncached) are timed --repeat times; with --browser the app is started and each
page is loaded in headless Chromium, timed until its tables and charts are drawn (first visit,
cold cache, then a second visit from the app's cache).

    .venv/bin/python benchmarks/dashboard.py [--data /tmp/sensor-dashboard-bench] [--browser]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sensor_platform.catalog.analytics_db import refresh_analytics_db
from sensor_platform.dashboard import alarms, pages
from sensor_platform.dashboard.sources import DashboardConfig, DashboardSource
from sensor_platform.datasets import REGISTRY
from sensor_platform.detection.rules import load_rules
from sensor_platform.detection.schema import EPISODE_SCHEMA
from sensor_platform.lake.store import Lake
from sensor_platform.notify.ledger import LEDGER_SCHEMA, LEDGER_TABLE
from sensor_platform.quality.results import RESULTS_SCHEMA, RESULTS_TABLE
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.rollups.compute import rollup
from sensor_platform.rollups.schema import AGGREGATE_SCHEMA
from sensor_platform.warehouse.store import Warehouse

DAYS, DEVICES, SITES = 30, 200, 10
METRICS = ("temperature", "humidity", "co2", "co_level", "smoke_density")
CADENCE_S = 30
MARKER = "generated.txt"

MINUTE_SQL = """
SELECT $hour + to_minutes(m) AS window_start,
       'dev-' || lpad(d::VARCHAR, 3, '0') AS device_id,
       'site-' || (d % $sites)::VARCHAR AS site_id,
       metric, NULL::VARCHAR AS unit, 2::BIGINT AS reading_count,
       base - 0.5 AS min_value, base + 0.5 AS max_value, base AS mean_value,
       0.7 AS stddev_value, 0.5 AS m2,
       base - 0.5 AS first_value, $hour + to_minutes(m) AS first_event_time,
       base + 0.5 AS last_value, $hour + to_minutes(m) + INTERVAL 30 SECOND AS last_event_time,
       2.0 AS expected_count, 1.0 AS coverage
FROM (
    SELECT m, d, metric,
           20 + 5 * sin((epoch($hour) / 60 + m) / 180 + d) + (hash(d, m, metric) % 100) / 100.0
               AS base
    FROM range(60) AS t(m), range($devices) AS u(d), unnest($metrics) AS v(metric)
)
ORDER BY window_start, device_id, metric
"""

RAW_SQL = """
SELECT $hour + to_seconds(s * $cadence) AS event_time,
       'dev-' || lpad(d::VARCHAR, 3, '0') AS device_id,
       'site-' || (d % $sites)::VARCHAR AS site_id,
       metric, 20 + (hash(d, s, metric) % 1000) / 100.0 AS value, NULL::VARCHAR AS unit,
       0 AS status_code, $hour + to_seconds(s * $cadence + 1) AS ingest_time,
       'kafka:sensor-readings/' || (d % 4)::VARCHAR || '/' || (s * $devices + d)::VARCHAR AS source,
       md5(d::VARCHAR || metric || s::VARCHAR) AS reading_id
FROM range(3600 // $cadence) AS t(s), range($devices) AS u(d), unnest($metrics) AS v(metric)
ORDER BY device_id, metric, event_time
"""


def generate(root: Path, end: datetime) -> None:
    lake = Lake(str(root / "lake"))
    minute, hourly, daily = REGISTRY.aggregates
    start = (end - timedelta(days=DAYS)).replace(hour=0)  # whole days, then today until `end`
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    params = {"sites": SITES, "devices": DEVICES, "metrics": list(METRICS)}
    began = time.perf_counter()
    day = start
    while day < end:
        hours_of_day = [
            day + timedelta(hours=h) for h in range(24) if day + timedelta(hours=h) < end
        ]
        for hour in hours_of_day:
            table = con.sql(MINUTE_SQL, params={**params, "hour": hour}).to_arrow_table()
            _write(lake, minute.partition_file(hour), table.cast(AGGREGATE_SCHEMA))
        files = [lake.full_path(minute.partition_file(hour)) for hour in hours_of_day]
        hours = rollup(files, hourly.window, dict.fromkeys(_devices(), CADENCE_S))
        _write(lake, hourly.partition_file(day), hours)
        _write(lake, daily.partition_file(day), rollup(hours, daily.window, {}))
        print(f"  aggregates of {day:%Y-%m-%d} ({time.perf_counter() - began:.0f} s)", flush=True)
        day += timedelta(days=1)
    for h in range(24):
        hour = end - timedelta(hours=24 - h)
        raw = con.sql(RAW_SQL, params={**params, "hour": hour, "cadence": CADENCE_S})
        _write(lake, REGISTRY.raw.partition_file(hour), raw.to_arrow_table().cast(READING_SCHEMA))
    episodes = _episodes(lake, start, end)
    warehouse = Warehouse(f"duckdb:///{root}/warehouse.duckdb")
    warehouse.append(LEDGER_TABLE, _ledger(episodes, end))
    warehouse.append(RESULTS_TABLE, _quality(start, end))
    refresh_analytics_db(
        str(root / "analytics.duckdb"),
        lake,
        {d.name: d.prefix for d in REGISTRY},
        warehouse=warehouse,
        now=end,
    )
    (root / MARKER).write_text(end.isoformat())
    print(f"  generated in {time.perf_counter() - began:.0f} s", flush=True)


def _devices() -> list[str]:
    return [f"dev-{d:03d}" for d in range(DEVICES)]


def _write(lake: Lake, relpath: str, table: pa.Table) -> None:
    path = Path(lake.full_path(relpath))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _episodes(lake: Lake, start: datetime, end: datetime) -> list[dict]:
    """Eight episodes start every hour (threshold, spike, stuck, silent...), lasting 5-50 minutes;
    those of the last two hours are still open."""
    rules = [("temperature_high", "threshold", "temperature"), ("spike", "spike", "humidity")]
    rules += [("stuck_sensor", "stuck", "co2"), ("silent_device", "silent", None)]
    latest = []
    hour, n = start, 0
    anomalies = REGISTRY.get("sensor_anomalies")
    while hour < end:
        rows = []
        for i in range(8):
            n += 1
            rule, kind, metric = rules[n % len(rules)]
            begin = hour + timedelta(minutes=(7 * i) % 50)
            finish = begin + timedelta(minutes=5 + n % 45)
            still_open = hour >= end - timedelta(hours=2)
            device = f"dev-{(n * 37) % DEVICES:03d}"
            rows.append(
                {
                    "episode_id": f"ep-{n:07d}",
                    "partition_hour": hour,
                    "device_id": device,
                    "site_id": f"site-{int(device[4:]) % SITES}",
                    "metric": metric,
                    "unit": None,
                    "rule": rule,
                    "kind": kind,
                    "severity": "critical" if n % 5 == 0 else "warning",
                    "status": "open" if still_open else "closed",
                    "start_time": begin,
                    "end_time": finish,
                    "closed_at": None if still_open else finish + timedelta(seconds=30),
                    "reading_count": 10,
                    "peak_value": 45.0,
                    "peak_time": begin,
                    "peak_score": 45.0,
                    "threshold": 40.0,
                }
            )
        _write(lake, anomalies.partition_file(hour), pa.Table.from_pylist(rows, EPISODE_SCHEMA))
        latest += rows
        hour += timedelta(hours=1)
    return latest


def _ledger(episodes: list[dict], end: datetime) -> pa.Table:
    rows = []
    for episode in episodes:
        for channel in ("discord", "slack"):
            for outcome in ("attempting", "sent" if channel == "discord" else "failed"):
                rows.append(
                    {
                        "recorded_at": episode["start_time"] + timedelta(minutes=1),
                        "notification_id": f"{episode['episode_id']}:opened",
                        "episode_id": episode["episode_id"],
                        "event": "opened",
                        "channel": channel,
                        "outcome": outcome,
                        "severity": episode["severity"],
                        "device_id": episode["device_id"],
                        "site_id": episode["site_id"],
                        "metric": episode["metric"],
                        "rule": episode["rule"],
                        "episode_start": episode["start_time"],
                        "attempts": 1,
                        "http_status": None,
                        "detail": None,
                        "run_id": "bench",
                        "attempt_id": f"{episode['episode_id']}-{channel}",
                        "message_key": f"key-{episode['episode_id']}",
                        "replayed": None,
                    }
                )
    return pa.Table.from_pylist(rows, LEDGER_SCHEMA)


def _quality(start: datetime, end: datetime) -> pa.Table:
    """Six expectations per dimension and partition: raw (5 dimensions) and minute (4) hourly,
    hourly and daily (2 each) daily; one partition in 50 warns, one in 200 fails."""
    rows, hour, n = [], start, 0
    checks = [(REGISTRY.raw, d) for d in REGISTRY.raw.quality]
    checks += [(level, d) for level in REGISTRY.aggregates for d in level.quality]
    while hour < end:
        for dataset, dimension in checks:
            if dataset.partitioning == "daily" and hour.hour:
                continue
            n += 1
            severity = "error" if n % 200 == 0 else "warn"
            failed = n % 50 == 0 or n % 200 == 0
            for e in range(6):
                bad = failed and e == 0
                rows.append(
                    {
                        "checked_at": hour + dataset.partition_length + timedelta(minutes=5),
                        "run_id": f"run-{n}",
                        "asset": dataset.name,
                        "partition": dataset.partition_key(hour),
                        "check_name": dimension,
                        "check_passed": not failed,
                        "rule": f"rule_{e}",
                        "subject": "value",
                        "expectation": "expect_column_values_to_be_between",
                        "severity": severity if bad else "warn",
                        "success": not bad,
                        "rows_validated": 120_000,
                        "element_count": 120_000,
                        "unexpected_count": 12 if bad else 0,
                        "unexpected_percent": 0.01 if bad else 0.0,
                        "observed_value": None,
                        "unexpected_sample": '[{"device_id": "dev-001", "value": 1500}]'
                        if bad
                        else None,
                        "error": None,
                        "description": f"expectation {e}",
                        "docs_page": f"validations/{dimension}/{n}.html",
                    }
                )
        hour += timedelta(hours=1)
    return pa.Table.from_pylist(rows, RESULTS_SCHEMA)


def page_reads(end: datetime, data_end: datetime) -> dict[str, tuple]:
    """Each page's reads as the app issues them (the explorer at each level)."""
    stale = load_rules().stale_after
    devices = [f"dev-{d:03d}" for d in range(0, 50, 10)]  # five devices of site-0
    chosen = dict(site_id="site-0", devices=devices, metric="temperature", device=devices[0])

    def explore(span: timedelta, level: str) -> tuple:
        return (
            pages.explorer_page,
            dict(chosen, level=level, start=data_end - span, end=data_end),
        )

    return {
        "Overview": (pages.overview_page, dict(now=end, stale_after=stale)),
        "Explorer: pickers": (pages.explorer_choices, {}),
        "Explorer: 6 hours (minutes)": explore(timedelta(hours=6), "sensor_readings_minute"),
        "Explorer: 7 days (hours)": explore(timedelta(days=7), "sensor_readings_hourly"),
        "Explorer: 30 days (days)": explore(timedelta(days=30), "sensor_readings_daily"),
        "Alarms: 7 days": (
            pages.alarms_page,
            dict(chosen=alarms.AlarmFilter(end - timedelta(days=7), end)),
        ),
        "Alarms: 30 days": (
            pages.alarms_page,
            dict(chosen=alarms.AlarmFilter(end - timedelta(days=30), end)),
        ),
        "Data quality: 3 days": (pages.quality_page, dict(since=end - timedelta(days=3))),
        "Data quality: 30 days": (pages.quality_page, dict(since=end - timedelta(days=30))),
    }


def time_reads(source: DashboardSource, end: datetime, repeat: int) -> None:
    data_end = source.read(pages.explorer_choices)["data_end"]
    print(f"\n{'page reads (uncached)':34} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, (function, params) in page_reads(end, data_end).items():
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            source.read(function, **params)
            times.append(time.perf_counter() - began)
        print(f"{name:34} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}")


def time_browser(root: Path, end: datetime) -> None:
    from playwright.sync_api import sync_playwright

    from sensor_platform_tests.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSOR_", "AWS_"))}
    env |= {"SENSOR_DATA_DIR": str(root), "SENSOR_DASHBOARD_PORT": str(port)}
    app = subprocess.Popen(
        [sys.executable, "-m", "sensor_platform.cli", "dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        drawn = (
            "() => [...document.querySelectorAll('[data-testid=stDataFrame]')]"
            ".every(t => t.querySelector('[role=gridcell]')) && "
            "[...document.querySelectorAll('[data-testid=stVegaLiteChart]')]"
            ".every(c => c.querySelector('svg text'))"
        )
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        print(
            "\nfull page in the browser, seconds from navigation: to the title (Streamlit's own\n"
            "start-up), to the page's last line (its script done) and to every table and chart\n"
            "drawn; first visit (cold cache) / second visit (the app's cache)"
        )
        print(f"{'page':14} {'title':>11} {'last line':>11} {'drawn':>11}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=flags)
            for name, path in [
                ("Overview", ""),
                ("Explorer", "explorer"),
                ("Alarms", "alarms"),
                ("Data quality", "quality"),
            ]:
                figures = []
                for _ in range(2):
                    page = browser.new_page(viewport={"width": 1400, "height": 3000})
                    began = time.perf_counter()
                    page.goto(f"{url}/{path}")
                    page.locator("h1").first.wait_for(timeout=120_000)
                    title = time.perf_counter() - began
                    page.get_by_text("Page rendered in").wait_for(timeout=120_000)
                    last = time.perf_counter() - began
                    page.wait_for_function(drawn, timeout=120_000)
                    figures.append((title, last, time.perf_counter() - began))
                    page.close()
                cells = [f"{a:.2f}/{b:.2f}" for a, b in zip(*figures, strict=True)]
                print(f"{name:14} " + " ".join(f"{c:>11}" for c in cells))
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/sensor-dashboard-bench")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time full page loads")
    args = parser.parse_args()
    root = Path(args.data)
    if (root / MARKER).exists():
        end = datetime.fromisoformat((root / MARKER).read_text())
        print(f"Reusing the data in {root} (ending {end:%Y-%m-%d %H:%M} UTC)")
    else:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        print(
            f"Generating {DAYS} days x {DEVICES} devices x {len(METRICS)} metrics into {root} ..."
        )
        generate(root, end)
    config = DashboardConfig(
        str(root / "analytics.duckdb"), str(root / "lake"), f"duckdb:///{root}/warehouse.duckdb"
    )
    source = DashboardSource(config)
    with source.connect() as con:
        counts = {
            name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # noqa: S608 - registry names
            for name in (d.name for d in REGISTRY if d.partitioning)
        }
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    # the app's ranges are relative to now: read as if now were the end of the generated data
    time_reads(source, end, args.repeat)
    if args.browser:
        time_browser(root, end)


if __name__ == "__main__":
    main()
