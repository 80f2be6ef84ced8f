"""What the dashboard's queries share: which relations exist, where the newest partition is, and the
latest state of each anomaly episode.

Queries filter on the Hive `date` column as well as on time: DuckDB then opens only the partition
files of those days, which keeps a page fast however many days the lake holds.
"""

from datetime import date, datetime, timedelta

import duckdb
import pandas as pd

from sensor_platform.datasets import REGISTRY, Dataset

# Relation names come from the registry (fixed), never from data; they are quoted identifiers.
RAW = REGISTRY.raw
ANOMALIES = REGISTRY.get("sensor_anomalies")
LEVELS: tuple[Dataset, ...] = tuple(REGISTRY.aggregates)  # finest first
_RELATIONS = frozenset(d.name for d in REGISTRY)


def relation(dataset: Dataset) -> str:
    """`dataset`'s relation name, quoted for SQL (only registry names are accepted)."""
    if dataset.name not in _RELATIONS:
        raise ValueError(f"{dataset.name!r} is not a dataset of the registry")
    return f'"{dataset.name}"'


def has_relation(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM (SELECT table_name AS name FROM duckdb_tables() "
        "UNION ALL SELECT view_name FROM duckdb_views()) WHERE name = $name",
        {"name": name},
    ).fetchone()
    return bool(found[0])


NEWEST_PARTITIONS = "dashboard_newest_partitions"  # (dataset, newest_day), from the file listing


def latest_day(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> date | None:
    """The date of the newest partition of `dataset`, None when it has none: from the lake's file
    listing when the source registered it (a scan of every file's folder name otherwise)."""
    if has_relation(con, NEWEST_PARTITIONS):
        found = con.execute(
            f"SELECT newest_day FROM {NEWEST_PARTITIONS} WHERE dataset = $name",  # noqa: S608 - fixed name
            {"name": dataset.name},
        ).fetchall()
        if found:
            return found[0][0]
    [(day,)] = con.execute(f"SELECT max(date) FROM {relation(dataset)}").fetchall()  # noqa: S608 - registry name
    return day


def day_of(moment: datetime) -> date:
    return moment.date()


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> pd.DataFrame:
    return con.execute(sql, params or {}).df()


def latest_episodes_sql(where: str = "TRUE") -> str:
    """Each episode's latest row (its current state) among the anomaly partitions from
    $since_day, filtered by `where` (a fixed SQL condition with bound parameters)."""
    return f"""
        SELECT * EXCLUDE (date, hour) FROM {relation(ANOMALIES)}
        WHERE date >= $since_day AND ({where})
        QUALIFY row_number() OVER (PARTITION BY episode_id ORDER BY partition_hour DESC) = 1
    """  # noqa: S608 - registry name and fixed conditions


def open_episodes(con: duckdb.DuckDBPyConnection, stale_after: timedelta) -> pd.DataFrame:
    """Episodes whose latest state is open. An open episode is carried into every hour until it
    closes or goes stale, so the partitions of the last `stale_after` (+1 day) hold them all."""
    newest = latest_day(con, ANOMALIES)
    if newest is None:
        return frame(con, latest_episodes_sql("FALSE"), {"since_day": date.min})
    since = newest - timedelta(days=stale_after.days + 1)
    sql = f"SELECT * FROM ({latest_episodes_sql()}) WHERE status = 'open'"  # noqa: S608 - fixed SQL
    return frame(con, sql, {"since_day": since})
