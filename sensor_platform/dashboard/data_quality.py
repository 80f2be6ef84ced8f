"""The Data quality page's queries: pass / warn / fail per dataset, dimension and partition (the
latest run of each), the latest failures with their sample rows and Data Docs page, and the
readings excluded from the aggregates when the platform records them."""

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd

from sensor_platform.dashboard.relations import frame
from sensor_platform.datasets import PARTITION_KEY_FORMAT, PARTITION_LENGTH, REGISTRY
from sensor_platform.lake.store import Lake
from sensor_platform.quality.data_docs import docs_url
from sensor_platform.quality.results import RESULTS_TABLE

EXCLUSIONS = "quality_exclusions"
STATUSES = ("pass", "warn", "fail")

# The latest run of each (asset, dimension, partition) checked since $since: a re-check after a
# repair replaces what the partition showed before.
_LATEST_RUNS = f"""
    SELECT * FROM {RESULTS_TABLE.name}
    WHERE checked_at >= $since
    QUALIFY dense_rank() OVER (
        PARTITION BY asset, check_name, "partition" ORDER BY checked_at DESC, run_id DESC
    ) = 1
"""  # noqa: S608 - fixed table name


def grid(con: duckdb.DuckDBPyConnection, *, since: datetime) -> pd.DataFrame:
    """One row per dataset, dimension and partition starting at or after `since`: its status
    (fail: an error-severity expectation failed; warn: only warn ones did; pass), the failed and
    evaluated expectations, and the partition's start and end."""
    table = frame(
        con,
        f"""
        SELECT asset, check_name AS dimension, "partition",
               CASE WHEN bool_or(NOT success AND severity = 'error') THEN 'fail'
                    WHEN bool_or(NOT success) THEN 'warn' ELSE 'pass' END AS status,
               count(*) FILTER (WHERE NOT success) AS failed, count(*) AS expectations,
               max(checked_at) AS checked_at
        FROM ({_LATEST_RUNS})
        GROUP BY ALL
        """,  # noqa: S608 - fixed SQL
        {"since": since},
    )
    bounds = [
        _partition_bounds(a, p) for a, p in zip(table["asset"], table["partition"], strict=True)
    ]
    table["start"] = pd.Series([b[0] for b in bounds], dtype="datetime64[us, UTC]")
    table["end"] = pd.Series([b[1] for b in bounds], dtype="datetime64[us, UTC]")
    table = table[table["start"].notna() & (table["start"] >= pd.Timestamp(since))]
    return table.sort_values(["asset", "dimension", "start"], ignore_index=True)


def _partition_bounds(asset: str, key: str) -> tuple[datetime | None, datetime | None]:
    """A partition key's UTC [start, end): by the dataset's partitioning, else by the key's shape."""
    try:
        partitionings = [REGISTRY.get(asset).partitioning]
    except KeyError:
        partitionings = list(PARTITION_KEY_FORMAT)
    for partitioning in partitionings:
        if partitioning is None:
            continue
        try:
            start = datetime.strptime(key, PARTITION_KEY_FORMAT[partitioning]).replace(tzinfo=UTC)
        except ValueError:
            continue
        return start, start + PARTITION_LENGTH[partitioning]
    return None, None


def summary(grid_table: pd.DataFrame) -> pd.DataFrame:
    """Partitions per dataset and dimension in each status."""
    if grid_table.empty:
        return pd.DataFrame(columns=["asset", "dimension", *STATUSES])
    pivot = (
        grid_table.groupby(["asset", "dimension", "status"])
        .size()
        .unstack("status", fill_value=0)
        .reindex(columns=list(STATUSES), fill_value=0)
        .reset_index()
    )
    pivot.columns.name = None
    return pivot


def latest_failures(
    con: duckdb.DuckDBPyConnection, *, since: datetime, limit: int = 100
) -> pd.DataFrame:
    """The failed expectations of the latest runs, newest first, with their sample rows (JSON)
    and Data Docs page."""
    return frame(
        con,
        f"""
        SELECT checked_at, asset, "partition", check_name AS dimension, severity, rule, subject,
               description, unexpected_count, unexpected_percent, observed_value, error,
               unexpected_sample, docs_page
        FROM ({_LATEST_RUNS})
        WHERE NOT success
        ORDER BY checked_at DESC, severity, asset, "partition", rule, subject
        LIMIT $limit
        """,  # noqa: S608 - fixed SQL
        {"since": since, "limit": int(limit)},
    )


def sample_rows(sample_json: str | None) -> pd.DataFrame:
    """An expectation's unexpected sample (a JSON list of rows) as a table; values stay text."""
    if not sample_json:
        return pd.DataFrame()
    try:
        rows = json.loads(sample_json)
    except json.JSONDecodeError:
        return pd.DataFrame({"sample": [sample_json]})
    if not isinstance(rows, list):
        rows = [rows]
    records = [r if isinstance(r, dict) else {"value": r} for r in rows]
    return pd.DataFrame([{k: None if v is None else str(v) for k, v in r.items()} for r in records])


def docs_link(lake: Lake, docs_page: str | None) -> str | None:
    """Where a validation's Data Docs page is: file:// on a local lake, s3:// on S3."""
    return docs_url(lake, docs_page) if docs_page else None


def exclusions(con: duckdb.DuckDBPyConnection, *, limit: int = 200) -> pd.DataFrame:
    """The newest of what the quality gate kept out of the aggregates (`quality_exclusions`)."""
    return frame(
        con,
        f"SELECT * FROM {EXCLUSIONS} ORDER BY 1 DESC LIMIT $limit",  # noqa: S608 - fixed name
        {"limit": int(limit)},
    )
