"""The dbt models (dbt_project/) as Dagster assets of their own code location: daily partitions, a
partition range per dbt run, dbt tests as asset checks, and the warehouse tables they read as
their upstream assets (the platform location's aggregates, by asset key)."""

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.asset_utils import default_description_fn
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation

from sensor_platform.analytics.dbt_project import (
    dbt_executable,
    dbt_profile_env,
    partition_vars,
    project_dir,
)
from sensor_platform.defs.aggregates import RECOMPUTE_ON_UPSTREAM_CHANGE
from sensor_platform.defs.automation import automation_sensor
from sensor_platform.defs.metadata import OWNERS
from sensor_platform.defs.partitions import EXISTING_UPSTREAM, Partitions
from sensor_platform.defs.pools import WAREHOUSE_POOL
from sensor_platform.defs.resources import WarehouseResource, build_resources
from sensor_platform.settings import Settings


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    # dagster-dbt hands dbt a copy of os.environ when it starts the process: setting the
    # connection only around that moment keeps the password out of argv and off the disk.
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class DbtWarehouseResource(dg.ConfigurableResource):
    """dbt pointed at the warehouse the pipeline publishes to: the dbt target and connection come
    from the `warehouse` resource's URL on every run, so the two never disagree. DuckDB and
    PostgreSQL warehouses are supported (the models are portable SQL).

    The aggregates are read where the warehouse writes them (its current schema) unless
    `source_schema` says otherwise; models are built next to them unless `models_schema` is set."""

    warehouse: WarehouseResource
    project_dir: str
    source_schema: str | None = None
    models_schema: str | None = None

    def cli(
        self, args: list[str], *, context: dg.AssetExecutionContext | None = None
    ) -> DbtCliInvocation:
        source_schema = (
            self.source_schema
            or self.warehouse.warehouse().execute_query("SELECT current_schema()")[0][0]
        )
        target, env = dbt_profile_env(self.warehouse.url, source_schema, self.models_schema)
        with _environment(env):
            return _dbt_cli(self.project_dir, target).cli(args, context=context)


@cache
def _dbt_cli(project: str, target: str) -> DbtCliResource:
    # one per process and target: the resource asks `dbt --version` (a few seconds) once
    return DbtCliResource(project_dir=project, target=target, dbt_executable=dbt_executable())


# A day's models run once that day's daily aggregates exist: a model that reads them before then
# finds nothing, or no table at all on a fresh warehouse (models that do not read them, such as
# alert_history, do not wait).
WAITING_FOR_THE_DAY = (
    dg.AutomationCondition.any_deps_match(dg.AutomationCondition.missing())
    .allow(dg.AssetSelection.assets("sensor_readings_daily"))
    .with_label("waiting for the day's sensor_readings_daily")
)


class SensorDbtTranslator(DagsterDbtTranslator):
    """dbt models join the `analytics` group and recompute like the aggregates they read."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "analytics"

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # The model's own description, without the raw SQL dagster-dbt appends by default (the
        # UI shows the code under "Code references"; a description is for people).
        return default_description_fn(dbt_resource_props, display_raw_sql=False)

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return RECOMPUTE_ON_UPSTREAM_CHANGE & ~WAITING_FOR_THE_DAY

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return OWNERS

    def get_partition_mapping(
        self,
        dbt_resource_props: Mapping[str, Any],
        dbt_parent_resource_props: Mapping[str, Any],
    ) -> dg.PartitionMapping | None:
        return EXISTING_UPSTREAM  # a day reads the hours of sensor_anomalies that exist

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), "domain": "iot", "tier": "gold"}


def dbt_models(project: DbtProject, partitions: Partitions) -> dg.AssetsDefinition:
    """The dbt models of `project` (its manifest must have been prepared) as daily assets."""
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"no dbt manifest at {project.manifest_path}: run `sensor-platform dbt-parse` "
            "(make install does) after installing or editing the dbt project"
        )

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=SensorDbtTranslator(),
        partitions_def=partitions.daily,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        name="sensor_dbt_models",
    )
    def sensor_dbt_models(context: dg.AssetExecutionContext, dbt: DbtWarehouseResource):
        """`dbt build` of the selected models and their tests over the run's partition range:
        the daily models replace exactly the days of the range, the others are rebuilt."""
        window = context.partition_time_window
        dbt_vars = partition_vars(window.start, window.end)
        context.log.info(
            f"dbt build {dbt_vars['min_date']} .. {dbt_vars['max_date']} (exclusive) "
            f"on {dbt.warehouse.warehouse().display_url}"
        )
        invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
        yield from invocation.stream()
        # Each run leaves ~3 MB of artifacts in a folder of its own; a long-lived code server
        # would pile them up. A failed run never gets here, so its artifacts stay for debugging.
        shutil.rmtree(invocation.target_path, ignore_errors=True)

    return sensor_dbt_models


def dbt_definitions(settings: Settings) -> dg.Definitions:
    """The analytics code location: the dbt models, their job, and the resources they need."""
    folder = project_dir(settings.dbt_project_dir)
    models = dbt_models(
        DbtProject(project_dir=folder), Partitions.starting(settings.partitions_start)
    )
    warehouse = build_resources(settings)["warehouse"]
    return dg.Definitions(
        assets=[models],
        jobs=[
            dg.define_asset_job(
                "analytics_job", selection=[models], partitions_def=models.partitions_def
            )
        ],
        sensors=[automation_sensor("analytics_automation_sensor")],
        resources={
            "warehouse": warehouse,
            "dbt": DbtWarehouseResource(warehouse=warehouse, project_dir=str(folder)),
        },
    )
