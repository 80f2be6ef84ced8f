"""Publish messages to MQTT topics (the simulator's `--to mqtt`, tests, benchmarks).

QoS 1 returns once the broker has acknowledged every message; QoS 0 once every message has been
written to the socket, which says nothing about whether the broker kept it.
"""

import threading
import uuid
from collections.abc import Iterable

from sensor_platform.mqtt.access import unavailable
from sensor_platform.mqtt.connection import Connection
from sensor_platform.mqtt.settings import MqttSettings
from sensor_platform.mqtt.topics import check_topic_name

# Messages sent but not yet acknowledged before publish() waits: bounds memory on long streams.
WINDOW = 1_000


def publish(
    settings: MqttSettings,
    messages: Iterable[tuple[str, bytes]],
    *,
    qos: int = 1,
    retain: bool = False,
    client_id: str | None = None,
) -> int:
    """Publish (topic, payload) pairs and return how many the broker confirmed (QoS 1) or were
    written (QoS 0). The publisher has a clean session and its own client id (never the
    draining session's). Raises BrokerUnavailable when the broker goes away meanwhile, naming
    how many were confirmed, or when no confirmation arrives for connect_timeout_seconds."""
    if qos not in (0, 1):
        raise ValueError(f"qos must be 0 or 1, got {qos}")
    client_id = client_id or f"{settings.client_id}-publisher-{uuid.uuid4().hex[:12]}"
    if client_id == settings.client_id:
        raise ValueError("a publisher must not use the draining session's client id")
    connection = Connection(settings, persistent=False, client_id=client_id)
    confirmations = _Confirmations(connection)
    connection.client.on_publish = confirmations.on_publish
    connection.client.max_inflight_messages_set(WINDOW)
    connection.open()
    try:
        for topic, payload in messages:
            check_topic_name(topic)
            confirmations.wait_until(confirmations.sent - WINDOW)
            connection.publish(topic, payload, qos, retain)
            confirmations.sent += 1
        confirmations.wait_until(confirmations.sent)
    finally:
        connection.close()
    return confirmations.confirmed


class _Confirmations:
    """How many messages were sent and confirmed; waits while confirmations keep coming."""

    def __init__(self, connection: Connection):
        self.connection = connection
        self.sent = 0
        self.confirmed = 0
        self._changed = threading.Condition()

    def on_publish(self, _client, _userdata, _mid, reason_code, _properties) -> None:
        with self._changed:
            if not reason_code.is_failure:
                self.confirmed += 1
            self._changed.notify_all()

    def wait_until(self, confirmed: int) -> None:
        settings = self.connection.settings
        with self._changed:
            while self.confirmed < confirmed:
                before = self.confirmed
                self._changed.wait(settings.connect_timeout_seconds)
                if self.connection.lost:
                    raise unavailable(
                        settings,
                        "publishing",
                        f"{self.connection.lost}; {self.confirmed} of {self.sent} confirmed",
                    )
                if self.confirmed == before:
                    raise unavailable(
                        settings,
                        "publishing",
                        f"no confirmation for {settings.connect_timeout_seconds:g} s; "
                        f"{self.confirmed} of {self.sent} confirmed",
                    )
