"""The production warehouse: PostgreSQL or MySQL/MariaDB through SQLAlchemy Core.

Writers to one table take turns under a server-side lock named after the table (PostgreSQL
advisory lock, MySQL GET_LOCK): that makes concurrent replacements of one window impossible to
double, avoids InnoDB gap-lock deadlocks between windows, and lets MySQL run its DDL (which commits
implicitly) before the one transaction that deletes and inserts the window's rows. Connections
are not pooled, so closing one always ends its session and releases its lock.
"""

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from sensor_platform.warehouse.locking import WarehouseLockTimeout
from sensor_platform.warehouse.tables import TableSpec

INSERT_CHUNK_ROWS = 5_000
READ_CHUNK_ROWS = 50_000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL SQLSTATE when lock_timeout expires


class ServerDatabase:
    def __init__(self, url: URL, *, lock_timeout_s: float):
        self.dialect = "postgresql" if url.get_backend_name() == "postgresql" else "mysql"
        connect_args: dict = {}
        if self.dialect == "mysql":
            url = url.update_query_dict({"charset": "utf8mb4"})  # 4-byte UTF-8: emoji, 한글
        else:
            connect_args["options"] = "-c timezone=UTC"
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
        self.lock_timeout_s = lock_timeout_s

    # -- locking -----------------------------------------------------------------------------
    @contextmanager
    def _locked(self, spec: TableSpec) -> Iterator[Connection]:
        """A connection holding the table's writer lock until it closes."""
        with self.exclusive(spec.name) as conn:
            yield conn

    @contextmanager
    def exclusive(self, name: str) -> Iterator[Connection]:
        """A connection holding the session lock `name` (an advisory lock on PostgreSQL, a named
        lock on MySQL) until it closes: the server drops it with the session, so a process that
        dies holding it holds it no longer."""
        with self.engine.connect() as conn:
            database = conn.exec_driver_sql(
                "SELECT current_database()" if self.dialect == "postgresql" else "SELECT database()"
            ).scalar()
            key = f"sensor_platform.warehouse/{database}/{name}".encode()
            if self.dialect == "postgresql":
                lock_id = int.from_bytes(hashlib.sha1(key).digest()[:8], "big", signed=True)
                conn.execute(
                    sa.text("SELECT set_config('lock_timeout', :ms, false)"),
                    {"ms": f"{math.ceil(self.lock_timeout_s * 1000)}ms"},
                )
                try:
                    conn.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
                except sa.exc.OperationalError as exc:
                    if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
                        raise
                    raise self._timeout(name) from exc
            else:
                got = conn.execute(
                    sa.text("SELECT GET_LOCK(:name, :seconds)"),
                    {
                        "name": hashlib.sha1(key).hexdigest(),
                        "seconds": math.ceil(self.lock_timeout_s),
                    },
                ).scalar()
                if got != 1:
                    raise self._timeout(name)
            conn.commit()
            yield conn

    def _timeout(self, name: str) -> WarehouseLockTimeout:
        return WarehouseLockTimeout(
            f"{name} stayed locked by another writer for {self.lock_timeout_s:g}s"
        )

    # -- writing -----------------------------------------------------------------------------
    def replace_window(
        self, spec: TableSpec, rows: pa.Table, start: datetime, end: datetime
    ) -> int:
        table, rows = spec.sqlalchemy_table(), self._storable(spec, rows)
        column = table.c[spec.time_column]
        with self._locked(spec) as conn:
            self._ensure_table(conn, table)
            with conn.begin():
                conn.execute(
                    table.delete().where(column >= self._moment(start), column < self._moment(end))
                )
                self._insert(conn, table, rows)
        return rows.num_rows

    def append(self, spec: TableSpec, rows: pa.Table) -> int:
        table, rows = spec.sqlalchemy_table(), self._storable(spec, rows)
        with self._locked(spec) as conn:
            self._ensure_table(conn, table)
            with conn.begin():
                self._insert(conn, table, rows)
        return rows.num_rows

    def _ensure_table(self, conn: Connection, table: sa.Table) -> None:
        """Create the table with its time index, or add the spec's new columns (nullable)."""
        inspector = sa.inspect(conn)
        if not inspector.has_table(table.name):
            table.create(conn)
        else:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            quote = conn.dialect.identifier_preparer.quote
            for column in table.columns:
                if column.name not in present:
                    column_type = column.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(
                        f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {column_type}"
                    )
            indexed = {ix["name"] for ix in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexed:
                    index.create(conn)
        conn.commit()

    def _storable(self, spec: TableSpec, rows: pa.Table) -> pa.Table:
        """`rows` as the driver should receive them; refused before anything is touched."""
        if self.dialect != "mysql":
            return rows
        _refuse_non_finite(spec.name, rows)
        return _without_time_zones(rows)

    def _insert(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        for batch in rows.to_batches(max_chunksize=INSERT_CHUNK_ROWS):
            if batch.num_rows:
                conn.execute(table.insert(), batch.to_pylist())

    def _moment(self, moment: datetime) -> datetime:
        # DATETIME(6) has no time zone: MySQL gets the naive UTC wall clock.
        return moment.replace(tzinfo=None) if self.dialect == "mysql" else moment

    # -- reading -----------------------------------------------------------------------------
    def read(self, spec: TableSpec, start: datetime | None, end: datetime | None) -> pa.Table:
        table = spec.sqlalchemy_table()
        with self.engine.connect() as conn:
            # A reader takes no row locks (MVCC), but its table lock would queue behind a writer's
            # DDL (a new column) and every later reader with it: waiting is bounded like a writer's.
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            if self.dialect == "postgresql":
                conn.execute(
                    sa.text("SELECT set_config('lock_timeout', :ms, true)"),
                    {"ms": f"{math.ceil(self.lock_timeout_s * 1000)}ms"},
                )
            inspector = sa.inspect(conn)
            if not inspector.has_table(spec.name):
                return spec.schema.empty_table()
            present = {c["name"] for c in inspector.get_columns(spec.name)}
            fields = [f for f in spec.schema if f.name in present]
            query = sa.select(*(table.c[f.name] for f in fields))
            if start is not None:
                query = query.where(table.c[spec.time_column] >= self._moment(start))
            if end is not None:
                query = query.where(table.c[spec.time_column] < self._moment(end))
            result = conn.execution_options(yield_per=READ_CHUNK_ROWS).execute(query)
            schema = pa.schema(fields)
            batches = [_record_batch(chunk, schema) for chunk in result.partitions()]
            return pa.Table.from_batches(batches, schema=schema)

    def execute_query(self, sql: str, params: dict | None) -> list[tuple]:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = conn.execute(sa.text(sql), params or {})
            rows = [tuple(row) for row in result] if result.returns_rows else []
            conn.rollback()
            return rows


def _record_batch(rows: list[sa.Row], schema: pa.Schema) -> pa.RecordBatch:
    # A UTC-typed Arrow array reads MySQL's naive datetimes as the UTC they hold.
    columns = zip(*rows, strict=True)
    arrays = [pa.array(values, f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.record_batch(arrays, schema=schema)


def _without_time_zones(rows: pa.Table) -> pa.Table:
    """Timestamps as naive UTC, the way DATETIME(6) holds them."""
    for i, field in enumerate(rows.schema):
        if pa.types.is_timestamp(field.type):
            naive = pa.field(field.name, pa.timestamp(field.type.unit), field.nullable)
            rows = rows.set_column(i, naive, rows[field.name].cast(naive.type))
    return rows


def _refuse_non_finite(table: str, rows: pa.Table) -> None:
    for field in rows.schema:
        if pa.types.is_floating(field.type):
            finite = pc.fill_null(pc.is_finite(rows[field.name]), True)
            if not pc.all(finite, min_count=0).as_py():
                raise ValueError(
                    f"{table}.{field.name} holds NaN or infinity, which MySQL cannot store"
                )
