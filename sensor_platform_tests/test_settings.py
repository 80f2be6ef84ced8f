"""Settings: every variable read in one place, validated with a message that names it, secrets
never read as values, and the README's table, .env.example and the code listing the same ones."""

import re
from pathlib import Path

import pytest

from sensor_platform.settings import SECRETS, VARIABLES, Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
# Read by dagster.yaml (the production instance) or docker-compose.yml only, not by the platform.
INSTANCE_AND_COMPOSE = {
    "DAGSTER_COMPUTE_LOGS_BUCKET",
    "DAGSTER_COMPUTE_LOGS_ENDPOINT_URL",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
    "MYSQL_ROOT_PASSWORD",
    "MYSQL_PASSWORD",
}
NAME = r"((?:SENSOR|AWS|DAGSTER_PG|DAGSTER_COMPUTE_LOGS|MYSQL)_[A-Z0-9_]+)"


def test_defaults_are_the_embedded_ones():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.default_warehouse_url == "duckdb:///data/warehouse.duckdb"
    assert settings.secrets_set == frozenset()
    moved = load_settings({"SENSOR_DATA_DIR": "/srv/sensors"})
    assert (moved.lake_root, moved.analytics_db) == (
        "/srv/sensors/lake",
        "/srv/sensors/analytics.duckdb",
    )


def test_every_knob_is_read_and_parsed():
    settings = load_settings(
        {
            "SENSOR_KAFKA_TOPICS": " a, b ,,c ",
            "SENSOR_DUCKDB_THREADS": "4",
            "SENSOR_SIMULATOR_ANOMALY_RATE": "0.25",
            "SENSOR_ALERT_MAX_AGE_HOURS": "None",
            "SENSOR_SLACK_WEBHOOK_MIN_SEVERITY": "critical",
            "SENSOR_SLACK_WEBHOOK_SITES": "GH1, GH2",
            "SENSOR_SOURCE": "kafka",
        }
    )
    assert settings.kafka_topics == ("a", "b", "c")
    assert (settings.duckdb_threads, settings.simulator_anomaly_rate) == (4, 0.25)
    assert settings.alert_max_age_hours is None and settings.source == "kafka"
    assert settings.channels["slack"].min_severity == "critical"
    assert settings.channels["slack"].sites == ("GH1", "GH2")
    assert settings.channels["discord"].sites == ()


def test_the_docs_link_follows_the_docs_port_unless_a_base_url_is_set():
    assert load_settings({}).docs_base_url == "http://127.0.0.1:3030"
    moved = load_settings({"SENSOR_DOCS_PORT": "8123"})
    assert (moved.docs_port, moved.docs_base_url) == (8123, "http://127.0.0.1:8123")
    served = load_settings({"SENSOR_DOCS_BASE_URL": "https://dq.example.com/data_quality/"})
    assert served.docs_base_url == "https://dq.example.com/data_quality"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENSOR_PARTITIONS_START", "March 1st"),
        ("SENSOR_SOURCE", "mqtt-ish"),
        ("SENSOR_KAFKA_MAX_RECORDS_PER_RUN", "0"),
        ("SENSOR_KAFKA_POLL_INTERVAL_SECONDS", "soon"),
        ("SENSOR_KAFKA_ON_GAP", "ignore"),
        ("SENSOR_KAFKA_MAX_ATTEMPTS", "0"),
        ("SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS", "-5"),
        ("SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS", "an hour"),
        ("SENSOR_SIMULATOR_LATE_RATE", "1.5"),
        ("SENSOR_ALERT_MAX_AGE_HOURS", "-1"),
        ("SENSOR_DUCKDB_THREADS", "two"),
        ("SENSOR_LANDING_MAX_RUNTIME_SECONDS", "0"),
        ("SENSOR_DOCS_PORT", "0"),
        ("SENSOR_DOCS_BASE_URL", "quality.example.com/docs"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name, value):
    with pytest.raises(ValueError, match=name) as error:
        load_settings({name: value})
    assert value in str(error.value)


def test_kafka_retries_are_read_and_a_max_delay_below_the_first_fails():
    settings = load_settings(
        {
            "SENSOR_KAFKA_MAX_ATTEMPTS": "2",
            "SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS": "3",
            "SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS": "5",
        }
    )
    assert (
        settings.kafka_max_attempts,
        settings.kafka_retry_first_delay_seconds,
        settings.kafka_retry_max_delay_seconds,
    ) == (2, 3, 5)
    with pytest.raises(ValueError, match="SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS must be at least"):
        load_settings({"SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS": "30"})  # first delay: 60


def test_secrets_are_never_read_as_values():
    secret = "postgresql+psycopg2://u:hunter2@db/x"
    settings = load_settings({"SENSOR_WAREHOUSE_URL": secret, "SENSOR_SLACK_WEBHOOK_URL": "x"})
    assert settings.secrets_set == {"SENSOR_WAREHOUSE_URL", "SENSOR_SLACK_WEBHOOK_URL"}
    assert "hunter2" not in repr(settings)
    assert {"AWS_SECRET_ACCESS_KEY", "SENSOR_KAFKA_SASL_PASSWORD"} <= SECRETS


def test_readme_env_example_and_code_list_the_same_variables():
    in_code = {v.name for v in VARIABLES}
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    in_readme = {name for row in rows for name in re.findall(rf"`{NAME}`", row)}
    in_env_example = set(re.findall(rf"^#? ?{NAME}=", (REPO / ".env.example").read_text(), re.M))
    assert in_readme == in_code | INSTANCE_AND_COMPOSE
    assert in_env_example == in_code | INSTANCE_AND_COMPOSE
    # and nothing else in the package reads an environment variable
    readers = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "sensor_platform").rglob("*.py")
        if re.search(r"os\.environ|os\.getenv", path.read_text())
    ]
    assert sorted(readers) == [
        "sensor_platform/analytics/dbt_project.py",  # hands dbt the process environment
        "sensor_platform/defs/dbt.py",  # sets dbt's connection around its start, then restores
        "sensor_platform/demo.py",  # DAGSTER_HOME, Dagster's own variable
        "sensor_platform/settings.py",
    ]
