"""The dbt models (dbt_project/) as Dagster assets: daily partitions, a partition range per dbt run,
dbt tests as asset checks, and the warehouse tables they read as their upstream assets."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from filelock import FileLock
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sensor_platform import settings
from sensor_platform.defs.aggregates import RECOMPUTE_ON_UPSTREAM_CHANGE
from sensor_platform.defs.partitions import DAILY
from sensor_platform.defs.resources import WarehouseResource

# A source checkout (`make ui`, tests, CI) finds the project next to the package; an installed
# package (the Docker image) is told where it is.
DBT_PROJECT_DIR = Path(
    settings.optional("SENSOR_DBT_PROJECT_DIR")
    or Path(__file__).resolve().parents[2] / "dbt_project"
)
DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR)
# dagster-dbt looks for `dbt` on PATH, which holds no virtualenv unless it is activated; the dbt
# installed next to this Python is the one whose adapters are installed.
_BESIDE_PYTHON = Path(sys.executable).with_name("dbt")
DBT_EXECUTABLE = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else "dbt"
# What `dbt parse` reads: a change to any of these makes the manifest stale.
_PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def manifest_is_stale(project: DbtProject = DBT_PROJECT) -> bool:
    """True when target/manifest.json is missing or older than a file of the project."""
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    for name in _PROJECT_SOURCES:
        path = project.project_dir / name
        files = path.rglob("*") if path.is_dir() else [path]
        if any(f.is_file() and f.stat().st_mtime > built for f in files):
            return True
    return False


def prepare_dbt_project(project: DbtProject = DBT_PROJECT) -> None:
    """Write the manifest the assets are built from (`dbt parse`) when it is stale: a fresh
    clone, CI, or `dagster dev` after an edit parse once, offline (parsing opens no connection);
    any other load only compares file times. The Docker image parses at build time.

    Processes loading at once (webserver, daemon) parse one at a time, and the manifest is
    swapped in whole, so no process reads a half-written one."""
    if not manifest_is_stale(project):
        return
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(project.manifest_path.with_name("manifest.lock"), timeout=120):
        if not manifest_is_stale(project):
            return  # another process parsed while this one waited
        staging = project.project_dir / project.target_path / "prepare"
        # `dbt parse` straight away: dagster-dbt's own preparer first asks `dbt --version`
        # (which looks for a newer dbt online) and loads the adapter in this process.
        parsed = subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--target-path", str(staging)],
            cwd=project.project_dir,
            env={
                **os.environ,
                "DBT_PROFILES_DIR": str(project.profiles_dir),
                "DBT_LOG_PATH": str(staging),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            },
            capture_output=True,
            text=True,
        )
        if parsed.returncode != 0:
            raise RuntimeError(f"dbt parse failed in {project.project_dir}:\n{parsed.stdout}")
        os.replace(staging / "manifest.json", project.manifest_path)


prepare_dbt_project()


def dbt_profile_env(
    warehouse_url: str, source_schema: str, models_schema: str | None = None
) -> tuple[str, dict[str, str]]:
    """The dbt target and the variables dbt_project/profiles.yml reads, for a warehouse URL whose
    tables are in `source_schema`; models are built in `models_schema` (default: the same)."""
    if warehouse_url.startswith("duckdb:///"):
        return "duckdb", {
            # dbt runs inside dbt_project/: a relative path must mean what the pipeline means
            "SENSOR_DBT_DUCKDB_PATH": os.path.abspath(warehouse_url.removeprefix("duckdb:///")),
            "SENSOR_DBT_SOURCE_SCHEMA": source_schema,
            "SENSOR_DBT_SCHEMA": models_schema or source_schema,
        }
    url = _parse_url(warehouse_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(
            f"the dbt models run on a DuckDB or PostgreSQL warehouse, not {url.get_backend_name()}"
        )
    return "postgres", {
        "SENSOR_DBT_PG_HOST": url.host or "127.0.0.1",
        "SENSOR_DBT_PG_PORT": str(url.port or 5432),
        "SENSOR_DBT_PG_USER": url.username or "postgres",
        "DBT_ENV_SECRET_PG_PASSWORD": url.password or "",
        "SENSOR_DBT_PG_DATABASE": url.database or "postgres",
        "SENSOR_DBT_SOURCE_SCHEMA": source_schema,
        "SENSOR_DBT_SCHEMA": models_schema or source_schema,
    }


def _parse_url(warehouse_url: str) -> URL:
    try:
        return make_url(warehouse_url)
    except (ArgumentError, ValueError):
        raise ValueError(
            "could not parse the warehouse URL (not shown: it may hold a password)"
        ) from None


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
            return _dbt_cli(target).cli(args, context=context)


@cache
def _dbt_cli(target: str) -> DbtCliResource:
    # one per process and target: the resource asks `dbt --version` (a few seconds) once
    return DbtCliResource(project_dir=DBT_PROJECT, target=target, dbt_executable=DBT_EXECUTABLE)


class SensorDbtTranslator(DagsterDbtTranslator):
    """dbt models join the `analytics` group and recompute like the aggregates they read."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "analytics"

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return RECOMPUTE_ON_UPSTREAM_CHANGE

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return ["team:data-platform"]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), "domain": "iot", "tier": "gold"}


def partition_vars(window: dg.TimeWindow) -> dict[str, str]:
    """The dbt vars of a partition window: UTC dates, max_date exclusive."""
    return {
        "min_date": window.start.astimezone(UTC).date().isoformat(),
        "max_date": window.end.astimezone(UTC).date().isoformat(),
    }


@dbt_assets(
    manifest=DBT_PROJECT.manifest_path,
    project=DBT_PROJECT,
    dagster_dbt_translator=SensorDbtTranslator(),
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="warehouse",
    name="sensor_dbt_models",
)
def sensor_dbt_models(context: dg.AssetExecutionContext, dbt: DbtWarehouseResource):
    """`dbt build` of the selected models and their tests over the run's partition range: the
    daily models replace exactly the days of the range, the others are rebuilt."""
    dbt_vars = partition_vars(context.partition_time_window)
    context.log.info(
        f"dbt build {dbt_vars['min_date']} .. {dbt_vars['max_date']} (exclusive) "
        f"on {dbt.warehouse.warehouse().display_url}"
    )
    invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
    yield from invocation.stream()
    # Each run leaves ~3 MB of artifacts in a folder of its own; a long-lived code server would
    # pile them up. A failed run never gets here, so its artifacts stay for debugging.
    shutil.rmtree(invocation.target_path, ignore_errors=True)


analytics_job = dg.define_asset_job(
    "analytics_job", selection=[sensor_dbt_models], partitions_def=DAILY
)
