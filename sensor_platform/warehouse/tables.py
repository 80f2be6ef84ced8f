"""Warehouse table specs, how Arrow types map to SQL columns, and the checks rows pass on the way.

Column types on the three engines:

    Arrow               DuckDB        PostgreSQL                  MySQL / MariaDB
    timestamp(UTC)      TIMESTAMPTZ   timestamp with time zone    DATETIME(6) holding UTC
    string              VARCHAR       TEXT                        MEDIUMTEXT utf8mb4_bin
    float64             DOUBLE        DOUBLE PRECISION            DOUBLE
    int32 / int64       INTEGER / BIGINT (all three)
    binary              BLOB          BYTEA                       LONGBLOB
    bool                BOOLEAN       BOOLEAN                     BOOL (TINYINT(1))

Only the time column is indexed, so MySQL strings can be MEDIUMTEXT (no length to guess, no index
prefix needed); its binary collation keeps comparisons byte-exact and case-sensitive like the others.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOSSLESS_TIME_UNITS = {"s", "ms", "us"}  # the engines keep microseconds


def check_identifier(name: str, what: str = "identifier") -> str:
    """`name` if it is a safe SQL identifier on every engine (it is then quoted, never escaped)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid {what} {name!r}: use ^[a-z_][a-z0-9_]{{0,62}}$")
    return name


def _is_utc_timestamp(typ: pa.DataType) -> bool:
    return pa.types.is_timestamp(typ) and typ.tz == "UTC" and typ.unit in _LOSSLESS_TIME_UNITS


def duckdb_type(typ: pa.DataType) -> str:
    if _is_utc_timestamp(typ):
        return "TIMESTAMPTZ"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "VARCHAR"
    if pa.types.is_float64(typ):
        return "DOUBLE"
    if pa.types.is_int32(typ):
        return "INTEGER"
    if pa.types.is_int64(typ):
        return "BIGINT"
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return "BLOB"
    if pa.types.is_boolean(typ):
        return "BOOLEAN"
    raise ValueError(
        f"unsupported column type {typ}: use timestamp(us, UTC), string, float64, int32, int64, "
        "binary or bool"
    )


def sqlalchemy_type(typ: pa.DataType) -> sa.types.TypeEngine:
    duckdb_type(typ)  # one place decides what is supported
    if pa.types.is_timestamp(typ):
        return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = mysql.MEDIUMTEXT(charset="utf8mb4", collation="utf8mb4_bin")
        return sa.Text().with_variant(text, "mysql", "mariadb")
    if pa.types.is_float64(typ):
        return sa.Double()
    if pa.types.is_int32(typ):
        return sa.Integer()
    if pa.types.is_int64(typ):
        return sa.BigInteger()
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    return sa.Boolean(create_constraint=False)


@dataclass(frozen=True)
class TableSpec:
    """A warehouse table. Its name and columns come from code, never from data."""

    name: str  # ^[a-z_][a-z0-9_]{0,62}$
    schema: pa.Schema  # Arrow schema of the rows
    time_column: str = "window_start"  # the column that windows are replaced on
    description: str = ""

    def __post_init__(self) -> None:
        check_identifier(self.name, "table name")
        if len(set(self.schema.names)) != len(self.schema.names):
            raise ValueError(f"table {self.name}: duplicate column names {self.schema.names}")
        for field in self.schema:
            check_identifier(field.name, f"column name in table {self.name}:")
            duckdb_type(field.type)
        if self.time_column not in self.schema.names:
            raise ValueError(f"table {self.name}: time column {self.time_column!r} not in schema")
        if not _is_utc_timestamp(self.schema.field(self.time_column).type):
            raise ValueError(f"table {self.name}: time column must be a UTC timestamp")

    @property
    def index_name(self) -> str:
        name = f"ix_{self.name}_{self.time_column}"
        if len(name) <= 63:
            return name
        # PostgreSQL truncates identifiers at 63 bytes; a digest keeps long names distinct.
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        return f"{name[:52]}_{digest}"

    def sqlalchemy_table(self) -> sa.Table:
        columns = [
            sa.Column(f.name, sqlalchemy_type(f.type), nullable=f.nullable) for f in self.schema
        ]
        return sa.Table(
            self.name,
            sa.MetaData(),
            *columns,
            sa.Index(self.index_name, self.time_column),
            comment=self.description or None,
            mysql_charset="utf8mb4",
            mysql_engine="InnoDB",
        )


def utc(moment: datetime, what: str) -> datetime:
    """`moment` in UTC; a naive datetime is refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def conform_rows(spec: TableSpec, rows: pa.Table) -> pa.Table:
    """`rows` with exactly the spec's columns, in its order and types; refuses what cannot be stored
    the same way on every engine."""
    missing = [n for n in spec.schema.names if n not in rows.column_names]
    extra = [n for n in rows.column_names if n not in spec.schema.names]
    if missing or extra:
        raise ValueError(
            f"rows for {spec.name} do not match its schema: missing {missing}, extra {extra}"
        )
    for field in spec.schema:
        column = rows[field.name]
        if not field.nullable and column.null_count:
            raise ValueError(
                f"{spec.name}.{field.name} is not nullable but has {column.null_count} NULLs"
            )
    try:
        rows = rows.select(spec.schema.names).cast(spec.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"rows for {spec.name} cannot be cast to its schema: {exc}") from exc
    for field in spec.schema:
        # PostgreSQL text cannot hold NUL, so no engine gets it: the same rows work everywhere.
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            if pc.any(pc.match_substring(rows[field.name], "\x00")).as_py():
                raise ValueError(f"{spec.name}.{field.name} holds a NUL character (\\x00)")
    return rows


def check_window(spec: TableSpec, rows: pa.Table, start: datetime, end: datetime) -> None:
    """Refuse rows whose time column is NULL or outside [start, end)."""
    if start >= end:
        raise ValueError(
            f"empty window: start {start.isoformat()} is not before end {end.isoformat()}"
        )
    times = rows[spec.time_column]
    inside = pc.and_(
        pc.greater_equal(times, pa.scalar(start, times.type)),
        pc.less(times, pa.scalar(end, times.type)),
    )
    outside = (
        rows.num_rows
        - pc.sum(pc.cast(pc.fill_null(inside, False), pa.int64()), min_count=0).as_py()
    )
    if outside:
        raise ValueError(
            f"{outside} of {rows.num_rows} rows for {spec.name} have {spec.time_column} outside "
            f"[{start.isoformat()}, {end.isoformat()}); nothing was written"
        )


def conform_read(spec: TableSpec, table: pa.Table) -> pa.Table:
    """Rows read back as the spec's schema (columns the table lacks come back NULL), ordered by
    every column in schema order, NULLs last: the same order on every engine."""
    columns = [
        table[f.name].cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in spec.schema
    ]
    conformed = pa.Table.from_arrays(columns, schema=spec.schema)
    return conformed.sort_by([(name, "ascending") for name in spec.schema.names])
