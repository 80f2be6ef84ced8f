"""Resources: every ConfigurableResource of the code location, built in one place from Settings.

Secrets (S3 keys, the warehouse URL, the Kafka password, webhook URLs) are passed as `EnvVar`s,
so the UI shows the variable's name, never its value. Resource methods import the ground floor
when they are called: every run imports this module, and most runs need only a few of them.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.settings import CHANNEL_PREFIXES, Settings

if TYPE_CHECKING:
    from sensor_platform.datasets import Dataset, Registry
    from sensor_platform.detection.rules import RuleSet
    from sensor_platform.kafka.settings import KafkaSettings
    from sensor_platform.kafka.source import KafkaSource
    from sensor_platform.lake.store import Lake
    from sensor_platform.mqtt.source import MqttSource
    from sensor_platform.notify.channels import Channel, ChannelSetup
    from sensor_platform.notify.delivery import RetryPolicy
    from sensor_platform.quality.partition_checks import AssetQualityReport
    from sensor_platform.quality.rules import FleetRegistry, QualityRules
    from sensor_platform.readings.normalize import NormalizeLimits
    from sensor_platform.simulator.fleet import Fleet
    from sensor_platform.simulator.source import SimulatorSource
    from sensor_platform.warehouse.store import Warehouse


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake: a local folder, or `s3://bucket/prefix` with an optional endpoint override
    for S3-compatible stores (MinIO, moto)."""

    root: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None

    def lake(self) -> "Lake":
        from sensor_platform.lake.store import Lake

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

    def warehouse(self) -> "Warehouse":
        from sensor_platform.warehouse.store import Warehouse

        return Warehouse(self.url)


class FleetResource(dg.ConfigurableResource):
    """The fleet registry (devices, sites, cadences) and the simulator's settings."""

    fleet_file: str | None = None
    seed: int = 42
    anomaly_rate: float = 0.1
    late_rate: float = 0.01
    malformed_rate: float = 0.0

    def fleet(self) -> "Fleet":
        from sensor_platform.simulator.fleet import load_fleet

        return load_fleet(self.fleet_file)

    def source(self) -> "SimulatorSource":
        """The simulated fleet as an ingest source."""
        from sensor_platform.simulator.source import SimulatorSource

        return SimulatorSource(
            self.fleet(), self.seed, self.anomaly_rate, self.late_rate, self.malformed_rate
        )

    def registry(self) -> "FleetRegistry":
        """What the quality checks need to know of the fleet: cadences and sites."""
        from sensor_platform.quality.rules import FleetRegistry

        devices = self.fleet().devices
        return FleetRegistry(
            cadences={d.device_id: d.cadence_seconds for d in devices},
            sites=frozenset(d.site_id for d in devices),
        )


class PipelineResource(dg.ConfigurableResource):
    """Tuning of the pipeline: normalizer limits, landing retention, engine memory."""

    max_message_bytes: int = 1_048_576
    max_id_length: int = 256
    future_tolerance_minutes: int = 5
    past_horizon_days: int = 30
    landing_retention_hours: int = 24
    duckdb_memory_limit: str = "1GB"
    duckdb_threads: int = 2

    def limits(self) -> "NormalizeLimits":
        from sensor_platform.readings.normalize import NormalizeLimits

        return NormalizeLimits(
            max_message_bytes=self.max_message_bytes,
            max_id_length=self.max_id_length,
            future_tolerance=timedelta(minutes=self.future_tolerance_minutes),
            past_horizon=timedelta(days=self.past_horizon_days),
        )

    @property
    def landing_retention(self) -> timedelta:
        return timedelta(hours=self.landing_retention_hours)

    @property
    def engine(self) -> dict[str, object]:
        """DuckDB's memory limit and threads, as the ground floor's keyword arguments."""
        return {"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads}


class KafkaResource(dg.ConfigurableResource):
    """Where readings come from: bootstrap servers, topics (a list or a regex), security settings
    passed through to kafka-python, chunk size, consumer group, the policy for lost data, and how
    often and how far apart a failed range is asked for again before it is stuck."""

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
    max_attempts: int = 8
    retry_first_delay_seconds: int = 60
    retry_max_delay_seconds: int = 3600

    def settings(self) -> "KafkaSettings":
        from sensor_platform.kafka.settings import KafkaSettings

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

    def source(self) -> "KafkaSource":
        from sensor_platform.kafka.attempts import RetryPolicy
        from sensor_platform.kafka.source import KafkaSource

        retry = RetryPolicy(
            max_attempts=self.max_attempts,
            first_delay=timedelta(seconds=self.retry_first_delay_seconds),
            max_delay=timedelta(seconds=self.retry_max_delay_seconds),
        )
        return KafkaSource(self.settings(), on_gap=self.on_gap, retry=retry)


class MqttResource(dg.ConfigurableResource):
    """An MQTT broker's persistent session (QoS 1): where it is, who we are (the password is a
    secret: give it as EnvVar), which topics, how the topic carries ids, how much a run drains."""

    host: str = "127.0.0.1"
    port: int = 1883
    topics: list[str] = ["sensors/#"]
    topic_template: str | None = None
    client_id: str = "sensor-platform"
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    tls_ca_file: str | None = None
    session_expiry_seconds: int = 604_800
    keepalive_seconds: int = 60
    connect_timeout_seconds: float = 10.0
    max_messages_per_run: int = 50_000
    max_seconds_per_run: float = 30.0
    idle_seconds: float = 1.0

    def source(self) -> "MqttSource":
        from sensor_platform.mqtt.settings import MqttSettings
        from sensor_platform.mqtt.source import MqttSource

        settings = MqttSettings(
            host=self.host,
            port=self.port,
            topics=tuple(self.topics),
            client_id=self.client_id,
            username=self.username,
            password=self.password,
            tls_ca_file=self.tls_ca_file,
            protocol=self.protocol,
            session_expiry_seconds=self.session_expiry_seconds,
            keepalive_seconds=self.keepalive_seconds,
            topic_template=self.topic_template,
            connect_timeout_seconds=self.connect_timeout_seconds,
        )
        return MqttSource(
            settings,
            max_messages=self.max_messages_per_run,
            max_seconds=self.max_seconds_per_run,
            idle_seconds=self.idle_seconds,
        )


class QualityResource(dg.ConfigurableResource):
    """Great Expectations over an ephemeral context (nothing on disk but the published Data
    Docs): the rules file (thresholds, ranges, severities) and whether to build Data Docs."""

    rules_file: str | None = None
    build_docs: bool = True
    # Where the checks link Data Docs pages (SENSOR_DOCS_BASE_URL); None: at the files.
    docs_base_url: str | None = None

    def rules(self) -> "QualityRules":
        from sensor_platform.quality.rules import load_rules

        return load_rules(self.rules_file)

    def check_partitions(
        self,
        lake: "Lake",
        datasets: "Registry",
        dataset: "Dataset",
        windows: list[datetime],
        *,
        fleet: "FleetRegistry",
        run_id: str,
        now: datetime,
    ) -> "AssetQualityReport":
        from sensor_platform.quality.partition_checks import check_partitions

        return check_partitions(
            lake,
            datasets,
            dataset,
            windows,
            rules=self.rules(),
            fleet=fleet,
            now=now,
            run_name=run_id[:8],
            build_docs=self.build_docs,
            docs_base_url=self.docs_base_url,
        )


class AnomalyRulesResource(dg.ConfigurableResource):
    """The detection rules file; unset: the packaged sensor_platform/detection/rules.json."""

    rules_file: str | None = None

    def rules(self) -> "RuleSet":
        from sensor_platform.detection.rules import load_rules

        return load_rules(self.rules_file)


class AlertsResource(dg.ConfigurableResource):
    """Alert channels (webhook URLs are secrets: give them as EnvVar), routing by minimum
    severity and sites (empty: all sites), delivery retries, and which news is still worth
    sending (`max_alert_age_hours`; None: any age)."""

    discord_webhook_url: str | None = None
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    discord_min_severity: str = "warning"
    slack_min_severity: str = "warning"
    webhook_min_severity: str = "warning"
    discord_sites: list[str] = []
    slack_sites: list[str] = []
    webhook_sites: list[str] = []
    notify_closed: bool = True
    max_alert_age_hours: float | None = 24.0
    lookback_hours: int = 24  # hours of episodes read each run to find what is still due
    attempts: int = 4
    timeout_seconds: float = 5.0
    max_retry_after_seconds: float = 60.0
    # the quality rules' physical ranges: a notice says when a peak lies beyond them
    quality_rules_file: str | None = None

    def plausible_ranges(self) -> dict[str, tuple[float, float]]:
        from sensor_platform.quality.rules import load_rules

        rules = load_rules(self.quality_rules_file)
        return {name: (rule.minimum, rule.maximum) for name, rule in rules.metrics.items()}

    def channel_setup(self) -> "ChannelSetup":
        """The valid channels, and an error per misconfigured one (naming its variable, never
        the URL): a bad channel stops no other."""
        from sensor_platform.notify.channels import ChannelSetting, build_channels

        configured = {
            "discord": (self.discord_webhook_url, self.discord_min_severity, self.discord_sites),
            "slack": (self.slack_webhook_url, self.slack_min_severity, self.slack_sites),
            "webhook": (self.webhook_url, self.webhook_min_severity, self.webhook_sites),
        }
        return build_channels(
            ChannelSetting(
                name=kind,
                kind=kind,
                url=url,
                url_variable=f"{CHANNEL_PREFIXES[kind]}_URL",
                min_severity=severity,
                min_severity_variable=f"{CHANNEL_PREFIXES[kind]}_MIN_SEVERITY",
                sites=tuple(sites),
            )
            for kind, (url, severity, sites) in configured.items()
        )

    def channels(self) -> list["Channel"]:
        return self.channel_setup().channels

    def policy(self) -> "RetryPolicy":
        from sensor_platform.notify.delivery import RetryPolicy

        return RetryPolicy(
            attempts=self.attempts,
            timeout_s=self.timeout_seconds,
            max_retry_after_s=self.max_retry_after_seconds,
        )

    @property
    def max_age(self) -> timedelta | None:
        return (
            None if self.max_alert_age_hours is None else timedelta(hours=self.max_alert_age_hours)
        )


class CatalogResource(dg.ConfigurableResource):
    """Where the analysts' DuckDB views file is written (a local path, rebuilt and renamed)."""

    analytics_db_path: str


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Every resource of the code location, from the settings."""

    def secret(name: str, default: str | None = None) -> str | dg.EnvVar | None:
        return dg.EnvVar(name) if name in settings.secrets_set else default

    channels = {
        field: value
        for kind, prefix in CHANNEL_PREFIXES.items()
        for field, value in {
            "webhook_url" if kind == "webhook" else f"{kind}_webhook_url": secret(f"{prefix}_URL"),
            f"{kind}_min_severity": settings.channels[kind].min_severity,
            f"{kind}_sites": list(settings.channels[kind].sites),
        }.items()
    }
    return {
        "lake": LakeResource(
            root=settings.lake_root,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            s3_access_key=secret("AWS_ACCESS_KEY_ID"),
            s3_secret_key=secret("AWS_SECRET_ACCESS_KEY"),
        ),
        "warehouse": WarehouseResource(
            url=secret("SENSOR_WAREHOUSE_URL", settings.default_warehouse_url)
        ),
        "fleet": FleetResource(
            fleet_file=settings.fleet_file,
            seed=settings.simulator_seed,
            anomaly_rate=settings.simulator_anomaly_rate,
            late_rate=settings.simulator_late_rate,
            malformed_rate=settings.simulator_malformed_rate,
        ),
        "pipeline": PipelineResource(
            max_message_bytes=settings.max_message_bytes,
            max_id_length=settings.max_id_length,
            future_tolerance_minutes=settings.future_tolerance_minutes,
            past_horizon_days=settings.past_horizon_days,
            landing_retention_hours=settings.landing_retention_hours,
            duckdb_memory_limit=settings.duckdb_memory_limit,
            duckdb_threads=settings.duckdb_threads,
        ),
        "kafka": KafkaResource(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=list(settings.kafka_topics),
            topic_pattern=settings.kafka_topic_pattern,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=secret("SENSOR_KAFKA_SASL_PASSWORD"),
            ssl_cafile=settings.kafka_ssl_cafile,
            max_records_per_run=settings.kafka_max_records_per_run,
            consumer_group=settings.kafka_consumer_group,
            on_gap=settings.kafka_on_gap,
            max_attempts=settings.kafka_max_attempts,
            retry_first_delay_seconds=settings.kafka_retry_first_delay_seconds,
            retry_max_delay_seconds=settings.kafka_retry_max_delay_seconds,
        ),
        "mqtt": MqttResource(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            topics=list(settings.mqtt_topics),
            topic_template=settings.mqtt_topic_template,
            client_id=settings.mqtt_client_id,
            protocol=settings.mqtt_protocol,
            username=settings.mqtt_username,
            password=secret("SENSOR_MQTT_PASSWORD"),
            tls_ca_file=settings.mqtt_tls_ca_file,
            session_expiry_seconds=settings.mqtt_session_expiry_seconds,
            keepalive_seconds=settings.mqtt_keepalive_seconds,
            connect_timeout_seconds=settings.mqtt_connect_timeout_seconds,
            max_messages_per_run=settings.mqtt_max_messages_per_run,
            max_seconds_per_run=settings.mqtt_max_seconds_per_run,
            idle_seconds=settings.mqtt_idle_seconds,
        ),
        "quality": QualityResource(
            rules_file=settings.quality_rules_file, docs_base_url=settings.docs_base_url
        ),
        "anomaly_rules": AnomalyRulesResource(rules_file=settings.anomaly_rules_file),
        "alerts": AlertsResource(
            **channels,
            max_alert_age_hours=settings.alert_max_age_hours,
            quality_rules_file=settings.quality_rules_file,
        ),
        "catalog": CatalogResource(analytics_db_path=settings.analytics_db),
    }
