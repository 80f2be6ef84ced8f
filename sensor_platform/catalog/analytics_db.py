"""The analysts' DuckDB file: one view per lake dataset (Hive partitioning on), the catalog tables
and copies of the warehouse tables the dashboard reads, so `sensor-platform sql` (or any DuckDB 1.x
client) opens `data/analytics.duckdb` with no Dagster.

The file is written in DuckDB's v1.0.0 storage format (STORAGE_VERSION), which every DuckDB since
1.0 reads: the DuckDB CLI on PyPI, DBeaver's driver and other SQL clients are often a major
version behind the `duckdb` package that writes it, and cannot read its newer default format.

The file is built under a temporary name and renamed into place, so analysts and the dashboard
holding the old file open never block the pipeline and never see half a file. Views name absolute
lake paths. For an S3 lake no views are created (they would need the httpfs extension and
credentials in every analyst's session); the catalog tables are still there and list each
dataset's s3:// location. With a DuckDB warehouse, whose file has a single writer, the copies
(`WAREHOUSE_COPIES`, rows of the last `COPY_HORIZON`) are how readers see the alert ledger and the
quality results without ever opening the warehouse file.
"""

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa

from sensor_platform.lake.store import Lake
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.quality.results import RESULTS_TABLE
from sensor_platform.warehouse.store import Warehouse
from sensor_platform.warehouse.tables import TableSpec, check_identifier

# Warehouse-only tables copied into the file (the lake holds everything else the dashboard reads).
WAREHOUSE_COPIES: tuple[TableSpec, ...] = (LEDGER_TABLE, RESULTS_TABLE)
COPY_HORIZON = timedelta(days=35)  # the dashboard looks back 30 days at most

# Lake paths become SQL string literals (DDL takes no bound parameters), so only plain path
# characters are accepted; a quote or control character is refused rather than escaped.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./ +@:=-]+$")
# Readable by DuckDB 1.0 and every later version (see the module docstring).
STORAGE_VERSION = "v1.0.0"


@dataclass(frozen=True)
class AnalyticsDbReport:
    path: str
    views: tuple[str, ...]
    tables: tuple[str, ...]
    skipped: dict[str, str]  # dataset -> why it has no view


def _parquet_glob(lake: Lake, prefix: str) -> str:
    path = os.path.abspath(lake.full_path(prefix))
    if not _SAFE_PATH.match(path):
        raise ValueError(f"lake path {path!r} has characters that cannot go into a view")
    return f"{path}/**/*.parquet"


def warehouse_copies(
    warehouse: Warehouse, since: datetime, specs: Sequence[TableSpec] = WAREHOUSE_COPIES
) -> list[tuple[TableSpec, pa.Table]]:
    """The rows of each table in `specs` whose time column is at or after `since` (a table the
    warehouse has not created yet copies as empty, with its columns)."""
    return [(spec, warehouse.read(spec, start=since)) for spec in specs]


def refresh_analytics_db(
    path: str,
    lake: Lake,
    datasets: dict[str, str],
    tables: list[tuple[TableSpec, pa.Table]] = (),
    *,
    warehouse: Warehouse | None = None,
    now: datetime | None = None,
) -> AnalyticsDbReport:
    """Rebuild the file at `path`: a view per dataset (name -> lake prefix) that has files, a
    table per (spec, rows), and, given the `warehouse`, copies of its `WAREHOUSE_COPIES` over the
    `COPY_HORIZON` before `now`. Returns what it holds and why a dataset got no view."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if warehouse is not None:
        since = (now or datetime.now(UTC)) - COPY_HORIZON
        tables = [*tables, *warehouse_copies(warehouse, since)]
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with duckdb.connect(tmp, config={"storage_compatibility_version": STORAGE_VERSION}) as con:
            views, skipped = create_lake_views(con, lake, datasets)
            for spec, rows in tables:
                con.register("_catalog_rows", rows)
                table = check_identifier(spec.name, "table name")
                con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM _catalog_rows')  # noqa: S608 - validated identifier
                con.unregister("_catalog_rows")
            con.execute("CHECKPOINT")
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, f"{tmp}.wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return AnalyticsDbReport(
        path=path,
        views=tuple(views),
        tables=tuple(spec.name for spec, _ in tables),
        skipped=skipped,
    )


def create_lake_views(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    datasets: dict[str, str],
    *,
    temporary: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """A view per dataset (name -> lake prefix) that has files in a local lake, made in `con`
    (TEMP views with `temporary`, e.g. on a read-only connection). Returns the views made and,
    per dataset left out, why."""
    views, skipped = [], {}
    for name, prefix in sorted(datasets.items()):
        reason = _why_no_view(lake, name, prefix)
        if reason:
            skipped[name] = reason
            continue
        con.execute(_view_sql(name, _parquet_glob(lake, prefix), temporary=temporary))
        views.append(name)
    return views, skipped


def _view_sql(name: str, glob: str, *, temporary: bool = False) -> str:
    # DDL takes no bound parameters: the name is a checked identifier, the path a _SAFE_PATH.
    kind = "TEMP VIEW" if temporary else "VIEW"
    return (
        f'CREATE {kind} "{check_identifier(name, "view name")}" AS SELECT * FROM '  # noqa: S608
        f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    )


def _why_no_view(lake: Lake, name: str, prefix: str) -> str | None:
    try:
        check_identifier(name, "view name")
    except ValueError:
        return "its name is not a plain SQL identifier"
    if not lake.is_local:
        return "S3 lake: query the s3:// location with httpfs (see README)"
    if not lake.list_files(prefix):
        return "no files yet"
    return None
