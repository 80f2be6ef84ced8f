"""Where the dashboard reads: a DuckDB connection holding every relation its pages query, opened
so that the pipeline never waits on the dashboard and the dashboard never waits on the pipeline.

- DuckDB warehouse (a file with one writer): the dashboard never opens the warehouse file. It
  opens the analysts' file read-only: views over the lake plus copies of the warehouse-only tables
  (alert ledger, quality results), which the pipeline rebuilds under a temporary name and renames
  into place; a reader keeps the snapshot it opened, the rename never waits for it.
- PostgreSQL or MySQL warehouse: those tables are read from the warehouse in short read-only
  transactions (MVCC: no lock a writer waits on) with a lock timeout, so that the dashboard never
  queues behind a writer's DDL; the lake is read through DuckDB.
- The lake: lake files are replaced atomically, so a scan sees whole files. An S3 lake is read as
  pyarrow datasets over the lake's own S3 filesystem, registered in DuckDB (filters and columns
  are pushed into the scan): DuckDB's httpfs extension cannot be downloaded here.

A relation that does not exist yet (no files, no analytics file, no table) reads as empty with
its columns, so every page renders on a new platform. Connections are opened per page read and
closed right after: nothing is held between two page renders. A read that races the replacement
of a partition file can fail to decode it (seen under a writer rewriting partitions in a loop:
DuckDB's Thrift decoder reports invalid data); `read` then runs it again on a new connection,
which sees the new file whole.
"""

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from sensor_platform.catalog.analytics_db import COPY_HORIZON, WAREHOUSE_COPIES, create_lake_views
from sensor_platform.dashboard.relations import NEWEST_PARTITIONS
from sensor_platform.datasets import REGISTRY, Dataset
from sensor_platform.lake.store import Lake
from sensor_platform.settings import Settings, read_secret
from sensor_platform.warehouse.store import DUCKDB_PREFIX, Warehouse
from sensor_platform.warehouse.tables import TableSpec

# Every time-partitioned dataset of the lake (raw readings, the aggregate levels, the episodes).
LAKE_DATASETS: tuple[Dataset, ...] = tuple(d for d in REGISTRY if d.partitioning is not None)
WAREHOUSE_TABLES: tuple[TableSpec, ...] = WAREHOUSE_COPIES
# A server warehouse read waits this long at most for a table lock held by a writer's DDL.
SERVER_LOCK_TIMEOUT_S = 2.0
READ_ATTEMPTS = 5
_DATE_FOLDER = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


def hive_fields(dataset: Dataset) -> list[pa.Field]:
    """The partition columns DuckDB reads from the folder names: date (DATE), hour ('05')."""
    fields = [pa.field("date", pa.date32())]
    if dataset.partitioning == "hourly":
        fields.append(pa.field("hour", pa.string()))
    return fields


def relation_schema(dataset: Dataset) -> pa.Schema:
    return pa.schema([*dataset.schema, *hive_fields(dataset)])


@dataclass(frozen=True)
class DashboardConfig:
    """What the dashboard connects to. `warehouse_url` and the S3 keys are secrets: never shown."""

    analytics_db: str
    lake_root: str
    warehouse_url: str = field(repr=False)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    cache_ttl_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "DashboardConfig":
        return cls(
            analytics_db=settings.analytics_db,
            lake_root=settings.lake_root,
            warehouse_url=read_secret("SENSOR_WAREHOUSE_URL") or settings.default_warehouse_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            s3_access_key=read_secret("AWS_ACCESS_KEY_ID"),
            s3_secret_key=read_secret("AWS_SECRET_ACCESS_KEY"),
            cache_ttl_s=settings.dashboard_cache_ttl_seconds,
        )

    @property
    def duckdb_warehouse(self) -> bool:
        return self.warehouse_url.startswith(DUCKDB_PREFIX)


@dataclass(frozen=True)
class SourceStatus:
    """What the dashboard reads, for the sidebar: no secret in it."""

    reading: str  # one line: the analysts' file, or the warehouse (masked URL), and the lake
    snapshot_time: datetime | None  # when the analysts' file was built (DuckDB warehouse)
    empty: tuple[str, ...]  # relations that do not exist yet and read as empty
    notes: tuple[str, ...]


class DashboardSource:
    """Opens the dashboard's connections. Safe to share between the app's threads."""

    def __init__(self, config: DashboardConfig, *, clock=lambda: datetime.now(UTC)):
        self.config = config
        self.clock = clock
        self.lake = Lake(
            config.lake_root,
            s3_endpoint_url=config.s3_endpoint_url,
            s3_region=config.s3_region,
            s3_access_key=config.s3_access_key,
            s3_secret_key=config.s3_secret_key,
        )
        self.warehouse = (
            None
            if config.duckdb_warehouse
            else Warehouse(config.warehouse_url, lock_timeout_s=SERVER_LOCK_TIMEOUT_S)
        )
        self._copies: dict[str, tuple[float, pa.Table]] = {}
        self._copies_lock = threading.Lock()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh connection with every relation of LAKE_DATASETS and WAREHOUSE_TABLES; closed
        on exit."""
        con, _ = self._open()
        try:
            yield con
        finally:
            con.close()

    def read(self, function: Callable[..., object], /, **params: object) -> object:
        """`function(con, **params)` on a fresh connection, again (up to READ_ATTEMPTS times in
        all) when it raced the replacement of a lake file."""
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                with self.connect() as con:
                    return function(con, **params)
            except duckdb.Error as exc:
                if attempt == READ_ATTEMPTS or not _torn_read(exc):
                    raise
                time.sleep(0.05 * attempt)  # let the writer finish its rename
        raise AssertionError("unreachable")

    def status(self) -> SourceStatus:
        """What is read; the server warehouse is not contacted for it."""
        con, empty = self._open(warehouse=False)
        con.close()
        path = os.path.abspath(self.config.analytics_db)
        notes = []
        if self.warehouse is None:
            snapshot = _mtime(path)
            reading = f"analysts' file {path} (read-only) and the lake {self.lake.uri()}"
            if snapshot is None:
                reading = f"the lake {self.lake.uri()}"
                notes.append(
                    f"The analysts' file {path} does not exist yet: it is built by the "
                    "data_catalog asset. Until then alarm notices and quality results are empty."
                )
        else:
            snapshot = None
            reading = f"warehouse {self.warehouse.display_url} and the lake {self.lake.uri()}"
        return SourceStatus(reading, snapshot, tuple(empty), tuple(notes))

    # -- opening --------------------------------------------------------------------------------
    def _open(self, *, warehouse: bool = True) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
        path = os.path.abspath(self.config.analytics_db)
        if self.warehouse is None and os.path.exists(path):
            con = duckdb.connect(path, read_only=True)
            temporary = True  # a read-only database takes TEMP objects only
        else:
            con = duckdb.connect(":memory:")
            temporary = False
        try:
            con.execute("SET TimeZone = 'UTC'")
            empty = self._complete(con, temporary=temporary, warehouse=warehouse)
        except BaseException:
            con.close()
            raise
        return con, empty

    def _complete(
        self, con: duckdb.DuckDBPyConnection, *, temporary: bool, warehouse: bool
    ) -> list[str]:
        """Add what `con` lacks; returns the relations that read as empty."""
        present = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() UNION ALL "
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
        empty = []
        con.register(NEWEST_PARTITIONS, self._newest_partitions())
        missing = {d.name: d.prefix for d in LAKE_DATASETS if d.name not in present}
        if missing and self.lake.is_local:
            views, _ = create_lake_views(con, self.lake, missing, temporary=temporary)
            present |= set(views)
        for dataset in LAKE_DATASETS:
            if dataset.name in present:
                continue
            data = None if self.lake.is_local else self._s3_dataset(dataset)
            if data is None:
                data = relation_schema(dataset).empty_table()
                empty.append(dataset.name)
            con.register(dataset.name, data)
        for spec in WAREHOUSE_TABLES:
            if spec.name in present or (self.warehouse is not None and not warehouse):
                continue
            if self.warehouse is not None:
                con.register(spec.name, self._server_rows(spec))
            else:
                con.register(spec.name, spec.schema.empty_table())
                empty.append(spec.name)
        return empty

    def _newest_partitions(self) -> pa.Table:
        """Each lake dataset's newest partition day, from the file listing: folder names sort by
        time, so the last path names it, and no Parquet file is opened to find it."""
        names, days = [], []
        for dataset in LAKE_DATASETS:
            files = self.lake.list_files(dataset.prefix)
            found = _DATE_FOLDER.search(files[-1].path) if files else None
            if found:
                names.append(dataset.name)
                days.append(date.fromisoformat(found.group(1)))
        return pa.table(
            {"dataset": pa.array(names, pa.string()), "newest_day": pa.array(days, pa.date32())}
        )

    def _s3_dataset(self, dataset: Dataset) -> ds.Dataset | None:
        files = self.lake.list_files(dataset.prefix)
        if not files:
            return None
        return ds.dataset(
            [self.lake.full_path(f.path) for f in files],
            schema=relation_schema(dataset),
            format="parquet",
            filesystem=self.lake.fs,
            partitioning=ds.partitioning(pa.schema(hive_fields(dataset)), flavor="hive"),
            partition_base_dir=self.lake.full_path(dataset.prefix),
        )

    def _server_rows(self, spec: TableSpec) -> pa.Table:
        """The table's rows of the last COPY_HORIZON, re-read at most once per cache TTL."""
        with self._copies_lock:
            cached = self._copies.get(spec.name)
            if cached and time.monotonic() - cached[0] < self.config.cache_ttl_s:
                return cached[1]
            rows = self.warehouse.read(spec, start=self.clock() - COPY_HORIZON)
            self._copies[spec.name] = (time.monotonic(), rows)
            return rows


def _torn_read(exc: duckdb.Error) -> bool:
    """A Parquet file decoded as garbage (DuckDB raises its Thrift errors as the plain
    duckdb.Error: "TProtocolException: Invalid data", "don't know what type") or not found as a
    Parquet file: what a replacement under a read looks like. Query mistakes (syntax, binding,
    catalog, conversion) are subclasses and are never retried."""
    message = str(exc)
    return type(exc) is duckdb.Error or (
        isinstance(exc, duckdb.IOException | duckdb.InvalidInputException) and "arquet" in message
    )


def _mtime(path: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    except FileNotFoundError:
        return None
