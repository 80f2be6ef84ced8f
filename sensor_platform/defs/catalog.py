"""`data_catalog`: the data catalog built from the code location's definitions and the
instance's latest materializations and check results.

Published as the `data_catalog` / `data_catalog_columns` warehouse tables, a static HTML page and a
JSON document in the lake (catalog/), and the analysts' DuckDB views file. The schema history lives
in the lake (catalog/schema_history.json); a removed or retyped column fails the WARN check
`no_breaking_schema_changes`.
"""

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.catalog.schema import CATALOG_COLUMNS, CATALOG_TABLE_NAME
from sensor_platform.datasets import Registry
from sensor_platform.defs.metadata import OWNERS, table_schema
from sensor_platform.defs.resources import CatalogResource, LakeResource, WarehouseResource

if TYPE_CHECKING:
    from sensor_platform.catalog.entries import (
        CatalogEntry,
        CheckOutcome,
        ColumnInfo,
        DatasetFacts,
    )
    from sensor_platform.catalog.lake_inspection import LakeDatasetStats
    from sensor_platform.catalog.schema_versions import SchemaHistory, SchemaVersion
    from sensor_platform.lake.store import Lake

BREAKING_CHECK = "no_breaking_schema_changes"
CATALOG = "data_catalog"


def _value(value: object) -> object:
    return getattr(value, "value", value)  # MetadataValue -> plain value


def _partitioning(partitions_def: dg.PartitionsDefinition | None) -> str:
    if partitions_def is None:
        return "none"
    if isinstance(partitions_def, dg.HourlyPartitionsDefinition):
        return "hourly"
    if isinstance(partitions_def, dg.DailyPartitionsDefinition):
        return "daily"
    return type(partitions_def).__name__


def _declared_columns(metadata: dict) -> tuple["ColumnInfo", ...]:
    from sensor_platform.catalog.entries import ColumnInfo

    schema = _value(metadata.get("dagster/column_schema"))
    if not isinstance(schema, dg.TableSchema):
        return ()
    return tuple(
        ColumnInfo(c.name, c.type, c.description or "", c.constraints.nullable)
        for c in schema.columns
    )


def _checks(instance: dg.DagsterInstance, check_keys: set) -> tuple["CheckOutcome", ...]:
    from sensor_platform.catalog.entries import CheckOutcome

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
                # The severity of a failure; a passed check carries the one it could have
                # failed with, which means nothing to a reader ("passed ERROR").
                severity=evaluation.severity.value if evaluation and not evaluation.passed else "",
                evaluated_at=datetime.fromtimestamp(record.create_timestamp, UTC)
                if evaluation
                else None,
                description=(evaluation.description or "") if evaluation else "",
            )
        )
    return tuple(outcomes)


def _check_keys(definitions: dg.Definitions) -> dict[dg.AssetKey, set[dg.AssetCheckKey]]:
    """Every check of the definitions, by the asset it checks."""
    keys: dict[dg.AssetKey, set[dg.AssetCheckKey]] = {}
    holders = [*(definitions.assets or ()), *(definitions.asset_checks or ())]
    for holder in holders:
        for check_key in getattr(holder, "check_keys", ()):
            keys.setdefault(check_key.asset_key, set()).add(check_key)
    return keys


def dataset_facts(
    instance: dg.DagsterInstance, spec: dg.AssetSpec, check_keys: set[dg.AssetCheckKey]
) -> "DatasetFacts":
    """Everything the definitions and the instance say about one asset, as plain values."""
    from sensor_platform.catalog.entries import DatasetFacts
    from sensor_platform.catalog.lake_inspection import lake_prefix

    key, metadata = spec.key, dict(spec.metadata)
    latest = instance.get_latest_materialization_event(key)
    run_metadata = latest.asset_materialization.metadata if latest else {}
    template = _value(metadata.get("partition_path"))
    table_name = _value(metadata.get("dagster/table_name"))
    row_count = _value(run_metadata.get("dagster/row_count"))
    uri = _value(run_metadata.get("dagster/uri"))
    materialized = (
        tuple(sorted(instance.get_materialized_partitions(key))) if spec.partitions_def else ()
    )
    return DatasetFacts(
        name=key.to_user_string(),
        description=spec.description or "",
        owners=tuple(spec.owners),
        group=spec.group_name or "default",
        kinds=tuple(sorted(spec.kinds)),
        tags={k: v for k, v in spec.tags.items() if not k.startswith("dagster/")},
        declared_columns=_declared_columns(metadata),
        lake_prefix=lake_prefix(template) if isinstance(template, str) else None,
        table_name=table_name if isinstance(table_name, str) else None,
        partitioning=_partitioning(spec.partitions_def),
        materialized_partitions=materialized,
        last_update=datetime.fromtimestamp(latest.timestamp, UTC) if latest else None,
        last_row_count=row_count if isinstance(row_count, int) else None,
        last_uri=uri if isinstance(uri, str) else None,
        checks=_checks(instance, check_keys),
    )


def _current_version(
    history: "SchemaHistory",
    facts: "DatasetFacts",
    stats: "LakeDatasetStats | None",
    now: datetime,
) -> tuple["SchemaVersion", bool]:
    from sensor_platform.catalog.entries import observed_columns, schema_snapshot

    latest = history.latest(facts.name)
    if stats is not None and stats.files == 0 and latest is not None:
        return latest, False  # no files to look at (yet, or any more): nothing observed
    columns = observed_columns(facts, stats)
    return history.record(facts.name, schema_snapshot(columns, stats.metrics if stats else ()), now)


def build_catalog(
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    datasets: Registry,
    store: "Lake",
    history: "SchemaHistory",
    *,
    warehouse_url: str,
    now: datetime,
) -> tuple[list["CatalogEntry"], list["SchemaVersion"]]:
    """One entry per asset of `definitions` (external ones like quarantined_messages included),
    each lake dataset of `datasets` with its external table DDL, and the schema versions this
    build added."""
    from sensor_platform.catalog.entries import build_entry
    from sensor_platform.catalog.external_tables import (
        DIALECTS,
        external_table_ddl,
        table_location,
    )
    from sensor_platform.catalog.lake_inspection import inspect_lake_dataset

    lake_datasets = {d.name: d for d in datasets}
    check_keys = _check_keys(definitions)
    entries, new_versions = [], []
    specs = sorted(definitions.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string())
    for spec in specs:
        facts = dataset_facts(instance, spec, check_keys.get(spec.key, set()))
        stats = inspect_lake_dataset(store, facts.lake_prefix) if facts.lake_prefix else None
        version, is_new = _current_version(history, facts, stats, now)
        if is_new:
            new_versions.append(version)
        entry = build_entry(
            facts, stats, version, lake_uri=store.uri(), warehouse_url=warehouse_url, now=now
        )
        dataset = lake_datasets.get(facts.name)
        if dataset is not None:
            location = table_location(store, dataset.prefix)
            ddl = {d: external_table_ddl(dataset, location, d) for d in DIALECTS}
            entry = replace(entry, external_tables=ddl)
        entries.append(entry)
    return entries, new_versions


def _breaking_check(new_versions: list["SchemaVersion"]) -> dg.AssetCheckResult:
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


def _link(store: "Lake", relpath: str) -> dg.MetadataValue:
    if store.is_local:
        return dg.MetadataValue.path(os.path.abspath(store.full_path(relpath)))
    return dg.MetadataValue.url(store.uri(relpath))


def catalog_definitions(
    describe: Callable[[], dg.Definitions], datasets: Registry
) -> dg.Definitions:
    """The catalog asset, its job and hourly schedule. `describe` returns the code location's
    whole Definitions (the catalog included) when the catalog runs; `datasets` are the lake's
    datasets, its lineage in the UI (it reads their metadata, not their data) and the tables
    it writes DDL for."""
    upstream = [d.name for d in datasets]

    @dg.asset(
        name=CATALOG,
        deps=list(upstream),
        group_name="catalog",
        kinds={"html", "json", "duckdb"},
        owners=OWNERS,
        tags={"domain": "iot", "tier": "gold", "pii": "none", "layer": "catalog"},
        metadata={
            "dagster/column_schema": table_schema(CATALOG_COLUMNS),
            "dagster/table_name": CATALOG_TABLE_NAME,
        },
        check_specs=[
            dg.AssetCheckSpec(
                BREAKING_CHECK,
                asset=CATALOG,
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
        present, last update, freshness and latest quality results, and for each lake dataset the
        external table DDL for Athena / Spark / Trino. Published as the `data_catalog` and
        `data_catalog_columns` tables, an HTML page, a JSON document and the DDL scripts in the
        lake's catalog/ folder, and a DuckDB file of views over the lake for analysts."""
        from sensor_platform.catalog.analytics_db import refresh_analytics_db
        from sensor_platform.catalog.html_page import render_catalog_page
        from sensor_platform.catalog.lake_inspection import read_lake_bytes, write_lake_bytes
        from sensor_platform.catalog.publishing import (
            ALL_TIME,
            CATALOG_COLUMNS_TABLE,
            CATALOG_TABLE,
            EXTERNAL_TABLES,
            HTML_PAGE,
            JSON_DOCUMENT,
            SCHEMA_HISTORY,
            catalog_document,
            catalog_rows,
            column_rows,
            external_table_script,
        )
        from sensor_platform.catalog.schema_versions import SchemaHistory

        store, wh, now = lake.lake(), warehouse.warehouse(), datetime.now(UTC)
        history = SchemaHistory.from_json(read_lake_bytes(store, SCHEMA_HISTORY))
        entries, new_versions = build_catalog(
            context.instance,
            describe(),
            datasets,
            store,
            history,
            warehouse_url=wh.display_url,
            now=now,
        )
        write_lake_bytes(store, SCHEMA_HISTORY, history.to_json().encode())
        page = write_lake_bytes(store, HTML_PAGE, render_catalog_page(entries, now).encode())
        document = write_lake_bytes(store, JSON_DOCUMENT, catalog_document(entries, now))
        scripts = {
            dialect: write_lake_bytes(store, path, external_table_script(entries, dialect))
            for dialect, path in EXTERNAL_TABLES.items()
        }
        tables = [
            (CATALOG_TABLE, catalog_rows(entries, now)),
            (CATALOG_COLUMNS_TABLE, column_rows(entries, now)),
        ]
        analytics = refresh_analytics_db(
            catalog.analytics_db_path,
            store,
            {e.name: e.lake_prefix for e in entries if e.lake_prefix},
            tables,
            warehouse=wh,  # copies of the alert ledger and quality results, for the dashboard
            now=now,
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
                **{
                    f"external_tables_{dialect}": _link(store, path)
                    for dialect, path in EXTERNAL_TABLES.items()
                },
                "analytics_db": dg.MetadataValue.path(analytics.path),
                "analytics_views": dg.MetadataValue.json(list(analytics.views)),
                "datasets_without_view": dg.MetadataValue.json(analytics.skipped),
                "new_schema_versions": dg.MetadataValue.json(
                    {v.dataset: v.version for v in new_versions}
                ),
                "bytes": page.size + document.size + sum(f.size for f in scripts.values()),
                "warehouse": wh.display_url,
            },
            check_results=[_breaking_check(new_versions)],
        )

    catalog_job = dg.define_asset_job("catalog_job", selection=[CATALOG])
    catalog_schedule = dg.ScheduleDefinition(
        name="refresh_data_catalog",
        job=catalog_job,
        cron_schedule="20 * * * *",  # after the hour's raw partition and minute aggregates land
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuilds the data catalog at :20 every hour (after the hour's raw partition "
        "and minute aggregates land): the catalog page and JSON in the lake, the data_catalog "
        "tables and the analysts' DuckDB file.",
    )
    return dg.Definitions(assets=[data_catalog], jobs=[catalog_job], schedules=[catalog_schedule])
