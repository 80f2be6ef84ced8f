"""Every environment variable the platform reads, in one place, with its default and meaning.

`load_settings()` is the only reader of the environment: the code location calls it once when it
builds its definitions (never at import), and everything else receives plain values. Secrets
(passwords inside URLs, keys, webhook URLs) are never part of the settings: `Settings.secrets_set`
only says which of them are set, and resources receive them as Dagster `EnvVar`s, so the UI shows
the variable's name, never its value; the dashboard, which has no Dagster to resolve them, reads
one with `read_secret` at the moment it connects. `VARIABLES` is the table the README and
`.env.example` list.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class Variable:
    name: str
    default: str  # as documented ("–" when unset means off)
    meaning: str
    secret: bool = False


# RabbitMQ hands a dead worker's unacknowledged task to another worker at once (see defs/executor.py)
DEFAULT_CELERY_BROKER_URL = "pyamqp://guest@127.0.0.1:5672//"
DEFAULT_CELERY_BACKEND_URL = "rpc://"

VARIABLES: tuple[Variable, ...] = (
    # -- where data lands
    Variable("SENSOR_DATA_DIR", "data", "base folder of the embedded defaults"),
    Variable(
        "SENSOR_LAKE_ROOT", "$SENSOR_DATA_DIR/lake", "lake root: a folder or s3://bucket/prefix"
    ),
    Variable("SENSOR_S3_ENDPOINT_URL", "–", "S3-compatible endpoint (MinIO, moto)"),
    Variable("AWS_REGION", "us-east-1", "S3 region"),
    Variable("AWS_ACCESS_KEY_ID", "–", "S3 access key", secret=True),
    Variable("AWS_SECRET_ACCESS_KEY", "–", "S3 secret key", secret=True),
    Variable(
        "SENSOR_WAREHOUSE_URL",
        "duckdb:///$SENSOR_DATA_DIR/warehouse.duckdb",
        "SQL warehouse: duckdb:///file, postgresql+psycopg2://… or mysql+pymysql://…",
        secret=True,
    ),
    Variable(
        "SENSOR_ANALYTICS_DB", "$SENSOR_DATA_DIR/analytics.duckdb", "the analysts' DuckDB file"
    ),
    Variable("SENSOR_PARTITIONS_START", "2026-01-01", "first partition (UTC date)"),
    # -- ingestion
    Variable("SENSOR_SOURCE", "simulator", "which source's sensor runs: simulator, kafka or mqtt"),
    Variable("SENSOR_FLEET_FILE", "packaged fleet", "the fleet registry / simulator fleet (JSON)"),
    Variable("SENSOR_FEED_INTERVAL_SECONDS", "30", "how often the simulated feed sensor ticks"),
    Variable("SENSOR_SIMULATOR_SEED", "42", "the simulated fleet's random seed"),
    Variable("SENSOR_SIMULATOR_ANOMALY_RATE", "0.1", "injected anomaly episodes per device-hour"),
    Variable("SENSOR_SIMULATOR_LATE_RATE", "0.01", "share of simulated messages that arrive late"),
    Variable(
        "SENSOR_SIMULATOR_MALFORMED_RATE",
        "0",
        "share of simulated messages sent malformed, for the quarantine (the demo: 0.002)",
    ),
    Variable("SENSOR_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka bootstrap servers"),
    Variable("SENSOR_KAFKA_TOPICS", "sensor-readings", "topics to read, comma-separated"),
    Variable("SENSOR_KAFKA_TOPIC_PATTERN", "–", "a regex of topics to read instead of a list"),
    Variable("SENSOR_KAFKA_MAX_RECORDS_PER_RUN", "50000", "offsets per ingestion run (chunk size)"),
    Variable("SENSOR_KAFKA_POLL_INTERVAL_SECONDS", "30", "how often the Kafka sensor polls"),
    Variable("SENSOR_KAFKA_ON_GAP", "fail", "when the broker lost data: fail, earliest or latest"),
    Variable("SENSOR_KAFKA_CONSUMER_GROUP", "–", "also commit landed offsets to this group"),
    Variable(
        "SENSOR_KAFKA_MAX_ATTEMPTS", "8", "attempts at landing a range before it is stuck (1: none)"
    ),
    Variable(
        "SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS", "60", "wait before a failed range's 2nd attempt"
    ),
    Variable(
        "SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS", "3600", "the wait doubles per failure up to this"
    ),
    Variable("SENSOR_KAFKA_SECURITY_PROTOCOL", "–", "kafka-python security_protocol"),
    Variable("SENSOR_KAFKA_SASL_MECHANISM", "–", "kafka-python sasl_mechanism"),
    Variable("SENSOR_KAFKA_SASL_USERNAME", "–", "kafka-python sasl_plain_username"),
    Variable("SENSOR_KAFKA_SASL_PASSWORD", "–", "kafka-python sasl_plain_password", secret=True),
    Variable("SENSOR_KAFKA_SSL_CAFILE", "–", "kafka-python ssl_cafile"),
    Variable("SENSOR_MQTT_HOST", "127.0.0.1", "MQTT broker host"),
    Variable("SENSOR_MQTT_PORT", "1883", "MQTT broker port (8883 is usual for TLS)"),
    Variable(
        "SENSOR_MQTT_TOPICS", "sensors/#", "topic filters subscribed at QoS 1, comma-separated"
    ),
    Variable(
        "SENSOR_MQTT_TOPIC_TEMPLATE",
        "–",
        "topic levels that carry ids, e.g. sensors/{site_id}/{device_id}",
    ),
    Variable(
        "SENSOR_MQTT_CLIENT_ID",
        "sensor-platform",
        "the persistent session's client id (no other client may use it)",
    ),
    Variable("SENSOR_MQTT_PROTOCOL", "5", "MQTT version: 5 or 3.1.1"),
    Variable("SENSOR_MQTT_USERNAME", "–", "MQTT username"),
    Variable("SENSOR_MQTT_PASSWORD", "–", "MQTT password", secret=True),
    Variable("SENSOR_MQTT_TLS_CA_FILE", "–", "TLS on, the broker verified against this CA file"),
    Variable(
        "SENSOR_MQTT_SESSION_EXPIRY_SECONDS",
        "604800",
        "MQTT 5: how long the broker keeps the session and its queue",
    ),
    Variable("SENSOR_MQTT_KEEPALIVE_SECONDS", "60", "MQTT keepalive"),
    Variable("SENSOR_MQTT_MAX_MESSAGES_PER_RUN", "50000", "messages one run drains at most"),
    Variable("SENSOR_MQTT_MAX_SECONDS_PER_RUN", "30", "seconds one run drains at most"),
    Variable(
        "SENSOR_MQTT_IDLE_SECONDS", "1", "a run stops draining after this long without a message"
    ),
    Variable(
        "SENSOR_MQTT_POLL_INTERVAL_SECONDS", "30", "how often the MQTT sensor asks for a drain"
    ),
    Variable(
        "SENSOR_MQTT_CONNECT_TIMEOUT_SECONDS",
        "10",
        "limit on connecting, subscribing and acknowledging",
    ),
    # -- pipeline tuning
    Variable("SENSOR_MAX_MESSAGE_BYTES", "1048576", "larger messages are quarantined"),
    Variable("SENSOR_MAX_ID_LENGTH", "256", "longer device, site or metric ids are quarantined"),
    Variable("SENSOR_FUTURE_TOLERANCE_MINUTES", "5", "event times this far past receipt are kept"),
    Variable("SENSOR_PAST_HORIZON_DAYS", "30", "older event times are quarantined"),
    Variable("SENSOR_LANDING_RETENTION_HOURS", "24", "merged landing files are kept this long"),
    Variable(
        "SENSOR_LANDING_MAX_RUNTIME_SECONDS",
        "900",
        "a landing run still running after this is failed by run monitoring (dagster/max_runtime)",
    ),
    Variable("SENSOR_DUCKDB_MEMORY_LIMIT", "1GB", "DuckDB memory per compaction or aggregation"),
    Variable("SENSOR_DUCKDB_THREADS", "2", "DuckDB threads per compaction or aggregation"),
    Variable("SENSOR_RAW_SENSOR_INTERVAL_SECONDS", "30", "how often landed batches are looked for"),
    # -- quality, anomalies, alerts
    Variable("SENSOR_QUALITY_RULES_FILE", "packaged rules", "data-quality thresholds override"),
    Variable("SENSOR_ANOMALY_RULES_FILE", "packaged rules", "anomaly detection rules (JSON)"),
    Variable("SENSOR_DOCS_PORT", "3030", "port of the Data Docs server (`make docs`, `make ui`)"),
    Variable(
        "SENSOR_DOCS_BASE_URL",
        "http://127.0.0.1:$SENSOR_DOCS_PORT",
        "where the checks link Data Docs pages: a server of <lake>/docs/data_quality",
    ),
    Variable("SENSOR_DISCORD_WEBHOOK_URL", "–", "Discord channel webhook", secret=True),
    Variable("SENSOR_DISCORD_WEBHOOK_MIN_SEVERITY", "warning", "warning or critical"),
    Variable("SENSOR_DISCORD_WEBHOOK_SITES", "–", "sites routed to Discord (empty: all)"),
    Variable("SENSOR_SLACK_WEBHOOK_URL", "–", "Slack incoming webhook", secret=True),
    Variable("SENSOR_SLACK_WEBHOOK_MIN_SEVERITY", "warning", "warning or critical"),
    Variable("SENSOR_SLACK_WEBHOOK_SITES", "–", "sites routed to Slack (empty: all)"),
    Variable("SENSOR_ALERT_WEBHOOK_URL", "–", "generic JSON webhook", secret=True),
    Variable("SENSOR_ALERT_WEBHOOK_MIN_SEVERITY", "warning", "warning or critical"),
    Variable("SENSOR_ALERT_WEBHOOK_SITES", "–", "sites routed to the webhook (empty: all)"),
    Variable(
        "SENSOR_ALERT_MAX_AGE_HOURS",
        "24",
        "older episodes are recorded as expired, not sent (or none)",
    ),
    # -- where a run's steps execute
    Variable(
        "SENSOR_RUN_EXECUTOR",
        "local",
        "where a run's steps execute: local (the run's own process) or celery (Celery workers)",
    ),
    Variable(
        "SENSOR_CELERY_BROKER_URL",
        DEFAULT_CELERY_BROKER_URL,
        "the Celery broker of the workers (SENSOR_RUN_EXECUTOR=celery)",
        secret=True,
    ),
    Variable(
        "SENSOR_CELERY_BACKEND_URL",
        DEFAULT_CELERY_BACKEND_URL,
        "where Celery workers return step results (SENSOR_RUN_EXECUTOR=celery)",
        secret=True,
    ),
    # -- dbt
    Variable("SENSOR_DBT_PROJECT_DIR", "dbt_project/ of the checkout", "the dbt project folder"),
    # -- dashboard
    Variable("SENSOR_DASHBOARD_HOST", "127.0.0.1", "address the dashboard listens on"),
    Variable("SENSOR_DASHBOARD_PORT", "8501", "port of the dashboard"),
    Variable(
        "SENSOR_DASHBOARD_CACHE_TTL_SECONDS", "30", "how long the dashboard reuses a query result"
    ),
)
SECRETS = frozenset(v.name for v in VARIABLES if v.secret)
# Each alert channel's variables: <prefix>_URL (a secret), <prefix>_MIN_SEVERITY, <prefix>_SITES.
CHANNEL_PREFIXES = {
    "discord": "SENSOR_DISCORD_WEBHOOK",
    "slack": "SENSOR_SLACK_WEBHOOK",
    "webhook": "SENSOR_ALERT_WEBHOOK",
}
SOURCES = ("simulator", "kafka", "mqtt")
RUN_EXECUTORS = ("local", "celery")
ON_GAP_POLICIES = ("fail", "earliest", "latest")


@dataclass(frozen=True)
class ChannelRouting:
    """An alert channel's routing; its URL is a secret and is not part of the settings."""

    min_severity: str = "warning"
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The platform's configuration as plain values (see VARIABLES for each one's meaning)."""

    data_dir: str = "data"
    lake_root: str = "data/lake"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    analytics_db: str = "data/analytics.duckdb"
    partitions_start: str = "2026-01-01"
    source: str = "simulator"
    fleet_file: str | None = None
    feed_interval_seconds: int = 30
    simulator_seed: int = 42
    simulator_anomaly_rate: float = 0.1
    simulator_late_rate: float = 0.01
    simulator_malformed_rate: float = 0.0
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topics: tuple[str, ...] = ("sensor-readings",)
    kafka_topic_pattern: str | None = None
    kafka_max_records_per_run: int = 50_000
    kafka_poll_interval_seconds: int = 30
    kafka_on_gap: str = "fail"
    kafka_consumer_group: str | None = None
    kafka_max_attempts: int = 8
    kafka_retry_first_delay_seconds: int = 60
    kafka_retry_max_delay_seconds: int = 3600
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_ssl_cafile: str | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_topics: tuple[str, ...] = ("sensors/#",)
    mqtt_topic_template: str | None = None
    mqtt_client_id: str = "sensor-platform"
    mqtt_protocol: str = "5"
    mqtt_username: str | None = None
    mqtt_tls_ca_file: str | None = None
    mqtt_session_expiry_seconds: int = 604_800
    mqtt_keepalive_seconds: int = 60
    mqtt_max_messages_per_run: int = 50_000
    mqtt_max_seconds_per_run: int = 30
    mqtt_idle_seconds: float = 1.0
    mqtt_poll_interval_seconds: int = 30
    mqtt_connect_timeout_seconds: float = 10.0
    max_message_bytes: int = 1_048_576
    max_id_length: int = 256
    future_tolerance_minutes: int = 5
    past_horizon_days: int = 30
    landing_retention_hours: int = 24
    landing_max_runtime_seconds: int = 900
    duckdb_memory_limit: str = "1GB"
    duckdb_threads: int = 2
    raw_sensor_interval_seconds: int = 30
    quality_rules_file: str | None = None
    anomaly_rules_file: str | None = None
    docs_port: int = 3030
    docs_base_url: str = "http://127.0.0.1:3030"
    channels: dict[str, ChannelRouting] = field(
        default_factory=lambda: {kind: ChannelRouting() for kind in CHANNEL_PREFIXES}
    )
    alert_max_age_hours: float | None = 24.0
    run_executor: str = "local"
    dbt_project_dir: str | None = None
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    dashboard_cache_ttl_seconds: int = 30
    secrets_set: frozenset[str] = frozenset()  # which secret variables are set (never values)

    @property
    def default_warehouse_url(self) -> str:
        return f"duckdb:///{self.data_dir}/warehouse.duckdb"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable; a bad value fails here, naming the variable."""
    env = _Env(os.environ if environ is None else environ)
    data_dir = env.text("SENSOR_DATA_DIR", "data")
    docs_port = env.integer("SENSOR_DOCS_PORT", 3030, minimum=1)
    first_delay = env.integer("SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS", 60, minimum=0)
    max_delay = env.integer("SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS", 3600, minimum=0)
    if max_delay < first_delay:
        raise ValueError(
            "SENSOR_KAFKA_RETRY_MAX_DELAY_SECONDS must be at least "
            f"SENSOR_KAFKA_RETRY_FIRST_DELAY_SECONDS ({first_delay}), got {max_delay}"
        )
    return Settings(
        data_dir=data_dir,
        lake_root=env.text("SENSOR_LAKE_ROOT", f"{data_dir}/lake"),
        s3_endpoint_url=env.optional("SENSOR_S3_ENDPOINT_URL"),
        s3_region=env.text("AWS_REGION", "us-east-1"),
        analytics_db=env.text("SENSOR_ANALYTICS_DB", f"{data_dir}/analytics.duckdb"),
        partitions_start=env.day("SENSOR_PARTITIONS_START", "2026-01-01"),
        source=env.choice("SENSOR_SOURCE", SOURCES, "simulator"),
        fleet_file=env.optional("SENSOR_FLEET_FILE"),
        feed_interval_seconds=env.positive_int("SENSOR_FEED_INTERVAL_SECONDS", 30),
        simulator_seed=env.integer("SENSOR_SIMULATOR_SEED", 42),
        simulator_anomaly_rate=env.share("SENSOR_SIMULATOR_ANOMALY_RATE", 0.1),
        simulator_late_rate=env.share("SENSOR_SIMULATOR_LATE_RATE", 0.01),
        simulator_malformed_rate=env.share("SENSOR_SIMULATOR_MALFORMED_RATE", 0.0),
        kafka_bootstrap_servers=env.text("SENSOR_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        kafka_topics=env.items("SENSOR_KAFKA_TOPICS", ("sensor-readings",)),
        kafka_topic_pattern=env.optional("SENSOR_KAFKA_TOPIC_PATTERN"),
        kafka_max_records_per_run=env.positive_int("SENSOR_KAFKA_MAX_RECORDS_PER_RUN", 50_000),
        kafka_poll_interval_seconds=env.positive_int("SENSOR_KAFKA_POLL_INTERVAL_SECONDS", 30),
        kafka_on_gap=env.choice("SENSOR_KAFKA_ON_GAP", ON_GAP_POLICIES, "fail"),
        kafka_consumer_group=env.optional("SENSOR_KAFKA_CONSUMER_GROUP"),
        kafka_max_attempts=env.positive_int("SENSOR_KAFKA_MAX_ATTEMPTS", 8),
        kafka_retry_first_delay_seconds=first_delay,
        kafka_retry_max_delay_seconds=max_delay,
        kafka_security_protocol=env.optional("SENSOR_KAFKA_SECURITY_PROTOCOL"),
        kafka_sasl_mechanism=env.optional("SENSOR_KAFKA_SASL_MECHANISM"),
        kafka_sasl_username=env.optional("SENSOR_KAFKA_SASL_USERNAME"),
        kafka_ssl_cafile=env.optional("SENSOR_KAFKA_SSL_CAFILE"),
        mqtt_host=env.text("SENSOR_MQTT_HOST", "127.0.0.1"),
        mqtt_port=env.port("SENSOR_MQTT_PORT", 1883),
        mqtt_topics=env.items("SENSOR_MQTT_TOPICS", ("sensors/#",)),
        mqtt_topic_template=env.optional("SENSOR_MQTT_TOPIC_TEMPLATE"),
        mqtt_client_id=env.text("SENSOR_MQTT_CLIENT_ID", "sensor-platform"),
        mqtt_protocol=env.choice("SENSOR_MQTT_PROTOCOL", ("5", "3.1.1"), "5"),
        mqtt_username=env.optional("SENSOR_MQTT_USERNAME"),
        mqtt_tls_ca_file=env.optional("SENSOR_MQTT_TLS_CA_FILE"),
        mqtt_session_expiry_seconds=env.positive_int("SENSOR_MQTT_SESSION_EXPIRY_SECONDS", 604_800),
        mqtt_keepalive_seconds=env.positive_int("SENSOR_MQTT_KEEPALIVE_SECONDS", 60),
        mqtt_max_messages_per_run=env.positive_int("SENSOR_MQTT_MAX_MESSAGES_PER_RUN", 50_000),
        mqtt_max_seconds_per_run=env.positive_int("SENSOR_MQTT_MAX_SECONDS_PER_RUN", 30),
        mqtt_idle_seconds=env.positive_number("SENSOR_MQTT_IDLE_SECONDS", 1.0),
        mqtt_poll_interval_seconds=env.positive_int("SENSOR_MQTT_POLL_INTERVAL_SECONDS", 30),
        mqtt_connect_timeout_seconds=env.positive_number(
            "SENSOR_MQTT_CONNECT_TIMEOUT_SECONDS", 10.0
        ),
        max_message_bytes=env.positive_int("SENSOR_MAX_MESSAGE_BYTES", 1_048_576),
        max_id_length=env.positive_int("SENSOR_MAX_ID_LENGTH", 256),
        future_tolerance_minutes=env.integer("SENSOR_FUTURE_TOLERANCE_MINUTES", 5, minimum=0),
        past_horizon_days=env.positive_int("SENSOR_PAST_HORIZON_DAYS", 30),
        landing_retention_hours=env.integer("SENSOR_LANDING_RETENTION_HOURS", 24, minimum=0),
        landing_max_runtime_seconds=env.positive_int("SENSOR_LANDING_MAX_RUNTIME_SECONDS", 900),
        duckdb_memory_limit=env.text("SENSOR_DUCKDB_MEMORY_LIMIT", "1GB"),
        duckdb_threads=env.positive_int("SENSOR_DUCKDB_THREADS", 2),
        raw_sensor_interval_seconds=env.positive_int("SENSOR_RAW_SENSOR_INTERVAL_SECONDS", 30),
        quality_rules_file=env.optional("SENSOR_QUALITY_RULES_FILE"),
        anomaly_rules_file=env.optional("SENSOR_ANOMALY_RULES_FILE"),
        docs_port=docs_port,
        docs_base_url=env.http_url("SENSOR_DOCS_BASE_URL", f"http://127.0.0.1:{docs_port}"),
        channels={
            kind: ChannelRouting(
                # Checked with the channel, so that a typo stops that channel only (notify).
                min_severity=env.text(f"{prefix}_MIN_SEVERITY", "warning"),
                sites=env.items(f"{prefix}_SITES", ()),
            )
            for kind, prefix in CHANNEL_PREFIXES.items()
        },
        alert_max_age_hours=env.hours_or_none("SENSOR_ALERT_MAX_AGE_HOURS", 24.0),
        run_executor=env.choice("SENSOR_RUN_EXECUTOR", RUN_EXECUTORS, "local"),
        dbt_project_dir=env.optional("SENSOR_DBT_PROJECT_DIR"),
        dashboard_host=env.text("SENSOR_DASHBOARD_HOST", "127.0.0.1"),
        dashboard_port=env.port("SENSOR_DASHBOARD_PORT", 8501),
        dashboard_cache_ttl_seconds=env.integer(
            "SENSOR_DASHBOARD_CACHE_TTL_SECONDS", 30, minimum=0
        ),
        secrets_set=frozenset(name for name in SECRETS if env.optional(name)),
    )


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of secret variable `name`, for the one process that must hand it to a client
    itself (the dashboard's warehouse and S3 connections): read when the connection is made,
    never kept in `Settings`, never logged or shown."""
    if name not in SECRETS:
        raise ValueError(f"{name} is not a secret variable; read it through load_settings()")
    return _Env(os.environ if environ is None else environ).optional(name)


class _Env:
    """Typed reads of the environment, each failing with a message that names the variable."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def optional(self, name: str) -> str | None:
        return self.environ.get(name, "").strip() or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def items(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.optional(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name, default)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
        return number

    def http_url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    def positive_int(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1)

    def positive_number(self, name: str, default: float) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
        return number

    def port(self, name: str, default: int) -> int:
        number = self.integer(name, default, minimum=1)
        if number > 65535:
            raise ValueError(f"{name} must be a TCP port (1-65535), got {number}")
        return number

    def share(self, name: str, default: float) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
        return number

    def day(self, name: str, default: str) -> str:
        value = self.text(name, default)
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None
        return value

    def hours_or_none(self, name: str, default: float) -> float | None:
        value = self.optional(name)
        if value is None:
            return default
        if value.lower() == "none":
            return None
        try:
            hours = float(value)
        except ValueError:
            hours = -1.0
        if not hours > 0:
            raise ValueError(f"{name} must be a positive number of hours or 'none', got {value!r}")
        return hours
