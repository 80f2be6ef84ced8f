"""The catalog as data: the JSON document, and the `data_catalog` / `data_catalog_columns` warehouse
tables (replaced whole on every build: their time column is the build time and the window covers
all time)."""

import json
from datetime import UTC, datetime

import pyarrow as pa

from sensor_platform.catalog.entries import CatalogEntry
from sensor_platform.catalog.external_tables import DIALECTS, external_tables_script
from sensor_platform.catalog.schema import CATALOG_COLUMNS, CATALOG_TABLE_NAME, COLUMN_COLUMNS
from sensor_platform.warehouse.store import TableSpec

CATALOG_DIR = "catalog"
HTML_PAGE = f"{CATALOG_DIR}/index.html"
JSON_DOCUMENT = f"{CATALOG_DIR}/catalog.json"
SCHEMA_HISTORY = f"{CATALOG_DIR}/schema_history.json"
# One DDL script per dialect (see catalog/external_tables.py): hive.sql, trino.sql.
EXTERNAL_TABLES = {d: f"{CATALOG_DIR}/external_tables/{d}.sql" for d in DIALECTS}
ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))


def _schema(columns: dict[str, tuple[pa.DataType, bool, str]]) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=null) for n, (t, null, _) in columns.items()])


CATALOG_TABLE = TableSpec(
    name=CATALOG_TABLE_NAME,
    schema=_schema(CATALOG_COLUMNS),
    time_column="catalog_time",
    description="One row per dataset: description, owner, location, freshness, quality.",
)
CATALOG_COLUMNS_TABLE = TableSpec(
    name="data_catalog_columns",
    schema=_schema(COLUMN_COLUMNS),
    time_column="catalog_time",
    description="One row per dataset column: type, nullability and meaning.",
)


def _checks_json(entry: CatalogEntry) -> list[dict]:
    return [
        {
            "name": c.name,
            "passed": c.passed,
            "severity": c.severity,
            "evaluated_at": c.evaluated_at.isoformat() if c.evaluated_at else None,
            "description": c.description,
        }
        for c in entry.checks
    ]


def entry_document(entry: CatalogEntry) -> dict:
    """One entry as JSON-ready data."""
    return {
        "name": entry.name,
        "description": entry.description,
        "owner": entry.owner,
        "layer": entry.layer,
        "group": entry.group,
        "kinds": list(entry.kinds),
        "tags": entry.tags,
        "location": entry.location,
        "format": entry.storage_format,
        "table_name": entry.table_name,
        "partitioning": entry.partitioning,
        "partitions": list(entry.partitions),
        "columns": [
            {
                "name": c.name,
                "type": c.data_type,
                "nullable": c.nullable,
                "description": c.description,
            }
            for c in entry.columns
        ],
        "metrics": list(entry.metrics),
        "schema_version": entry.schema_version,
        "schema_diff": entry.schema_diff,
        "row_count": entry.row_count,
        "size_bytes": entry.size_bytes,
        "file_count": entry.file_count,
        "last_update": entry.last_update.isoformat() if entry.last_update else None,
        "freshness_hours": entry.freshness_hours,
        "freshness_status": entry.freshness_status,
        "quality_status": entry.quality_status,
        "quality_checks": _checks_json(entry),
        "external_table_ddl": entry.external_tables or None,
    }


def catalog_document(entries: list[CatalogEntry], built_at: datetime) -> bytes:
    """The machine-readable catalog (UTF-8 JSON)."""
    body = {"built_at": built_at.isoformat(), "datasets": [entry_document(e) for e in entries]}
    return json.dumps(body, indent=1, ensure_ascii=False).encode()


def external_table_script(entries: list[CatalogEntry], dialect: str) -> bytes:
    """The DDL of every lake dataset among `entries` in `dialect`, as one script."""
    statements = [(e.name, e.external_tables[dialect]) for e in entries if e.external_tables]
    return external_tables_script(statements, dialect).encode()


def catalog_rows(entries: list[CatalogEntry], built_at: datetime) -> pa.Table:
    rows = [
        {
            "catalog_time": built_at,
            "dataset": e.name,
            "description": e.description,
            "owner": e.owner,
            "layer": e.layer,
            "group_name": e.group,
            "kinds": ", ".join(e.kinds),
            "tags": json.dumps(e.tags, sort_keys=True),
            "location": e.location,
            "storage_format": e.storage_format,
            "table_name": e.table_name,
            "partitioning": e.partitioning,
            "partitions_present": len(e.partitions),
            "first_partition": e.partitions[0] if e.partitions else None,
            "last_partition": e.partitions[-1] if e.partitions else None,
            "schema_version": e.schema_version,
            "schema_diff": None if e.schema_diff is None else json.dumps(e.schema_diff),
            "column_count": len(e.columns),
            "metrics": json.dumps(list(e.metrics)),
            "row_count": e.row_count,
            "size_bytes": e.size_bytes,
            "file_count": e.file_count,
            "last_update": e.last_update,
            "freshness_hours": e.freshness_hours,
            "freshness_status": e.freshness_status,
            "quality_status": e.quality_status,
            "quality_checks": json.dumps(_checks_json(e)),
        }
        for e in entries
    ]
    return pa.Table.from_pylist(rows, schema=CATALOG_TABLE.schema)


def column_rows(entries: list[CatalogEntry], built_at: datetime) -> pa.Table:
    rows = [
        {
            "catalog_time": built_at,
            "dataset": e.name,
            "position": i,
            "column_name": c.name,
            "data_type": c.data_type,
            "nullable": c.nullable,
            "description": c.description,
        }
        for e in entries
        for i, c in enumerate(e.columns, start=1)
    ]
    return pa.Table.from_pylist(rows, schema=CATALOG_COLUMNS_TABLE.schema)
