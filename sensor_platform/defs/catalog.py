"""`data_catalog`: the data catalog built from the asset graph and the instance's latest
materializations and check results, for whatever assets the Definitions hold.

Published as the `data_catalog` / `data_catalog_columns` warehouse tables, a static HTML page and a
JSON document in the lake (catalog/), and the analysts' DuckDB views file. The schema history lives
in the lake (catalog/schema_history.json); a removed or retyped column fails the WARN check
`no_breaking_schema_changes`.
"""

import os
from datetime import UTC, datetime

import dagster as dg
from dagster_shared.check import CheckError

from sensor_platform import settings
from sensor_platform.catalog.analytics_db import refresh_analytics_db
from sensor_platform.catalog.entries import (
    CatalogEntry,
    CheckOutcome,
    ColumnInfo,
    DatasetFacts,
    build_entry,
    observed_columns,
    schema_snapshot,
)
from sensor_platform.catalog.html_page import render_catalog_page
from sensor_platform.catalog.lake_inspection import (
    LakeDatasetStats,
    inspect_lake_dataset,
    lake_prefix,
    read_lake_bytes,
    write_lake_bytes,
)
from sensor_platform.catalog.publishing import (
    ALL_TIME,
    CATALOG_COLUMNS,
    CATALOG_COLUMNS_TABLE,
    CATALOG_TABLE,
    HTML_PAGE,
    JSON_DOCUMENT,
    SCHEMA_HISTORY,
    catalog_document,
    catalog_rows,
    column_rows,
)
from sensor_platform.catalog.schema_versions import SchemaHistory, SchemaVersion
from sensor_platform.defs.metadata import table_schema
from sensor_platform.defs.partitions import DAILY, HOURLY
from sensor_platform.defs.resources import LakeResource, WarehouseResource
from sensor_platform.lake.store import Lake

BREAKING_CHECK = "no_breaking_schema_changes"


class CatalogResource(dg.ConfigurableResource):
    """Where the analysts' DuckDB views file is written (a local path, rebuilt and renamed)."""

    analytics_db_path: str


def _value(value: object) -> object:
    return getattr(value, "value", value)  # MetadataValue -> plain value


def _partitioning(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "none"
    if partitions_def == HOURLY:
        return "hourly"
    if partitions_def == DAILY:
        return "daily"
    return type(partitions_def).__name__


def _declared_columns(metadata: dict) -> tuple[ColumnInfo, ...]:
    schema = _value(metadata.get("dagster/column_schema"))
    if not isinstance(schema, dg.TableSchema):
        return ()
    return tuple(
        ColumnInfo(c.name, c.type, c.description or "", c.constraints.nullable)
        for c in schema.columns
    )


def _checks(instance: dg.DagsterInstance, check_keys: set) -> tuple[CheckOutcome, ...]:
    outcomes = []
    for check_key in sorted(check_keys, key=lambda k: k.name):
        record = instance.get_latest_asset_check_evaluation_record(check_key)
        evaluation = record.evaluation if record else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            evaluation = None  # planned (running now) or never run
        outcomes.append(
            CheckOutcome(
                name=check_key.name,
                passed=None if evaluation is None else evaluation.passed,
                severity=evaluation.severity.value if evaluation else "",
                evaluated_at=datetime.fromtimestamp(record.create_timestamp, UTC)
                if evaluation
                else None,
                description=(evaluation.description or "") if evaluation else "",
            )
        )
    return tuple(outcomes)


def code_location_graph(context: dg.AssetExecutionContext):
    """The asset graph of the whole code location (not just this run's job)."""
    try:
        return context.repository_def.asset_graph
    except CheckError:
        # execute_in_process (tests, scripts) runs without a repository: use the graph the job
        # was cut from, which is the same Definitions' graph.
        return context.job_def.asset_layer.asset_graph.source_asset_graph


def dataset_facts(instance: dg.DagsterInstance, graph, key: dg.AssetKey) -> DatasetFacts:
    """Everything the definitions and the instance say about one asset, as plain values."""
    node = graph.get(key)
    metadata = dict(node.metadata)
    latest = instance.get_latest_materialization_event(key)
    run_metadata = latest.asset_materialization.metadata if latest else {}
    template = _value(metadata.get("partition_path"))
    table_name = _value(metadata.get("dagster/table_name"))
    row_count = _value(run_metadata.get("dagster/row_count"))
    uri = _value(run_metadata.get("dagster/uri"))
    materialized = (
        tuple(sorted(instance.get_materialized_partitions(key))) if node.partitions_def else ()
    )
    return DatasetFacts(
        name=key.to_user_string(),
        description=node.description or "",
        owners=tuple(node.owners),
        group=node.group_name or "default",
        kinds=tuple(sorted(node.kinds)),
        tags={k: v for k, v in node.tags.items() if not k.startswith("dagster/")},
        declared_columns=_declared_columns(metadata),
        lake_prefix=lake_prefix(template) if isinstance(template, str) else None,
        table_name=table_name if isinstance(table_name, str) else None,
        partitioning=_partitioning(node.partitions_def),
        materialized_partitions=materialized,
        last_update=datetime.fromtimestamp(latest.timestamp, UTC) if latest else None,
        last_row_count=row_count if isinstance(row_count, int) else None,
        last_uri=uri if isinstance(uri, str) else None,
        checks=_checks(instance, graph.get_check_keys_for_assets({key})),
    )


def _current_version(
    history: SchemaHistory, facts: DatasetFacts, stats: LakeDatasetStats | None, now: datetime
) -> tuple[SchemaVersion, bool]:
    latest = history.latest(facts.name)
    if stats is not None and stats.files == 0 and latest is not None:
        return latest, False  # no files to look at (yet, or any more): nothing observed
    columns = observed_columns(facts, stats)
    return history.record(facts.name, schema_snapshot(columns, stats.metrics if stats else ()), now)


def build_catalog(
    instance: dg.DagsterInstance,
    graph,
    store: Lake,
    history: SchemaHistory,
    *,
    warehouse_url: str,
    now: datetime,
) -> tuple[list[CatalogEntry], list[SchemaVersion]]:
    """One entry per asset of `graph` (an AssetGraph; external ones like quarantined_messages
    included), and the schema versions this build added."""
    entries, new_versions = [], []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        facts = dataset_facts(instance, graph, key)
        stats = inspect_lake_dataset(store, facts.lake_prefix) if facts.lake_prefix else None
        version, is_new = _current_version(history, facts, stats, now)
        if is_new:
            new_versions.append(version)
        entries.append(
            build_entry(
                facts,
                stats,
                version,
                lake_uri=store.uri(),
                warehouse_url=warehouse_url,
                now=now,
            )
        )
    return entries, new_versions


def _breaking_check(new_versions: list[SchemaVersion]) -> dg.AssetCheckResult:
    breaking = {v.dataset: v.diff.to_json() for v in new_versions if v.breaking}
    return dg.AssetCheckResult(
        check_name=BREAKING_CHECK,
        passed=not breaking,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"breaking schema change in {', '.join(sorted(breaking))}"
            if breaking
            else "no column removed or retyped"
        ),
        metadata={
            "breaking_changes": dg.MetadataValue.json(breaking),
            "new_schema_versions": len(new_versions),
        },
    )


def _link(store: Lake, relpath: str) -> dg.MetadataValue:
    if store.is_local:
        return dg.MetadataValue.path(os.path.abspath(store.full_path(relpath)))
    return dg.MetadataValue.url(store.uri(relpath))


@dg.asset(
    name="data_catalog",
    group_name="catalog",
    kinds={"html", "json", "duckdb"},
    owners=["team:data-platform"],
    tags={"domain": "iot", "tier": "gold", "pii": "none", "layer": "catalog"},
    metadata={
        "dagster/column_schema": table_schema(CATALOG_COLUMNS),
        "dagster/table_name": CATALOG_TABLE.name,
    },
    check_specs=[
        dg.AssetCheckSpec(
            BREAKING_CHECK,
            asset="data_catalog",
            description="Warns when a dataset lost a column or a column changed type.",
        )
    ],
)
def data_catalog(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    catalog: CatalogResource,
) -> dg.MaterializeResult:
    """The data catalog: one entry per dataset with its description, owner, layer, location and
    format, partitioning, columns (type and meaning), schema version, rows, size, partitions
    present, last update, freshness and latest quality results. Published as the `data_catalog`
    and `data_catalog_columns` tables, an HTML page and a JSON document in the lake's catalog/
    folder, and a DuckDB file of views over the lake for analysts."""
    store, wh, now = lake.lake(), warehouse.warehouse(), datetime.now(UTC)
    history = SchemaHistory.from_json(read_lake_bytes(store, SCHEMA_HISTORY))
    entries, new_versions = build_catalog(
        context.instance,
        code_location_graph(context),
        store,
        history,
        warehouse_url=wh.display_url,
        now=now,
    )
    write_lake_bytes(store, SCHEMA_HISTORY, history.to_json().encode())
    page = write_lake_bytes(store, HTML_PAGE, render_catalog_page(entries, now).encode())
    document = write_lake_bytes(store, JSON_DOCUMENT, catalog_document(entries, now))
    tables = [
        (CATALOG_TABLE, catalog_rows(entries, now)),
        (CATALOG_COLUMNS_TABLE, column_rows(entries, now)),
    ]
    analytics = refresh_analytics_db(
        catalog.analytics_db_path,
        store,
        {e.name: e.lake_prefix for e in entries if e.lake_prefix},
        tables,
    )
    for spec, rows in tables:
        wh.replace_window(spec, rows, *ALL_TIME)
    context.log.info(f"catalog of {len(entries)} datasets published to {wh.display_url}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(entries),
            "dagster/uri": store.uri(HTML_PAGE),
            "catalog_page": _link(store, HTML_PAGE),
            "json_document": _link(store, JSON_DOCUMENT),
            "analytics_db": dg.MetadataValue.path(analytics.path),
            "analytics_views": dg.MetadataValue.json(list(analytics.views)),
            "datasets_without_view": dg.MetadataValue.json(analytics.skipped),
            "new_schema_versions": dg.MetadataValue.json(
                {v.dataset: v.version for v in new_versions}
            ),
            "bytes": page.size + document.size,
            "warehouse": wh.display_url,
        },
        check_results=[_breaking_check(new_versions)],
    )


catalog_job = dg.define_asset_job("catalog_job", selection=[data_catalog])
catalog_schedule = dg.ScheduleDefinition(
    name="refresh_data_catalog",
    job=catalog_job,
    cron_schedule="20 * * * *",  # after the hour's raw partition and minute aggregates land
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def catalog_definitions() -> dg.Definitions:
    """The catalog asset, its job and schedule and the `catalog` resource, to merge into the code
    location's Definitions."""
    path = settings.analytics_db_path()
    return dg.Definitions(
        assets=[data_catalog],
        jobs=[catalog_job],
        schedules=[catalog_schedule],
        resources={"catalog": CatalogResource(analytics_db_path=path)},
    )
