"""The SQL warehouse: Arrow tables published to SQL tables, one window replaced at a time.

`Warehouse(url)` picks the engine from the URL:

    duckdb:///path/to/file.duckdb        embedded default (relative path; duckdb:////abs/path)
    postgresql+psycopg2://user:pw@host/db
    mysql+pymysql://user:pw@host/db      (MySQL or MariaDB)

`replace_window` deletes a window's rows and inserts the new ones in one transaction, so a reader
sees the old window or the new one, never half of it or both, and publishing again never
duplicates. Rows are checked (columns, types, NULLs, the window) before anything is touched.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pyarrow as pa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sensor_platform.warehouse.duckdb_file import DuckDBFile
from sensor_platform.warehouse.locking import WarehouseLockTimeout
from sensor_platform.warehouse.postgres_mysql import ServerDatabase
from sensor_platform.warehouse.tables import (
    TableSpec,
    check_identifier,
    check_window,
    conform_read,
    conform_rows,
    utc,
)

__all__ = ["TableSpec", "Warehouse", "WarehouseLockTimeout"]

DUCKDB_PREFIX = "duckdb:///"
SERVER_BACKENDS = {"postgresql", "mysql", "mariadb"}
_SECRET_QUERY_KEYS = {"password", "passwd", "pwd"}
_READ_ONLY_STATEMENTS = {"select", "with", "show", "describe", "explain", "values", "table"}


def _server_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # the parser's message would repeat the URL, password included
        raise ValueError(
            "could not parse the warehouse URL (it is not shown: it may hold a password)"
        ) from None
    if parsed.get_backend_name() not in SERVER_BACKENDS:
        raise ValueError(
            f"unsupported warehouse URL {_masked(parsed)}: use duckdb:///file.duckdb, "
            "postgresql+psycopg2://... or mysql+pymysql://..."
        )
    return parsed


def _masked(url: URL) -> str:
    secrets = {k: "***" for k in url.query if k.lower() in _SECRET_QUERY_KEYS}
    rendered = url.update_query_dict(secrets).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", "***")


class Warehouse:
    """A SQL warehouse. Holds no connection between calls; safe to share between threads."""

    def __init__(self, url: str, *, lock_timeout_s: float = 60.0):
        if url.startswith(DUCKDB_PREFIX):
            path = url.removeprefix(DUCKDB_PREFIX)
            if not path or path.startswith(":memory:"):
                raise ValueError("the DuckDB warehouse needs a file: duckdb:///path/to/file.duckdb")
            self._engine: DuckDBFile | ServerDatabase = DuckDBFile(
                path, lock_timeout_s=lock_timeout_s
            )
            self.display_url = url
        else:
            server_url = _server_url(url)
            self._engine = ServerDatabase(server_url, lock_timeout_s=lock_timeout_s)
            self.display_url = _masked(server_url)

    def __repr__(self) -> str:
        return f"Warehouse({self.display_url!r})"

    @property
    def dialect(self) -> str:
        """duckdb, postgresql or mysql (MariaDB included)."""
        return "duckdb" if isinstance(self._engine, DuckDBFile) else self._engine.dialect

    def replace_window(
        self, spec: TableSpec, rows: pa.Table, start: datetime, end: datetime
    ) -> int:
        """Replace the rows with start <= time_column < end by `rows`, in one transaction, creating
        the table (or adding the spec's new columns) first. Returns the number of rows inserted.

        Rows outside [start, end) raise ValueError before anything is touched."""
        start, end = utc(start, "start"), utc(end, "end")
        rows = conform_rows(spec, rows)
        check_window(spec, rows, start, end)
        return self._engine.replace_window(spec, rows, start, end)

    def append(self, spec: TableSpec, rows: pa.Table) -> int:
        """Insert `rows` in one transaction (for results and ledger tables). Returns the count."""
        return self._engine.append(spec, conform_rows(spec, rows))

    def read(
        self, spec: TableSpec, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """The rows with start <= time_column < end (either bound optional) as `spec.schema`,
        timestamps in UTC, ordered by every column in schema order (NULLs last). A table that
        does not exist yet reads as empty."""
        start = None if start is None else utc(start, "start")
        end = None if end is None else utc(end, "end")
        return conform_read(spec, self._engine.read(spec, start, end))

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the warehouse-wide lock `name` for the block (one holder at a time across every
        process using this warehouse), waiting up to the lock timeout. The lock dies with its
        process: a killed holder never blocks the next one (PostgreSQL advisory lock, MySQL
        named lock, or an flock beside a DuckDB file)."""
        check_identifier(name, "lock name")
        with self._engine.exclusive(name):
            yield

    def execute_query(self, sql: str, params: dict | None = None) -> list[tuple]:
        """Run one read-only statement with SQLAlchemy-style `:name` parameters on any engine
        (for tests and the CLI). Writes are refused: the statement must be a query, and it runs
        on a read-only connection (DuckDB) or in a read-only transaction that is rolled back."""
        words = sql.lstrip(" \t\r\n(").split(None, 1)
        if not words or words[0].lower() not in _READ_ONLY_STATEMENTS:
            raise ValueError(
                "execute_query runs read-only statements only (SELECT, WITH, SHOW, ...)"
            )
        return self._engine.execute_query(sql, params)
