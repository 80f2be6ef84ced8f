"""Resources: the lake, the warehouse, the fleet registry and pipeline tuning, built in one place."""

from datetime import timedelta

import dagster as dg

from sensor_platform import settings
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.lake.store import Lake
from sensor_platform.readings.normalize import NormalizeLimits
from sensor_platform.simulator.fleet import Fleet, load_fleet
from sensor_platform.warehouse.store import Warehouse


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake: a local folder, or `s3://bucket/prefix` with an optional endpoint override
    for S3-compatible stores (MinIO, moto)."""

    root: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None

    def lake(self) -> Lake:
        return Lake(
            self.root,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_region=self.s3_region,
            s3_access_key=self.s3_access_key,
            s3_secret_key=self.s3_secret_key,
        )


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse aggregates are published to: `duckdb:///file.duckdb` (embedded default),
    `postgresql+psycopg2://...` or `mysql+pymysql://...`."""

    url: str

    def warehouse(self) -> Warehouse:
        return Warehouse(self.url)


class FleetResource(dg.ConfigurableResource):
    """The fleet registry (devices, sites, cadences) and the simulator's settings."""

    fleet_file: str | None = None
    seed: int = 42
    anomaly_rate: float = 0.1
    late_rate: float = 0.01

    def fleet(self) -> Fleet:
        return load_fleet(self.fleet_file)


class PipelineResource(dg.ConfigurableResource):
    """Tuning of the pipeline: normalizer limits, landing retention, engine memory."""

    max_message_bytes: int = 1_048_576
    max_id_length: int = 256
    future_tolerance_minutes: int = 5
    past_horizon_days: int = 30
    landing_retention_hours: int = 24
    duckdb_memory_limit: str = "1GB"
    duckdb_threads: int = 2

    def limits(self) -> NormalizeLimits:
        return NormalizeLimits(
            max_message_bytes=self.max_message_bytes,
            max_id_length=self.max_id_length,
            future_tolerance=timedelta(minutes=self.future_tolerance_minutes),
            past_horizon=timedelta(days=self.past_horizon_days),
        )

    @property
    def landing_retention(self) -> timedelta:
        return timedelta(hours=self.landing_retention_hours)


class KafkaResource(dg.ConfigurableResource):
    """Where readings come from: bootstrap servers, topics (a list or a regex), security settings
    passed through to kafka-python, chunk size, consumer group and the policy for lost data."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topics: list[str] = []
    topic_pattern: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    max_records_per_run: int = 50_000
    consumer_group: str | None = None
    on_gap: str = "fail"  # fail | earliest | latest

    def settings(self) -> KafkaSettings:
        security = {
            key: value
            for key, value in {
                "security_protocol": self.security_protocol,
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
                "ssl_cafile": self.ssl_cafile,
            }.items()
            if value
        }
        topics = () if self.topic_pattern else tuple(self.topics or ["sensor-readings"])
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            topics=topics,
            topic_pattern=self.topic_pattern,
            security=security,
            max_records_per_run=self.max_records_per_run,
            consumer_group=self.consumer_group,
        )


def _env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    """An EnvVar when the variable is set (the UI then shows its name, never its value)."""
    return dg.EnvVar(name) if settings.is_set(name) else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(
            root=settings.lake_root(),
            s3_endpoint_url=_env_or("SENSOR_S3_ENDPOINT_URL", None),
            s3_region=_env_or("AWS_REGION", None),
            s3_access_key=_env_or("AWS_ACCESS_KEY_ID", None),
            s3_secret_key=_env_or("AWS_SECRET_ACCESS_KEY", None),
        ),
        "warehouse": WarehouseResource(
            url=_env_or("SENSOR_WAREHOUSE_URL", settings.default_warehouse_url())
        ),
        "fleet": FleetResource(fleet_file=_env_or("SENSOR_FLEET_FILE", None)),
        "pipeline": PipelineResource(),
        "kafka": KafkaResource(
            bootstrap_servers=settings.kafka_bootstrap_servers(),
            topics=settings.kafka_topics(),
            topic_pattern=settings.optional("SENSOR_KAFKA_TOPIC_PATTERN"),
            security_protocol=settings.optional("SENSOR_KAFKA_SECURITY_PROTOCOL"),
            sasl_mechanism=settings.optional("SENSOR_KAFKA_SASL_MECHANISM"),
            sasl_username=settings.optional("SENSOR_KAFKA_SASL_USERNAME"),
            sasl_password=_env_or("SENSOR_KAFKA_SASL_PASSWORD", None),
            ssl_cafile=settings.optional("SENSOR_KAFKA_SSL_CAFILE"),
            max_records_per_run=settings.kafka_max_records_per_run(),
            consumer_group=settings.optional("SENSOR_KAFKA_CONSUMER_GROUP"),
            on_gap=settings.kafka_on_gap(),
        ),
    }
