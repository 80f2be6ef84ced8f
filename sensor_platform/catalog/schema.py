"""The catalog tables' columns (light: read when the code location loads, for the UI)."""

import pyarrow as pa

from sensor_platform.readings.schema import UTC_MICROS

CATALOG_TABLE_NAME = "data_catalog"
CATALOG_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "catalog_time": (UTC_MICROS, False, "When this catalog was built (UTC)."),
    "dataset": (pa.string(), False, "Dataset (Dagster asset) name."),
    "description": (pa.string(), False, "What the dataset holds."),
    "owner": (pa.string(), False, "Owning team or person."),
    "layer": (pa.string(), False, "raw / aggregate / quality / alerts / marts / catalog."),
    "group_name": (pa.string(), False, "Dagster asset group."),
    "kinds": (pa.string(), False, "Technologies (comma separated)."),
    "tags": (pa.string(), False, "Tags (JSON object): domain, tier, pii ..."),
    "location": (pa.string(), False, "Where the data lives: lake folder URI or warehouse table."),
    "storage_format": (pa.string(), False, "parquet (hive partitioned), sql table, ..."),
    "table_name": (pa.string(), True, "Warehouse / analytics view name, if any."),
    "partitioning": (pa.string(), False, "hourly, daily or none (UTC)."),
    "partitions_present": (pa.int64(), False, "Partitions with data."),
    "first_partition": (pa.string(), True, "Oldest partition with data."),
    "last_partition": (pa.string(), True, "Newest partition with data."),
    "schema_version": (pa.int64(), False, "Version of the schema (columns and metrics)."),
    "schema_diff": (pa.string(), True, "Diff (JSON) that produced this schema version."),
    "column_count": (pa.int64(), False, "Number of columns."),
    "metrics": (pa.string(), False, "Metric names seen in the data (JSON list)."),
    "row_count": (pa.int64(), True, "Rows (lake files: from Parquet footers)."),
    "size_bytes": (pa.int64(), True, "Bytes in the lake."),
    "file_count": (pa.int64(), True, "Files in the lake."),
    "last_update": (UTC_MICROS, True, "Last materialization (UTC)."),
    "freshness_hours": (pa.float64(), True, "Hours since the last update at build time."),
    "freshness_status": (pa.string(), False, "fresh / stale / never / unknown."),
    "quality_status": (pa.string(), False, "passed / warn / failed / not evaluated / no checks."),
    "quality_checks": (pa.string(), False, "Latest asset check results (JSON list)."),
}
COLUMN_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "catalog_time": (UTC_MICROS, False, "When this catalog was built (UTC)."),
    "dataset": (pa.string(), False, "Dataset the column belongs to."),
    "position": (pa.int32(), False, "1-based position of the column."),
    "column_name": (pa.string(), False, "Column name."),
    "data_type": (pa.string(), False, "Arrow type of the column."),
    "nullable": (pa.bool_(), True, "Whether the column may be NULL."),
    "description": (pa.string(), False, "What the column means."),
}
