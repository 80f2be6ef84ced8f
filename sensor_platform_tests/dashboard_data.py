"""A small platform for the dashboard's tests, built with the pipeline's own ground floor: raw
partitions, minute/hour/day rollups, detected anomaly episodes, the warehouse (DuckDB file) with
the same tables, alert ledger rows, quality results, and the analysts' file with its copies.

Four devices at three sites, every 30 s, for `hours` hours ending at `end`: GH1-D01 runs hot for
12 minutes in the first hour (a closed warning), EQ001 is above the critical level for the last
15 minutes (open, critical), GH1-D02 goes silent 40 minutes before the end (open silent episode)
and the device of the hostile site reports a fault code. Ids of the hostile site and device are
markup, quotes and SQL, which the dashboard must show as text.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.catalog.analytics_db import refresh_analytics_db
from sensor_platform.datasets import REGISTRY
from sensor_platform.detection.episodes import detect_hour_by_hour
from sensor_platform.detection.rules import load_rules
from sensor_platform.detection.schema import EPISODE_SCHEMA
from sensor_platform.lake.store import Lake
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.ledger import LEDGER_TABLE, ledger_rows
from sensor_platform.notify.messages import Notice
from sensor_platform.quality.gx_validate import ExpectationOutcome, SuiteOutcome
from sensor_platform.quality.results import RESULTS_TABLE, results_table
from sensor_platform.rollups.compute import minute_aggregates, rollup
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.readings_factory import readings_table

HOSTILE_SITE = "<img src=x onerror=alert(1)>'; --"
HOSTILE_DEVICE = "<script>alert('d')</script>\"; DROP TABLE sensor_readings_hourly; --"
DEVICES = {
    "GH1-D01": "GH1",
    "GH1-D02": "GH1",
    "EQ001": "FAC001",
    HOSTILE_DEVICE: HOSTILE_SITE,
}
CADENCE_S = 30
CADENCES = dict.fromkeys(DEVICES, CADENCE_S)


@dataclass(frozen=True)
class SmallPlatform:
    root: Path
    lake: Lake
    warehouse_url: str
    analytics_db: str
    start: datetime
    end: datetime
    readings: pa.Table
    episodes: pa.Table  # every hour's rows, as written to the lake

    def latest_episodes(self) -> list[dict]:
        latest: dict[str, dict] = {}
        for row in sorted(self.episodes.to_pylist(), key=lambda r: r["partition_hour"]):
            latest[row["episode_id"]] = row
        return list(latest.values())


def small_readings(start: datetime, end: datetime) -> pa.Table:
    rows = []
    moment = start
    while moment < end:
        minute = (moment - start) / timedelta(minutes=1)
        to_end = (end - moment) / timedelta(minutes=1)
        for device, site in DEVICES.items():
            if device == "GH1-D02" and to_end <= 40:
                continue  # silent for the last 40 minutes
            temperature = 21.0 + 0.5 * ((minute % 7) - 3) + 0.01 * len(device)
            if device == "GH1-D01" and 20 <= minute < 32:
                temperature = 44.0 + (minute % 3)
            if device == "EQ001" and to_end <= 15:
                temperature = 65.0 + (minute % 2)
            status = 3 if device == HOSTILE_DEVICE and 30 <= minute < 35 else 0
            common = {"device_id": device, "site_id": site, "status_code": status}
            rows.append(
                {**common, "event_time": moment, "metric": "temperature", "value": temperature}
                | {"unit": "°C"}
            )
            humidity = 55.0 + (minute % 5) + 0.1 * (device == "EQ001")
            rows.append(
                {**common, "event_time": moment, "metric": "humidity", "value": humidity}
                | {"unit": "%"}
            )
        moment += timedelta(seconds=CADENCE_S)
    return readings_table(rows)


def build_small_platform(root: Path, *, end: datetime, hours: int = 3) -> SmallPlatform:
    end = end.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    lake = Lake(str(root / "lake"))
    warehouse_url = f"duckdb:///{root}/warehouse.duckdb"
    warehouse = Warehouse(warehouse_url)
    readings = small_readings(start, end)
    raw, minute, hourly, daily = REGISTRY.raw, *REGISTRY.aggregates

    minutes = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        part = _window(readings, "event_time", hour, hour + timedelta(hours=1))
        lake.write_parquet(raw.partition_file(hour), part)
        aggregates = minute_aggregates(part, CADENCES)
        lake.write_parquet(minute.partition_file(hour), aggregates)
        warehouse.replace_window(minute.table_spec(), aggregates, hour, hour + timedelta(hours=1))
        minutes.append(aggregates)
    minutes = pa.concat_tables(minutes)
    day = start.replace(hour=0)
    while day < end:
        next_day = day + timedelta(days=1)
        hours_of_day = rollup(
            _window(minutes, "window_start", day, next_day), hourly.window, CADENCES
        )
        lake.write_parquet(hourly.partition_file(day), hours_of_day)
        warehouse.replace_window(hourly.table_spec(), hours_of_day, day, next_day)
        days = rollup(hours_of_day, daily.window, CADENCES)
        lake.write_parquet(daily.partition_file(day), days)
        warehouse.replace_window(daily.table_spec(), days, day, next_day)
        day = next_day

    anomalies = REGISTRY.get("sensor_anomalies")
    parts = []
    for h, part in enumerate(
        detect_hour_by_hour(readings, load_rules(), start=start, hours=hours, cadences=CADENCES)
    ):
        hour = start + timedelta(hours=h)
        part = part.set_column(
            part.schema.get_field_index("partition_hour"),
            "partition_hour",
            pa.array([hour] * part.num_rows, EPISODE_SCHEMA.field("partition_hour").type),
        )
        lake.write_parquet(anomalies.partition_file(hour), part)
        warehouse.replace_window(anomalies.table_spec(), part, hour, hour + timedelta(hours=1))
        parts.append(part)
    episodes = pa.concat_tables(parts)

    platform = SmallPlatform(
        root=root,
        lake=lake,
        warehouse_url=warehouse_url,
        analytics_db=str(root / "analytics.duckdb"),
        start=start,
        end=end,
        readings=readings,
        episodes=episodes,
    )
    warehouse.append(LEDGER_TABLE, ledger_for(platform.latest_episodes(), end))
    warehouse.append(RESULTS_TABLE, quality_results(start, hours, end))
    refresh_analytics_db(
        platform.analytics_db,
        lake,
        {d.name: d.prefix for d in REGISTRY},
        warehouse=warehouse,
        now=end,
    )
    return platform


def _window(table: pa.Table, column: str, start: datetime, end: datetime) -> pa.Table:
    times = table[column]
    inside = pc.and_(
        pc.greater_equal(times, pa.scalar(start, times.type)),
        pc.less(times, pa.scalar(end, times.type)),
    )
    return table.filter(inside)


DISCORD = Channel("discord", "discord", "https://discord.com/api/webhooks/1/secret-token")
SLACK = Channel("slack", "slack", "https://hooks.slack.com/services/T/B/secret")


def ledger_for(latest: list[dict], now: datetime) -> pa.Table:
    """Discord took every opened notice; Slack refused the critical ones (failed, due again)."""
    tables = []
    for i, episode in enumerate(sorted(latest, key=lambda e: e["episode_id"])):
        notice = Notice(episode, ("opened",))
        at = now - timedelta(minutes=30) + timedelta(seconds=i)
        for channel, outcome, status in (
            (DISCORD, "sent", 200),
            *([(SLACK, "failed", 500)] if episode["severity"] == "critical" else []),
        ):
            attempt = {"attempt_id": f"{channel.name}-{i}", "message_key": f"key-{i}"}
            tables.append(
                ledger_rows(channel, [notice], outcome="attempting", recorded_at=at, **attempt)
            )
            tables.append(
                ledger_rows(
                    channel,
                    [notice],
                    outcome=outcome,
                    recorded_at=at,
                    attempts=1,
                    http_status=status,
                    **attempt,
                )
            )
    return pa.concat_tables(tables)


def quality_results(start: datetime, hours: int, checked_at: datetime) -> pa.Table:
    """Every raw hour passes completeness; the last hour's validity fails (an error) with a
    sample row naming the hostile device; the minute level warns on its last hour."""
    outcomes = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        last = h == hours - 1
        key = REGISTRY.raw.partition_key(hour)
        outcomes.append(
            SuiteOutcome(
                suite="raw_completeness",
                asset=REGISTRY.raw.name,
                dimension="completeness",
                partition=key,
                rows=1000,
                expectations=(
                    ExpectationOutcome(
                        "not_null",
                        "device_id",
                        "expect_column_values_to_not_be_null",
                        "device_id is never null",
                        "error",
                        True,
                        1000,
                        0,
                        0.0,
                    ),
                ),
                docs_page=f"validations/raw_completeness/{key}.html",
            )
        )
        outcomes.append(
            SuiteOutcome(
                suite="raw_validity",
                asset=REGISTRY.raw.name,
                dimension="validity",
                partition=key,
                rows=1000,
                expectations=(
                    ExpectationOutcome(
                        "temperature_range",
                        "temperature",
                        "expect_column_values_to_be_between",
                        "temperature between -90 and 1000",
                        "error",
                        not last,
                        500,
                        7 if last else 0,
                        1.4 if last else 0.0,
                        sample=(({"device_id": HOSTILE_DEVICE, "value": 1500.0},) if last else ()),
                    ),
                ),
                docs_page=f"validations/raw_validity/{key}.html",
            )
        )
        outcomes.append(
            SuiteOutcome(
                suite="minute_coverage",
                asset="sensor_readings_minute",
                dimension="completeness",
                partition=key,
                rows=240,
                expectations=(
                    ExpectationOutcome(
                        "coverage",
                        "coverage",
                        "expect_column_mean_to_be_between",
                        "minute coverage at least 0.8",
                        "warn",
                        not last,
                        240,
                        observed_value=0.7 if last else 0.99,
                    ),
                ),
            )
        )
    return results_table(outcomes, run_id="test-run", checked_at=checked_at)
