"""Connection and session settings for MQTT, passed as one plain value to the client functions."""

from dataclasses import dataclass, fields

from sensor_platform.mqtt.topics import TopicTemplate, check_topic_filter

PROTOCOLS = ("5", "3.1.1")
MASK = "***"
CLIENT_ID_MAX = 65535  # bytes of UTF-8 (MQTT 3.1.1 only promises 23; Mosquitto takes more)
MAX_SESSION_EXPIRY = 0xFFFFFFFF  # MQTT 5: the session never expires


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is, who we are, and which session keeps our messages between runs.

    `client_id` names the persistent session: every run must use the same one (and no other
    client may), or the broker keeps nothing for us. `password` never appears in repr, logs or
    error messages. `session_expiry_seconds` is sent with MQTT 5 (how long the broker keeps the
    session after a run disconnects); MQTT 3.1.1 sessions live until the broker drops them
    (Mosquitto: `persistent_client_expiration`, default never).
    """

    host: str = "127.0.0.1"
    port: int = 1883
    topics: tuple[str, ...] = ("sensors/#",)
    client_id: str = "sensor-platform"
    username: str | None = None
    password: str | None = None
    tls_ca_file: str | None = None  # TLS on, checked against this CA (and the host name)
    protocol: str = "5"  # "5" or "3.1.1"
    session_expiry_seconds: int = 7 * 24 * 3600
    keepalive_seconds: int = 60
    topic_template: str | None = None  # e.g. "sensors/{site_id}/{device_id}"
    connect_timeout_seconds: float = 10.0  # TCP + TLS + CONNACK, and SUBACK, each

    def __post_init__(self) -> None:
        # A list is accepted (resources hand one over) but stored as a tuple: settings are values.
        object.__setattr__(self, "topics", tuple(self.topics))
        if not self.host:
            raise ValueError("MQTT host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"MQTT port must be 1-65535, got {self.port}")
        if not self.topics:
            raise ValueError("set at least one MQTT topic filter (e.g. sensors/#)")
        for topic_filter in self.topics:
            check_topic_filter(topic_filter)
        if not self.client_id or len(self.client_id.encode()) > CLIENT_ID_MAX:
            raise ValueError(
                "the MQTT client id names the persistent session: set a fixed, non-empty id"
            )
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 0 < self.session_expiry_seconds <= MAX_SESSION_EXPIRY:
            # 0 would end the session at every disconnect: queued messages would be lost.
            raise ValueError(
                f"session_expiry_seconds must be 1-{MAX_SESSION_EXPIRY}, got "
                f"{self.session_expiry_seconds}: the broker keeps messages only while the "
                "session lives"
            )
        if not 0 < self.keepalive_seconds <= 65535:
            raise ValueError(f"keepalive_seconds must be 1-65535, got {self.keepalive_seconds}")
        if self.connect_timeout_seconds <= 0:
            raise ValueError("connect_timeout_seconds must be > 0")
        if self.password is not None and self.username is None:
            raise ValueError("an MQTT password needs a username")
        if self.topic_template is not None:
            TopicTemplate.parse(self.topic_template)  # fail at configuration time

    @property
    def template(self) -> TopicTemplate | None:
        return TopicTemplate.parse(self.topic_template) if self.topic_template else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def who(self) -> str:
        """How we present ourselves, for messages: never the password."""
        parts = [f"client id {self.client_id!r}", f"MQTT {self.protocol}"]
        parts.append(f"user {self.username!r}" if self.username else "anonymous")
        parts.append(f"TLS with CA file {self.tls_ca_file}" if self.tls_ca_file else "no TLS")
        return ", ".join(parts)

    def redact(self, text: str) -> str:
        """`text` with the password masked: for messages that quote what a broker or library said."""
        return text.replace(self.password, MASK) if self.password else text

    def __repr__(self) -> str:
        shown = {
            f.name: (MASK if f.name == "password" and self.password else getattr(self, f.name))
            for f in fields(self)
        }
        return "MqttSettings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__
