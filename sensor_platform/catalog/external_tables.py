"""External table DDL for the lake's datasets, so engines other than DuckDB query the same files.

Every dataset folder is Hive-partitioned Parquet (`date=YYYY-MM-DD[/hour=HH]/…`), which Athena,
Spark and Trino read in place once a table names its columns, its partition columns and its
location. Two spellings of the same table:

- `hive`: `CREATE EXTERNAL TABLE … PARTITIONED BY (…) STORED AS PARQUET LOCATION …` followed by
  `MSCK REPAIR TABLE …` (which registers the partition folders): Athena, Spark with Hive support,
  Hive itself.
- `trino`: `CREATE TABLE … WITH (format = 'PARQUET', external_location = …, partitioned_by = …)`
  for Trino's Hive connector (partitions registered with `system.sync_partition_metadata`).

Columns come from the dataset registry (the contract every writer follows), partition columns from
the dataset's folder template. Partition values are kept as the folders spell them: `date` is a
DATE, `hour` a two-character string (`04`), never a number that would lose its leading zero.
Timestamps are UTC instants (Parquet `isAdjustedToUTC`), declared as the engines' TIMESTAMP.
"""

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sensor_platform.datasets import Dataset
from sensor_platform.lake.store import Lake

DIALECTS = ("hive", "trino")
# Partition folders and the type of their values.
PARTITION_TYPES = {"date": pa.date32(), "hour": pa.string()}
# The table's location becomes an SQL string literal (DDL takes no bound parameters): plain URI
# characters only, a quote or a control character is refused rather than escaped.
_SAFE_LOCATION = re.compile(r"^[A-Za-z0-9_./%+@:=-]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class _Spelling:
    quote: str
    types: dict[str, str]


_SPELLINGS = {
    "hive": _Spelling(
        "`",
        {
            "string": "STRING",
            "large_string": "STRING",
            "double": "DOUBLE",
            "float": "FLOAT",
            "int64": "BIGINT",
            "int32": "INT",
            "int16": "SMALLINT",
            "int8": "TINYINT",
            "bool": "BOOLEAN",
            "binary": "BINARY",
            "large_binary": "BINARY",
            "date32[day]": "DATE",
            "timestamp": "TIMESTAMP",
        },
    ),
    "trino": _Spelling(
        '"',
        {
            "string": "VARCHAR",
            "large_string": "VARCHAR",
            "double": "DOUBLE",
            "float": "REAL",
            "int64": "BIGINT",
            "int32": "INTEGER",
            "int16": "SMALLINT",
            "int8": "TINYINT",
            "bool": "BOOLEAN",
            "binary": "VARBINARY",
            "large_binary": "VARBINARY",
            "date32[day]": "DATE",
            "timestamp": "TIMESTAMP",
        },
    ),
}


def table_location(lake: Lake, prefix: str) -> str:
    """Where an engine finds the folder `prefix` of `lake`: its s3:// URI, or for a local lake
    the absolute file: URI (what Spark and Trino on the same machine read)."""
    if not lake.is_local:
        return lake.uri(prefix)
    return Path(os.path.abspath(lake.full_path(prefix))).as_uri()


def partition_columns(dataset: Dataset) -> list[str]:
    """The Hive partition folders of the dataset's files, outermost first (`date`, `hour`)."""
    names = [
        segment.split("=", 1)[0] for segment in dataset.partition_path.split("/") if "=" in segment
    ]
    unknown = [n for n in names if n not in PARTITION_TYPES]
    if unknown:
        raise ValueError(f"{dataset.name}: partition folders {unknown} have no declared type")
    return names


def column_type(typ: pa.DataType, dialect: str) -> str:
    """The engine's name for an Arrow type; a clear error for a type the DDL cannot declare."""
    types = _SPELLINGS[dialect].types
    key = "timestamp" if pa.types.is_timestamp(typ) else str(typ)
    if key not in types:
        raise ValueError(f"no {dialect} column type for Arrow type {typ}")
    return types[key]


def external_table_ddl(dataset: Dataset, location: str, dialect: str) -> str:
    """The statement(s) that declare `dataset`'s files at `location` (a folder URI: s3://…,
    file:/…) as an external table named like the dataset, in `dialect` (`hive` or `trino`)."""
    if dialect not in _SPELLINGS:
        raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")
    if not _SAFE_LOCATION.match(location):
        raise ValueError(f"location {location!r} has characters that cannot go into DDL")
    partitions = partition_columns(dataset)
    clash = set(partitions) & set(dataset.columns)
    if clash:
        raise ValueError(f"{dataset.name}: columns {sorted(clash)} are also partition folders")
    quote = _identifier_quoter(_SPELLINGS[dialect].quote)
    table = quote(dataset.name)
    columns = [(name, column_type(typ, dialect)) for name, (typ, _, _) in dataset.columns.items()]
    keys = [(name, column_type(PARTITION_TYPES[name], dialect)) for name in partitions]
    folder = location.rstrip("/") + "/"
    if dialect == "hive":
        return (
            f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} (\n{_column_list(columns, quote)}\n)\n"
            f"PARTITIONED BY (\n{_column_list(keys, quote)}\n)\n"
            f"STORED AS PARQUET\nLOCATION '{folder}';\n"
            f"MSCK REPAIR TABLE {table};\n"
        )
    partitioned_by = ", ".join(f"'{name}'" for name in partitions)
    return (
        # Trino's Hive connector lists the partition columns last, among the columns.
        f"CREATE TABLE IF NOT EXISTS {table} (\n{_column_list([*columns, *keys], quote)}\n)\n"
        f"WITH (\n  format = 'PARQUET',\n  external_location = '{folder}',\n"
        f"  partitioned_by = ARRAY[{partitioned_by}]\n);\n"
    )


def external_tables_script(statements: Iterable[tuple[str, str]], dialect: str) -> str:
    """One script of every (dataset name, DDL) in `dialect`, for an engine's SQL console."""
    head = (
        "-- External tables over the Sensor Platform lake (Hive-partitioned Parquet), "
        f"{dialect} dialect.\n-- Written by the data_catalog asset; see the README, "
        '"The lake for other engines".\n'
    )
    return head + "".join(f"\n-- {name}\n{ddl}" for name, ddl in statements)


def _identifier_quoter(mark: str):
    def quote(name: str) -> str:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not a plain SQL identifier")
        return f"{mark}{name}{mark}"

    return quote


def _column_list(columns: list[tuple[str, str]], quote) -> str:
    return ",\n".join(f"  {quote(name)} {typ}" for name, typ in columns)
