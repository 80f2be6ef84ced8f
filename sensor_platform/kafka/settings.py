"""Connection and ingestion settings for Kafka, passed as one plain value to the client functions."""

import re
from dataclasses import dataclass, field, fields

# Kafka's own rule for topic names; they end up in run keys and landing file names.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

# Only these kafka-python options may arrive through `security`, so a typo fails here rather
# than being ignored (or, worse, overriding a connection option).
_SECURITY_PREFIXES = ("security_protocol", "sasl_", "ssl_")
_SECRET_MARKERS = ("password", "secret", "token")
MASK = "***"
MIN_REQUEST_TIMEOUT_MS = 200


def check_topic(topic: str) -> str:
    if not TOPIC_NAME.match(topic) or topic in {".", ".."}:
        raise ValueError(f"invalid Kafka topic name {topic!r}: use 1-249 of A-Z a-z 0-9 . _ -")
    return topic


def _masked(config: dict) -> dict:
    return {
        key: MASK if any(marker in key for marker in _SECRET_MARKERS) else value
        for key, value in config.items()
    }


class ClientConfig(dict):
    """kafka-python keyword arguments; printing it never shows a password."""

    def __repr__(self) -> str:
        return repr(_masked(self))

    __str__ = __repr__


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    topics: tuple[str, ...] = ()
    topic_pattern: str | None = None  # a regex matched against the whole topic name
    security: dict[str, str] = field(default_factory=dict)
    max_records_per_run: int = 50_000
    consumer_group: str | None = None  # when set, offsets are committed after data is durable
    client_id: str = "sensor-platform"
    request_timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        # A list is accepted (resources hand one over) but stored as a tuple: settings are values.
        object.__setattr__(self, "topics", tuple(self.topics))
        if bool(self.topics) == bool(self.topic_pattern):
            raise ValueError("set exactly one of topics or topic_pattern")
        for topic in self.topics:
            check_topic(topic)
        if self.topic_pattern:
            try:  # fail at configuration time, not at the first sensor tick
                re.compile(self.topic_pattern)
            except re.error as exc:
                raise ValueError(f"invalid topic_pattern {self.topic_pattern!r}: {exc}") from exc
        unknown = [key for key in self.security if not key.startswith(_SECURITY_PREFIXES)]
        if unknown:
            raise ValueError(
                f"unknown Kafka security options {sorted(unknown)}: expected security_protocol, "
                "sasl_* or ssl_* options of kafka-python"
            )
        if self.max_records_per_run < 1:
            raise ValueError("max_records_per_run must be at least 1")
        if self.request_timeout_ms < MIN_REQUEST_TIMEOUT_MS:
            # kafka-python requires it to exceed the consumer's fetch wait (100 ms here).
            raise ValueError(f"request_timeout_ms must be at least {MIN_REQUEST_TIMEOUT_MS}")

    def client_config(self) -> ClientConfig:
        """Keyword arguments shared by KafkaConsumer, KafkaProducer and KafkaAdminClient."""
        return ClientConfig(
            bootstrap_servers=[s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            client_id=self.client_id,
            request_timeout_ms=self.request_timeout_ms,
            # kafka-python waits 30 s for an unreachable broker by default; a sensor tick
            # should report it sooner.
            bootstrap_timeout_ms=self.request_timeout_ms,
            **self.security,
        )

    def redact(self, text: str) -> str:
        """`text` with every secret of the security settings masked: for messages that quote
        what a broker or library said."""
        for key, value in self.security.items():
            if value and any(marker in key for marker in _SECRET_MARKERS):
                text = text.replace(str(value), MASK)
        return text

    def __repr__(self) -> str:
        shown = {
            f.name: _masked(self.security) if f.name == "security" else getattr(self, f.name)
            for f in fields(self)
        }
        return "KafkaSettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__
