"""The embedded warehouse: one DuckDB file, opened for each call and closed right after.

DuckDB allows one writing process per file, so a writer that finds the file locked retries with
backoff; holding nothing open between calls lets analysts and dbt open the file in between.
Timestamps are TIMESTAMPTZ and every connection runs with TimeZone = 'UTC'.
"""

import fcntl
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import duckdb
import pyarrow as pa

from sensor_platform.warehouse.locking import WarehouseLockTimeout, retry_while_locked
from sensor_platform.warehouse.tables import TableSpec, duckdb_type

_INCOMING = "_warehouse_incoming_rows"  # the Arrow rows being inserted, registered as a view
# SQLAlchemy-style :name parameters become DuckDB's $name; `::` casts are left alone.
_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

# One DuckDB database per file per process: connections in one process must share a
# configuration (read-only or not) and would conflict as writers, so they take turns.
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(path, threading.Lock())


def _is_locked(exc: Exception) -> bool:
    message = str(exc)
    return isinstance(exc, duckdb.Error) and (
        "Could not set lock on file" in message or "different configuration" in message
    )


def _quote(identifier: str) -> str:
    return f'"{identifier}"'  # identifiers are validated by TableSpec: no quotes inside


class DuckDBFile:
    def __init__(self, path: str, *, lock_timeout_s: float):
        self.path = os.path.abspath(path)
        self.lock_timeout_s = lock_timeout_s

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        lock = _process_lock(self.path)
        if not lock.acquire(timeout=self.lock_timeout_s):
            raise WarehouseLockTimeout(
                f"DuckDB file {self.path} stayed busy in this process for {self.lock_timeout_s:g}s"
            )
        try:
            # A file not written yet reads as an empty warehouse; it is created by the first write.
            target = self.path if not read_only or os.path.exists(self.path) else ":memory:"
            if not read_only:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            con = retry_while_locked(
                lambda: duckdb.connect(target, read_only=read_only and target != ":memory:"),
                _is_locked,
                timeout_s=self.lock_timeout_s,
                what=f"DuckDB file {self.path}",
            )
            try:
                con.execute("SET TimeZone = 'UTC'")
                yield con
            finally:
                con.close()
        finally:
            lock.release()

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock `name` (an flock on `<file>.<name>.lock` beside the DuckDB file) for the
        block: the kernel drops it with the process, so a process that dies holding it holds it
        no longer. Waits up to the lock timeout."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(f"{self.path}.{name}.lock", "a+b") as handle:

            def take() -> None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

            retry_while_locked(
                take,
                lambda exc: isinstance(exc, BlockingIOError),
                timeout_s=self.lock_timeout_s,
                what=f"the lock {name} of {self.path}",
            )
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect(read_only=False) as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    def replace_window(
        self, spec: TableSpec, rows: pa.Table, start: datetime, end: datetime
    ) -> int:
        table, column = _quote(spec.name), _quote(spec.time_column)
        with self._transaction() as con:
            _ensure_table(con, spec)
            con.execute(
                f"DELETE FROM {table} WHERE {column} >= $start AND {column} < $end",  # noqa: S608 - validated identifiers
                {"start": start, "end": end},
            )
            _insert(con, spec, rows)
        return rows.num_rows

    def append(self, spec: TableSpec, rows: pa.Table) -> int:
        with self._transaction() as con:
            _ensure_table(con, spec)
            _insert(con, spec, rows)
        return rows.num_rows

    def read(self, spec: TableSpec, start: datetime | None, end: datetime | None) -> pa.Table:
        with self._connect(read_only=True) as con:
            present = _existing_columns(con, spec.name)
            wanted = [n for n in spec.schema.names if n in present]
            if not wanted:
                return spec.schema.empty_table()
            conditions, params = [], {}
            if start is not None:
                conditions.append(f"{_quote(spec.time_column)} >= $start")
                params["start"] = start
            if end is not None:
                conditions.append(f"{_quote(spec.time_column)} < $end")
                params["end"] = end
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            query = f"SELECT {', '.join(map(_quote, wanted))} FROM {_quote(spec.name)}{where}"  # noqa: S608 - validated identifiers
            return con.sql(query, params=params).to_arrow_table()

    def execute_query(self, sql: str, params: dict | None) -> list[tuple]:
        with self._connect(read_only=True) as con:
            return con.execute(_NAMED_PARAMETER.sub(r"$\1", sql), params or {}).fetchall()


def _existing_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $table "
            "ORDER BY ordinal_position",
            {"table": table},
        ).fetchall()
    ]


def _ensure_table(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
    """Create the table and its time index if missing; add the spec's new columns (nullable).
    DuckDB DDL is transactional, so this commits or rolls back with the rows."""
    table = _quote(spec.name)
    present = _existing_columns(con, spec.name)
    if not present:
        columns = ", ".join(
            f"{_quote(f.name)} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}"
            for f in spec.schema
        )
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    for field in spec.schema:
        if present and field.name not in present:
            con.execute(
                f"ALTER TABLE {table} ADD COLUMN {_quote(field.name)} {duckdb_type(field.type)}"
            )
    con.execute(
        f"CREATE INDEX IF NOT EXISTS {_quote(spec.index_name)} ON {table} ({_quote(spec.time_column)})"
    )


def _insert(con: duckdb.DuckDBPyConnection, spec: TableSpec, rows: pa.Table) -> None:
    if rows.num_rows == 0:
        return
    columns = ", ".join(map(_quote, spec.schema.names))
    con.register(_INCOMING, rows)
    try:
        con.execute(
            f"INSERT INTO {_quote(spec.name)} ({columns}) SELECT {columns} FROM {_INCOMING}"  # noqa: S608 - validated identifiers
        )
    finally:
        con.unregister(_INCOMING)
