"""The Overview page's queries: the fleet per site, readings in the last hour, open alarms by
severity, silent devices, data freshness and what each feed last landed."""

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from sensor_platform.dashboard.relations import (
    ANOMALIES,
    LEVELS,
    RAW,
    day_of,
    frame,
    latest_day,
    relation,
)
from sensor_platform.datasets import Dataset

FLEET_LOOKBACK = timedelta(days=7)  # devices heard from in the week before the newest data
SEVERITIES = ("critical", "warning")


def sites(con: duckdb.DuckDBPyConnection, *, now: datetime, open_now: pd.DataFrame) -> pd.DataFrame:
    """One row per site (NULL: readings without a site): devices and metrics heard from in the
    FLEET_LOOKBACK before the newest hourly data, readings in the hour before `now`, and of the
    open episodes `open_now` (relations.open_episodes) the alarms by severity and the silent
    devices."""
    hourly, minute = LEVELS[1], LEVELS[0]
    newest = latest_day(con, hourly) or day_of(now)
    since = newest - FLEET_LOOKBACK
    hour_ago = now - timedelta(hours=1)
    known = frame(
        con,
        f"""
        SELECT site_id, count(DISTINCT device_id) AS devices, count(DISTINCT metric) AS metrics,
               max(last_event_time) AS last_reading
        FROM (
            SELECT site_id, device_id, metric, last_event_time FROM {relation(hourly)}
            WHERE date >= $since
            UNION ALL
            SELECT site_id, device_id, metric, last_event_time FROM {relation(minute)}
            WHERE date >= $hour_day AND window_start >= $hour_ago
        )
        GROUP BY site_id
        """,  # noqa: S608 - registry names
        {"since": since, "hour_day": day_of(hour_ago), "hour_ago": hour_ago},
    )
    last_hour = frame(
        con,
        f"""
        SELECT site_id, sum(reading_count)::BIGINT AS readings_last_hour
        FROM {relation(minute)}
        WHERE date >= $hour_day AND window_start >= $hour_ago AND window_start < $now
        GROUP BY site_id
        """,  # noqa: S608 - registry name
        {"hour_day": day_of(hour_ago), "hour_ago": hour_ago, "now": now},
    )
    alarms = alarm_counts(open_now)
    table = known.merge(last_hour, on="site_id", how="outer").merge(
        alarms, on="site_id", how="outer"
    )
    counts = ["devices", "metrics", "readings_last_hour", *_alarm_columns()]
    table[counts] = table[counts].fillna(0).astype("int64")
    columns = ["site_id", *counts, "last_reading"]
    return table[columns].sort_values("site_id", na_position="last", ignore_index=True)


def _alarm_columns() -> list[str]:
    return [*(f"open_{s}" for s in SEVERITIES), "silent_devices"]


def alarm_counts(open_now: pd.DataFrame) -> pd.DataFrame:
    """Open episodes per site: by severity, and devices silent."""
    rows = []
    for site, group in open_now.groupby("site_id", dropna=False, sort=True):
        row = {"site_id": site}
        for severity in SEVERITIES:
            row[f"open_{severity}"] = int((group["severity"] == severity).sum())
        row["silent_devices"] = group.loc[group["kind"] == "silent", "device_id"].nunique()
        rows.append(row)
    return pd.DataFrame(rows, columns=["site_id", *_alarm_columns()])


def totals(site_table: pd.DataFrame) -> dict[str, int]:
    """The headline figures of the fleet."""
    return {
        "sites": len(site_table),
        "devices": int(site_table["devices"].sum()),
        "readings_last_hour": int(site_table["readings_last_hour"].sum()),
        **{f"open_{s}": int(site_table[f"open_{s}"].sum()) for s in SEVERITIES},
        "silent_devices": int(site_table["silent_devices"].sum()),
    }


def silent_devices(open_now: pd.DataFrame) -> pd.DataFrame:
    """Devices with an open silent episode: since when, and how long the silence has lasted."""
    silent = open_now[open_now["kind"] == "silent"]
    table = pd.DataFrame(
        {
            "site_id": silent["site_id"],
            "device_id": silent["device_id"],
            "last_heard": silent["start_time"],
            "silent_minutes": (silent["peak_value"] / 60).round(1),
            "severity": silent["severity"],
        }
    )
    return table.sort_values(["silent_minutes"], ascending=False, ignore_index=True)


def freshness(con: duckdb.DuckDBPyConnection, *, now: datetime) -> pd.DataFrame:
    """Per dataset: its newest partition, the newest window (or hour) it holds, the newest
    reading that went into it, and how many minutes before `now` that reading was."""
    rows = []
    for dataset in (RAW, *LEVELS, ANOMALIES):
        newest_day = latest_day(con, dataset)
        window = latest = None
        if newest_day is not None:
            # raw: the readings; aggregates: their windows and last readings; episodes: the hour
            until = {RAW.name: "event_time", ANOMALIES.name: "end_time"}.get(
                dataset.name, "last_event_time"
            )
            sql = f"SELECT max({dataset.time_column}), max({until}) FROM {relation(dataset)} WHERE date >= $day"  # noqa: S608 - registry names
            [(window, latest)] = con.execute(sql, {"day": newest_day}).fetchall()
        rows.append(
            {
                "dataset": dataset.name,
                "newest_partition": None if window is None else _partition_key(dataset, window),
                "newest_window": window if dataset.is_aggregate or dataset is ANOMALIES else None,
                "latest_reading": latest,
                "age_minutes": None
                if latest is None
                else round((now - latest) / timedelta(minutes=1)),
            }
        )
    return pd.DataFrame(rows)


def _partition_key(dataset: Dataset, moment: datetime) -> str:
    start = moment.replace(minute=0, second=0, microsecond=0)
    if dataset.partitioning == "daily":
        start = start.replace(hour=0)
    return dataset.partition_key(start)


def feeds(con: duckdb.DuckDBPyConnection, *, now: datetime) -> pd.DataFrame:
    """What each feed landed in the newest hour of raw data: readings, the last ingest and how
    long ago it was, the delay from measurement to ingestion, and for Kafka the newest landed
    offset per topic-partition (the offset lag against the broker is not in the lake: the
    kafka_topics asset observes it in Dagster)."""
    newest = latest_day(con, RAW)
    if newest is None:
        return pd.DataFrame(
            columns=[
                "feed",
                "readings",
                "last_ingest",
                "minutes_since_ingest",
                "delay_p50_s",
                "delay_p95_s",
                "last_offset",
            ]
        )
    sql = f"SELECT max(event_time) FROM {relation(RAW)} WHERE date >= $day"  # noqa: S608 - registry name
    [(latest,)] = con.execute(sql, {"day": newest}).fetchall()
    since = latest - timedelta(hours=1)
    table = frame(
        con,
        f"""
        SELECT CASE WHEN source LIKE 'kafka:%' THEN regexp_replace(source, '/[0-9]+$', '')
                    ELSE source END AS feed,
               count(*) AS readings,
               max(ingest_time) AS last_ingest,
               round(quantile_cont(epoch(ingest_time - event_time), 0.5), 1) AS delay_p50_s,
               round(quantile_cont(epoch(ingest_time - event_time), 0.95), 1) AS delay_p95_s,
               max(TRY_CAST(regexp_extract(source, '/([0-9]+)$', 1) AS BIGINT))
                   FILTER (WHERE source LIKE 'kafka:%') AS last_offset
        FROM {relation(RAW)}
        WHERE date >= $since_day AND event_time > $since
        GROUP BY feed ORDER BY feed
        """,  # noqa: S608 - registry name
        {"since_day": day_of(since), "since": since},
    )
    table.insert(
        3,
        "minutes_since_ingest",
        ((now - table["last_ingest"]) / pd.Timedelta(minutes=1)).round(1),
    )
    return table
