"""The same dbt models on PostgreSQL and on DuckDB, built by the same Dagster assets from the same
published aggregate rows, give the same results.

PostgreSQL (db `test`) gets a role and schema of its own per test: the warehouse writes into the
role's schema ("$user" on the search path) and dbt builds its models next to them, so nothing
touches `public`; both are dropped at the end. The role's sessions run in America/Los_Angeles, so a model
that took a day boundary from the session time zone would disagree with DuckDB."""

import math
from datetime import datetime

import pytest
from sqlalchemy.engine import make_url

from sensor_platform_tests.conftest import postgres_role
from sensor_platform_tests.test_dbt import MODELS, model_rows, run_dbt, seed_warehouse

pytestmark = pytest.mark.integration  # Dagster runs

GRAIN = {
    "devices": ("device_id",),
    "site_daily_health": ("day", "site_id", "metric"),
    "device_daily_uptime": ("day", "device_id"),
    "site_metric_last_7_days": ("site_id", "metric", "day"),
    "alert_history": ("notification_id", "channel"),
}


@pytest.fixture
def postgres_warehouse_url(postgres_url):
    with postgres_role(postgres_url, "sensor_dbt_test", timezone="America/Los_Angeles") as role:
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b  # aware datetimes compare as instants
    return type(a) is type(b) and a == b


def test_postgres_and_duckdb_build_the_same_models(postgres_warehouse_url, tmp_path):
    duckdb_url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    for url in (duckdb_url, postgres_warehouse_url):
        seed_warehouse(url)
        result = run_dbt(url, "2026-03-01", "2026-03-02")
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())

    for model in sorted(MODELS):
        on_duckdb = model_rows(duckdb_url, model, ", ".join(GRAIN[model]))
        on_postgres = model_rows(postgres_warehouse_url, model, ", ".join(GRAIN[model]))
        assert on_duckdb, model
        assert list(on_postgres[0]) == list(on_duckdb[0]), model  # same columns, same order
        keyed = {tuple(r[k] for k in GRAIN[model]): r for r in on_postgres}
        assert len(keyed) == len(on_duckdb), model
        for row in on_duckdb:
            other = keyed[tuple(row[k] for k in GRAIN[model])]
            different = {c: (v, other[c]) for c, v in row.items() if not _same(v, other[c])}
            assert not different, (model, different)
