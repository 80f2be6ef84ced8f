"""The dashboard on the production setup's stores: the ledger and quality results read from a
PostgreSQL warehouse in read-only transactions that give up on a writer's table lock instead of
queueing behind it, and an S3 lake (a moto server) read through pyarrow, with no DuckDB extension."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sensor_platform.dashboard import alarms, overview, pages
from sensor_platform.dashboard.relations import open_episodes
from sensor_platform.dashboard.sources import DashboardConfig, DashboardSource
from sensor_platform.datasets import REGISTRY
from sensor_platform.detection.rules import load_rules
from sensor_platform.lake.store import Lake
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.quality.results import RESULTS_TABLE
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.conftest import postgres_role
from sensor_platform_tests.dashboard_data import HOSTILE_SITE, build_small_platform

END = datetime(2026, 3, 2, 12, tzinfo=UTC)
STALE = load_rules().stale_after


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return build_small_platform(tmp_path_factory.mktemp("dashboard-servers"), end=END, hours=3)


@pytest.fixture
def pg_url(postgres_url):
    with postgres_role(postgres_url, "sensor_dashboard_test") as role:
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)


def test_a_postgres_warehouse_is_read_in_read_only_transactions(platform, pg_url, tmp_path):
    local = Warehouse(platform.warehouse_url)
    server = Warehouse(pg_url)
    for spec in (LEDGER_TABLE, RESULTS_TABLE):
        server.append(spec, local.read(spec))
    source = DashboardSource(
        DashboardConfig(
            analytics_db=str(tmp_path / "not-used.duckdb"),
            lake_root=platform.lake.root_uri,
            warehouse_url=pg_url,
            cache_ttl_s=0,
        ),
        clock=lambda: END,  # rows of the COPY_HORIZON before the data's end
    )
    assert "warehouse postgresql" in source.status().reading
    window = alarms.AlarmFilter(platform.start, platform.end)
    from_server = source.read(pages.alarms_page, chosen=window)["notices"]
    with DashboardSource(
        DashboardConfig(platform.analytics_db, platform.lake.root_uri, platform.warehouse_url)
    ).connect() as con:
        from_file = alarms.notices(con, alarms.episodes(con, window)["episode_id"].tolist())
    columns = ["episode_id", "channel", "event", "state"]
    assert (
        from_server[columns].sort_values(columns).values.tolist()
        == from_file[columns].sort_values(columns).values.tolist()
    )
    failures = source.read(pages.quality_page, since=platform.start)["failures"]
    assert failures["severity"].tolist() == ["error", "warn"]

    # A writer's schema change holds the table: the dashboard gives up after its lock timeout
    # (and says so) instead of queueing behind it, and every later writer behind the dashboard.
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    with engine.connect() as writer:
        writer.execute(sa.text(f'LOCK TABLE "{LEDGER_TABLE.name}" IN ACCESS EXCLUSIVE MODE'))
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            source.read(pages.alarms_page, chosen=window)
        writer.rollback()
    assert len(source.read(pages.alarms_page, chosen=window)["notices"]) == len(from_server)


def test_an_s3_lake_is_read_without_duckdb_extensions(platform, s3_endpoint, tmp_path):
    s3 = {"s3_endpoint_url": s3_endpoint, "s3_access_key": "testing", "s3_secret_key": "testing"}
    lake = Lake("s3://dashboard-lake/prod", **s3)
    for dataset in REGISTRY:
        for file in platform.lake.list_files(dataset.prefix):
            lake.write_parquet(file.path, platform.lake.read_parquet([file.path], dataset.schema))
    source = DashboardSource(
        DashboardConfig(
            analytics_db=str(tmp_path / "analytics.duckdb"),  # an S3 lake gets no views anyway
            lake_root="s3://dashboard-lake/prod",
            warehouse_url=f"duckdb:///{tmp_path}/warehouse.duckdb",
            **s3,
        )
    )
    with source.connect() as con:
        sites = overview.sites(con, now=END, open_now=open_episodes(con, STALE))
        choices = pages.explorer_choices(con)
    with DashboardSource(
        DashboardConfig(platform.analytics_db, platform.lake.root_uri, platform.warehouse_url)
    ).connect() as con:
        local = overview.sites(con, now=END, open_now=open_episodes(con, STALE))
    assert sites.drop(columns="last_reading").equals(local.drop(columns="last_reading"))
    assert HOSTILE_SITE in set(sites["site_id"])
    assert choices["data_end"] == platform.end
