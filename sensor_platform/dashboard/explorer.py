"""The Site / device explorer's queries: what can be picked, the aggregates of a range at the level
the range calls for, the anomaly episodes over it, the rules' thresholds and a device's latest raw
readings."""

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from sensor_platform.dashboard.relations import (
    LEVELS,
    RAW,
    day_of,
    frame,
    latest_day,
    latest_episodes_sql,
    relation,
)
from sensor_platform.datasets import Dataset
from sensor_platform.detection.rules import RuleSet

MAX_POINTS = 500  # per device: minutes up to ~8 hours, hours up to ~3 weeks, then days
INVENTORY_DAYS = 30


def level_for(start: datetime, end: datetime) -> Dataset:
    """The finest aggregate level that draws [start, end) in at most MAX_POINTS windows."""
    for level in LEVELS:
        if (end - start) / level.window <= MAX_POINTS:
            return level
    return LEVELS[-1]


def inventory(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every (site, device, metric) of the INVENTORY_DAYS before the newest data, with its unit and
    when it was last seen: what the pickers offer."""
    minute, hourly = LEVELS[0], LEVELS[1]
    newest_minute = latest_day(con, minute)
    newest_hourly = latest_day(con, hourly) or newest_minute
    if newest_hourly is None:
        return pd.DataFrame(columns=["site_id", "device_id", "metric", "unit", "last_seen"])
    return frame(
        con,
        f"""
        SELECT site_id, device_id, metric, any_value(unit) AS unit,
               max(last_event_time) AS last_seen
        FROM (
            SELECT site_id, device_id, metric, unit, last_event_time FROM {relation(hourly)}
            WHERE date >= $hourly_since
            UNION ALL
            SELECT site_id, device_id, metric, unit, last_event_time FROM {relation(minute)}
            WHERE date >= $minute_since
        )
        GROUP BY ALL
        ORDER BY site_id NULLS LAST, device_id, metric
        """,  # noqa: S608 - registry names
        {
            "hourly_since": newest_hourly - timedelta(days=INVENTORY_DAYS),
            "minute_since": newest_minute or newest_hourly,
        },
    )


def data_end(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The end of the newest minute window: where the explorer's ranges end by default."""
    minute = LEVELS[0]
    newest = latest_day(con, minute)
    if newest is None:
        return None
    [(latest,)] = con.execute(
        f"SELECT max(window_start) FROM {relation(minute)} WHERE date >= $day",  # noqa: S608 - registry name
        {"day": newest},
    ).fetchall()
    return None if latest is None else latest + minute.window


def series(
    con: duckdb.DuckDBPyConnection,
    level: Dataset,
    *,
    site_id: str | None,
    devices: list[str],
    metric: str,
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """The windows of `level` in [start, end) of the devices' metric at the site: mean, min, max,
    count, coverage."""
    if level not in LEVELS:
        raise ValueError(f"{level.name} is not an aggregate level")
    return frame(
        con,
        f"""
        SELECT window_start, device_id, mean_value, min_value, max_value, reading_count,
               coverage, unit
        FROM {relation(level)}
        WHERE date >= $start_day AND date <= $end_day
          AND window_start >= $start AND window_start < $end
          AND site_id IS NOT DISTINCT FROM $site AND metric = $metric
          AND list_contains($devices, device_id)
        ORDER BY device_id, window_start
        """,  # noqa: S608 - registry name
        {
            "start_day": day_of(start),
            "end_day": day_of(end),
            "start": start,
            "end": end,
            "site": site_id,
            "metric": metric,
            "devices": list(devices),
        },
    )


def episodes(
    con: duckdb.DuckDBPyConnection,
    *,
    site_id: str | None,
    devices: list[str],
    metric: str,
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """The current state of the devices' episodes on `metric` (and their device-wide ones: faults,
    silences) that overlap [start, end). An episode active in the range has a row in a partition
    of the range, so its latest row is in a partition from the range's first day on."""
    sql = f"""
        SELECT episode_id, device_id, metric, rule, kind, severity, status, start_time,
               end_time, closed_at, peak_value, peak_time, threshold, reading_count
        FROM ({
        latest_episodes_sql(
            "site_id IS NOT DISTINCT FROM $site AND (metric = $metric OR metric IS NULL) "
            "AND list_contains($devices, device_id)"
        )
    })
        WHERE start_time < $end AND coalesce(closed_at, end_time) >= $start
        ORDER BY start_time, device_id, rule
    """  # noqa: S608 - fixed SQL
    return frame(
        con,
        sql,
        {
            "since_day": day_of(start),
            "site": site_id,
            "metric": metric,
            "devices": list(devices),
            "start": start,
            "end": end,
        },
    )


def thresholds(rules: RuleSet, metric: str) -> pd.DataFrame:
    """The threshold rules' levels for `metric`: one row per rule and severity."""
    rows = [
        {
            "rule": rule.name,
            "severity": severity,
            "level": level,
            "direction": rule.direction,
        }
        for rule in rules.rules
        if rule.kind == "threshold" and rule.metric == metric
        for severity, level in sorted(rule.levels.items())
    ]
    return pd.DataFrame(rows, columns=["rule", "severity", "level", "direction"])


def latest_readings(
    con: duckdb.DuckDBPyConnection, *, device_id: str, limit: int = 50
) -> pd.DataFrame:
    """The device's newest raw readings (every metric) from the last two days of raw data."""
    newest = latest_day(con, RAW)
    if newest is None:
        newest = datetime(1970, 1, 1).date()
    return frame(
        con,
        f"""
        SELECT event_time, metric, value, unit, status_code, site_id, ingest_time, source
        FROM {relation(RAW)}
        WHERE date >= $since_day AND device_id = $device
        ORDER BY event_time DESC, metric
        LIMIT $limit
        """,  # noqa: S608 - registry name
        {"since_day": newest - timedelta(days=1), "device": device_id, "limit": int(limit)},
    )
