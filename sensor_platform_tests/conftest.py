"""Shared fixtures: temporary lakes, a local Kafka-protocol broker (Tansu), and the real servers
this machine runs (PostgreSQL, MariaDB).

A test that needs a server calls `require_server(...)`. Outside CI it skips with a printed reason
when the server is absent; in CI (CI=true) an absent server is a failure, never a skip.

Tests that use a server fixture, or are parametrized on a server engine ("postgres", "mysql"), are
marked `integration` here; modules that run Dagster jobs, a daemon or a browser say so themselves
(`pytestmark`). `make test-fast` runs the rest.
"""

import io
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from sensor_platform.lake.store import Lake

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "SENSOR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("SENSOR_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


SERVER_FIXTURES = {"postgres_url", "mysql_url", "kafka_broker", "s3_endpoint"}
SERVER_ENGINES = {"postgres", "mysql"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or SERVER_ENGINES & {
            value for value in params.values() if isinstance(value, str)
        }:
            item.add_marker(pytest.mark.integration)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def server_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    if server_listening(host, port):
        return
    reason = f"{name} is not listening on {host}:{port}"
    if in_ci():
        pytest.fail(f"{reason}; CI must run this test")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def postgres_url() -> str:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture
def mysql_url() -> str:
    require_server("MariaDB", "127.0.0.1", 3306)
    return MYSQL_URL


@pytest.fixture(scope="session")
def kafka_broker():
    """One local Kafka-protocol broker (Tansu, in memory) shared by every Kafka test of the
    session; tests keep apart by using topics of their own."""
    from sensor_platform.kafka.broker import start_local_broker

    with start_local_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (a moto server on a free loopback port) for the whole test session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass(frozen=True)
class DemoCheckout:
    root: Path  # laid out like a checkout after `make demo`: data/, .dagster_home/
    summary: dict
    printed: str


@pytest.fixture(scope="session")
def demo_checkout(tmp_path_factory) -> DemoCheckout:
    """`make demo` run once for the session (a whole simulated day) in a folder of its own, with
    the embedded defaults; the demo's test and the README examples' tests read what it left."""
    from sensor_platform.demo import run_demo

    root = tmp_path_factory.mktemp("checkout")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(root / ".dagster_home"))
        env.chdir(root)
        for name in ("SENSOR_DATA_DIR", "SENSOR_LAKE_ROOT", "SENSOR_WAREHOUSE_URL",
                     "SENSOR_ANALYTICS_DB"):  # fmt: skip
            env.delenv(name, raising=False)
        with redirect_stdout(printed):
            summary = run_demo(days=1)
    return DemoCheckout(root, summary, printed.getvalue())


def _admin_connection(postgres_url: str):
    """A psycopg2 connection of the test server's admin, in autocommit (CREATE DATABASE needs it)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    admin_url = make_url(postgres_url).set(drivername="postgresql")
    admin = psycopg2.connect(admin_url.render_as_string(hide_password=False))
    admin.autocommit = True
    return admin


@contextmanager
def postgres_role(postgres_url: str, prefix: str, *, timezone: str | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL login role with a schema of its own (trust auth), dropped after:
    yields the role name. Sessions left behind (e.g. by a killed daemon) are terminated first."""
    from psycopg2 import sql

    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _admin_connection(postgres_url)
    name = sql.Identifier(role)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(name))
        if timezone:
            cur.execute(sql.SQL("ALTER ROLE {} SET timezone = %s").format(name), (timezone,))
        cur.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(name, name))
    try:
        yield role
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))
        admin.close()


@contextmanager
def postgres_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (no table in it), dropped after with the sessions still
    connected to it (e.g. a killed daemon's): yields its name."""
    from psycopg2 import sql

    database = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = _admin_connection(postgres_url)
    name = sql.Identifier(database)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield database
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.close()


@pytest.fixture
def production_instance(postgres_url, s3_endpoint, monkeypatch) -> Iterator[str]:
    """The repository's dagster.yaml, as its text, on a new, empty PostgreSQL database: the
    DAGSTER_PG_* and compute-log variables it reads are set in this process's environment (and so
    in a daemon's and its run workers'); compute logs go to a bucket of the moto S3 server."""
    import boto3
    from sqlalchemy.engine import make_url

    bucket = f"dagster-logs-{uuid.uuid4().hex[:8]}"
    for name, value in {
        "DAGSTER_COMPUTE_LOGS_BUCKET": bucket,
        "DAGSTER_COMPUTE_LOGS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    url = make_url(postgres_url)
    with postgres_database(postgres_url, "sensor_dagster") as database:
        for name, value in {
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "unused-with-trust-auth",
            "DAGSTER_PG_DB": database,
        }.items():
            monkeypatch.setenv(name, value)
        yield (REPO / "dagster.yaml").read_text()
