"""Catalog entries: what the definitions declare plus what the lake and the run history show.

`DatasetFacts` is filled in by the Dagster wiring from the asset graph and the instance (plain
values, no Dagster types); `build_entry` joins it with the lake's files and the schema history.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sensor_platform.catalog.lake_inspection import LakeDatasetStats
from sensor_platform.catalog.schema_versions import SchemaSnapshot, SchemaVersion

# Group names (or a `layer` tag) map to the layer analysts browse by.
LAYERS = {
    "raw": "raw",
    "ingest": "raw",
    "aggregates": "aggregate",
    "quality": "quality",
    "anomalies": "alerts",
    "alerts": "alerts",
    "analytics": "marts",
    "marts": "marts",
    "catalog": "catalog",
}
# How long after its last update a partitioned dataset still counts as fresh.
FRESH_WITHIN = {"hourly": timedelta(hours=2), "daily": timedelta(hours=26)}


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    data_type: str
    description: str = ""
    nullable: bool | None = None


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool | None  # None: planned or never evaluated
    severity: str  # ERROR / WARN for a failed check; "" otherwise
    evaluated_at: datetime | None
    description: str = ""


@dataclass(frozen=True)
class DatasetFacts:
    """What Dagster knows about one asset."""

    name: str
    description: str
    owners: tuple[str, ...]
    group: str
    kinds: tuple[str, ...]
    tags: dict[str, str]
    declared_columns: tuple[ColumnInfo, ...]
    lake_prefix: str | None  # where its files live in the lake, if it has any
    table_name: str | None  # its warehouse table, if any
    partitioning: str  # hourly / daily / none / the partitions definition's name
    materialized_partitions: tuple[str, ...] = ()
    last_update: datetime | None = None
    last_row_count: int | None = None
    last_uri: str | None = None
    checks: tuple[CheckOutcome, ...] = ()


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    owner: str
    layer: str
    group: str
    kinds: tuple[str, ...]
    tags: dict[str, str]
    location: str
    storage_format: str
    lake_prefix: str | None  # its folder in the lake, if it is stored there
    table_name: str | None
    partitioning: str
    columns: tuple[ColumnInfo, ...]
    metrics: tuple[str, ...]
    schema_version: int
    schema_diff: dict | None  # the diff that produced the current version
    row_count: int | None
    size_bytes: int | None
    file_count: int | None
    partitions: tuple[str, ...]
    last_update: datetime | None
    freshness_hours: float | None
    freshness_status: str  # fresh / stale / never / unknown
    quality_status: str  # passed / failed / warn / not evaluated / no checks
    checks: tuple[CheckOutcome, ...] = field(default=())
    # lake datasets: the DDL that declares the files as an external table, by dialect
    external_tables: dict[str, str] = field(default_factory=dict)


def layer_of(group: str, tags: dict[str, str]) -> str:
    return tags.get("layer") or LAYERS.get(group, group)


def observed_columns(facts: DatasetFacts, stats: LakeDatasetStats | None) -> tuple[ColumnInfo, ...]:
    """The files' columns when there are files (the truth analysts query), described by the
    declared column schema; the declared columns otherwise."""
    if stats is None or stats.schema is None:
        return facts.declared_columns
    declared = {c.name: c for c in facts.declared_columns}
    return tuple(
        ColumnInfo(
            name=f.name,
            data_type=str(f.type),
            description=declared[f.name].description if f.name in declared else "",
            nullable=declared[f.name].nullable if f.name in declared else f.nullable,
        )
        for f in stats.schema
    )


def schema_snapshot(columns: tuple[ColumnInfo, ...], metrics: tuple[str, ...]) -> SchemaSnapshot:
    return SchemaSnapshot(columns={c.name: c.data_type for c in columns}, metrics=tuple(metrics))


def freshness(
    last_update: datetime | None, partitioning: str, now: datetime
) -> tuple[float | None, str]:
    """Hours since the last update and a verdict against the partition cadence."""
    if last_update is None:
        return None, "never"
    age = now - last_update
    hours = round(age.total_seconds() / 3600, 2)
    limit = FRESH_WITHIN.get(partitioning)
    if limit is None:
        return hours, "unknown"
    return hours, "fresh" if age <= limit else "stale"


def quality_status(checks: tuple[CheckOutcome, ...]) -> str:
    if not checks:
        return "no checks"
    evaluated = [c for c in checks if c.passed is not None]
    if not evaluated:
        return "not evaluated"
    failed = [c for c in evaluated if not c.passed]
    if any(c.severity == "ERROR" for c in failed):
        return "failed"
    return "warn" if failed else "passed"


def build_entry(
    facts: DatasetFacts,
    stats: LakeDatasetStats | None,
    version: SchemaVersion,
    *,
    lake_uri: str,
    warehouse_url: str,
    now: datetime,
) -> CatalogEntry:
    """One catalog entry. `stats` describes the dataset's lake files (None if it has none)."""
    columns = observed_columns(facts, stats)
    if stats is not None:
        location, storage_format = f"{lake_uri}/{stats.prefix}", "parquet (hive partitioned)"
    elif facts.table_name:
        location, storage_format = f"{warehouse_url} table {facts.table_name}", "sql table"
    else:
        location, storage_format = facts.last_uri or "", ", ".join(facts.kinds) or "unknown"
    last_update = facts.last_update
    if stats is not None and stats.last_modified and not last_update:
        last_update = stats.last_modified
    hours, fresh = freshness(last_update, facts.partitioning, now)
    return CatalogEntry(
        name=facts.name,
        description=facts.description,
        owner=", ".join(facts.owners) or "unowned",
        layer=layer_of(facts.group, facts.tags),
        group=facts.group,
        kinds=facts.kinds,
        tags=facts.tags,
        location=location,
        storage_format=storage_format,
        lake_prefix=stats.prefix if stats is not None else None,
        table_name=facts.table_name,
        partitioning=facts.partitioning,
        columns=columns,
        metrics=stats.metrics if stats is not None else (),
        schema_version=version.version,
        schema_diff=None if version.diff is None else version.diff.to_json(),
        row_count=stats.rows if stats is not None else facts.last_row_count,
        size_bytes=stats.bytes if stats is not None else None,
        file_count=stats.files if stats is not None else None,
        partitions=stats.partitions if stats is not None else facts.materialized_partitions,
        last_update=last_update,
        freshness_hours=hours,
        freshness_status=fresh,
        quality_status=quality_status(facts.checks),
        checks=facts.checks,
    )
