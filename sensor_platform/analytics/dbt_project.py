"""The dbt project (dbt_project/): where it is, its manifest, and dbt's connection for a warehouse.

The manifest (target/manifest.json) is written at install or build time by `sensor-platform
dbt-parse` (make install, CI, the Dockerfile), never when a code location loads: parsing is a dbt
subprocess of several seconds, and it opens no connection.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# What `dbt parse` reads: a change to any of these makes the manifest stale.
PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def project_dir(configured: str | None = None) -> Path:
    """The configured project folder, else dbt_project/ of this source checkout."""
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "dbt_project"


def manifest_path(project: Path) -> Path:
    return project / "target" / "manifest.json"


def dbt_executable() -> str:
    """The dbt installed next to this Python (its adapters are the ones installed); `dbt` on PATH
    holds no virtualenv unless it is activated."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def manifest_is_stale(project: Path) -> bool:
    """True when target/manifest.json is missing or older than a file of the project."""
    manifest = manifest_path(project)
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    for name in PROJECT_SOURCES:
        path = project / name
        files = path.rglob("*") if path.is_dir() else [path]
        if any(f.is_file() and f.stat().st_mtime > built for f in files):
            return True
    return False


def prepare_manifest(project: Path) -> bool:
    """Write the manifest with `dbt parse` when it is stale (offline: parsing opens no
    connection), swapping it in whole. Returns whether it parsed."""
    if not manifest_is_stale(project):
        return False
    staging = project / "target" / "prepare"
    staging.mkdir(parents=True, exist_ok=True)
    parsed = subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--target-path", str(staging)],
        cwd=project,
        env={
            **os.environ,
            "DBT_PROFILES_DIR": str(project),
            "DBT_LOG_PATH": str(staging),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        capture_output=True,
        text=True,
    )
    if parsed.returncode != 0:
        raise RuntimeError(f"dbt parse failed in {project}:\n{parsed.stdout}{parsed.stderr}")
    os.replace(staging / "manifest.json", manifest_path(project))
    return True


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


def partition_vars(start: datetime, end: datetime) -> dict[str, str]:
    """The dbt vars of a partition window: UTC dates, max_date exclusive."""
    return {
        "min_date": start.astimezone(UTC).date().isoformat(),
        "max_date": end.astimezone(UTC).date().isoformat(),
    }
